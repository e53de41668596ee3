//! Writing into a repository: the shared machinery every source (files, etcd, Kubernetes
//! objects, volumes) uses. Workers turn content into blobs ([`BlobSink`]); sealed packs flow
//! to an uploader that writes an index file every few packs; the tree and the snapshot
//! manifest come last.

mod sink;
mod uploader;

pub use sink::BlobSink;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::blob::{BlobId, BlobKind, Compression};
use crate::chunker::{Chunker, ChunkerParams};
use crate::crypto::RepoKey;
use crate::index::Index;
use crate::pack::SealedPack;
use crate::repository::{Config, RepoError, Repository};
use crate::snapshot::Node;

/// Packs waiting between workers and the uploader; with uploads in flight this bounds memory.
const QUEUED_PACKS: usize = 2;

/// State shared by all workers of one session.
pub struct SessionShared {
    pub(crate) key: Arc<RepoKey>,
    pub(crate) index: Arc<Index>,
    pub(crate) seen: Mutex<HashSet<BlobId>>,
    pub(crate) compression: Compression,
    pub(crate) pack_size: u64,
    pub(crate) chunker: ChunkerParams,
    pub(crate) seed: u64,
    pub(crate) tx: mpsc::Sender<SealedPack>,
    /// Raw bytes of blobs that were new to the repository.
    pub(crate) new_bytes: AtomicU64,
    /// Blobs that were new.
    pub(crate) new_blobs: AtomicU64,
}

/// An open write session on a repository. Dropped without [`Session::finish`] (a cancelled
/// backup), it stops uploading: packs already stored stay unindexed until `prune`.
pub struct Session {
    shared: Arc<SessionShared>,
    uploader: Option<tokio::task::JoinHandle<Result<uploader::Uploaded, RepoError>>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(uploader) = self.uploader.take() {
            uploader.abort();
        }
    }
}

/// What a finished session stored.
#[derive(Debug, Clone, Default)]
pub struct SessionStats {
    /// Raw bytes new to the repository.
    pub new_bytes: u64,
    /// Blobs new to the repository.
    pub new_blobs: u64,
    /// Bytes uploaded (packs).
    pub stored_bytes: u64,
    /// Packs uploaded.
    pub packs: u64,
}

impl Session {
    /// Starts a session against `index` (what the repository already holds).
    pub fn start(repo: &Repository, index: Arc<Index>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUED_PACKS);
        let config: &Config = repo.config();
        let shared = Arc::new(SessionShared {
            key: repo.key().clone(),
            index,
            seen: Mutex::new(HashSet::new()),
            compression: config.compression,
            pack_size: u64::from(config.pack_size),
            chunker: config.chunker,
            seed: Config::chunker_seed(repo.key()),
            tx,
            new_bytes: AtomicU64::new(0),
            new_blobs: AtomicU64::new(0),
        });
        let uploader = tokio::spawn(uploader::run(repo.objects(), repo.key().clone(), rx));
        Self {
            shared,
            uploader: Some(uploader),
        }
    }

    /// The state workers need; give each worker thread its own [`BlobSink`] over it.
    pub fn shared(&self) -> &Arc<SessionShared> {
        &self.shared
    }

    /// Chunks a tree listing into tree blobs (run on a blocking thread).
    pub fn write_tree(&self, nodes: &[Node]) -> Result<Vec<BlobId>, RepoError> {
        write_tree(&self.shared, nodes)
    }

    /// Chunks a stream (an etcd snapshot, a volume) into data blobs; returns the chunk ids and
    /// the byte count. Chunking is sequential, but hashing, compression and encryption of the
    /// chunks run on one worker per core. Blocking: run it on a blocking thread.
    pub fn write_stream(
        &self,
        source: impl std::io::Read,
        params: ChunkerParams,
    ) -> Result<(Vec<BlobId>, u64), RepoError> {
        write_stream(&self.shared, source, params)
    }

    /// The error to report for `e`, a failure while this session was open, ending the
    /// session (what was queued is still uploaded, or fails): when `e` is
    /// [`RepoError::UploaderStopped`] (a worker saw only the uploader stop, which names no
    /// object), the uploader's own error; else `e`.
    pub async fn abandon(self, e: RepoError) -> RepoError {
        let finished = self.finish().await;
        match (e, finished) {
            (RepoError::UploaderStopped, Err(cause)) => cause,
            (e, _) => e,
        }
    }

    /// Waits for every pack to be uploaded and indexed. After this returns, everything the
    /// session wrote is durable and a snapshot may reference it.
    pub async fn finish(mut self) -> Result<SessionStats, RepoError> {
        let new_bytes = self.shared.new_bytes.load(Ordering::Relaxed);
        let new_blobs = self.shared.new_blobs.load(Ordering::Relaxed);
        let Some(uploader) = self.uploader.take() else {
            return Err(RepoError::Task("the session was already finished".to_string()));
        };
        // Dropping the last sender closes the channel, which ends the uploader.
        drop(self);
        let uploaded = uploader.await.map_err(|e| RepoError::Task(e.to_string()))??;
        Ok(SessionStats {
            new_bytes,
            new_blobs,
            stored_bytes: uploaded.bytes,
            packs: uploaded.packs,
        })
    }
}

