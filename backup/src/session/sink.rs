//! Turning content into stored blobs, one worker at a time.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::SessionShared;
use crate::blob::{BlobId, BlobKind, compress};
use crate::chunker::{ChunkerParams, chunk_slice};
use crate::pack::PackWriter;
use crate::repository::RepoError;

/// A worker's writer: deduplicates, compresses and packs blobs, handing full packs to the
/// uploader. Each worker has its own, so packing and encryption run in parallel.
pub struct BlobSink {
    shared: Arc<SessionShared>,
    kind: BlobKind,
    pack: Option<PackWriter>,
}

impl BlobSink {
    /// A sink for `kind` blobs.
    pub fn new(shared: Arc<SessionShared>, kind: BlobKind) -> Self {
        Self {
            shared,
            kind,
            pack: None,
        }
    }

    /// Stores `data` unless the repository (or this session) has it; returns its id.
    /// [`RepoError::BlobTooLarge`] past [`crate::pack::MAX_BLOB_LENGTH`].
    pub fn put(&mut self, data: &[u8]) -> Result<BlobId, RepoError> {
        if data.len() > crate::pack::MAX_BLOB_LENGTH as usize {
            return Err(RepoError::BlobTooLarge { length: data.len() });
        }
        let id = BlobId::keyed(self.shared.key.chunk_id_key(), data);
        if self.shared.index.contains(&id) {
            return Ok(id);
        }
        {
            let mut seen = self.shared.seen.lock().unwrap_or_else(|p| p.into_inner());
            if !seen.insert(id) {
                return Ok(id);
            }
        }
        let frame = compress(data, self.shared.compression);
        let capacity = self.shared.pack_size as usize + 1024 * 1024;
        let pack = match &mut self.pack {
            Some(p) => p,
            None => self
                .pack
                .insert(PackWriter::new(&self.shared.key, self.kind, capacity)?),
        };
        pack.add(id, &frame, data.len())?;
        self.shared
            .new_bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        self.shared.new_blobs.fetch_add(1, Ordering::Relaxed);
        if pack.len() >= self.shared.pack_size {
            self.flush()?;
        }
        Ok(id)
    }

    /// Splits `data` into content-defined chunks with `params` (seeded like every other chunk
    /// of the repository) and stores each; returns their ids in order. For sources that read
    /// their content in bounded pieces themselves (a volume's segments).
    pub fn put_chunked(&mut self, data: &[u8], params: ChunkerParams) -> Result<Vec<BlobId>, RepoError> {
        let seed = self.shared.seed;
        chunk_slice(data, params, seed).map(|c| self.put(c)).collect()
    }

    /// Seals and hands over the open pack, if any.
    pub fn flush(&mut self) -> Result<(), RepoError> {
        if let Some(pack) = self.pack.take() {
            if pack.is_empty() {
                return Ok(());
            }
            let sealed = pack.seal()?;
            self.shared
                .tx
                .blocking_send(sealed)
                .map_err(|_| RepoError::UploaderStopped)?;
        }
        Ok(())
    }

    /// Flushes and ends this sink.
    pub fn finish(mut self) -> Result<(), RepoError> {
        self.flush()
    }
}
