//! Backup sync: the repository as the source of truth. For every object backup found in a
//! BackupRepository that its namespace has no Backup of, a Backup is created from the
//! snapshot's own record — labelled `lifeboat.dev/synced`, `deletionPolicy: Retain`, status
//! Completed with the snapshot id — so `kubectl get backups` and a Restore work in a cluster
//! that never ran them (Velero's backup sync does the same with its backup metadata).
//!
//! A synced Backup is never run (the Backup controller leaves it alone); deleting it keeps
//! the snapshot unless its deletion policy is changed to Delete first.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use kube::Api;
use kube::api::PostParams;
use lifeboat_backup::snapshot::Snapshot;

use super::outcome::{MAX_ITEMS_IN_STATUS, capped};
use super::status::write_status;
use crate::crd::{Backup, BackupPhase, BackupSpec, BackupStatus, DeletionPolicy, ItemMessage};
use crate::error::{Error, Result};
use crate::kube_objects::BACKUP_TAG;
use crate::{SYNCED_FROM_LABEL, SYNCED_LABEL};

/// A Backup to create (or whose status to complete) from a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncedBackup {
    /// The Backup's name: the snapshot's `backup` tag.
    pub name: String,
    /// Whether the Backup exists already and only lacks its status (a sync interrupted
    /// between the create and the status write).
    pub exists: bool,
    /// The snapshot.
    pub snapshot: String,
    /// When it was taken.
    pub time: DateTime<Utc>,
    /// How long the backup took.
    pub duration_ms: u64,
    /// Objects in it.
    pub items: u64,
    /// Bytes it added to the repository.
    pub bytes_added: u64,
    /// Its warnings.
    pub warnings: Vec<String>,
    /// Its tags, without the `backup` tag.
    pub tags: BTreeMap<String, String>,
}

/// A name the API server accepts for a Backup (an RFC 1123 subdomain).
pub(crate) fn valid_name(name: &str) -> bool {
    // Kubernetes' IsDNS1123Subdomain: dot-separated parts of [a-z0-9-], each beginning and
    // ending with a letter or digit (so no empty part: `a..b`, `.a`, `a-.b` are refused).
    name.len() <= 253
        && name.split('.').all(|part| {
            part.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && part.starts_with(|c: char| c.is_ascii_alphanumeric())
                && part.ends_with(|c: char| c.is_ascii_alphanumeric())
        })
}

/// Which Backups to create: for each Backup name among `snapshots` (object snapshots, any
/// order) its newest snapshot, unless `existing` has that name (value: whether that Backup is
/// a synced one still lacking its snapshot id, to be completed). Pure.
pub fn plan_sync(snapshots: &[Snapshot], existing: &BTreeMap<String, bool>) -> Vec<SyncedBackup> {
    let mut newest: BTreeMap<&str, &Snapshot> = BTreeMap::new();
    for s in snapshots {
        let Some(name) = s.tags.get(BACKUP_TAG) else {
            continue;
        };
        if !valid_name(name) || s.id.is_none() {
            continue;
        }
        let slot = newest.entry(name).or_insert(s);
        if s.time > slot.time {
            *slot = s;
        }
    }
    newest
        .into_iter()
        .filter_map(|(name, s)| {
            let exists = match existing.get(name) {
                None => false,
                Some(true) => true,
                Some(false) => return None,
            };
            let mut tags = s.tags.clone();
            tags.remove(BACKUP_TAG);
            Some(SyncedBackup {
                name: name.to_string(),
                exists,
                snapshot: s.id.map(|i| i.to_hex()).unwrap_or_default(),
                time: s.time,
                duration_ms: s.summary.duration_ms,
                items: s.summary.files,
                bytes_added: s.summary.new_bytes,
                warnings: s.summary.warnings.clone(),
                tags,
            })
        })
        .collect()
}

/// The status a synced Backup gets.
fn status(b: &SyncedBackup, url: &str) -> BackupStatus {
    let done = b.time + chrono::Duration::milliseconds(b.duration_ms as i64);
    BackupStatus {
        phase: BackupPhase::Completed,
        start_time: Some(b.time.to_rfc3339()),
        completion_time: Some(done.to_rfc3339()),
        items_backed_up: b.items,
        snapshot_id: Some(b.snapshot.clone()),
        bytes_added: b.bytes_added,
        warnings: capped(
            b.warnings
                .iter()
                .take(MAX_ITEMS_IN_STATUS + 1)
                .map(|w| ItemMessage {
                    item: "snapshot".to_string(),
                    message: w.clone(),
                })
                .collect(),
        ),
        message: Some(format!(
            "synced from repository {url}; this cluster did not run it"
        )),
        ..BackupStatus::default()
    }
}