/// [`Session::write_tree`] over a session's shared state (for blocking threads that hold it).
pub(crate) fn write_tree(shared: &Arc<SessionShared>, nodes: &[Node]) -> Result<Vec<BlobId>, RepoError> {
    let mut listing = Vec::new();
    for node in nodes {
        serde_json::to_writer(&mut listing, node).map_err(|e| RepoError::Task(e.to_string()))?;
        listing.push(b'\n');
    }
    let mut sink = BlobSink::new(shared.clone(), BlobKind::Tree);
    let mut ids = Vec::new();
    for chunk in Chunker::new(&listing[..], ChunkerParams::TREE, shared.seed) {
        let chunk = chunk.map_err(|e| RepoError::Task(e.to_string()))?;
        ids.push(sink.put(&chunk)?);
    }
    sink.finish()?;
    Ok(ids)
}

/// [`Session::write_stream`] over a session's shared state (for blocking threads that hold it).
pub(crate) fn write_stream(
    shared: &Arc<SessionShared>,
    source: impl std::io::Read,
    params: ChunkerParams,
) -> Result<(Vec<BlobId>, u64), RepoError> {
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 4);
    let seed = shared.seed;
    std::thread::scope(|scope| {
        let (done_tx, done_rx) = std::sync::mpsc::channel::<(usize, Result<BlobId, RepoError>)>();
        let mut senders = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, Vec<u8>)>(2);
            senders.push(tx);
            let done = done_tx.clone();
            let shared = shared.clone();
            scope.spawn(move || {
                let mut sink = BlobSink::new(shared, BlobKind::Data);
                for (seq, chunk) in rx {
                    let put = sink.put(&chunk);
                    let failed = put.is_err();
                    let _ = done.send((seq, put));
                    if failed {
                        return;
                    }
                }
                if let Err(e) = sink.finish() {
                    let _ = done.send((usize::MAX, Err(e)));
                }
            });
        }
        drop(done_tx);
        let mut size = 0u64;
        let mut count = 0usize;
        let mut read_error = None;
        for (seq, chunk) in Chunker::new(source, params, seed).enumerate() {
            match chunk {
                Ok(chunk) => {
                    size += chunk.len() as u64;
                    count = seq + 1;
                    if senders[seq % workers].send((seq, chunk)).is_err() {
                        break; // that worker failed; its error is in `done`
                    }
                }
                Err(e) => {
                    read_error = Some(RepoError::Io {
                        path: "stream".to_string(),
                        message: e.to_string(),
                    });
                    break;
                }
            }
        }
        drop(senders);
        let mut ids: Vec<Option<BlobId>> = vec![None; count];
        let mut first_error = read_error;
        for (seq, put) in done_rx {
            match put {
                Ok(id) => {
                    if let Some(slot) = ids.get_mut(seq) {
                        *slot = Some(id);
                    }
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        let ids = ids
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| RepoError::Task("a chunk of the stream was not stored".to_string()))?;
        Ok((ids, size))
    })
}
