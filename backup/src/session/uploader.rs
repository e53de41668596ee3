//! Uploading sealed packs with bounded parallelism, and indexing them as they land.

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::mpsc;

use crate::blob::Id;
use crate::crypto::RepoKey;
use crate::index::{IndexFile, IndexPack, index_key};
use crate::pack::{SealedPack, pack_key};
use crate::repository::RepoError;
use crate::repository::object_io::Objects;

/// Uploads in flight at once: enough to hide latency to S3, few enough to bound memory.
const UPLOADS_IN_FLIGHT: usize = 3;
/// An index file is written after this many packs, so a killed backup loses at most this
/// many packs' worth of work.
const PACKS_PER_INDEX: usize = 4;

pub(super) struct Uploaded {
    pub(super) packs: u64,
    pub(super) bytes: u64,
}

pub(super) async fn run(
    objects: Objects,
    key: Arc<RepoKey>,
    mut rx: mpsc::Receiver<SealedPack>,
) -> Result<Uploaded, RepoError> {
    let mut in_flight = FuturesUnordered::new();
    let mut pending: Vec<IndexPack> = Vec::new();
    let mut done = Uploaded { packs: 0, bytes: 0 };
    let mut open = true;
    while open || !in_flight.is_empty() {
        tokio::select! {
            pack = rx.recv(), if open && in_flight.len() < UPLOADS_IN_FLIGHT => match pack {
                Some(pack) => in_flight.push(upload(objects.clone(), pack)),
                None => open = false,
            },
            Some(result) = in_flight.next() => {
                let entry = result?;
                done.packs += 1;
                done.bytes += entry.size;
                pending.push(entry);
                if pending.len() >= PACKS_PER_INDEX {
                    write_index(&objects, &key, std::mem::take(&mut pending)).await?;
                }
            }
        }
    }
    if !pending.is_empty() {
        write_index(&objects, &key, pending).await?;
    }
    Ok(done)
}

async fn upload(objects: Objects, pack: SealedPack) -> Result<IndexPack, RepoError> {
    let size = pack.bytes.len() as u64;
    objects.put_new(&pack_key(&pack.id), pack.bytes).await?;
    Ok(IndexPack {
        id: pack.id,
        kind: pack.kind,
        size,
        blobs: pack.blobs,
    })
}

pub(crate) async fn write_index(
    objects: &Objects,
    key: &RepoKey,
    packs: Vec<IndexPack>,
) -> Result<(), RepoError> {
    let file = IndexFile { packs };
    let bytes = crate::repository::object_io::seal_json(key, "index", &file)?;
    objects.put_new(&index_key(&Id::of(&bytes)), bytes.into()).await
}