/// The Backups of `api`'s namespace by name: whether each is a synced one lacking its status.
pub async fn existing(api: &Api<Backup>) -> Result<BTreeMap<String, bool>> {
    let list = api
        .list(&Default::default())
        .await
        .map_err(|e| Error::kube("list Backups for backup sync".to_string(), e))?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|b| {
            let synced = b
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SYNCED_LABEL))
                .is_some();
            let incomplete = synced && b.status.as_ref().and_then(|s| s.snapshot_id.as_ref()).is_none();
            b.metadata.name.map(|n| (n, incomplete))
        })
        .collect())
}

/// Creates the planned Backups in `api`'s namespace for BackupRepository `repository` at
/// `url`; returns how many were created or completed. A name taken meanwhile is skipped.
pub async fn apply_sync(
    api: &Api<Backup>,
    repository: &str,
    url: &str,
    plan: &[SyncedBackup],
) -> Result<u64> {
    let mut done = 0;
    let mut names = BTreeSet::new();
    for b in plan {
        names.insert(b.name.clone());
        if !b.exists {
            let mut backup = Backup::new(
                &b.name,
                BackupSpec {
                    repository: repository.to_string(),
                    deletion_policy: DeletionPolicy::Retain,
                    tags: b.tags.clone(),
                    ..BackupSpec::default()
                },
            );
            backup.metadata.labels = Some(BTreeMap::from([
                (SYNCED_LABEL.to_string(), "true".to_string()),
                (SYNCED_FROM_LABEL.to_string(), repository.to_string()),
            ]));
            match api.create(&PostParams::default(), &backup).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                Err(e) => return Err(Error::kube(format!("create synced Backup {}", b.name), e)),
            }
        }
        write_status(api, &b.name, None::<&BackupStatus>, &status(b, url)).await?;
        done += 1;
    }
    tracing::info!(repository, count = done, "backup sync created Backups: {names:?}");
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use lifeboat_backup::blob::SnapshotId;
    use lifeboat_backup::snapshot::{KubernetesObjects, SnapshotDetails};

    fn snap(n: u8, hour: u32, backup: Option<&str>) -> Snapshot {
        Snapshot {
            id: Some(SnapshotId::of(&[n])),
            time: Utc.with_ymd_and_hms(2026, 11, 1, hour, 0, 0).unwrap(),
            hostname: "other-cluster".into(),
            details: SnapshotDetails::Kubernetes(KubernetesObjects {
                cluster_id: "x".into(),
                backup: backup.unwrap_or_default().into(),
                items: 0,
            }),
            source: "kubernetes:x".into(),
            paths: vec![],
            tags: backup
                .map(|b| (BACKUP_TAG.to_string(), b.to_string()))
                .into_iter()
                .chain([("env".to_string(), "prod".to_string())])
                .collect(),
            parent: None,
            tree: vec![],
            summary: Default::default(),
        }
    }

    #[test]
    fn creates_one_backup_per_name_from_its_newest_snapshot_and_skips_taken_names() {
        let snaps = vec![
            snap(1, 1, Some("nightly-1")),
            snap(2, 3, Some("nightly-1")),
            snap(3, 2, Some("weekly")),
            snap(4, 2, None),
            snap(5, 2, Some("Not_A_Name")),
            snap(6, 4, Some("mine")),
            snap(7, 5, Some("half-done")),
        ];
        let existing = BTreeMap::from([("mine".to_string(), false), ("half-done".to_string(), true)]);
        let plan = plan_sync(&snaps, &existing);
        let names: Vec<_> = plan.iter().map(|b| (b.name.as_str(), b.exists)).collect();
        assert_eq!(
            names,
            [("half-done", true), ("nightly-1", false), ("weekly", false)]
        );
        let nightly = &plan[1];
        assert_eq!(
            nightly.snapshot,
            SnapshotId::of(&[2]).to_hex(),
            "the newest snapshot"
        );
        assert!(!nightly.tags.contains_key(BACKUP_TAG) && nightly.tags["env"] == "prod");
        let s = status(nightly, "s3://b/p");
        assert_eq!(s.phase, BackupPhase::Completed);
        assert!(s.message.unwrap().contains("s3://b/p"));
    }
}
