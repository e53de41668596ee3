//! One replication run: for each destination in turn, copy what it lacks of the selected
//! snapshots (those the destination's retention would keep), apply its retention there, and
//! report — status, an Event, metrics.

use std::sync::Arc;

use chrono::Utc;
use kube::{Api, Resource, ResourceExt};
use lifeboat_backup::Repository;
use lifeboat_backup::blob::SnapshotId;
use lifeboat_backup::copy::{self, CopyOptions, CopyReport, Selection};
use lifeboat_backup::maintenance::forget::plan_forget;
use lifeboat_backup::maintenance::prune;
use lifeboat_backup::progress::Progress;
use lifeboat_backup::snapshot::{Snapshot, snapshot_key};
use lifeboat_backup::store::{LockMode, LockSettings};

use crate::crd::{
    AccessMode, BackupReplication, BackupReplicationStatus, DestinationStatus, ObjectLockMode,
    ReplicationDestination, ReplicationPhase,
};
use crate::metrics::DestinationLabels;
use crate::reconcile::context::Context;
use crate::reconcile::finish::write_final_status;
use crate::reconcile::in_flight::run_reporting;
use crate::reconcile::outcome::Failure;
use crate::reconcile::schedule::retention::policy;
use crate::reconcile::status::write_status;
use crate::repository::{get_repository, open_repository, open_store};

/// What one destination's run did.
struct Outcome {
    report: CopyReport,
    forgotten: u64,
    snapshots: u64,
    object_lock: String,
}

fn tagged(snaps: Vec<Snapshot>, tags: &std::collections::BTreeMap<String, String>) -> Vec<Snapshot> {
    snaps
        .into_iter()
        .filter(|s| tags.iter().all(|(k, v)| s.tags.get(k) == Some(v)))
        .collect()
}

/// Copies to one destination, then applies its retention.
async fn copy_to(
    ctx: Arc<Context>,
    replication: Arc<BackupReplication>,
    dest: ReplicationDestination,
    source: Arc<Repository>,
    progress: Arc<Progress>,
) -> Result<Outcome, Failure> {
    let namespace = replication.namespace().unwrap_or_default();
    let spec = &replication.spec;
    let target = get_repository(&ctx.client, &namespace, &dest.repository).await?;
    if target.spec.access_mode == AccessMode::ReadOnly {
        return Err(Failure::Invalid(format!(
            "destination {:?}: BackupRepository {namespace}/{} is ReadOnly; replication writes to it, so make it ReadWrite",
            dest.name, dest.repository
        )));
    }
    let store = open_store(&ctx.client, &target).await?;
    let lock = dest.object_lock.map(|l| LockSettings {
        mode: match l.mode {
            ObjectLockMode::Governance => LockMode::Governance,
            ObjectLockMode::Compliance => LockMode::Compliance,
        },
        days: l.retention_days,
    });
    let support = store.lock_support().await;
    let object_lock = match lock {
        Some(l) => format!("{} {} days; {support}", l.mode, l.days),
        None => format!("not requested; {support}"),
    };
    let failed = |e: String| Failure::Failed(e);
    let snapshots = tagged(
        source.snapshots().await.map_err(|e| failed(e.to_string()))?,
        &spec.snapshot_tags,
    );
    // Copy only what the destination's retention keeps, so what it forgets is not copied again.
    let ids: Vec<SnapshotId> = match &dest.retention {
        Some(r) => plan_forget(&snapshots, &policy(r))
            .map_err(|e| Failure::Invalid(format!("destination {:?}: retention: {e}", dest.name)))?
            .into_iter()
            .flat_map(|g| g.keep.into_iter().map(|(id, _)| id))
            .collect(),
        None => snapshots.iter().filter_map(|s| s.id).collect(),
    };
    let options = CopyOptions {
        selection: Selection::Ids(ids),
        parallelism: spec
            .parallelism
            .map_or(copy::DEFAULT_PARALLELISM, |p| p.max(1) as usize),
        bandwidth: spec
            .bandwidth_limit
            .as_deref()
            .map(copy::parse_rate)
            .transpose()
            .map_err(|e| Failure::Invalid(format!("spec.bandwidthLimit: {e}")))?,
        object_lock: lock,
    };
    let report = copy::copy(&source, &store, &options, progress)
        .await
        .map_err(|e| failed(e.to_string()))?;

    let mut forgotten = 0;
    if let Some(r) = &dest.retention {
        let replica = open_repository(&ctx.client, &target).await?;
        let there = tagged(
            replica.snapshots().await.map_err(|e| failed(e.to_string()))?,
            &spec.snapshot_tags,
        );
        let plan = plan_forget(&there, &policy(r)).map_err(|e| Failure::Invalid(e.to_string()))?;
        let removing: Vec<SnapshotId> = plan.into_iter().flat_map(|g| g.remove).collect();
        let held = replica
            .retained(removing.iter().map(snapshot_key), Utc::now())
            .await
            .map_err(|e| failed(e.to_string()))?;
        let deletable: Vec<SnapshotId> = removing
            .into_iter()
            .filter(|id| !held.contains_key(&snapshot_key(id)))
            .collect();
        replica
            .forget_snapshots(&deletable)
            .await
            .map_err(|e| failed(e.to_string()))?;
        forgotten = deletable.len() as u64;
        if forgotten > 0 {
            prune::prune(&replica, false)
                .await
                .map_err(|e| failed(e.to_string()))?;
        }
    }
    let snapshots = (report.destination_snapshots as u64).saturating_sub(forgotten);
    Ok(Outcome {
        report,
        forgotten,
        snapshots,
        object_lock,
    })
}

