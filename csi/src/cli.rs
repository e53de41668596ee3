//! Command line of the driver: parse flags, serve the socket until SIGTERM/SIGINT.
//! In the library so test and benchmark harnesses can run the very same binary.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::DriverConfig;
use crate::driver::{Driver, Mode, Settings};
use crate::node::mapper::MapperKind;
use clap::Parser;

/// Lifeboat's CSI driver for Ceph RBD and NFS volumes.
#[derive(Parser, Debug)]
#[command(version)]
pub struct Args {
    /// gRPC endpoint, `unix:///path/to/csi.sock`.
    #[arg(long, env = "CSI_ENDPOINT")]
    endpoint: String,
    /// This node's id (NodeGetInfo).
    #[arg(long, env = "NODE_ID")]
    node_id: String,
    /// Which services to serve.
    #[arg(long, value_enum, default_value = "all")]
    mode: Mode,
    /// Driver name (the CSIDriver object).
    #[arg(long, default_value = "csi.lifeboat.dev")]
    driver_name: String,
    /// Driver config: Ceph clusters by clusterID, NFS exports to probe (JSON).
    #[arg(long, env = "LIFEBOAT_CSI_CONFIG")]
    config: Option<PathBuf>,
    /// Private state directory (short-lived Ceph configs, fuse mounts, stage records).
    #[arg(long, default_value = "/var/lib/lifeboat-csi")]
    state_dir: PathBuf,
    /// How to map RBD images on nodes.
    #[arg(long, value_enum, default_value = "auto")]
    mapper: MapperKind,
    /// Topology segment of this node, `key=value` (repeatable).
    #[arg(long = "topology")]
    topology: Vec<String>,
    /// Deadline for one RPC's NFS work, in milliseconds.
    #[arg(long, default_value_t = 60_000)]
    nfs_timeout_ms: u64,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Parses the process arguments and serves; the exit code says whether it ended cleanly.
pub fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lifeboat-csi: start runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(Args::parse())) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lifeboat-csi: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Serves with the given arguments until a termination signal.
pub async fn run(args: Args) -> Result<(), BoxError> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let topology = args
        .topology
        .iter()
        .map(|t| t.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect::<Option<BTreeMap<_, _>>>()
        .ok_or("--topology takes key=value")?;
    let config = DriverConfig::load(args.config.as_deref())?;
    let socket = crate::server::socket_path(&args.endpoint)?;
    let driver = Driver::new(Settings {
        name: args.driver_name,
        node_id: args.node_id,
        mode: args.mode,
        topology,
        config,
        state_dir: args.state_dir,
        mapper: args.mapper,
        nfs_timeout: Duration::from_millis(args.nfs_timeout_ms),
    });
    let shutdown = async {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    crate::server::serve(driver, &socket, shutdown).await
}
