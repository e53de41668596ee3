//! The CSI driver binary: parse flags, serve the socket until SIGTERM/SIGINT.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use lifeboat_csi::config::DriverConfig;
use lifeboat_csi::driver::{Driver, Mode, Settings};
use lifeboat_csi::node::mapper::MapperKind;

/// Lifeboat's CSI driver for Ceph RBD and NFS volumes.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
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
    /// Deadline for one RPC's NFS work, in seconds.
    #[arg(long, default_value_t = 60)]
    nfs_timeout_secs: u64,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let topology = args
        .topology
        .iter()
        .map(|t| t.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect::<Option<BTreeMap<_, _>>>()
        .context("--topology takes key=value")?;
    let config = DriverConfig::load(args.config.as_deref()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let socket = lifeboat_csi::server::socket_path(&args.endpoint).map_err(|e| anyhow::anyhow!("{e}"))?;
    let driver = Driver::new(Settings {
        name: args.driver_name,
        node_id: args.node_id,
        mode: args.mode,
        topology,
        config,
        state_dir: args.state_dir,
        mapper: args.mapper,
        nfs_timeout: Duration::from_secs(args.nfs_timeout_secs),
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
    lifeboat_csi::server::serve(driver, &socket, shutdown)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("serve CSI")
}
