//! Reading blobs back out of a downloaded pack.

use super::PackedBlob;
use super::writer::Trailer;
use crate::blob::{BlobId, BlobKind, PackId, decompress};
use crate::crypto::{CryptoError, RepoKey};

/// Why a pack or a blob in it could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// Decryption failed: the pack was altered or is not ours.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The pack's own blob list does not record a blob where the index puts it: the object
    /// is another pack, or the index is wrong about it.
    #[error(
        "pack {key}: its own blob list does not record blob {blob} where the index puts it (another pack stored under this name, or a damaged index; a check of the repository tells which)"
    )]
    NotThePack {
        /// The pack's object key.
        key: String,
        /// The blob.
        blob: BlobId,
    },
    /// A blob decoded cleanly but is not the content its id names (keyed BLAKE3 under the
    /// repository's chunk-id key). Age does not prove who wrote a pack: anyone with the
    /// repository's public recipient can encrypt one, name it by its hash and list it in an
    /// index. Only this check needs the repository key, so every read for a restore makes it.
    #[error(
        "pack {key}: blob {blob} does not match its id: the pack is damaged, or was written by \
         someone without the repository key; none of its bytes were used"
    )]
    BlobMismatch {
        /// The pack's object key.
        key: String,
        /// The blob.
        blob: BlobId,
    },
    /// The pack's bytes do not hash to its name.
    #[error("pack {key}: content does not match its name (corrupted in storage)")]
    WrongHash {
        /// The pack's object key.
        key: String,
    },
    /// A blob's frame is outside the pack or does not decode.
    #[error("pack {key}: blob {blob}: {message}")]
    Blob {
        /// The pack's object key.
        key: String,
        /// The blob.
        blob: BlobId,
        /// What is wrong.
        message: String,
    },
    /// The trailer listing the pack's blobs is missing or unreadable.
    #[error("pack {key}: no readable blob list: {message}")]
    Trailer {
        /// The pack's object key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// A decrypted pack.
pub struct OpenPack {
    key: String,
    plaintext: Vec<u8>,
}

impl OpenPack {
    /// Verifies and decrypts a pack downloaded from `key`, given as the parts it arrived in
    /// (so they need not be copied together first).
    pub fn open<P: AsRef<[u8]>>(
        repo_key: &RepoKey,
        id: &PackId,
        key: &str,
        parts: &[P],
    ) -> Result<Self, PackError> {
        if PackId::of_parts(parts) != *id {
            return Err(PackError::WrongHash { key: key.to_string() });
        }
        Ok(Self {
            key: key.to_string(),
            plaintext: repo_key.decrypt_parts(parts, key)?,
        })
    }

    /// One blob's content, verified against its id ([`PackError::BlobMismatch`] if it is not
    /// the content the id names). There is no unverified read: age authenticates the pack's
    /// bytes, not its author.
    pub fn blob(&self, entry: &PackedBlob, chunk_id_key: &[u8; 32]) -> Result<Vec<u8>, PackError> {
        let data = self.decode(entry)?;
        if BlobId::keyed(chunk_id_key, &data) != entry.id {
            return Err(PackError::BlobMismatch {
                key: self.key.clone(),
                blob: entry.id,
            });
        }
        Ok(data)
    }

    /// One blob's content, decoded but not yet checked against its id.
    fn decode(&self, entry: &PackedBlob) -> Result<Vec<u8>, PackError> {
        if let Some(why) = entry.impossible_length() {
            return Err(self.bad_blob(entry, why));
        }
        let frame = self.frame(entry)?;
        decompress(frame, entry.raw_length as usize).map_err(|e| self.bad_blob(entry, e.to_string()))
    }

    fn frame(&self, entry: &PackedBlob) -> Result<&[u8], PackError> {
        let start = entry.offset as usize;
        let end = start + entry.length as usize;
        self.plaintext
            .get(start..end)
            .ok_or_else(|| self.bad_blob(entry, format!("frame {start}..{end} is outside the pack")))
    }

    fn bad_blob(&self, entry: &PackedBlob, message: String) -> PackError {
        PackError::Blob {
            key: self.key.clone(),
            blob: entry.id,
            message,
        }
    }

    /// The blob list recorded in the pack itself (for rebuilding an index).
    pub fn trailer(&self) -> Result<(BlobKind, Vec<PackedBlob>), PackError> {
        find_trailer(&self.plaintext).map_err(|message| PackError::Trailer {
            key: self.key.clone(),
            message,
        })
    }
}

/// The blob list at the end of a pack's plaintext (or of any tail of it that holds the list):
/// the last frame, a skippable frame whose length reaches exactly to the end.
pub(super) fn find_trailer(p: &[u8]) -> Result<(BlobKind, Vec<PackedBlob>), String> {
    let mut pos = p.len().checked_sub(8).ok_or("pack too short")?;
    loop {
        if p[pos..pos + 4] == 0x184D_2A5Bu32.to_le_bytes() {
            let len = u32::from_le_bytes([p[pos + 4], p[pos + 5], p[pos + 6], p[pos + 7]]) as usize;
            if pos + 8 + len == p.len() {
                let t: Trailer = serde_json::from_slice(&p[pos + 8..]).map_err(|e| e.to_string())?;
                return Ok((t.kind, t.blobs));
            }
        }
        pos = pos.checked_sub(1).ok_or("no trailer frame")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::{Compression, compress};
    use crate::pack::PackWriter;

    #[test]
    fn blobs_round_trip_and_the_trailer_lists_them() {
        let key = RepoKey::generate();
        let mut w = PackWriter::new(&key, BlobKind::Data, 0).unwrap();
        let blobs: Vec<Vec<u8>> = vec![b"alpha".repeat(1000), vec![9u8; 70_000], b"x".to_vec()];
        for b in &blobs {
            w.add(
                BlobId::keyed(key.chunk_id_key(), b),
                &compress(b, Compression::default()),
                b.len(),
            )
            .unwrap();
        }
        let sealed = w.seal().unwrap();
        let open = OpenPack::open(&key, &sealed.id, "p", &[&sealed.bytes]).unwrap();
        for (entry, data) in sealed.blobs.iter().zip(&blobs) {
            assert_eq!(&open.blob(entry, key.chunk_id_key()).unwrap(), data);
        }
        let (kind, listed) = open.trailer().unwrap();
        assert_eq!(kind, BlobKind::Data);
        assert_eq!(listed, sealed.blobs);

        let mut bad = sealed.bytes.to_vec();
        bad[100] ^= 1;
        assert!(matches!(
            OpenPack::open(&key, &sealed.id, "p", &[&bad]),
            Err(PackError::WrongHash { .. })
        ));
    }
}
