//! The BackupRepository controller: open it periodically, report what was found (snapshots,
//! object lock), and run backup sync.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};

use super::backup_sync;
use super::context::Context;
use super::status::write_status;
use crate::crd::{Backup, BackupRepository, Condition};
use crate::error::{Error, Result};
use crate::repository::{open_repository, open_store};

/// Reconciles one BackupRepository: a check now, the next one after the check interval.
pub async fn reconcile(repo: Arc<BackupRepository>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = repo
        .namespace()
        .ok_or_else(|| Error::Malformed(format!("BackupRepository {} has no namespace", repo.name_any())))?;
    let name = repo.name_any();
    let api: Api<BackupRepository> = Api::namespaced(ctx.client.clone(), &namespace);
    let uid = repo.uid().unwrap_or_default();
    let generation = repo.metadata.generation;
    let interval = ctx.config.repository_check_interval;
    let last = ctx
        .repository_checks
        .lock()
        .ok()
        .and_then(|m| m.get(&uid).copied());
    if let Some((g, at)) = last
        && g == generation
        && at.elapsed() < interval
    {
        return Ok(Action::requeue(interval - at.elapsed()));
    }
    let old = repo.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let checked = async {
        let opened = open_repository(&ctx.client, &repo).await?;
        let snapshots = opened
            .snapshots()
            .await
            .map_err(|e| crate::repository::AccessError::Repository {
                url: repo.spec.url.clone(),
                message: e.to_string(),
            })?;
        let lock = open_store(&ctx.client, &repo).await?.lock_support().await;
        Ok::<_, crate::repository::AccessError>((opened.config().id.clone(), snapshots, lock))
    }
    .await;
    match checked {
        Ok((id, snapshots, lock)) => {
            let count = snapshots.len() as u64;
            status.reachable = true;
            status.repository_id = Some(id);
            status.snapshots = count;
            status.object_lock = Some(lock.to_string());
            status.message = Some(format!("{count} snapshots"));
            if repo.spec.syncs_backups() {
                let backups: Api<Backup> = Api::namespaced(ctx.client.clone(), &namespace);
                let objects: Vec<_> = snapshots
                    .into_iter()
                    .filter(|s| s.kind() == crate::kube_objects::SNAPSHOT_KIND)
                    .collect();
                let plan = backup_sync::plan_sync(&objects, &backup_sync::existing(&backups).await?);
                let synced = backup_sync::apply_sync(&backups, &name, &repo.spec.url, &plan).await?;
                status.synced_backups = Some(status.synced_backups.unwrap_or(0) + synced);
            }
            Condition::set(
                &mut status.conditions,
                Condition::new("Ready", true, "Reachable", ""),
            );
        }
        Err(e) => {
            let message = e.to_string();
            status.reachable = false;
            Condition::set(
                &mut status.conditions,
                Condition::new("Ready", false, "Unreachable", &message),
            );
            if old.message.as_ref() != Some(&message) {
                ctx.event(
                    &kube::Resource::object_ref(&*repo, &()),
                    true,
                    "RepositoryUnreachable",
                    message.clone(),
                )
                .await;
            }
            status.message = Some(message);
        }
    }
    status.last_check_time = Some(Utc::now().to_rfc3339());
    if let Ok(mut m) = ctx.repository_checks.lock() {
        m.insert(uid, (generation, Instant::now()));
    }
    write_status(&api, &name, Some(&old), &status).await?;
    Ok(Action::requeue(interval))
}
