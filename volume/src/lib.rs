//! Lifeboat's PV data source: Ceph RBD images backed up with changed-block incrementals.
//!
//! A backup snapshots the image (`lifeboat.<repository id>.<time>`), reads every allocated
//! segment the first time and afterwards only the segments `rbd_diff_iterate2` reports changed
//! since the parent's RBD snapshot, and stores the data runs as content-defined chunks of one
//! sparse [`NodeKind::Volume`](lifeboat_backup::snapshot::NodeKind::Volume) node: any snapshot
//! holds the whole volume (untouched segments reuse the parent's chunks), holes stay holes.
//! Exactly one RBD snapshot per image and repository is kept as the next diff's base; a base
//! that is missing, re-created or from a re-created image means a full read, never a wrong
//! incremental. A restore writes the extents into a new image through librbd, holes
//! unwritten. Layout: docs/FORMAT.md ("Volume nodes"); design: docs/volumes.md.
//!
//! NFS volumes are backed up file by file through a userspace NFSv3 client, and restored the
//! same way: see [`nfs`] and docs/volumes.md ("NFS volumes").
//!
//! The engine knows nothing of Ceph: this crate is one [`lifeboat_backup::Source`] and one
//! [`lifeboat_backup::Sink`] beside it, as `lifeboat-etcd` is.

mod error;
mod group;
pub mod layout;
pub mod nfs;
mod restore;
mod source;
mod verify;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use lifeboat_backup::chunker::ChunkerParams;
use lifeboat_backup::progress::Progress;
use lifeboat_backup::snapshot::Snapshot;
use lifeboat_backup::{BackupOptions, Repository};
use lifeboat_rbd::Cluster;

pub use error::VolumeError;
pub use group::{GroupPoint, PointInfo, TakenAt, snapshot_together};
pub use restore::{RbdImageSink, VolumeRestored, restore_volume};
pub use source::RbdVolume;
pub use verify::{ImageCheck, verify_image};

/// The tree path of a volume snapshot's one node (a directory restore writes this sparse file).
pub const VOLUME_PATH: &str = "volume.img";

/// The snapshot tag naming the RBD group snapshot (`pool/group@snapshot`) a volume snapshot
/// was read at, when it was.
pub const GROUP_SNAPSHOT_TAG: &str = "rbd-group-snapshot";

/// Chunk sizes of volume data: smaller than files' 1 MiB average so a block change rewrites
/// little, large enough that a 1 TiB volume stays about four million index entries.
pub const VOLUME_CHUNKS: ChunkerParams = ChunkerParams {
    min: 64 * 1024,
    avg: 256 * 1024,
    max: 1024 * 1024,
};

/// How a volume backup runs.
#[derive(Debug, Clone, Default)]
pub struct VolumeBackupOptions {
    /// Tags for the snapshot.
    pub tags: BTreeMap<String, String>,
    /// Counters for a progress bar (bytes read of bytes to read).
    pub progress: Arc<Progress>,
    /// Reader threads (0: 4).
    pub workers: usize,
    /// Read every allocated extent even when an incremental is possible.
    pub force_full: bool,
    /// Read at this image's member of a group snapshot ([`snapshot_together`]) instead of
    /// snapshotting the image.
    pub at: Option<TakenAt>,
}

/// A finished volume backup.
#[derive(Debug, Clone)]
pub struct VolumeBackup {
    /// The snapshot saved.
    pub snapshot: Snapshot,
    /// Why every allocated extent was read, when it was.
    pub full_reason: Option<String>,
    /// Old base snapshots that could not be removed (the next backup retries).
    pub warnings: Vec<String>,
    /// The recovery point read, when the backup was given one.
    pub point: Option<PointInfo>,
}

