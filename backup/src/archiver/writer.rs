//! What a source writes through: the running backup's session, its parent, its clock and its
//! progress counters. Every way of storing content a source needs is here, so sources never
//! see packs, the index or the key.

use std::io::Read;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::upload::{ItemUpload, StoredStream, StreamUpload};
use crate::blob::BlobKind;
use crate::chunker::ChunkerParams;
use crate::progress::Progress;
use crate::repository::{IndexedRepository, RepoError};
use crate::session::{BlobSink, Session, SessionShared, write_stream};
use crate::snapshot::{Node, Snapshot};

/// A source's handle on the backup in progress (see [`crate::sources::Source::write`]).
pub struct Writer<'a> {
    repo: &'a IndexedRepository,
    session: &'a Session,
    parent: Option<&'a Snapshot>,
    progress: &'a Arc<Progress>,
    time: DateTime<Utc>,
}

impl<'a> Writer<'a> {
    pub(super) fn new(
        repo: &'a IndexedRepository,
        session: &'a Session,
        parent: Option<&'a Snapshot>,
        progress: &'a Arc<Progress>,
        time: DateTime<Utc>,
    ) -> Self {
        Self {
            repo,
            session,
            parent,
            progress,
            time,
        }
    }

    /// The snapshot's time (when the backup started); stream nodes use it as their mtime.
    pub fn time(&self) -> DateTime<Utc> {
        self.time
    }

    /// Counters to update as the work goes (bytes for streams, items for objects).
    pub fn progress(&self) -> &Arc<Progress> {
        self.progress
    }

    /// The parent chosen by [`crate::sources::Source::parent`].
    pub fn parent(&self) -> Option<&Snapshot> {
        self.parent
    }

    /// The parent's tree, for reusing the chunk lists of unchanged files; `None` without a
    /// parent.
    pub async fn parent_tree(&self) -> Result<Option<Vec<Node>>, RepoError> {
        match self.parent {
            Some(p) => Ok(Some(self.repo.tree(p).await?)),
            None => Ok(None),
        }
    }

    /// Whether the index lists `blob` (a parent's chunk whose pack `repo repair index` found
    /// lost is not, and is stored anew).
    pub fn is_indexed(&self, blob: &crate::blob::BlobId) -> bool {
        self.repo.index().contains(blob)
    }

    /// The repository's chunk sizes for file data.
    pub fn chunker(&self) -> ChunkerParams {
        self.repo.config().chunker
    }

    /// A blob writer for one worker thread: deduplicates against the repository and this
    /// backup, compresses, encrypts and packs. Give each thread its own; call
    /// [`BlobSink::finish`] when it is done.
    pub fn sink(&self) -> BlobSink {
        BlobSink::new(self.session.shared().clone(), BlobKind::Data)
    }

    /// Stores a stream that arrives in pieces (an etcd snapshot over gRPC, a volume read over
    /// the network): feed it with [`StreamUpload::send`], then [`StreamUpload::finish`].
    /// Chunked with `params` on blocking threads as the pieces arrive.
    pub fn stream(&self, params: ChunkerParams) -> StreamUpload {
        StreamUpload::start(self.session.shared().clone(), params)
    }

    /// Stores a stream read from `reader` (a file, a device, bytes in memory) on a blocking
    /// thread, chunked with `params`.
    pub async fn store_stream<R: Read + Send + 'static>(
        &self,
        reader: R,
        params: ChunkerParams,
    ) -> Result<StoredStream, RepoError> {
        let shared = self.session.shared().clone();
        let (chunks, size) = tokio::task::spawn_blocking(move || write_stream(&shared, reader, params))
            .await
            .map_err(|e| RepoError::Task(e.to_string()))??;
        Ok(StoredStream { chunks, size })
    }

    /// The session's state, for sources inside the engine that run their own reader threads
    /// over [`BlobSink`]s and need the chunker's seed (files).
    pub(crate) fn shared(&self) -> &Arc<SessionShared> {
        self.session.shared()
    }

    /// Stores many small items (Kubernetes objects), one blob each, from any number of tasks:
    /// [`ItemUpload::send`] each with its tree path, then [`ItemUpload::finish`] for their nodes.
    pub fn items(&self) -> ItemUpload {
        ItemUpload::start(self.session.shared().clone())
    }
}
