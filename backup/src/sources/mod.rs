//! Sources: the kinds of data the engine backs up. A source yields a tree of nodes and their
//! content; [`crate::Repository::backup`] runs the one lifecycle around it (lock, index,
//! session, tree, snapshot). `files` lives here because it needs nothing beyond the
//! filesystem; sources that need a client of their own live beside the engine and implement
//! the same trait (`lifeboat-etcd`, the Kubernetes objects source in `lifeboat-controller`).
//! How to add one: docs/sources.md.

pub mod files;
mod reuse;

pub use self::reuse::{files_to_read, reuse_unchanged};

use crate::archiver::Writer;
use crate::repository::{IndexedRepository, RepoError};
use crate::snapshot::{Node, Snapshot, SnapshotDetails, Summary};

/// Something the engine can back up: it chooses its parent, then writes its content through a
/// [`Writer`] and says what the snapshot holds. Everything else — the lock (refreshed, and the
/// backup stopped if it cannot be), the index, the write session, the tree, the manifest and
/// its `time`, `hostname`, `tags` and `parent` — is the engine's, once for every source
/// (rustic's `Archiver` over an indexed repository).
///
/// Each call of [`crate::Repository::backup`] makes one snapshot. A source that produces
/// several (the etcd delta stream) calls it once per snapshot.
//
// `async fn` without a `Send` bound on purpose: the engine never spawns a source's future, and
// a source may borrow across stream combinators that are not `Send` (the objects source).
#[allow(async_fn_in_trait)]
pub trait Source {
    /// Why the source failed. The engine's own failures reach the caller through it, so it
    /// converts from [`RepoError`] (and usually has a variant holding one).
    type Error: From<RepoError>;

    /// What is backed up, as retention groups snapshots and parents are matched:
    /// `files:/data,/etc`, `etcd:<cluster id>`, `kubernetes:<cluster uid>`.
    fn source_id(&self) -> String;

    /// What the lock says the holder is doing (`backup`, `etcd snapshot`…).
    fn purpose(&self) -> &'static str;

    /// The snapshot this backup continues, if any: its id becomes the new snapshot's
    /// `parent`, and [`Writer::parent_tree`] reads its tree. Runs under the lock. The default
    /// is none; listing every snapshot costs a request per snapshot, so sources that know
    /// their parent (a delta's previous link) return it without listing.
    async fn parent(&self, repo: &IndexedRepository) -> Result<Option<Snapshot>, Self::Error> {
        let _ = repo;
        Ok(None)
    }

    /// Writes the content and returns the tree. Runs under the lock, after [`Source::parent`].
    /// On error nothing is saved as a snapshot; content already written is indexed for the
    /// next backup to reuse, or removed by `prune`.
    async fn write(&mut self, writer: &Writer<'_>) -> Result<Written, Self::Error>;
}

/// What a source wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// The tree: every file, directory and symlink with its content's chunk ids. The engine
    /// sorts it by path bytes if it is not.
    pub nodes: Vec<Node>,
    /// What the snapshot holds, typed per kind.
    pub details: SnapshotDetails,
    /// The paths or endpoints backed up, as listings show them.
    pub paths: Vec<String>,
    /// The counts the source knows (`files`, `dirs`, `bytes`, `files_read`, `warnings`); the
    /// engine fills in what the session stored and how long it took. [`Summary::of_tree`]
    /// counts a tree's nodes.
    pub summary: Summary,
}

impl Summary {
    /// Files, directories, symlinks, other special files and bytes of a tree, every file
    /// counted as read (sources that read everything they store); other counts zero.
    pub fn of_tree(nodes: &[Node]) -> Self {
        use crate::snapshot::NodeKind;
        let count = |kind: fn(NodeKind) -> bool| nodes.iter().filter(|n| kind(n.kind)).count() as u64;
        let files = count(|k| k == NodeKind::File);
        Self {
            files,
            dirs: count(|k| k == NodeKind::Dir),
            symlinks: count(|k| k == NodeKind::Symlink),
            special_files: count(|k| {
                matches!(
                    k,
                    NodeKind::Fifo | NodeKind::Socket | NodeKind::CharDevice | NodeKind::BlockDevice
                )
            }),
            bytes: nodes.iter().map(|n| n.size).sum(),
            files_read: files,
            ..Self::default()
        }
    }
}
