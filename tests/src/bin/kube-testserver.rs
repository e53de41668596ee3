//! Runs the in-process Kubernetes API test server by hand, for poking at it with kubectl:
//! `cargo run -p lifeboat-tests --bin kube-testserver` prints `export KUBECONFIG=…` and serves
//! until Ctrl-C or SIGTERM.
//!
//! Given kube-apiserver's `--secure-port=N`, it serves on that port, takes Service addresses
//! from `--service-cluster-ip-range` and `--service-node-port-range`, and ignores the other
//! flags: the suite uses that to stand it in for kube-apiserver when checking the
//! `KUBEBUILDER_ASSETS` start-up path on machines that have no kube-apiserver.

use std::process::ExitCode;

use lifeboat_tests::kube::AddressRanges;
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main]
async fn main() -> ExitCode {
    let flag = |name: &str| {
        let prefix = format!("--{name}=");
        std::env::args().find_map(|a| a.strip_prefix(&prefix).map(String::from))
    };
    let port = flag("secure-port").and_then(|p| p.parse::<u16>().ok());
    let mut ranges = AddressRanges::default();
    if let Some(cidr) = flag("service-cluster-ip-range") {
        match AddressRanges::parse_cidr(&cidr) {
            Some(c) => ranges.service_cidr = c,
            None => {
                eprintln!("--service-cluster-ip-range={cidr}: not an IPv4 CIDR between /12 and /30");
                return ExitCode::FAILURE;
            }
        }
    }
    if let Some(p) = flag("service-node-port-range") {
        match AddressRanges::parse_ports(&p) {
            Some(r) => ranges.node_ports = r,
            None => {
                eprintln!("--service-node-port-range={p}: not a port range like 30000-32767");
                return ExitCode::FAILURE;
            }
        }
    }
    let _keep = match port {
        Some(port) => match lifeboat_tests::kube::TestServer::start_configured(port, ranges).await {
            Ok(s) => Keep::Server(s),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        },
        None => match lifeboat_tests::kube::TestCluster::in_process().await {
            Ok(c) => {
                // An in-process cluster always has its generated kubeconfig.
                if let Some(path) = c.kubeconfig_path() {
                    println!("export KUBECONFIG={}", path.display());
                }
                Keep::Cluster(Box::new(c))
            }
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return ExitCode::FAILURE;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    ExitCode::SUCCESS
}

/// What must stay alive while serving.
#[allow(dead_code)]
enum Keep {
    Server(lifeboat_tests::kube::TestServer),
    Cluster(Box<lifeboat_tests::kube::TestCluster>),
}
