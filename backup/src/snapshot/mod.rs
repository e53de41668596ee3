//! Snapshots: what was backed up, when, and the tree listing that names every file's chunks.
//! A snapshot object is written last, after everything it references is stored and indexed,
//! so a snapshot that is visible is always complete.

mod tree;

pub use tree::{Node, NodeKind};

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::blob::{BlobId, SnapshotId};

/// A snapshot manifest (`snapshots/<id>`, JSON inside zstd inside age).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    /// Its id (the object name; not stored inside).
    #[serde(skip)]
    pub id: Option<SnapshotId>,
    /// When the backup started.
    pub time: DateTime<Utc>,
    /// Which machine made it.
    pub hostname: String,
    /// What kind of source fed it: `files`, later `etcd`, `kubernetes`, `volume`.
    pub kind: String,
    /// What was backed up, as retention groups it (e.g. the sorted absolute paths).
    pub source: String,
    /// The paths given, for files.
    #[serde(default)]
    pub paths: Vec<String>,
    /// User tags (`--tag k=v`).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// The snapshot whose unchanged files were reused.
    #[serde(default)]
    pub parent: Option<SnapshotId>,
    /// Tree blobs, in order: their concatenation is the JSON-lines tree listing.
    pub tree: Vec<BlobId>,
    /// Counts and sizes.
    pub summary: Summary,
}

/// What a backup did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    /// Files in the snapshot.
    pub files: u64,
    /// Directories in the snapshot.
    pub dirs: u64,
    /// Total bytes of file content.
    pub bytes: u64,
    /// Files read again (new or changed since the parent).
    pub files_read: u64,
    /// Bytes of content not already in the repository.
    pub new_bytes: u64,
    /// Bytes uploaded (compressed and encrypted packs).
    pub stored_bytes: u64,
    /// Blobs added.
    pub new_blobs: u64,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
    /// Items skipped, each with why (unreadable files, vanished files…).
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// The object key of a snapshot.
pub fn snapshot_key(id: &SnapshotId) -> String {
    format!("snapshots/{}", id.to_hex())
}
