//! Sizes and counts of a repository.

use crate::repository::{RepoError, Repository};

/// What `repo stats` prints.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stats {
    /// Repository id.
    pub id: String,
    /// Snapshots.
    pub snapshots: usize,
    /// Packs in the index.
    pub packs: usize,
    /// Bytes stored in indexed packs.
    pub stored_bytes: u64,
    /// Distinct blobs.
    pub blobs: usize,
    /// Uncompressed bytes of distinct blobs.
    pub unique_raw_bytes: u64,
    /// Sum of file sizes over all snapshots (what restoring everything would write).
    pub snapshot_bytes: u64,
    /// Memory the loaded index takes.
    pub index_memory_bytes: usize,
    /// Index objects.
    pub index_files: usize,
}

/// Gathers [`Stats`].
pub async fn stats(repo: &Repository) -> Result<Stats, RepoError> {
    let files = repo.index_files().await?;
    let index = crate::index::Index::from_files(files.iter().map(|(_, f)| f));
    let snapshots = repo.snapshots().await?;
    Ok(Stats {
        id: repo.config().id.clone(),
        snapshots: snapshots.len(),
        packs: index.packs().len(),
        stored_bytes: index.packs().iter().map(|p| p.size).sum(),
        blobs: index.blob_count(),
        unique_raw_bytes: index.blobs().map(|b| u64::from(b.entry.raw_length)).sum(),
        snapshot_bytes: snapshots.iter().map(|s| s.summary.bytes).sum(),
        index_memory_bytes: index.memory_bytes(),
        index_files: files.len(),
    })
}
