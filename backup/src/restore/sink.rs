//! The restore lifecycle, once for every kind of snapshot: the sink checks the snapshot is
//! one it restores → lock → index → tree → the sink reads what it needs → lock released.
//! A sink (a directory, an etcd database file, a Kubernetes cluster, later a volume) reads
//! through a [`SnapshotReader`] and never sees packs, the index or the key.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use futures::{Stream, StreamExt};
use tokio::sync::OnceCell;

use super::items;
use crate::blob::{BlobId, PackId};
use crate::pack::PackedBlob;
use crate::repository::{IndexedRepository, LockKind, RepoError, Repository};
use crate::snapshot::{Node, Snapshot};

/// Where a snapshot is restored to.
//
// `async fn` without a `Send` bound on purpose, as for [`crate::sources::Source`].
#[allow(async_fn_in_trait)]
pub trait Sink {
    /// What a restore reports (counts, per-item failures).
    type Output;
    /// Why it failed; the engine's failures reach the caller through it.
    type Error: From<RepoError>;

    /// What the lock says the holder is doing (`restore`, `etcd restore`…).
    fn purpose(&self) -> &'static str;

    /// Refuses a snapshot this sink cannot restore (another kind), before anything is
    /// locked or read.
    fn accepts(&self, snapshot: &Snapshot) -> Result<(), Self::Error>;

    /// Restores from `reader`, which holds the snapshot's tree. Runs under a shared lock.
    async fn restore(self, reader: &SnapshotReader<'_>) -> Result<Self::Output, Self::Error>;
}

impl Repository {
    /// Restores `snapshot` into `sink` under a shared lock (refreshed; the restore is stopped
    /// with [`RepoError::LockLost`] if it cannot be), and returns what the sink reports.
    pub async fn restore<K: Sink>(&self, snapshot: &Snapshot, sink: K) -> Result<K::Output, K::Error> {
        sink.accepts(snapshot)?;
        self.while_locked(LockKind::Shared, sink.purpose(), async {
            let repo = self.indexed().await?;
            let reader = SnapshotReader {
                repo: &repo,
                snapshot,
                nodes: OnceCell::new(),
                damaged: Mutex::new(BTreeSet::new()),
            };
            sink.restore(&reader).await
        })
        .await
    }
}

/// A snapshot being restored: its tree, and reads of its content. The tree is read when first
/// asked for ([`Self::nodes`]), or streamed a node at a time ([`Self::for_each_node`]) by sinks
/// whose trees are long (a backup of Kubernetes objects lists one node per object).
pub struct SnapshotReader<'a> {
    repo: &'a IndexedRepository,
    snapshot: &'a Snapshot,
    nodes: OnceCell<Vec<Node>>,
    /// Packs that failed their final check in [`Self::read_items`], each with why.
    damaged: Mutex<BTreeSet<String>>,
}

