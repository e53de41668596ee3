//! The `KUBEBUILDER_ASSETS` start-up path (etcd, then kube-apiserver with envtest's flags, a
//! token kubeconfig, readiness), checked with stand-ins where no kube-apiserver is installed:
//! Debian's etcd and this crate's `kube-testserver`, which serves on `--secure-port`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;

#[tokio::test]
async fn assets_dir_start_up_path() {
    let Some(etcd) = ["/usr/bin/etcd", "/usr/local/bin/etcd"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
    else {
        lifeboat_tests::kube::unsupported(
            "assets_dir_start_up_path",
            "no etcd installed (scripts/install-deps.sh installs Debian's etcd-server)",
        );
    };
    let assets = tempfile::tempdir().expect("assets dir");
    std::os::unix::fs::symlink(etcd, assets.path().join("etcd")).expect("link etcd");
    let script = assets.path().join("kube-apiserver");
    let server = env!("CARGO_BIN_EXE_kube-testserver");
    std::fs::write(&script, format!("#!/bin/sh\nexec '{server}' \"$@\"\n")).expect("write stand-in");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let state = tempfile::tempdir().expect("state dir");
    let (env, kubeconfig) = lifeboat_tests::kube::real::start_envtest(assets.path(), state.path())
        .await
        .expect("start etcd and the kube-apiserver stand-in");
    let client = lifeboat_tests::kube::kubeconfig::client(&kubeconfig)
        .await
        .expect("client");
    Api::<Namespace>::all(client)
        .get("default")
        .await
        .expect("the API answers");
    drop(env);
}
