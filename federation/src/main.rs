//! The federation agent binary: flags, logging, `/metrics`, `/healthz`, `/readyz`, and
//! [`lifeboat_federation::agent::run`] until SIGTERM or Ctrl-C. It runs beside the
//! controller in every cluster of the federation.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use lifeboat_controller::http::{self, Health};
use lifeboat_controller::metrics::Metrics;
use lifeboat_federation::agent::{AgentConfig, run};

/// Lifeboat's federation agent: cluster health, fencing and scheduled drills.
#[derive(Debug, Parser)]
#[command(name = "lifeboat-federation", version)]
struct Args {
    /// This cluster's name in the federation (as registered with `drctl cluster add`).
    #[arg(long, env = "LIFEBOAT_CLUSTER")]
    cluster: String,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8081")]
    metrics_addr: String,
    /// The agent's namespace (Clusters, FailoverPlans, Drills, Secrets, its Lease).
    #[arg(long, env = "POD_NAMESPACE", default_value = lifeboat_controller::DEFAULT_NAMESPACE)]
    namespace: String,
    /// Seconds between probes of the other clusters.
    #[arg(long, default_value_t = 10)]
    probe_interval: u64,
    /// Seconds between fencing-lease renewals.
    #[arg(long, default_value_t = 10)]
    fence_interval: u64,
    /// BackupRepositories (in the namespace) holding the federation state when no plan
    /// names any (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "default")]
    repositories: Vec<String>,
    /// Leader Lease duration in seconds.
    #[arg(long, default_value_t = 15)]
    lease_duration: u64,
    /// Elect a leader through the Lease (`off` only with a single replica).
    #[arg(long, default_value = "on", value_parser = ["on", "off"])]
    leader_elect: String,
    /// Identity in the Lease (default: POD_NAME, else the hostname).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
}

async fn shutdown_signal() {
    if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        return;
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    lifeboat_federation::clusters::valid_name(&args.cluster)
        .map_err(|e| anyhow::anyhow!("--cluster: {e}"))?;
    let identity = args
        .identity
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("lifeboat-federation-{}", std::process::id()));
    let mut config = AgentConfig::new(&args.cluster, &args.namespace, &identity);
    config.probe_interval = Duration::from_secs(args.probe_interval.max(1));
    config.fence_interval = Duration::from_secs(args.fence_interval.max(1));
    config.lease_duration = Duration::from_secs(args.lease_duration.max(2));
    config.leader_elect = args.leader_elect == "on";
    config.repositories = args.repositories;
    let client = kube::Client::try_default()
        .await
        .context("connect to the Kubernetes API (in-cluster config or KUBECONFIG)")?;
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    // The agent is ready as soon as it runs; leadership is visible in lifeboat_leader.
    health.set_leading(false);
    let (listener, addr) = http::bind(&args.metrics_addr).await?;
    tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(http::serve(listener, metrics.clone(), health, {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }));
    run(client, config, metrics, async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    })
    .await;
    let _ = server.await;
    Ok(())
}
