//! Runs the in-process Kubernetes API test server by hand, for poking at it with kubectl:
//! `cargo run -p lifeboat-tests --bin kube-testserver` prints `export KUBECONFIG=…` and serves
//! until Ctrl-C.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cluster = match lifeboat_tests::kube::TestCluster::in_process().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    println!("export KUBECONFIG={}", cluster.kubeconfig_path().display());
    let _ = tokio::signal::ctrl_c().await;
    ExitCode::SUCCESS
}
