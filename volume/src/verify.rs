//! Checking an RBD image against a volume snapshot without reading the repository's data:
//! each chunk's range of the image is read back and hashed, and compared with the chunk's id
//! (the keyed BLAKE3 of its plaintext under the repository's blob-id key, docs/FORMAT.md
//! "Blobs and chunking"). What a drill uses to say its copy holds the recovery point's bytes.
//! Holes are not read: an image restored by [`crate::restore_volume`] is new, and a new image
//! reads zeros where nothing was written.

use lifeboat_backup::Repository;
use lifeboat_backup::blob::BlobId;
use lifeboat_backup::snapshot::{NodeKind, Snapshot};
use lifeboat_rbd::Cluster;

use crate::{VolumeError, blocking};

/// Mismatching chunks named in an [`ImageCheck`], at most.
const NAMED: usize = 20;

/// What [`verify_image`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageCheck {
    /// Chunks compared.
    pub chunks: u64,
    /// Bytes read back and hashed.
    pub bytes: u64,
    /// Byte offsets of the first chunks (at most 20) whose bytes differ.
    pub mismatches: Vec<u64>,
    /// All chunks that differ.
    pub mismatched: u64,
    /// `(image, snapshot)` sizes in bytes, when they differ.
    pub size: Option<(u64, u64)>,
}

impl ImageCheck {
    /// The image holds the snapshot's bytes.
    pub fn ok(&self) -> bool {
        self.mismatched == 0 && self.size.is_none()
    }
}

/// Reads back every chunk's range of `pool/image` and compares it with volume snapshot
/// `snapshot` of `repo` (its tree and the index only; no pack is read).
///
/// Errors: the snapshot is not a volume, its layout is damaged (chunks that do not fill their
/// extents included), a chunk is missing from the index, or the image cannot be opened or read.
pub async fn verify_image(
    repo: &Repository,
    snapshot: &Snapshot,
    cluster: &Cluster,
    pool: &str,
    image: &str,
) -> Result<ImageCheck, VolumeError> {
    let id = snapshot.id.map(|i| i.short()).unwrap_or_default();
    let damaged = |why: String| VolumeError::Damaged { id: id.clone(), why };
    let indexed = repo.indexed().await?;
    let nodes = indexed.tree(snapshot).await?;
    let node = nodes
        .iter()
        .find(|n| n.kind == NodeKind::Volume)
        .ok_or_else(|| VolumeError::NotAVolume {
            id: id.clone(),
            kind: snapshot.details.kind().to_string(),
        })?;
    let extents = node
        .volume_extents()
        .map_err(|why| damaged(format!("damaged volume layout: {why}")))?;
    let items = crate::restore::chunk_places(&indexed, &extents, &id)?;
    let expected_size = node.size;
    let key = repo.key().clone();
    let (cluster, pool, image) = (cluster.clone(), pool.to_string(), image.to_string());
    blocking(move || {
        let p = cluster.pool(&pool)?;
        let img = p.open_read_only(&image, None)?;
        let size = img.info()?.size;
        let mut check = ImageCheck {
            size: (size != expected_size).then_some((size, expected_size)),
            ..ImageCheck::default()
        };
        let mut buf = Vec::new();
        for ((offset, len), chunk) in items {
            if offset + len > size {
                check.mismatched += 1;
                if check.mismatches.len() < NAMED {
                    check.mismatches.push(offset);
                }
                continue;
            }
            buf.resize(len as usize, 0);
            let mut done = 0;
            while done < buf.len() {
                let n = img.read_at(offset + done as u64, &mut buf[done..])?;
                if n == 0 {
                    break;
                }
                done += n;
            }
            check.chunks += 1;
            check.bytes += done as u64;
            if done != buf.len() || BlobId::keyed(key.chunk_id_key(), &buf) != chunk {
                check.mismatched += 1;
                if check.mismatches.len() < NAMED {
                    check.mismatches.push(offset);
                }
            }
        }
        Ok(check)
    })
    .await
}
