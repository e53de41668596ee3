//! `repo copy`: make another store hold a complete replica of a repository (or of some of its
//! snapshots) that the same keys open — the building block of replication across clouds.
//!
//! The replica is the same repository, object for object: `config` and `keys/` are copied
//! as they are (so the same user keys open it and its id is the source's), packs and
//! snapshot manifests keep their bytes and names, and index files are written anew at the
//! destination for exactly the packs stored there. Nothing is decrypted and re-encrypted
//! except index files and the metadata the plan needs (snapshots, trees).
//!
//! Steps: [`prepare`] surveys both sides and computes a [`CopyPlan`] (pure: `plan.rs`);
//! [`execute`] applies it. Crash safety follows the backup's own order, so `kill -9` at any
//! moment leaves a destination `repo check --read-data` passes, and running the copy again
//! resumes it:
//! 1. key files, then `config` (a destination without `config` is no repository yet);
//! 2. packs, each streamed from the source with its BLAKE3 name checked as the bytes arrive
//!    (no second read) and written only once the whole pack checked out;
//! 3. an index file for every few packs, written after the packs it lists;
//! 4. each snapshot manifest, last, once every pack it needs is stored and indexed there.
//!
//! A pack that fails its check (damaged in the source) is not copied; the snapshots needing
//! it are reported and left out, and everything else is copied. With object lock
//! ([`LockSettings`]), every object written gets a retention date, and the objects a new
//! snapshot reuses at the destination are extended to the same date, so no locked snapshot
//! depends on an unlocked object.

mod bandwidth;
mod copy_plan;
mod execute;
mod survey;
mod transfer;

pub use bandwidth::{Bandwidth, RateError, parse_rate};
pub use copy_plan::SelectError;
pub use copy_plan::{
    CopyPlan, DestinationState, PackSizes, PackTransfer, PlanBuilder, Selection, SnapshotCopy,
};
pub use execute::execute;
pub use survey::{Prepared, prepare};

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::blob::SnapshotId;
use crate::repository::RepoError;
use crate::store::LockSettings;
use crate::store::object_lock::{LockError, Retention};

/// Packs sent at once by default: enough to fill a WAN link, few enough for memory (each
/// pack in flight is held whole, about 16 MiB, until its name checks out).
pub const DEFAULT_PARALLELISM: usize = 8;

/// How to copy.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Which snapshots.
    pub selection: Selection,
    /// Packs in flight.
    pub parallelism: usize,
    /// Bytes per second for all transfers together; unlimited when `None`.
    pub bandwidth: Option<u64>,
    /// Write every object with this S3 Object Lock retention.
    pub object_lock: Option<LockSettings>,
}

impl Default for CopyOptions {
    fn default() -> Self {
        Self {
            selection: Selection::All,
            parallelism: DEFAULT_PARALLELISM,
            bandwidth: None,
            object_lock: None,
        }
    }
}

/// Why a copy could not run at all (per-pack damage is reported in [`CopyReport`] instead).
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The destination holds another repository.
    #[error(
        "{destination} holds a different repository (id {found}) than {origin} (id {expected}); \
         copy into an empty location or into a replica of {origin}"
    )]
    DifferentRepository {
        /// The source URL.
        origin: String,
        /// The destination URL.
        destination: String,
        /// The source's repository id.
        expected: String,
        /// What the destination holds.
        found: String,
    },
    /// The destination has objects but no `config`, and they are not an interrupted copy's.
    #[error(
        "{destination} is not empty ({what}) but holds no repository config; copy into an empty location"
    )]
    NotEmpty {
        /// The destination URL.
        destination: String,
        /// What was found there.
        what: String,
    },
    /// Source and destination are the same place.
    #[error("{url} is the source itself; pass another destination")]
    SameLocation {
        /// The URL.
        url: String,
    },
    /// A selected snapshot does not exist, or a prefix names several.
    #[error(transparent)]
    Selection(#[from] SelectError),
    /// Object lock was asked for where it cannot be had.
    #[error(
        "object lock was requested for {destination}, but {support}; drop the lock settings or use an S3 bucket created with object lock enabled"
    )]
    LockUnavailable {
        /// The destination URL.
        destination: String,
        /// What the store said about object lock.
        support: String,
    },
    /// A repository operation failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// An object lock request failed.
    #[error(transparent)]
    Lock(#[from] LockError),
}

/// One snapshot, for reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SnapshotStamp {
    /// The snapshot.
    pub id: SnapshotId,
    /// When it was taken.
    pub time: DateTime<Utc>,
}

/// What a copy did.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CopyReport {
    /// The source repository.
    pub source: String,
    /// The destination.
    pub destination: String,
    /// The destination repository was created by this copy.
    pub created: bool,
    /// Key files copied.
    pub keys_copied: usize,
    /// Snapshots copied, oldest first.
    pub snapshots_copied: Vec<SnapshotId>,
    /// Selected snapshots that were already there.
    pub snapshots_present: usize,
    /// Packs sent.
    pub packs_copied: usize,
    /// Packs found at the destination and only indexed (left by an interrupted copy).
    pub packs_indexed: usize,
    /// Pack bytes sent.
    pub bytes_copied: u64,
    /// Index files written at the destination.
    pub index_files_written: usize,
    /// The retention every object written got, with object lock.
    pub retention: Option<Retention>,
    /// Objects already at the destination whose retention was extended.
    pub retention_extended: usize,
    /// Source objects not copied because they failed their checks, and why.
    pub damaged: BTreeMap<String, String>,
    /// Selected snapshots not copied, and why.
    pub skipped: BTreeMap<String, String>,
    /// The newest selected snapshot the destination holds after the copy (its age is the
    /// recovery point objective for losing the source).
    pub newest: Option<SnapshotStamp>,
    /// Snapshots the destination holds after the copy, selected or not.
    pub destination_snapshots: usize,
}

impl CopyReport {
    /// True when every selected snapshot is at the destination.
    pub fn ok(&self) -> bool {
        self.damaged.is_empty() && self.skipped.is_empty()
    }
}

/// Plans and runs a copy: [`prepare`] then [`execute`].
pub async fn copy(
    source: &crate::Repository,
    destination: &crate::store::Store,
    options: &CopyOptions,
    progress: std::sync::Arc<crate::progress::Progress>,
) -> Result<CopyReport, CopyError> {
    let prepared = prepare(source, destination, options).await?;
    execute(source, prepared, options, progress).await
}