/// Backs up RBD image `pool/image` of `cluster` into `repo` as a new snapshot (see the crate
/// documentation). On failure the RBD snapshot it made is removed again; a backup killed
/// before that leaves one, which the next backup of the image removes.
pub async fn backup_volume(
    repo: &Repository,
    cluster: &Cluster,
    pool: &str,
    image: &str,
    options: &VolumeBackupOptions,
) -> Result<VolumeBackup, VolumeError> {
    let (fsid, image_id) = {
        let cluster = cluster.clone();
        let (pool, image) = (pool.to_string(), image.to_string());
        blocking(move || {
            let p = cluster.pool(&pool)?;
            let id = p
                .image_id(&image)?
                .ok_or(VolumeError::ImageNotFound { pool, image })?;
            Ok::<_, VolumeError>((cluster_fsid(&cluster)?, id))
        })
        .await?
    };
    if let Some(at) = &options.at {
        let why = if at.pool != pool || at.image != image {
            Some(format!("it is of {}/{}", at.pool, at.image))
        } else if at.image_id != image_id {
            Some("the image was re-created since".to_string())
        } else {
            None
        };
        if let Some(why) = why {
            return Err(VolumeError::WrongPoint {
                pool: pool.to_string(),
                image: image.to_string(),
                why,
            });
        }
    }
    let mut tags = options.tags.clone();
    if let Some(at) = &options.at {
        tags.insert(GROUP_SNAPSHOT_TAG.to_string(), at.point.name.clone());
    }
    let mut source = RbdVolume {
        cluster: cluster.clone(),
        pool: pool.to_string(),
        image: image.to_string(),
        fsid,
        image_id,
        snap_prefix: snap_prefix(repo),
        workers: if options.workers == 0 { 4 } else { options.workers },
        force_full: options.force_full,
        at: options.at.clone(),
        // A point's pre-base is this backup's: removed again if it fails.
        created: options.at.as_ref().map(|a| a.base.clone()),
        full_reason: None,
        retiring: None,
    };
    let result = repo
        .backup(
            &mut source,
            &BackupOptions {
                tags,
                host: None,
                progress: options.progress.clone(),
            },
        )
        .await;
    let keep = source.created.clone();
    let retired = match source.retiring.take() {
        Some(retiring) => retiring
            .await
            .unwrap_or_else(|e| vec![format!("old base snapshots not removed: {e}")]),
        None => Vec::new(),
    };
    match result {
        Ok(snapshot) => {
            let warnings = retired;
            Ok(VolumeBackup {
                snapshot,
                full_reason: source.full_reason,
                warnings,
                point: options.at.as_ref().map(|a| a.point.clone()),
            })
        }
        Err(e) => {
            if let Some(made) = keep {
                let (cluster, pool, image) =
                    (source.cluster.clone(), source.pool.clone(), source.image.clone());
                let removed = blocking(move || {
                    let p = cluster.pool(&pool)?;
                    let mut img = p.open(&image, None)?;
                    Ok::<_, VolumeError>(img.remove_snapshot(&made)?)
                })
                .await;
                if let Err(why) = removed {
                    tracing::warn!(error = %why, "could not remove the RBD snapshot of the failed backup; the next backup removes it");
                }
            }
            Err(e)
        }
    }
}

/// RBD snapshots (and groups) this repository makes are named `<prefix><time>`.
pub(crate) fn snap_prefix(repo: &Repository) -> String {
    let repo_id = &repo.config().id;
    format!("lifeboat.{}.", &repo_id[..repo_id.len().min(12)])
}

/// The name of the RBD snapshot (or group) a backup at `time` makes.
pub(crate) fn snap_name(prefix: &str, time: DateTime<Utc>) -> String {
    format!("{prefix}{}", time.format("%Y%m%dT%H%M%S%.6fZ"))
}

/// The cluster's fsid (`ceph fsid`), which names it in source ids.
fn cluster_fsid(cluster: &Cluster) -> Result<String, VolumeError> {
    let out = cluster.mon_command(&serde_json::json!({"prefix": "fsid", "format": "json"}))?;
    let v: serde_json::Value =
        serde_json::from_slice(&out).map_err(|e| VolumeError::Task(format!("ceph fsid reply: {e}")))?;
    v["fsid"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| VolumeError::Task("ceph fsid reply has no fsid".to_string()))
}

/// Runs a blocking librbd call off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, VolumeError> + Send + 'static,
) -> Result<T, VolumeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| VolumeError::Task(e.to_string()))?
}
