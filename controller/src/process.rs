//! The controller process as a library call: leader election, and the controllers running
//! exactly while this process leads. `main` and the integration tests both call [`run`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use tokio::sync::watch;

use crate::config::Config;
use crate::error::Result;
use crate::http::Health;
use crate::leader::{Election, elect};
use crate::metrics::Metrics;
use crate::reconcile::{Context, run_controllers};

/// How long stopping controllers may take before they are aborted.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Runs until `shutdown` completes: elects (or, with leader election off, assumes) leadership
/// and reconciles while leading. Losing the Lease stops the controllers and aborts the runs in
/// flight; their resources stay InProgress and the next leader resumes them.
pub async fn run(
    client: Client,
    config: Config,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let (leading_tx, mut leading_rx) = watch::channel(None::<bool>);
    let election = if config.leader_elect {
        let e = Election {
            namespace: config.namespace.clone(),
            name: config.lease_name.clone(),
            identity: config.identity.clone(),
            duration: config.lease_duration,
        };
        let mut stop = stop_rx.clone();
        let client = client.clone();
        Some(tokio::spawn(elect(client, e, leading_tx, async move {
            let _ = stop.wait_for(|s| *s).await;
        })))
    } else {
        leading_tx.send_replace(Some(true));
        // Keep the sender alive for the whole run.
        let mut stop = stop_rx.clone();
        Some(tokio::spawn(async move {
            let _ = stop.wait_for(|s| *s).await;
            drop(leading_tx);
        }))
    };
    // /readyz follows the election as it happens.
    let mut mirror = leading_rx.clone();
    let mirror_health = health.clone();
    tokio::spawn(async move {
        loop {
            let known = *mirror.borrow_and_update();
            if let Some(l) = known {
                mirror_health.set_leading(l);
            }
            if mirror.changed().await.is_err() {
                break;
            }
        }
    });
    let mut shutting_down = stop_rx.clone();
    loop {
        // Wait to lead (or to stop).
        let lead = tokio::select! {
            r = leading_rx.wait_for(|l| l.is_some_and(|v| v)) => r.is_ok(),
            _ = shutting_down.wait_for(|s| *s) => false,
        };
        if !lead || *shutting_down.borrow() {
            break;
        }
        tracing::info!(identity = %config.identity, "leading: starting controllers");
        metrics.leader.set(1);
        let ctx = Arc::new(Context::new(client.clone(), config.clone(), metrics.clone()));
        let (term_tx, term_rx) = watch::channel(false);
        let mut controllers = tokio::spawn(run_controllers(ctx.clone(), health.clone(), term_rx));
        tokio::select! {
            _ = leading_rx.wait_for(|l| *l != Some(true)) => {}
            _ = shutting_down.wait_for(|s| *s) => {}
        }
        let _ = term_tx.send(true);
        // Backups and restores stop at once: the next leader resumes them.
        ctx.runs.abort_all();
        // Reconciles in flight may finish; one stuck on a dead API server may not hold the
        // step-down (and so a second leader) or the exit back.
        if tokio::time::timeout(STOP_GRACE, &mut controllers).await.is_err() {
            tracing::warn!("controllers did not stop within {STOP_GRACE:?}; aborting them");
            controllers.abort();
        }
        metrics.leader.set(0);
        tracing::info!(identity = %config.identity, "not leading: controllers stopped");
    }
    if let Some(e) = election {
        let _ = e.await;
    }
    Ok(())
}
