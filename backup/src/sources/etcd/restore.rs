//! Rebuilding an etcd database file from a snapshot.

use std::path::Path;

use crate::read::BlobReader;
use crate::repository::{RepoError, Repository};
use crate::snapshot::Snapshot;

use super::DB_PATH;
use super::output::DbOutput;

/// Writes the database of an etcd `snapshot` to `output` (a file `etcdctl snapshot restore`
/// takes), verifying etcd's integrity trailer. Refuses to replace an existing file unless
/// `force`; writes to a temporary file first so a failure leaves nothing half-written.
pub async fn restore_etcd(
    repo: &Repository,
    snapshot: &Snapshot,
    output: &Path,
    force: bool,
) -> Result<u64, RepoError> {
    let sid = snapshot.id.map(|i| i.to_hex()).unwrap_or_default();
    if snapshot.kind != "etcd" {
        return Err(RepoError::InvalidOptions(format!(
            "snapshot {sid} is a {} snapshot, not etcd; list etcd snapshots with `drctl etcd snapshots`",
            snapshot.kind
        )));
    }
    if output.exists() && !force {
        return Err(RepoError::InvalidOptions(format!(
            "{} already exists; pass --force to replace it",
            output.display()
        )));
    }
    let index = repo.load_index().await?;
    let reader = BlobReader::new(repo, &index);
    let nodes = reader.read_tree(&snapshot.tree).await?;
    let node = nodes
        .iter()
        .find(|n| n.path == DB_PATH)
        .ok_or_else(|| RepoError::Corrupt {
            object: format!("snapshot {sid}"),
            message: format!("has no {DB_PATH}"),
        })?;
    // Straight into a temporary file beside the output, a pack at a time: memory stays
    // small however large the database.
    let db = DbOutput::new(output)?;
    reader.read_stream_to(&node.chunks, db.file()).await?;
    db.publish(format!("the database of snapshot {sid}")).await
}
