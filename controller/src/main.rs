//! The controller binary: flags, logging, the metrics/health server, and
//! [`lifeboat_controller::run`] until SIGTERM or Ctrl-C.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use lifeboat_controller::http::{self, Health};
use lifeboat_controller::metrics::Metrics;
use lifeboat_controller::{Config, DEFAULT_NAMESPACE};

/// Lifeboat's Kubernetes operator: backups, schedules, restores and repositories.
#[derive(Debug, Parser)]
#[command(name = "lifeboat-controller", version)]
struct Args {
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: String,
    /// The controller's namespace (holds the leader Lease).
    #[arg(long, env = "POD_NAMESPACE", default_value = DEFAULT_NAMESPACE)]
    namespace: String,
    /// Only reconcile resources in this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    watch_namespace: Option<String>,
    /// Leader Lease duration in seconds.
    #[arg(long, default_value_t = 15)]
    lease_duration: u64,
    /// Elect a leader through the Lease (`off` only with a single replica).
    #[arg(long, default_value = "on", value_parser = ["on", "off"])]
    leader_elect: String,
    /// Objects of each kind reconciled at once.
    #[arg(long, default_value_t = 4)]
    concurrency: u16,
    /// Seconds between BackupRepository checks.
    #[arg(long, default_value_t = 300)]
    repository_check_interval: u64,
    /// Identity in the Lease (default: the pod name from POD_NAME, else the hostname).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lifeboat_rbd::report_aborts("lifeboat-controller");
    // Both ring (kube) and aws-lc-rs (object_store) are linked; pick one before any TLS.
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let identity = args
        .identity
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("lifeboat-controller-{}", std::process::id()));
    let mut config = Config::new(Some(args.namespace), identity);
    config.leader_elect = args.leader_elect == "on";
    config.lease_duration = Duration::from_secs(args.lease_duration.max(2));
    config.concurrency = args.concurrency.max(1);
    config.repository_check_interval = Duration::from_secs(args.repository_check_interval.max(10));
    config.watch_namespace = args.watch_namespace;

    let client = kube::Client::try_default()
        .await
        .context("connect to the Kubernetes API (in-cluster config or KUBECONFIG)")?;
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let (listener, addr) = http::bind(&args.metrics_addr).await?;
    tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(http::serve(listener, metrics.clone(), health.clone(), {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }));
    lifeboat_controller::run(client, config, metrics, health, async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    })
    .await?;
    let _ = server.await;
    Ok(())
}
