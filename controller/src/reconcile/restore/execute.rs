//! One run of a Restore: find the snapshot (from a Backup or by id), restore, report every
//! failed item and, for a dry run, the changes it would make.

use std::sync::Arc;

use kube::{Api, Resource, ResourceExt};
use lifeboat_backup::progress::Progress;

use crate::crd::{Backup, Condition, Restore, RestorePhase, RestoreStatus};
use crate::kube_objects::{RepositoryAdvice, RestoreOptions, RestoreOutcome};
use crate::reconcile::context::Context;
use crate::reconcile::finish::{Finished, Run, RunKind, Succeeded};
use crate::reconcile::in_flight::{VolumeBoard, run_reporting};
use crate::reconcile::outcome::{Failure, MAX_ITEMS_IN_STATUS, MAX_VOLUMES_IN_STATUS, capped};
use crate::repository::{get_repository, open_repository};
use crate::volumes::{CephAccess, SecretRef, VolumeRestoreRequest, restore_with_volumes};

async fn execute(
    ctx: &Context,
    restore: &Restore,
    progress: Arc<Progress>,
    board: VolumeBoard,
) -> Result<(String, RestoreOutcome), Failure> {
    let namespace = restore.namespace().unwrap_or_default();
    let spec = &restore.spec;
    let options = RestoreOptions::from_spec(spec)?;
    let (repository, snapshot_id) =
        match (&spec.backup_name, &spec.snapshot_id) {
            (Some(b), _) => {
                let api: Api<Backup> = Api::namespaced(ctx.client.clone(), &namespace);
                let backup = api
                    .get_opt(b)
                    .await
                    .map_err(|e| Failure::Transient(format!("read Backup {namespace}/{b}: {e}")))?
                    .ok_or_else(|| {
                        Failure::Invalid(format!(
                            "Backup {namespace}/{b} (spec.backupName) not found; fix the name or give \
                         spec.snapshotId and spec.repository"
                        ))
                    })?;
                let status = backup.status.unwrap_or_default();
                let id = status.snapshot_id.filter(|_| status.phase.is_finished()).ok_or_else(|| {
                Failure::Invalid(format!(
                    "Backup {namespace}/{b} has no snapshot (phase {:?}); restore from a Completed or \
                     PartiallyFailed Backup",
                    status.phase
                ))
            })?;
                let repo = spec.repository.clone().unwrap_or(backup.spec.repository);
                (repo, id)
            }
            (None, Some(id)) => {
                let repo = spec.repository.clone().ok_or_else(|| {
                    Failure::Invalid(
                        "spec.snapshotId needs spec.repository (the BackupRepository holding it)".to_string(),
                    )
                })?;
                (repo, id.clone())
            }
            (None, None) => {
                return Err(Failure::Invalid(
                    "neither spec.backupName nor spec.snapshotId is set; name what to restore from"
                        .to_string(),
                ));
            }
        };
    let repo_obj = get_repository(&ctx.client, &namespace, &repository).await?;
    let repo = open_repository(&ctx.client, &repo_obj).await?;
    let snapshot = repo.find_snapshot(&snapshot_id).await.map_err(|e| {
        Failure::Invalid(format!(
            "snapshot {snapshot_id} in BackupRepository {namespace}/{repository}: {e}"
        ))
    })?;
    let id = snapshot.id.map(|i| i.to_hex()).unwrap_or(snapshot_id);
    // Ceph keys from the target classes' Secrets go through a short-lived file under /tmp
    // (the chart mounts a memory-backed emptyDir there), as for backups.
    let volumes = VolumeRestoreRequest {
        enabled: spec.restore_pvs.unwrap_or(true),
        access: CephAccess::FromCluster {
            dir: std::env::temp_dir(),
        },
        secret: spec.ceph_secret.clone().map(|name| SecretRef {
            namespace: namespace.clone(),
            name,
        }),
        parallelism: 4,
        workers: 0,
    };
    // Each volume's counters go to status.volumeProgress, and add up in status.progress.
    let outcome = restore_with_volumes(
        &ctx.client,
        &repo,
        &snapshot,
        &options,
        &volumes,
        progress,
        &|claim| board.track(claim),
    )
    .await?;
    Ok((id, outcome))
}

/// Runs `restore`, whose status (`running`) already says InProgress, to the end.
pub async fn run(ctx: Arc<Context>, restore: Arc<Restore>, running: RestoreStatus) {
    let name = restore.name_any();
    let namespace = restore.namespace().unwrap_or_default();
    let api: Api<Restore> = Api::namespaced(ctx.client.clone(), &namespace);
    let reference = restore.object_ref(&());
    let note = "restore started".to_string();
    let run = Run::start(
        &ctx,
        &api,
        (&name, &namespace),
        &reference,
        RunKind::Restore,
        note,
    )
    .await;

    let progress = Arc::new(Progress::default());
    let board = VolumeBoard::default();
    let (result, current) = {
        let (run_ctx, run_restore, run_progress) = (ctx.clone(), restore.clone(), progress.clone());
        let run_board = board.clone();
        run_reporting(
            &api,
            &name,
            ctx.config.progress_interval,
            running.clone(),
            &progress,
            |s, mut p| {
                board.report(&mut p, &mut s.volume_progress);
                s.progress = Some(p);
            },
            move || async move { execute(&run_ctx, &run_restore, run_progress, run_board).await },
        )
        .await
    };
    run.finish(
        current,
        board.final_progress(&progress),
        result,
        |message| format!("interrupted: {message}; retrying"),
        |done, (id, out)| restored_status(done, id, out),
    )
    .await;
}

/// Puts what a successful restore of snapshot `id` did into `done`.
fn restored_status(done: &mut RestoreStatus, id: String, out: RestoreOutcome) -> Succeeded {
    let s = &out.summary;
    let items = s.created + s.updated;
    done.snapshot_id = Some(id);
    done.items_restored = items;
    done.items_skipped = s.skipped_existing + s.unchanged;
    done.items_failed = out.errors.len() as u64;
    done.phase = out.phase();
    let mut message = Vec::new();
    if !out.errors.is_empty() {
        message.push(format!(
            "{} items could not be restored; each is listed in status.errors",
            out.errors.len()
        ));
    }
    if out
        .repository_advice
        .contains(&RepositoryAdvice::CheckReadingData)
    {
        message.push("the repository holds damaged or forged packs: check it reading every pack".to_string());
    } else if out.repository_advice.contains(&RepositoryAdvice::Check) {
        message.push("the repository lacks data the snapshot needs: check it".to_string());
    }
    done.message = (!message.is_empty()).then(|| message.join("; "));
    done.errors = capped(out.errors);
    done.warnings = capped(out.warnings);
    let mut changes = out.changes;
    if changes.len() > MAX_ITEMS_IN_STATUS {
        let more = changes.len() - MAX_ITEMS_IN_STATUS;
        changes.truncate(MAX_ITEMS_IN_STATUS);
        changes.push(format!("… {more} more not shown"));
    }
    done.changes = changes;
    done.summary = Some(out.summary);
    done.volume_progress = Vec::new();
    done.volumes = out.volumes.into_iter().take(MAX_VOLUMES_IN_STATUS).collect();
    Condition::set(&mut done.conditions, Condition::new("Valid", true, "Valid", ""));
    let finished = if done.phase == RestorePhase::Completed {
        Finished::Completed
    } else {
        Finished::PartiallyFailed
    };
    Succeeded {
        finished,
        items,
        bytes: 0,
        note: format!("{items} items restored"),
    }
}
