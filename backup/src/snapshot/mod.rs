//! Snapshots: what was backed up, when, and the tree listing that names every file's chunks.
//! A snapshot object is written last, after everything it references is stored and indexed,
//! so a snapshot that is visible is always complete.

mod damage;
mod details;
mod manifest;
mod tree;

pub use details::{
    DetailsError, ETCD, EtcdDelta, EtcdFull, FILES, FilesBackup, KUBERNETES, KubernetesObjects,
    SnapshotDetails, VOLUME, VolumeImage,
};

pub(crate) use damage::parent_of;
pub use damage::{DamageKind, TreeDamage, UnsafePath, safe_relative, tree_damage};
pub use tree::{Node, NodeKind, VolumeExtent, VolumeLayoutError, Xattr};

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::blob::{BlobId, SnapshotId};

/// A snapshot manifest (`snapshots/<id>`, JSON inside zstd inside age). Stored with the
/// layout of `manifest.rs`: `details` as the `kind` string and `meta` map every version wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Its id (the object name; not stored inside).
    pub id: Option<SnapshotId>,
    /// When the backup started.
    pub time: DateTime<Utc>,
    /// Which machine made it.
    pub hostname: String,
    /// What kind of source fed it and what that source records about itself (for etcd: the
    /// cluster, member and revision), typed per kind.
    pub details: SnapshotDetails,
    /// What was backed up, as retention groups it (e.g. the sorted absolute paths).
    pub source: String,
    /// The paths given, for files; the member's endpoint for etcd.
    pub paths: Vec<String>,
    /// User tags (`--tag k=v`).
    pub tags: BTreeMap<String, String>,
    /// The snapshot this one continues: whose unchanged files were reused (files), or the
    /// previous link of a delta chain (etcd deltas).
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
    /// Symlinks in the snapshot (absent when 0, and in snapshots written before this was
    /// counted).
    #[serde(default, skip_serializing_if = "tree::is_zero")]
    pub symlinks: u64,
    /// FIFOs, sockets and device nodes in the snapshot (absent when 0, and in snapshots
    /// written before this was counted).
    #[serde(default, skip_serializing_if = "tree::is_zero")]
    pub special_files: u64,
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
    /// Things saved incompletely, each with why (an extended attribute that could not be
    /// read, an object a source could not fetch).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Paths that were asked for but are not in the snapshot (unreadable, vanished mid-walk,
    /// a kind of file that is not backed up), each with why. A snapshot with any is partial.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedPath>,
    /// Entries an exclude pattern left out (an excluded directory counts once, with all it
    /// held). Left out on purpose: the snapshot is not partial for them.
    #[serde(default, skip_serializing_if = "tree::is_zero")]
    pub excluded: u64,
    /// Mount points saved as empty directories because the backup stayed on its roots'
    /// filesystems (`--one-file-system`), absolute paths.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_filesystems: Vec<String>,
}

/// A path a backup could not save.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SkippedPath {
    /// The absolute path (U+FFFD for bytes that are not UTF-8).
    pub path: String,
    /// Why: the OS error or the reason it was left out.
    pub error: String,
}

impl Snapshot {
    /// The stored `kind`: `files`, `etcd`, `kubernetes`, or an unknown kind as stored.
    pub fn kind(&self) -> &str {
        self.details.kind()
    }
}

/// The object key of a snapshot.
pub fn snapshot_key(id: &SnapshotId) -> String {
    format!("snapshots/{}", id.to_hex())
}
