//! What the controller asks of a storage backend. RBD ([`super::rbd::RbdController`]) and NFS
//! ([`super::nfs::NfsController`]) each implement it; the CSI service parses ids and requests,
//! guards concurrent calls, picks the backend and maps errors, once for both.

use std::collections::HashMap;

use crate::controller::checks::Capacity;
use crate::controller::topology::Reach;
use crate::error::Result;
use crate::proto::volume_content_source::Type as SourceType;
use crate::proto::{Snapshot, Topology, Volume};

/// A request's secrets (`csi.storage.k8s.io/*-secret-*`).
pub type Secrets = HashMap<String, String>;

/// A CreateVolume request, with its capacity decided and its topology checked.
pub struct NewVolume<'a> {
    /// The CO's request name (idempotency key).
    pub name: &'a str,
    /// Size to provision and bounds an existing volume must meet.
    pub capacity: Capacity,
    /// StorageClass parameters.
    pub parameters: &'a HashMap<String, String>,
    /// VolumeAttributesClass parameters (already checked with [`VolumeBackend::check_mutable`]).
    pub mutable_parameters: &'a HashMap<String, String>,
    /// Secrets.
    pub secrets: &'a Secrets,
    /// Content source.
    pub source: Option<&'a SourceType>,
}

/// Which snapshots ListSnapshots wants of a backend.
pub enum SnapshotQuery<'a, V> {
    /// One snapshot of one volume, by its name there.
    One(&'a V, &'a str),
    /// Every snapshot of one volume.
    Of(&'a V),
    /// Every snapshot the backend's configured places hold.
    All,
}

/// One storage backend behind the Controller service. Every method is idempotent, as the
/// CSI RPC it serves; errors are [`crate::error::CsiError`]s the service wraps with the object.
#[tonic::async_trait]
pub trait VolumeBackend: Send + Sync {
    /// Where one of this backend's volumes lives, as parsed from its id.
    type Volume: Send + Sync;

    /// Where volumes made with these StorageClass parameters can be reached from.
    fn reach(&self, parameters: &HashMap<String, String>) -> Result<Reach>;

    /// Checks mutable parameters (VolumeAttributesClass) for this backend.
    fn check_mutable(&self, mutable: &HashMap<String, String>) -> Result<()>;

    /// Creates the volume, or finds the one an earlier call with this name made; the answer
    /// carries id, capacity and context (topology and content source are the service's).
    async fn create_volume(&self, req: NewVolume<'_>) -> Result<Volume>;

    /// Deletes a volume the backend made. `Ok(false)` when the id names nothing of the
    /// driver's (absent, or not created by it), which is left untouched.
    async fn delete_volume(&self, vol: &Self::Volume, secrets: &Secrets) -> Result<bool>;

    /// Size of an existing volume (0 when unknown); NOT_FOUND when absent.
    async fn volume_size(&self, vol: &Self::Volume, secrets: &Secrets) -> Result<u64>;

    /// Grows a volume to at least `size` bytes (never shrinks); returns its size and whether
    /// a node must then grow the filesystem on it.
    async fn expand_volume(&self, vol: &Self::Volume, size: u64, secrets: &Secrets) -> Result<(u64, bool)>;

    /// Applies checked mutable parameters to an existing volume.
    async fn modify_volume(
        &self,
        vol: &Self::Volume,
        mutable: &HashMap<String, String>,
        secrets: &Secrets,
    ) -> Result<()>;

    /// Every volume in the configured places, as (id, capacity).
    async fn list_volumes(&self) -> Result<Vec<(String, u64)>>;

    /// Takes (or finds) snapshot `name` of a volume.
    async fn create_snapshot(&self, vol: &Self::Volume, name: &str, secrets: &Secrets) -> Result<Snapshot>;

    /// Deletes snapshot `snap` (its name in the snapshot id) of a volume; absent is fine.
    async fn delete_snapshot(&self, vol: &Self::Volume, snap: &str, secrets: &Secrets) -> Result<()>;

    /// Snapshots matching a query.
    async fn snapshots(
        &self,
        query: SnapshotQuery<'_, Self::Volume>,
        secrets: &Secrets,
    ) -> Result<Vec<Snapshot>>;

    /// Available bytes: of the place a StorageClass's parameters name, or without parameters
    /// of every configured place, counting only places reachable from `at` when given.
    async fn available(
        &self,
        parameters: Option<&HashMap<String, String>>,
        at: Option<&Topology>,
    ) -> Result<u64>;
}