/// Runs `replication`, whose status (`running`) already says Copying, to the end.
pub async fn run(ctx: Arc<Context>, replication: Arc<BackupReplication>, running: BackupReplicationStatus) {
    let namespace = replication.namespace().unwrap_or_default();
    let name = replication.name_any();
    let api: Api<BackupReplication> = Api::namespaced(ctx.client.clone(), &namespace);
    let reference = replication.object_ref(&());
    let mut status = running;
    let source = match get_repository(&ctx.client, &namespace, &replication.spec.source_repository).await {
        Ok(r) => open_repository(&ctx.client, &r).await,
        Err(e) => Err(e),
    };
    let source = match source {
        Ok(r) => Arc::new(r),
        Err(e) => {
            let message = format!("source {}: {e}", replication.spec.source_repository);
            finish(&ctx, &api, &name, &reference, status, Some(message)).await;
            return;
        }
    };
    let mut failures = Vec::new();
    for dest in &replication.spec.destinations {
        let idx = match status.destinations.iter().position(|d| d.name == dest.name) {
            Some(i) => i,
            None => {
                status.destinations.push(DestinationStatus {
                    name: dest.name.clone(),
                    ..DestinationStatus::default()
                });
                status.destinations.len() - 1
            }
        };
        let labels = DestinationLabels {
            namespace: namespace.clone(),
            replication: name.clone(),
            destination: dest.name.clone(),
        };
        let progress = Arc::new(Progress::default());
        let make = {
            let (ctx, replication, dest, source, progress) = (
                ctx.clone(),
                replication.clone(),
                dest.clone(),
                source.clone(),
                progress.clone(),
            );
            move || copy_to(ctx, replication, dest, source, progress)
        };
        let (result, mut current) = run_reporting(
            &api,
            &name,
            ctx.config.progress_interval,
            status.clone(),
            &progress,
            |s: &mut BackupReplicationStatus, p| {
                if let Some(d) = s.destinations.get_mut(idx) {
                    d.progress = Some(p);
                }
            },
            make,
        )
        .await;
        let metrics = &ctx.metrics.replication;
        let d = &mut current.destinations[idx];
        d.progress = None;
        match result {
            Ok(o) => {
                let r = &o.report;
                d.url = r.destination.clone();
                d.snapshots = o.snapshots;
                d.last_copy_bytes = r.bytes_copied;
                d.bytes_copied += r.bytes_copied;
                d.snapshots_copied += r.snapshots_copied.len() as u64;
                d.snapshots_forgotten = o.forgotten;
                d.object_lock = Some(o.object_lock);
                if let Some(n) = &r.newest {
                    d.newest_snapshot = Some(n.id.to_hex());
                    d.newest_snapshot_time = Some(n.time.to_rfc3339());
                    metrics.set_newest(&labels, n.time.timestamp());
                }
                metrics.bytes.get_or_create(&labels).inc_by(r.bytes_copied);
                metrics
                    .snapshots
                    .get_or_create(&labels)
                    .inc_by(r.snapshots_copied.len() as u64);
                if r.ok() {
                    d.message = None;
                    d.last_success_time = Some(Utc::now().to_rfc3339());
                    metrics
                        .last_success
                        .get_or_create(&labels)
                        .set(Utc::now().timestamp());
                } else {
                    let why: Vec<String> = r
                        .damaged
                        .iter()
                        .map(|(k, w)| format!("{k}: {w}"))
                        .chain(r.skipped.iter().map(|(id, w)| format!("snapshot {id}: {w}")))
                        .take(20)
                        .collect();
                    let message = format!(
                        "{} snapshots not copied; damaged in the source (a check of the source repository that reads all data names every damaged pack): {}",
                        r.skipped.len(),
                        why.join("; ")
                    );
                    metrics.errors.get_or_create(&labels).inc();
                    failures.push(format!("{}: {message}", dest.name));
                    d.message = Some(message);
                }
            }
            Err(f) => {
                let message = match f {
                    Failure::Invalid(m) | Failure::Failed(m) | Failure::Transient(m) => m,
                };
                metrics.errors.get_or_create(&labels).inc();
                failures.push(format!("{}: {message}", dest.name));
                d.message = Some(message);
            }
        }
        let _ = write_status(&api, &name, Some(&status), &current).await;
        status = current;
    }
    let message = (!failures.is_empty()).then(|| failures.join("; "));
    finish(&ctx, &api, &name, &reference, status, message).await;
}

async fn finish(
    ctx: &Context,
    api: &Api<BackupReplication>,
    name: &str,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    old: BackupReplicationStatus,
    failure: Option<String>,
) {
    let mut status = old.clone();
    status.last_completion_time = Some(Utc::now().to_rfc3339());
    status.phase = if failure.is_some() {
        ReplicationPhase::Failed
    } else {
        ReplicationPhase::Idle
    };
    status.message = failure.clone();
    let copied: u64 = status.destinations.iter().map(|d| d.last_copy_bytes).sum();
    match failure {
        None => {
            ctx.event(
                reference,
                false,
                "ReplicationCompleted",
                format!(
                    "copied {copied} bytes to {} destinations",
                    status.destinations.len()
                ),
            )
            .await
        }
        Some(m) => ctx.event(reference, true, "ReplicationFailed", m).await,
    }
    write_final_status(api, name, &old, &status).await;
}
