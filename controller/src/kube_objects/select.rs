//! Finding the snapshots of a Backup in its repository, as drctl (no controller) and the
//! controller both need them: when the cluster that held the Backup resource is gone, the
//! snapshot's `backup` tag is the record.

use lifeboat_backup::Repository;
use lifeboat_backup::blob::SnapshotId;
use lifeboat_backup::snapshot::{Snapshot, SnapshotDetails};

use super::{BACKUP_TAG, ObjectsError, object_snapshots};

/// The etcd full snapshots some delta chain is built on (`drctl etcd snapshot --watch`
/// chains on the newest full snapshot of its cluster, which may be one a Backup took):
/// forgetting one would make every delta of its chain unrestorable, so forgetting a Backup
/// keeps them.
pub fn chain_bases(snapshots: &[Snapshot]) -> std::collections::HashSet<SnapshotId> {
    snapshots
        .iter()
        .filter_map(|s| match &s.details {
            SnapshotDetails::EtcdDelta(d) => Some(d.base),
            _ => None,
        })
        .collect()
}

/// The snapshots of Backup `name`, newest first; an error naming the repository when there
/// are none.
pub async fn backup_snapshots(repo: &Repository, name: &str) -> Result<Vec<Snapshot>, ObjectsError> {
    let snaps = object_snapshots(repo, Some(name)).await?;
    if snaps.is_empty() {
        return Err(ObjectsError::NoSnapshotOfBackup {
            name: name.to_string(),
            url: repo.url().to_string(),
        });
    }
    Ok(snaps)
}

/// The snapshot a restore reads: `from_snapshot` (a full id or unique prefix) when given,
/// otherwise the newest snapshot of Backup `from_backup`.
pub async fn snapshot_to_restore(
    repo: &Repository,
    from_snapshot: Option<&str>,
    from_backup: Option<&str>,
) -> Result<Snapshot, ObjectsError> {
    match (from_snapshot, from_backup) {
        (Some(id), _) => Ok(repo.find_snapshot(id).await?),
        (None, Some(name)) => Ok(backup_snapshots(repo, name).await?.swap_remove(0)),
        (None, None) => Err(ObjectsError::NothingToRestore),
    }
}

/// Forgets every snapshot of Backup `name` under one lock (their data goes with the next
/// prune), the volume and etcd snapshots taken for it (tagged with its name) too; returns
/// their ids.
///
/// Volume and etcd snapshots of a run whose objects snapshot was never written (the objects
/// backup failed after them), or of an etcd-only Backup, are found by their tag alone. An etcd
/// full snapshot a delta chain is built on is kept ([`chain_bases`]).
pub async fn forget_backup(repo: &Repository, name: &str) -> Result<Vec<SnapshotId>, ObjectsError> {
    let all = repo.snapshots().await?;
    let bases = chain_bases(&all);
    let tagged: Vec<SnapshotId> = all
        .iter()
        .filter(|s| {
            matches!(
                s.details,
                SnapshotDetails::Volume(_) | SnapshotDetails::EtcdFull(_)
            )
        })
        .filter(|s| s.tags.get(BACKUP_TAG).map(String::as_str) == Some(name))
        .filter_map(|s| s.id)
        .filter(|id| !bases.contains(id))
        .collect();
    let mut ids: Vec<SnapshotId> = match backup_snapshots(repo, name).await {
        Ok(snaps) => snaps.iter().filter_map(|s| s.id).collect(),
        Err(ObjectsError::NoSnapshotOfBackup { .. }) if !tagged.is_empty() => Vec::new(),
        Err(e) => return Err(e),
    };
    ids.extend(tagged);
    repo.forget_snapshots(&ids).await?;
    Ok(ids)
}
