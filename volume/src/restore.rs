//! Restoring a volume snapshot into a new RBD image: only the extents are written (holes stay
//! unallocated), each pack is fetched once, and several threads write at once.

use std::sync::Arc;

use futures::StreamExt;
use lifeboat_backup::blob::BlobId;
use lifeboat_backup::progress::Progress;
use lifeboat_backup::snapshot::{NodeKind, Snapshot, SnapshotDetails, VolumeExtent};
use lifeboat_backup::{IndexedRepository, RepoError, Repository, Sink, SnapshotReader};
use lifeboat_rbd::{AioWriter, Cluster, ImageOptions};
use tokio::sync::mpsc;

use crate::{VolumeError, blocking};

/// Packs fetched at once while restoring.
const PACKS_AT_ONCE: usize = 4;
/// Pieces waiting for the writer.
const QUEUED_WRITES: usize = 32;

/// Where a volume snapshot is restored: a new RBD image (or, with `force`, one replacing an
/// existing image of that name).
pub struct RbdImageSink {
    /// The cluster.
    pub cluster: Cluster,
    /// The pool to create the image in.
    pub pool: String,
    /// The new image's name.
    pub image: String,
    /// Replace an existing image of that name (it must have no snapshots).
    pub force: bool,
    /// The new image's features and data pool (default: the cluster's).
    pub options: ImageOptions,
    /// Write parallelism: `4 × workers` writes in flight through one image handle (0: 4).
    pub workers: usize,
    /// Counters for a progress bar (bytes written of bytes to write).
    pub progress: Arc<Progress>,
}

/// What a volume restore wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeRestored {
    /// The image's size.
    pub size: u64,
    /// Bytes written (the extents; holes are not written).
    pub written: u64,
    /// Extents written.
    pub extents: u64,
}

impl Sink for RbdImageSink {
    type Output = VolumeRestored;
    type Error = VolumeError;

    fn purpose(&self) -> &'static str {
        "volume restore"
    }

    fn accepts(&self, snapshot: &Snapshot) -> Result<(), VolumeError> {
        match &snapshot.details {
            SnapshotDetails::Volume(_) => Ok(()),
            other => Err(VolumeError::NotAVolume {
                id: snapshot.id.map(|i| i.short()).unwrap_or_default(),
                kind: other.kind().to_string(),
            }),
        }
    }

    async fn restore(self, reader: &SnapshotReader<'_>) -> Result<VolumeRestored, VolumeError> {
        let id = reader.snapshot().id.map(|i| i.short()).unwrap_or_default();
        let damaged = |why: String| VolumeError::Damaged { id: id.clone(), why };
        let node = reader
            .nodes()
            .await?
            .iter()
            .find(|n| n.kind == NodeKind::Volume)
            .ok_or_else(|| damaged("the tree holds no volume node".to_string()))?;
        let extents = node
            .volume_extents()
            .map_err(|why| damaged(format!("damaged volume layout: {why}")))?;
        // A layout its chunks do not fill is refused before anything is created.
        let items = chunk_places(reader.repository(), &extents, &id)?;
        let written: u64 = extents.iter().map(|(e, _)| e.length).sum();
        self.progress.add_total(written, 1);
        self.create_image(node.size).await?;

        let result = self.write(reader, items).await;
        if let Err(e) = &result {
            tracing::warn!(pool = %self.pool, image = %self.image, error = %e, "restore failed; removing the partly written image");
            let (cluster, pool, image) = (self.cluster.clone(), self.pool.clone(), self.image.clone());
            let _ = blocking(move || Ok(cluster.pool(&pool)?.remove_image(&image)?)).await;
        }
        result?;
        self.progress.add_done(0, 1);
        Ok(VolumeRestored {
            size: node.size,
            written,
            extents: extents.len() as u64,
        })
    }
}

/// A chunk's place in a volume, `((offset, length), id)`: offset and length in bytes.
pub(crate) type ChunkPlace = ((u64, u64), BlobId);