impl SnapshotReader<'_> {
    /// The snapshot.
    pub fn snapshot(&self) -> &Snapshot {
        self.snapshot
    }

    /// Its tree, sorted by path, read on first use and kept.
    pub async fn nodes(&self) -> Result<&[Node], RepoError> {
        let nodes = self
            .nodes
            .get_or_try_init(|| self.repo.tree(self.snapshot))
            .await?;
        Ok(nodes)
    }

    /// The node at `path`, if the tree has one.
    pub async fn node(&self, path: &str) -> Result<Option<&Node>, RepoError> {
        let nodes = self.nodes().await?;
        Ok(nodes
            .binary_search_by(|n| n.path.as_str().cmp(path))
            .ok()
            .map(|i| &nodes[i])
            .or_else(|| nodes.iter().find(|n| n.path == path)))
    }

    /// Hands each node of the tree to `each`, in order, without keeping the tree: memory holds
    /// about one chunk of the listing (they arrive as their packs download, checked against
    /// their ids) and one node, however many nodes the tree has.
    pub async fn for_each_node(&self, mut each: impl FnMut(Node)) -> Result<(), RepoError> {
        let tree = &self.snapshot.tree;
        let corrupt = |message: String| RepoError::Corrupt {
            object: format!(
                "tree of snapshot {}",
                self.snapshot.id.map(|i| i.to_hex()).unwrap_or_default()
            ),
            message,
        };
        let mut line: Vec<u8> = Vec::new();
        let mut take_lines = |chunk: &[u8], line: &mut Vec<u8>| -> Result<(), RepoError> {
            for piece in chunk.split_inclusive(|b| *b == b'\n') {
                line.extend_from_slice(piece);
                if line.last() == Some(&b'\n') {
                    if line.len() > 1 {
                        let node = serde_json::from_slice(&line[..line.len() - 1])
                            .map_err(|e| corrupt(e.to_string()))?;
                        each(node);
                    }
                    line.clear();
                }
            }
            Ok(())
        };
        // Chunks arrive by pack; one that arrives before its turn waits (rarely: a tree's
        // chunks are written in order).
        let mut early: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
        let mut next = 0;
        let mut chunks = std::pin::pin!(self.read_items(tree.iter().copied().enumerate(), 1));
        while let Some((i, content)) = chunks.next().await {
            early.insert(i, content?);
            while let Some(chunk) = early.remove(&next) {
                take_lines(&chunk, &mut line)?;
                next += 1;
            }
        }
        if next != tree.len() {
            return Err(corrupt(format!(
                "{} of its {} chunks were read",
                next,
                tree.len()
            )));
        }
        take_lines(b"\n", &mut line)
    }

    /// The repository, indexed, for sinks that read other snapshots too (an etcd delta chain
    /// reads its full snapshot and the deltas before it).
    pub fn repository(&self) -> &IndexedRepository {
        self.repo
    }

    /// A file's whole content, fetching each pack once.
    pub async fn read(&self, node: &Node) -> Result<Vec<u8>, RepoError> {
        self.repo.reader().read_stream(&node.chunks).await
    }

    /// The content of blobs in order (an item a tree node does not describe alone), read as
    /// [`Self::read_items`] reads: a small item costs a few decoded blobs of memory, not the
    /// packs it lies in.
    pub async fn read_blobs(&self, chunks: &[BlobId]) -> Result<Vec<u8>, RepoError> {
        let mut parts: Vec<Vec<u8>> = vec![Vec::new(); chunks.len()];
        let mut read = std::pin::pin!(self.read_items(chunks.iter().copied().enumerate(), 1));
        while let Some((i, content)) = read.next().await {
            parts[i] = content?;
        }
        Ok(parts.concat())
    }

    /// Writes a file's content into `file` from offset 0, a pack at a time (memory stays
    /// small however large the file); returns its length.
    pub async fn read_to(&self, node: &Node, file: &std::fs::File) -> Result<u64, RepoError> {
        self.repo.reader().read_stream_to(&node.chunks, file).await
    }

    /// The content of many single-blob items (Kubernetes objects), each with the caller's
    /// `T`, as their packs download: each pack is fetched once, `packs_at_once` at a time, and
    /// decoded front to back while it downloads, so memory holds a few decoded blobs per pack,
    /// never a pack. Every blob is checked against its id before it is handed out (age proves
    /// a pack was not altered, not who wrote it: anyone with the public recipient can encrypt
    /// one). A blob that is not indexed, whose pack cannot be read, or that is not the content
    /// its id names ([`crate::pack::PackError::BlobMismatch`] inside [`RepoError::Pack`]) comes
    /// back as that item's error; the others are unaffected. A pack whose own blob list
    /// disagrees with the index once read to its end is named by [`Self::damaged_packs`].
    pub fn read_items<'r, T: 'r>(
        &'r self,
        items: impl IntoIterator<Item = (T, BlobId)>,
        packs_at_once: usize,
    ) -> impl Stream<Item = (T, Result<Vec<u8>, RepoError>)> + 'r {
        let mut by_pack: BTreeMap<PackId, Vec<(T, PackedBlob)>> = BTreeMap::new();
        let mut missing = Vec::new();
        for (item, blob) in items {
            match self.repo.index().get(&blob) {
                Some(loc) => by_pack.entry(loc.pack).or_default().push((item, loc.entry)),
                None => missing.push((
                    item,
                    Err(RepoError::MissingBlob {
                        blob: blob.to_hex(),
                        url: self.repo.url().to_string(),
                    }),
                )),
            }
        }
        let found = futures::stream::iter(by_pack)
            .map(move |(pack, mut items)| async move {
                // In pack order (a sort that keeps equal blobs together), for one pass.
                items.sort_by_key(|(_, entry)| entry.offset);
                let (items, entries): (Vec<T>, Vec<PackedBlob>) = items.into_iter().unzip();
                let decoded = items::decode_pack(self.repo.repository(), pack, entries, &self.damaged).await;
                // One result per item, even from a decoder that stopped short.
                let short = move || {
                    Err(RepoError::PackUnreadable {
                        pack: pack.to_hex(),
                        why: "its decoding stopped early".to_string(),
                    })
                };
                futures::stream::iter(items).zip(decoded.chain(futures::stream::repeat_with(short)))
            })
            .buffered(packs_at_once.max(1));
        futures::stream::iter(missing).chain(found.flatten())
    }

    /// Packs that failed their final check during [`Self::read_items`] (their own blob list
    /// disagrees with the index, or they end wrongly), each with why; empty when all passed.
    pub fn damaged_packs(&self) -> Vec<String> {
        self.damaged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}
