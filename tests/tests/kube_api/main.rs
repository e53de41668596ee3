//! Kubernetes API behaviour tests. They are written to the Kubernetes API, not to the test
//! server, so the same tests check the test server's fidelity against a real kube-apiserver:
//!
//! ```sh
//! cargo test -p lifeboat-tests --test kube_api                                   # test server
//! KUBEBUILDER_ASSETS=/path/to/bin cargo test -p lifeboat-tests --test kube_api   # envtest
//! USE_EXISTING_CLUSTER=true KUBECONFIG=~/.kube/config cargo test -p lifeboat-tests --test kube_api
//! ```
//!
//! Every test works in namespaces of its own, so tests can share a real cluster.

mod addresses;
mod aggregation;
mod common;
mod crd;
mod crud;
mod envtest;
mod faults;
mod finalizers;
mod gc;
mod patches;
mod runtime;
mod validation;
mod watch;
