//! The backup lifecycle, once for every source: lock → index → parent → session → the
//! source writes → tree → session finished → manifest assembled → saved → lock released.
//!
//! Modelled on rustic_core's `Archiver` (`commands/backup.rs` runs one for every kind of
//! source over an indexed repository); the difference is that a Lifeboat source writes its
//! content itself through a [`Writer`] (parallel file readers, an etcd stream, one blob per
//! Kubernetes object) instead of handing the engine readers, so each keeps the data path its
//! benchmark was tuned on, while the steps around it exist here only.

mod upload;
mod writer;

pub use upload::{ItemUpload, StoredStream, StreamUpload};
pub use writer::Writer;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;

use crate::progress::Progress;
use crate::repository::{LockKind, RepoError, Repository, hostname};
use crate::session::{Session, write_tree};
use crate::snapshot::{Node, Snapshot, Summary};
use crate::sources::{Source, Written};

/// What the caller adds to every snapshot.
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// User tags (`--tag k=v`; the Kubernetes objects source adds `backup=<name>`).
    pub tags: BTreeMap<String, String>,
    /// The host name to record (restic's `--host`); `None`: this machine's.
    pub host: Option<String>,
    /// Counters the source updates as it works (drctl's bar, a resource's status).
    pub progress: Arc<Progress>,
}

impl Repository {
    /// Backs up `source` into a new snapshot and returns it (with its id).
    ///
    /// Holds a shared lock throughout; if the lock cannot be refreshed in time the backup is
    /// stopped with [`RepoError::LockLost`]. Dropping the returned future cancels the backup:
    /// no snapshot is written, uploads stop, the lock is released in the background. The
    /// manifest is written last, after every pack and index file it needs, so a snapshot
    /// that exists is complete.
    pub async fn backup<S: Source>(
        &self,
        source: &mut S,
        options: &BackupOptions,
    ) -> Result<Snapshot, S::Error> {
        let started = Instant::now();
        let time = Utc::now();
        let purpose = source.purpose();
        self.while_locked(LockKind::Shared, purpose, async {
            let indexed = self.indexed().await?;
            let parent = source.parent(&indexed).await?;
            let session = indexed.start_session();
            let written = {
                let writer = Writer::new(&indexed, &session, parent.as_ref(), &options.progress, time);
                source.write(&writer).await
            };
            let Written {
                mut nodes,
                details,
                paths,
                summary,
            } = match written {
                Ok(w) => w,
                // When the store failed, that is the cause: a worker only saw the uploader stop.
                Err(e) => return Err(session.finish().await.err().map_or(e, S::Error::from)),
            };
            // Tree listings are sorted by the bytes of each path (docs/FORMAT.md), which for a
            // name that is not UTF-8 is not the order of its lossy `path`.
            if !nodes.is_sorted_by(|a, b| a.path_bytes() <= b.path_bytes()) {
                nodes.sort_by(|a, b| a.path_bytes().cmp(b.path_bytes()));
            }
            let tree = match write_tree_blocking(&session, nodes).await {
                Ok(tree) => tree,
                Err(e) => return Err(session.abandon(e).await.into()),
            };
            let stats = session.finish().await?;
            let mut snapshot = Snapshot {
                id: None,
                time,
                hostname: options.host.clone().unwrap_or_else(hostname),
                details,
                source: source.source_id(),
                paths,
                tags: options.tags.clone(),
                parent: parent.and_then(|p| p.id),
                tree,
                summary: Summary {
                    new_bytes: stats.new_bytes,
                    stored_bytes: stats.stored_bytes,
                    new_blobs: stats.new_blobs,
                    duration_ms: started.elapsed().as_millis() as u64,
                    ..summary
                },
            };
            snapshot.id = Some(self.save_snapshot(&snapshot).await?);
            Ok(snapshot)
        })
        .await
    }
}

/// Chunks the tree listing on a blocking thread.
async fn write_tree_blocking(
    session: &Session,
    nodes: Vec<Node>,
) -> Result<Vec<crate::blob::BlobId>, RepoError> {
    let shared = session.shared().clone();
    tokio::task::spawn_blocking(move || write_tree(&shared, &nodes))
        .await
        .map_err(|e| RepoError::Task(e.to_string()))?
}
