//! Finding etcd snapshots: the newest (`latest`), and where a cluster's delta chain stands.

use lifeboat_backup::snapshot::{Snapshot, SnapshotDetails};
use lifeboat_backup::{RepoError, Repository};

use crate::EtcdError;

/// Every etcd snapshot (full and delta) in `repo`, oldest first.
pub async fn etcd_snapshots(repo: &Repository) -> Result<Vec<Snapshot>, RepoError> {
    Ok(repo
        .snapshots()
        .await?
        .into_iter()
        .filter(|s| {
            matches!(
                s.details,
                SnapshotDetails::EtcdFull(_) | SnapshotDetails::EtcdDelta(_)
            )
        })
        .collect())
}

/// The etcd snapshot `id_or_prefix` names: a full id, a unique prefix, or `latest` for the
/// newest etcd snapshot (full or delta). Any other kind is refused.
pub async fn find_snapshot(repo: &Repository, id_or_prefix: &str) -> Result<Snapshot, EtcdError> {
    let snapshot = if id_or_prefix == "latest" {
        etcd_snapshots(repo)
            .await?
            .pop()
            .ok_or_else(|| EtcdError::NoSnapshot {
                url: repo.url().to_string(),
            })?
    } else {
        repo.find_snapshot(id_or_prefix).await?
    };
    match snapshot.details {
        SnapshotDetails::EtcdFull(_) | SnapshotDetails::EtcdDelta(_) => Ok(snapshot),
        _ => Err(EtcdError::NotEtcd {
            id: snapshot.id.map(|i| i.to_hex()).unwrap_or_default(),
            kind: snapshot.kind().to_string(),
        }),
    }
}

/// The newest full snapshot of `cluster` and the newest link of its delta chain (the full
/// snapshot itself when it has no delta yet).
pub(crate) fn chain_head(snapshots: &[Snapshot], cluster: &str) -> Option<(Snapshot, Snapshot)> {
    let full = snapshots
        .iter()
        .rfind(|s| matches!(&s.details, SnapshotDetails::EtcdFull(f) if f.cluster_id == cluster))?
        .clone();
    let base = full.id?;
    let head = snapshots
        .iter()
        .filter_map(|s| match &s.details {
            SnapshotDetails::EtcdDelta(d) if d.base == base => Some((d.last_revision, s)),
            _ => None,
        })
        .max_by_key(|(last, _)| *last)
        .map(|(_, s)| s.clone())
        .unwrap_or_else(|| full.clone());
    Some((full, head))
}
