//! The backup engine: where every kind of Lifeboat backup (Kubernetes objects, PV data, etcd)
//! is stored.
//!
//! It knows nothing of Kubernetes, CSI or clusters: sources feed it streams and trees, and it
//! keeps them in a repository on object storage. This first part opens the storage itself.

pub mod store;
