//! Tree listings: one JSON line per file, directory or symlink, sorted by path. Stored as
//! content-defined chunks like file data, so an unchanged part of a large tree deduplicates.

use crate::blob::BlobId;

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// A regular file (or a stream from a non-file source).
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
}

/// One entry of a tree listing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Node {
    /// Relative path, `/`-separated, no leading slash, never `..`.
    pub path: String,
    /// What it is.
    #[serde(rename = "type")]
    pub kind: NodeKind,
    /// Unix permission bits.
    #[serde(default)]
    pub mode: u32,
    /// Owner.
    #[serde(default)]
    pub uid: u32,
    /// Group.
    #[serde(default)]
    pub gid: u32,
    /// Modification time, ns since the epoch.
    #[serde(default)]
    pub mtime_ns: i64,
    /// Change time, ns since the epoch (detects changes that keep mtime).
    #[serde(default)]
    pub ctime_ns: i64,
    /// Inode number (detects replaced files).
    #[serde(default)]
    pub inode: u64,
    /// Content size.
    #[serde(default)]
    pub size: u64,
    /// Content chunks, in order (files).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<BlobId>,
    /// Link target (symlinks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

impl Node {
    /// A private (0600) file node for a stream source (an etcd database, a delta listing),
    /// which has no inode or owner of its own.
    pub fn stream(path: &str, size: u64, chunks: Vec<BlobId>, time: chrono::DateTime<chrono::Utc>) -> Self {
        Self {
            path: path.to_string(),
            kind: NodeKind::File,
            mode: 0o600,
            uid: 0,
            gid: 0,
            mtime_ns: time.timestamp_nanos_opt().unwrap_or(0),
            ctime_ns: 0,
            inode: 0,
            size,
            chunks,
            target: None,
        }
    }

    /// True when `other` (from the parent snapshot) describes the same unchanged file, so its
    /// chunk list can be reused without reading the file.
    pub fn unchanged_since(&self, other: &Node) -> bool {
        self.kind == NodeKind::File
            && other.kind == NodeKind::File
            && self.size == other.size
            && self.mtime_ns == other.mtime_ns
            && self.ctime_ns == other.ctime_ns
            && self.inode == other.inode
            && (self.size == 0 || !other.chunks.is_empty())
    }
}
