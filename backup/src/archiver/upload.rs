//! Bridges from async producers to the blocking chunkers and blob writers: a stream that
//! arrives in pieces ([`StreamUpload`]), and many small items from many tasks
//! ([`ItemUpload`]). Both hold only a bounded queue in memory; a producer waits while the
//! writer is busy.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use chrono::DateTime;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::blob::{BlobId, BlobKind};
use crate::chunker::ChunkerParams;
use crate::repository::RepoError;
use crate::session::{BlobSink, SessionShared, write_stream};
use crate::snapshot::Node;

/// Pieces of a stream waiting for the chunker.
const QUEUED_PIECES: usize = 16;
/// Items waiting for the blob writer.
const QUEUED_ITEMS: usize = 256;

/// A stored stream: its chunks in order, and its length in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredStream {
    /// Blob ids of its chunks, in order.
    pub chunks: Vec<BlobId>,
    /// Its length.
    pub size: u64,
}

impl StoredStream {
    /// A private (0600) file node at `path` for this stream, with `time` as its mtime.
    pub fn node(self, path: &str, time: DateTime<chrono::Utc>) -> Node {
        Node::stream(path, self.size, self.chunks, time)
    }
}

/// A stream being stored as its pieces arrive (see [`crate::archiver::Writer::stream`]).
pub struct StreamUpload {
    tx: Option<mpsc::Sender<Bytes>>,
    task: JoinHandle<Result<(Vec<BlobId>, u64), RepoError>>,
}

impl StreamUpload {
    pub(super) fn start(shared: Arc<SessionShared>, params: ChunkerParams) -> Self {
        let (tx, rx) = mpsc::channel::<Bytes>(QUEUED_PIECES);
        let task = tokio::task::spawn_blocking(move || {
            write_stream(
                &shared,
                ChannelReader {
                    rx,
                    current: Bytes::new(),
                },
                params,
            )
        });
        Self { tx: Some(tx), task }
    }

    /// Hands over the next piece. `false` when the writer has stopped (the store failed):
    /// stop sending, and [`StreamUpload::finish`] says why.
    pub async fn send(&mut self, piece: Bytes) -> bool {
        match &self.tx {
            Some(tx) => tx.send(piece).await.is_ok(),
            None => false,
        }
    }

    /// Ends the stream and waits until every chunk is stored.
    pub async fn finish(mut self) -> Result<StoredStream, RepoError> {
        self.tx = None;
        let (chunks, size) = (&mut self.task)
            .await
            .map_err(|e| RepoError::Task(e.to_string()))??;
        Ok(StoredStream { chunks, size })
    }
}

/// Reads a channel of byte pieces as a blocking reader (the chunker is synchronous).
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.current = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

/// Small items being stored, one blob each (see [`crate::archiver::Writer::items`]).
pub struct ItemUpload {
    tx: mpsc::Sender<(String, Vec<u8>)>,
    task: JoinHandle<Result<Vec<Node>, RepoError>>,
}

impl ItemUpload {
    pub(super) fn start(shared: Arc<SessionShared>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUED_ITEMS);
        let task = tokio::task::spawn_blocking(move || store_items(shared, rx));
        Self { tx, task }
    }

    /// Stores `content` as the file at tree path `path` (a later item with the same path is
    /// ignored). `false` when the writer has stopped (the store failed): stop sending, and
    /// [`ItemUpload::finish`] says why.
    pub async fn send(&self, path: String, content: Vec<u8>) -> bool {
        self.tx.send((path, content)).await.is_ok()
    }

    /// Waits until every item is stored; returns their nodes in the order they arrived.
    pub async fn finish(self) -> Result<Vec<Node>, RepoError> {
        let Self { tx, task } = self;
        drop(tx);
        task.await.map_err(|e| RepoError::Task(e.to_string()))?
    }
}

/// The item writer. Nodes carry no time of their own (the snapshot has it), so an unchanged
/// item's tree line is byte-identical in the next backup and the tree deduplicates too.
fn store_items(
    shared: Arc<SessionShared>,
    mut rx: mpsc::Receiver<(String, Vec<u8>)>,
) -> Result<Vec<Node>, RepoError> {
    let time = DateTime::UNIX_EPOCH;
    let mut sink = BlobSink::new(shared, BlobKind::Data);
    let mut nodes = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    while let Some((path, bytes)) = rx.blocking_recv() {
        if !seen.insert(path.clone()) {
            continue;
        }
        let id = sink.put(&bytes)?;
        nodes.push(Node::stream(&path, bytes.len() as u64, vec![id], time));
    }
    sink.finish()?;
    Ok(nodes)
}
