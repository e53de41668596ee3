//! Which Kubernetes API server the tests run against, as `cfg(kube_backend = "…")`, so tests
//! a backend cannot run are counted as ignored by the test runner there
//! (`#[cfg_attr(not(kube_backend = "in_process"), ignore = "why")]`) instead of passing
//! silently. Read from the same variables `lifeboat_tests::kube::TestCluster::start` reads at
//! run time: `USE_EXISTING_CLUSTER=true|1` → `existing`, `KUBEBUILDER_ASSETS=DIR` → `envtest`,
//! else `in_process`.

fn main() {
    println!("cargo::rerun-if-env-changed=USE_EXISTING_CLUSTER");
    println!("cargo::rerun-if-env-changed=KUBEBUILDER_ASSETS");
    println!("cargo::rustc-check-cfg=cfg(kube_backend, values(\"in_process\", \"envtest\", \"existing\"))");
    let existing =
        std::env::var("USE_EXISTING_CLUSTER").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    let envtest = std::env::var_os("KUBEBUILDER_ASSETS").is_some_and(|v| !v.is_empty());
    let backend = match (existing, envtest) {
        (true, _) => "existing",
        (false, true) => "envtest",
        (false, false) => "in_process",
    };
    println!("cargo::rustc-cfg=kube_backend=\"{backend}\"");
}
