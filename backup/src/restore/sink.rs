//! The restore lifecycle, once for every kind of snapshot: the sink checks the snapshot is
//! one it restores → lock → index → tree → the sink reads what it needs → lock released.
//! A sink (a directory, an etcd database file, a Kubernetes cluster, later a volume) reads
//! through a [`SnapshotReader`] and never sees packs, the index or the key.

use std::collections::BTreeMap;

use futures::{Stream, StreamExt};

use crate::blob::{BlobId, PackId};
use crate::read::BlobReader;
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
            let nodes = repo.tree(snapshot).await?;
            let reader = SnapshotReader {
                repo: &repo,
                snapshot,
                nodes,
            };
            sink.restore(&reader).await
        })
        .await
    }
}

/// A snapshot being restored: its tree, and reads of its content.
pub struct SnapshotReader<'a> {
    repo: &'a IndexedRepository,
    snapshot: &'a Snapshot,
    nodes: Vec<Node>,
}

impl SnapshotReader<'_> {
    /// The snapshot.
    pub fn snapshot(&self) -> &Snapshot {
        self.snapshot
    }

    /// Its tree, sorted by path.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The node at `path`, if the tree has one.
    pub fn node(&self, path: &str) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| n.path.as_str().cmp(path))
            .ok()
            .map(|i| &self.nodes[i])
            .or_else(|| self.nodes.iter().find(|n| n.path == path))
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

    /// The content of blobs in order (an item a tree node does not describe alone).
    pub async fn read_blobs(&self, chunks: &[BlobId]) -> Result<Vec<u8>, RepoError> {
        self.repo.reader().read_stream(chunks).await
    }

    /// Writes a file's content into `file` from offset 0, a pack at a time (memory stays
    /// small however large the file); returns its length.
    pub async fn read_to(&self, node: &Node, file: &std::fs::File) -> Result<u64, RepoError> {
        self.repo.reader().read_stream_to(&node.chunks, file).await
    }

    /// The content of many single-blob items (Kubernetes objects), each with the caller's
    /// `T`, as their packs arrive: each pack is fetched once, `packs_at_once` at a time, and
    /// only those packs are in memory. Every blob is checked against its id before it is
    /// handed out (age proves a pack was not altered, not who wrote it: anyone with the
    /// public recipient can encrypt one). A blob that is not indexed, whose pack cannot be
    /// read, or that is not the content its id names ([`crate::pack::PackError::BlobMismatch`]
    /// inside [`RepoError::Pack`]) comes back as that item's error; the others are unaffected.
    pub fn read_items<T: 'static>(
        &self,
        items: Vec<(T, BlobId)>,
        packs_at_once: usize,
    ) -> impl Stream<Item = (T, Result<Vec<u8>, RepoError>)> + '_ {
        let mut by_pack: BTreeMap<PackId, Vec<(T, BlobId)>> = BTreeMap::new();
        let mut missing = Vec::new();
        for (item, blob) in items {
            match self.repo.index().get(&blob) {
                Some(loc) => by_pack.entry(loc.pack).or_default().push((item, blob)),
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
            .map(move |(pack, items)| async move {
                let open = BlobReader::open_pack(self.repo.repository(), &pack).await;
                items
                    .into_iter()
                    .map(|(item, blob)| {
                        let content = match (&open, self.repo.index().get(&blob)) {
                            (Ok(open), Some(loc)) => open
                                .blob(&loc.entry, self.repo.key().chunk_id_key())
                                .map_err(RepoError::from),
                            (Err(e), _) => Err(RepoError::PackUnreadable {
                                pack: pack.to_hex(),
                                why: e.to_string(),
                            }),
                            (_, None) => Err(RepoError::MissingBlob {
                                blob: blob.to_hex(),
                                url: self.repo.url().to_string(),
                            }),
                        };
                        (item, content)
                    })
                    .collect::<Vec<_>>()
            })
            .buffered(packs_at_once.max(1))
            .flat_map(futures::stream::iter);
        futures::stream::iter(missing).chain(found)
    }
}
