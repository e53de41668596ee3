//! The controllers for the five kinds, run together for one leadership term. Each reconciler
//! reads the object, computes its next step with a pure `plan` function, applies it, and
//! writes status with a merge patch on the status subresource.

pub mod backup;
pub mod backup_sync;
pub mod context;
mod finalizer;
mod finish;
mod in_flight;
mod outcome;
pub mod replication;
pub mod repository;
pub mod restore;
pub mod schedule;
pub mod status;

use std::sync::Arc;

use futures::StreamExt;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

pub use context::Context;
pub use in_flight::Runs;

use crate::SCHEDULE_LABEL;
use crate::crd::{Backup, BackupReplication, BackupRepository, Restore, Schedule};
use crate::http::Health;

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// A future that completes once `stop` turns true (or its sender goes away).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn log_result<T: std::fmt::Debug, E: std::fmt::Display>(kind: &'static str, r: Result<T, E>) {
    match r {
        Ok(o) => tracing::debug!("{kind} reconciled: {o:?}"),
        Err(e) => tracing::debug!("{kind} controller: {e}"),
    }
}

/// Runs the five controllers until `stop` turns true; then aborts the backups and restores
/// still running here (the next leader resumes them).
pub async fn run_controllers(ctx: Arc<Context>, health: Arc<Health>, stop: watch::Receiver<bool>) {
    let client = ctx.client.clone();
    let ns = ctx.config.watch_namespace.clone();
    let ns = ns.as_deref();
    let cfg = ControllerConfig::default().concurrency(ctx.config.concurrency);
    let wc = watcher::Config::default();

    let backups = Controller::new(api::<Backup>(&client, ns), wc.clone())
        .with_config(cfg.clone())
        .graceful_shutdown_on(stopped(stop.clone()));
    let restores = Controller::new(api::<Restore>(&client, ns), wc.clone())
        .with_config(cfg.clone())
        .graceful_shutdown_on(stopped(stop.clone()));
    let schedules = Controller::new(api::<Schedule>(&client, ns), wc.clone())
        .with_config(cfg.clone())
        .watches(api::<Backup>(&client, ns), wc.clone(), |b: Backup| {
            let schedule = b.labels().get(SCHEDULE_LABEL).cloned();
            let namespace = b.namespace();
            schedule.map(|s| {
                let r = ObjectRef::<Schedule>::new(&s);
                match namespace {
                    Some(n) => r.within(&n),
                    None => r,
                }
            })
        })
        .graceful_shutdown_on(stopped(stop.clone()));
    let repositories = Controller::new(api::<BackupRepository>(&client, ns), wc.clone())
        .with_config(cfg.clone())
        .graceful_shutdown_on(stopped(stop.clone()));
    // Every Backup seen finished makes each replication look whether it is due (its plan
    // compares the newest finished Backup into its source with its last copy).
    let backups_finished = watcher(api::<Backup>(&client, ns), wc.clone())
        .applied_objects()
        .filter_map(|b| async move {
            b.ok()
                .filter(|b| b.status.as_ref().is_some_and(|s| s.phase.is_finished()))
                .map(|_| ())
        });
    let replications = Controller::new(api::<BackupReplication>(&client, ns), wc.clone())
        .with_config(cfg)
        .reconcile_all_on(backups_finished)
        .graceful_shutdown_on(stopped(stop.clone()));

    // Ready once every kind can be listed (CRDs installed, RBAC in place).
    let synced = {
        let health = health.clone();
        let (client, ns) = (client.clone(), ns.map(str::to_string));
        async move {
            let lp = kube::api::ListParams::default().limit(1);
            loop {
                let ns = ns.as_deref();
                let (b, r, s, br, bp) = (
                    api::<Backup>(&client, ns),
                    api::<Restore>(&client, ns),
                    api::<Schedule>(&client, ns),
                    api::<BackupRepository>(&client, ns),
                    api::<BackupReplication>(&client, ns),
                );
                let listed =
                    futures::join!(b.list(&lp), r.list(&lp), s.list(&lp), br.list(&lp), bp.list(&lp));
                match (listed.0, listed.1, listed.2, listed.3, listed.4) {
                    (Ok(_), Ok(_), Ok(_), Ok(_), Ok(_)) => break,
                    (a, b, c, d, e) => {
                        let e = [a.err(), b.err(), c.err(), d.err(), e.err()]
                            .into_iter()
                            .flatten()
                            .next();
                        if let Some(e) = e {
                            tracing::warn!("cannot list Lifeboat resources (CRDs installed? RBAC?): {e}");
                        }
                        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                    }
                }
            }
            health.set_synced(true);
            tracing::info!("controllers synced");
        }
    };
    let synced = tokio::spawn(synced);

    futures::join!(
        backups
            .run(backup::reconcile, context::error_policy, ctx.clone())
            .for_each(|r| async move { log_result("Backup", r) }),
        restores
            .run(restore::reconcile, context::error_policy, ctx.clone())
            .for_each(|r| async move { log_result("Restore", r) }),
        schedules
            .run(schedule::reconcile, context::error_policy, ctx.clone())
            .for_each(|r| async move { log_result("Schedule", r) }),
        repositories
            .run(repository::reconcile, context::error_policy, ctx.clone())
            .for_each(|r| async move { log_result("BackupRepository", r) }),
        replications
            .run(replication::reconcile, context::error_policy, ctx.clone())
            .for_each(|r| async move { log_result("BackupReplication", r) }),
    );
    synced.abort();
    health.set_synced(false);
    ctx.runs.abort_all();
}