/// Every chunk of a volume node's `extents` with its place in the volume, from the index's
/// lengths. Errors: a chunk missing from the index; chunks that do not fill their extent
/// exactly (snapshot `id` is damaged).
pub(crate) fn chunk_places(
    repo: &IndexedRepository,
    extents: &[(VolumeExtent, &[BlobId])],
    id: &str,
) -> Result<Vec<ChunkPlace>, VolumeError> {
    let mut items = Vec::with_capacity(extents.iter().map(|(_, c)| c.len()).sum());
    for (extent, chunks) in extents {
        let mut offset = extent.offset;
        for chunk in *chunks {
            let loc = repo.index().get(chunk).ok_or_else(|| RepoError::MissingBlob {
                blob: chunk.to_hex(),
                url: repo.url().to_string(),
            })?;
            let len = u64::from(loc.entry.raw_length);
            items.push(((offset, len), *chunk));
            offset += len;
        }
        if offset != extent.offset + extent.length {
            return Err(VolumeError::Damaged {
                id: id.to_string(),
                why: format!(
                    "the extent at {} is {} bytes but its chunks hold {}",
                    extent.offset,
                    extent.length,
                    offset - extent.offset
                ),
            });
        }
    }
    Ok(items)
}

impl RbdImageSink {
    /// Creates the target image, refusing (or with `force`, replacing) an existing one.
    async fn create_image(&self, size: u64) -> Result<(), VolumeError> {
        let (cluster, pool, image, force, options) = (
            self.cluster.clone(),
            self.pool.clone(),
            self.image.clone(),
            self.force,
            self.options.clone(),
        );
        blocking(move || {
            let p = cluster.pool(&pool)?;
            if p.image_id(&image)?.is_some() {
                if !force {
                    return Err(VolumeError::TargetExists { pool, image });
                }
                p.remove_image(&image)?;
            }
            p.create_image(&image, size, &options)?;
            Ok(())
        })
        .await
    }

    /// Streams the chunks pack by pack to one writer thread, which writes them through one
    /// image handle with `4 × workers` librbd aio writes in flight ([`AioWriter`]): handles
    /// of their own would pass the image's exclusive lock back and forth on every write.
    async fn write(&self, reader: &SnapshotReader<'_>, items: Vec<ChunkPlace>) -> Result<(), VolumeError> {
        let (tx, mut rx) = mpsc::channel::<(u64, Vec<u8>)>(QUEUED_WRITES);
        let depth = 4 * if self.workers == 0 { 4 } else { self.workers };
        let writer = {
            let (cluster, pool, image) = (self.cluster.clone(), self.pool.clone(), self.image.clone());
            let progress = self.progress.clone();
            tokio::task::spawn_blocking(move || -> Result<(), VolumeError> {
                let p = cluster.pool(&pool)?;
                let mut img = p.open(&image, None)?;
                let mut writes = AioWriter::new(&mut img, depth);
                while let Some((offset, data)) = rx.blocking_recv() {
                    let len = data.len() as u64;
                    writes.write(offset, data)?;
                    progress.add_done(len, 0);
                }
                writes.finish()?;
                Ok(())
            })
        };
        let mut fed: Result<(), VolumeError> = Ok(());
        let mut stream = std::pin::pin!(reader.read_items(items, PACKS_AT_ONCE));
        while let Some(((offset, len), content)) = stream.next().await {
            let data = match content {
                Ok(d) => d,
                Err(e) => {
                    fed = Err(e.into());
                    break;
                }
            };
            if data.len() as u64 != len {
                fed = Err(VolumeError::Task(format!(
                    "a chunk at {offset} holds {} bytes, the index says {len}",
                    data.len()
                )));
                break;
            }
            if tx.send((offset, data)).await.is_err() {
                break; // the writer failed; its error is below
            }
        }
        drop(tx);
        let written = writer.await.map_err(|e| VolumeError::Task(e.to_string()))?;
        fed.and(written)
    }
}

/// Restores volume snapshot `snapshot` of `repo` into the new image `pool/image` (see
/// [`RbdImageSink`]).
pub async fn restore_volume(
    repo: &Repository,
    snapshot: &Snapshot,
    sink: RbdImageSink,
) -> Result<VolumeRestored, VolumeError> {
    repo.restore(snapshot, sink).await
}
