//! Runs the in-process Kubernetes API test server by hand, for poking at it with kubectl:
//! `cargo run -p lifeboat-tests --bin kube-testserver` prints `export KUBECONFIG=…` and serves
//! until Ctrl-C or SIGTERM.
//!
//! Given kube-apiserver's `--secure-port=N`, it serves on that port, takes Service addresses
//! from `--service-cluster-ip-range` and `--service-node-port-range`, and ignores the other
//! flags: the suite uses that to stand it in for kube-apiserver when checking the
//! `KUBEBUILDER_ASSETS` start-up path on machines that have no kube-apiserver.
//!
//! To play one host of several (run inside a network namespace with `ip netns exec`):
//! `--bind-address=IP` (kube-apiserver's; `0.0.0.0` for every address), `--tls-san=IP,…`
//! (k3s's: more names in the serving certificate), `--advertise-address=IP` (the address in
//! the kubeconfig) and `--write-kubeconfig=PATH` (k3s's: a kubeconfig with a bearer token and
//! the CA, written once the port listens).

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::ExitCode;

use lifeboat_tests::kube::{AddressRanges, kubeconfig};
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
    let bind = match flag("bind-address").map(|a| a.parse::<IpAddr>()) {
        None => Ipv4Addr::LOCALHOST.into(),
        Some(Ok(ip)) => ip,
        Some(Err(e)) => {
            eprintln!("--bind-address: {e}: give an IP address such as 0.0.0.0");
            return ExitCode::FAILURE;
        }
    };
    let sans: Vec<String> = flag("tls-san")
        .map(|s| s.split(',').filter(|n| !n.is_empty()).map(String::from).collect())
        .unwrap_or_default();
    let _keep = match port {
        Some(port) => match lifeboat_tests::kube::TestServer::start_bound(bind, port, ranges, &sans) {
            Ok(s) => {
                if let Some(path) = flag("write-kubeconfig") {
                    let host = flag("advertise-address").unwrap_or_else(|| bind.to_string());
                    let trust = match s.ca_pem() {
                        Some(pem) => kubeconfig::Trust::Ca(pem.to_string()),
                        None => kubeconfig::Trust::None,
                    };
                    let auth = kubeconfig::Auth::Token("lifeboat-test".into());
                    // The port it got (the flag may say 0).
                    let url = s.url();
                    let got = url.rsplit(':').next().unwrap_or_default();
                    let server = format!("https://{host}:{got}");
                    if let Err(e) = kubeconfig::write_to(Path::new(&path), &server, &auth, &trust) {
                        eprintln!("--write-kubeconfig: {e}");
                        return ExitCode::FAILURE;
                    }
                }
                Keep::Server(s)
            }
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
