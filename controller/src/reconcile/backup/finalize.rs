//! Deleting a Backup: forget its snapshot per the deletion policy, then let it go. A
//! repository that is gone, or unreachable for longer than [`GIVE_UP_AFTER`], never holds
//! the deletion forever: the problem is reported (event, condition) and the Backup goes.

use std::time::Duration;

use chrono::Utc;
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};

use crate::BACKUP_FINALIZER;
use crate::crd::{AccessMode, Backup, Condition, DeletionPolicy};
use crate::error::Result;
use crate::kube_objects::chain_bases;
use crate::reconcile::context::Context;
use crate::reconcile::finalizer;
use crate::reconcile::status::write_status;
use crate::repository::{AccessError, get_repository, open_repository};
use crate::volumes::cataloged_snapshots;

/// How long cleanup is retried while the repository cannot be reached.
pub const GIVE_UP_AFTER: chrono::Duration = chrono::Duration::minutes(5);

enum Cleanup {
    Done(String),
    /// Cannot ever succeed: report and let the Backup go.
    Abandon(String),
    /// May succeed later.
    Retry(String),
}

async fn forget(ctx: &Context, backup: &Backup) -> Cleanup {
    let namespace = backup.namespace().unwrap_or_default();
    let Some(id) = backup.status.as_ref().and_then(|s| s.snapshot_id.clone()) else {
        return Cleanup::Done("no snapshot was made".to_string());
    };
    if backup.spec.deletion_policy == DeletionPolicy::Retain {
        return Cleanup::Done(format!("snapshot {id} retained (deletionPolicy Retain)"));
    }
    let repo_obj = match get_repository(&ctx.client, &namespace, &backup.spec.repository).await {
        Ok(r) => r,
        Err(e @ AccessError::NoRepository { .. }) => {
            return Cleanup::Abandon(format!("snapshot {id} left in place: {e}"));
        }
        Err(e) => return Cleanup::Retry(e.to_string()),
    };
    if repo_obj.spec.access_mode == AccessMode::ReadOnly {
        return Cleanup::Abandon(format!(
            "snapshot {id} left in place: BackupRepository {namespace}/{} is ReadOnly",
            backup.spec.repository
        ));
    }
    let repo = match open_repository(&ctx.client, &repo_obj).await {
        Ok(r) => r,
        Err(e @ AccessError::Secret { .. }) => {
            return Cleanup::Abandon(format!("snapshot {id} left in place: {e}"));
        }
        Err(e) => return Cleanup::Retry(e.to_string()),
    };
    let snapshot = match repo.find_snapshot(&id).await {
        Ok(s) => s,
        Err(e) => {
            // Already forgotten (by drctl forget, or an earlier attempt).
            return Cleanup::Done(format!("snapshot {id} not found ({e}); nothing to forget"));
        }
    };
    let Some(sid) = snapshot.id else {
        return Cleanup::Done(format!("snapshot {id} has no id"));
    };
    // An etcd-only Backup's full snapshot that `drctl etcd snapshot --watch` built a delta
    // chain on stays: forgetting it would lose the whole chain.
    let listed = match repo.snapshots().await {
        Ok(all) => all,
        Err(e) => return Cleanup::Retry(e.to_string()),
    };
    if chain_bases(&listed).contains(&sid) {
        return Cleanup::Done(format!(
            "snapshot {id} left in place: etcd delta snapshots are built on it (forget them first, \
             then the snapshot with `drctl forget`)"
        ));
    }
    // The volume (and etcd) snapshots its catalog names go with it (each restores on its own:
    // no other snapshot needs them). A catalog that cannot be read leaves them, and says so.
    let (volumes, left) = match cataloged_snapshots(&repo, &snapshot, &listed).await {
        Ok(v) => (v, String::new()),
        Err(e) => (
            Vec::new(),
            format!("; its volume snapshots are left in place, as its volume catalog is unreadable ({e})"),
        ),
    };
    let mut ids = vec![sid];
    ids.extend(volumes.iter().copied());
    match repo.forget_snapshots(&ids).await {
        Ok(()) => Cleanup::Done(format!(
            "snapshot {id}{} forgotten; its data goes with the next prune{left}",
            match volumes.len() {
                0 => String::new(),
                n => format!(" and its {n} volume snapshots"),
            }
        )),
        Err(e @ lifeboat_backup::RepoError::Retained { .. }) => {
            Cleanup::Abandon(format!("snapshot {id} left in place: {e}"))
        }
        Err(e) => Cleanup::Retry(format!("forget snapshot {id}: {e}")),
    }
}

/// Runs the finalizer of a Backup being deleted.
pub async fn finalize(ctx: &Context, backup: &Backup, run_key: &str) -> Result<Action> {
    ctx.runs.abort(run_key);
    let namespace = backup.namespace().unwrap_or_default();
    let name = backup.name_any();
    let api: Api<Backup> = Api::namespaced(ctx.client.clone(), &namespace);
    let reference = backup.object_ref(&());
    let deleted_since = backup
        .metadata
        .deletion_timestamp
        .as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp_millis(t.0.as_millisecond()))
        .unwrap_or_else(Utc::now);
    let (message, give_up) = match forget(ctx, backup).await {
        Cleanup::Done(m) => {
            ctx.event(&reference, false, "SnapshotCleanup", m).await;
            finalizer::remove(&api, backup, BACKUP_FINALIZER).await?;
            return Ok(Action::await_change());
        }
        Cleanup::Abandon(m) => (m, true),
        Cleanup::Retry(m) => {
            let overdue = Utc::now() - deleted_since >= GIVE_UP_AFTER;
            (
                format!("{m}; giving up after {} minutes", GIVE_UP_AFTER.num_minutes()),
                overdue,
            )
        }
    };
    let old = backup.status.clone().unwrap_or_default();
    let mut status = old.clone();
    Condition::set(
        &mut status.conditions,
        Condition::new(
            "SnapshotCleanup",
            false,
            if give_up { "Abandoned" } else { "Retrying" },
            &message,
        ),
    );
    // The Backup may be gone by the time this lands; that is fine.
    let _ = write_status(&api, &name, Some(&old), &status).await;
    ctx.event(&reference, true, "SnapshotCleanupFailed", message)
        .await;
    if give_up {
        finalizer::remove(&api, backup, BACKUP_FINALIZER).await?;
        return Ok(Action::await_change());
    }
    Ok(Action::requeue(Duration::from_secs(10)))
}
