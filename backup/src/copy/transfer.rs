//! Moving one object: a pack streamed from the source with its name checked as it arrives,
//! and writes at the destination (create-only, or with an object lock retention).

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use object_store::PutPayload;

use super::bandwidth::Bandwidth;
use crate::blob::PackId;
use crate::pack::pack_key;
use crate::progress::Progress;
use crate::repository::RepoError;
use crate::repository::object_io::Objects;
use crate::store::ObjectLock;
use crate::store::object_lock::{LockError, Retention};

/// Why one pack was not copied.
#[derive(Debug)]
pub(super) enum TransferError {
    /// The source's pack is damaged or gone: report it, copy the rest.
    Damaged(String),
    /// The stores failed: stop the copy (running it again resumes).
    Failed(super::CopyError),
}

impl From<RepoError> for TransferError {
    fn from(e: RepoError) -> Self {
        Self::Failed(e.into())
    }
}

impl From<LockError> for TransferError {
    fn from(e: LockError) -> Self {
        Self::Failed(e.into())
    }
}

/// Where copies go, and how they are written.
#[derive(Clone)]
pub(super) struct Writer {
    pub(super) objects: Objects,
    pub(super) lock: Option<(Arc<ObjectLock>, Retention)>,
}

impl Writer {
    /// Writes `key` once: create-only, or with the copy's retention.
    pub(super) async fn put(&self, key: &str, parts: Vec<Bytes>) -> Result<(), TransferError> {
        match &self.lock {
            None => {
                let payload: PutPayload = parts.into_iter().collect();
                self.objects.put_new_payload(key, payload).await?;
            }
            Some((lock, retention)) => {
                let whole = if parts.len() == 1 {
                    parts.into_iter().next().unwrap_or_default()
                } else {
                    Bytes::from(parts.concat())
                };
                lock.put(key, whole, retention).await?;
            }
        }
        Ok(())
    }
}

/// Streams pack `id` (`size` bytes) from `source` to `writer`, hashing every chunk as it
/// arrives; writes it only if the bytes hash to its name and have the size the index says.
pub(super) async fn pack(
    source: &Objects,
    writer: &Writer,
    id: PackId,
    size: u64,
    limit: Option<&Bandwidth>,
    progress: &Progress,
) -> Result<(), TransferError> {
    let key = pack_key(&id);
    let mut body = match source.get_body(&key).await {
        Ok(b) => b,
        Err(RepoError::NotFound { .. }) => {
            return Err(TransferError::Damaged("missing from the source".to_string()));
        }
        Err(e) => return Err(e.into()),
    };
    let mut hasher = blake3::Hasher::new();
    let mut parts = Vec::new();
    let mut received = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        if let Some(l) = limit {
            l.take(chunk.len()).await;
        }
        received += chunk.len() as u64;
        if received > size {
            return Err(TransferError::Damaged(format!(
                "longer than the {size} bytes the index says"
            )));
        }
        hasher.update(&chunk);
        progress.add_done(chunk.len() as u64, 0);
        parts.push(chunk);
    }
    if received != size {
        return Err(TransferError::Damaged(format!(
            "is {received} bytes, the index says {size}"
        )));
    }
    if *hasher.finalize().as_bytes() != id.0 {
        return Err(TransferError::Damaged(
            "its bytes do not hash to its name (damaged in the source); not copied".to_string(),
        ));
    }
    writer.put(&key, parts).await?;
    progress.add_done(0, 1);
    Ok(())
}
