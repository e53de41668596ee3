//! Building a pack while blobs arrive, encrypting as it goes.

use bytes::Bytes;

use super::PackedBlob;
use crate::blob::{BlobId, BlobKind, PackId, skippable_frame};
use crate::crypto::{CryptoError, RepoKey};

/// A pack being filled. Plaintext is encrypted as it is added, so memory holds only the
/// ciphertext so far.
pub struct PackWriter {
    kind: BlobKind,
    writer: age::stream::StreamWriter<Vec<u8>>,
    plain_len: u64,
    blobs: Vec<PackedBlob>,
}

/// A finished pack, ready to upload.
#[derive(Debug, Clone)]
pub struct SealedPack {
    /// BLAKE3 of `bytes`.
    pub id: PackId,
    /// Data or tree.
    pub kind: BlobKind,
    /// The age file.
    pub bytes: Bytes,
    /// Its blobs.
    pub blobs: Vec<PackedBlob>,
}

#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct Trailer {
    pub(crate) kind: BlobKind,
    pub(crate) blobs: Vec<PackedBlob>,
}

impl PackWriter {
    /// Starts an empty pack of `kind` blobs.
    pub fn new(key: &RepoKey, kind: BlobKind, capacity: usize) -> Result<Self, CryptoError> {
        let writer = key.encrypt_to(Vec::with_capacity(capacity), "new pack")?;
        Ok(Self {
            kind,
            writer,
            plain_len: 0,
            blobs: Vec::new(),
        })
    }

    /// Appends one blob's zstd frame.
    pub fn add(&mut self, id: BlobId, frame: &[u8], raw_length: usize) -> Result<(), CryptoError> {
        std::io::Write::write_all(&mut self.writer, frame).map_err(|e| CryptoError::Encrypt {
            object: "new pack".to_string(),
            message: e.to_string(),
        })?;
        self.blobs.push(PackedBlob {
            id,
            offset: self.plain_len as u32,
            length: frame.len() as u32,
            raw_length: raw_length as u32,
        });
        self.plain_len += frame.len() as u64;
        Ok(())
    }

    /// Plaintext bytes so far.
    pub fn len(&self) -> u64 {
        self.plain_len
    }

    /// True before the first blob.
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    /// Appends the trailer, finishes encryption and names the pack by its bytes.
    pub fn seal(mut self) -> Result<SealedPack, CryptoError> {
        let err = |e: std::io::Error| CryptoError::Encrypt {
            object: "new pack".to_string(),
            message: e.to_string(),
        };
        let trailer = Trailer {
            kind: self.kind,
            blobs: self.blobs,
        };
        let json = serde_json::to_vec(&trailer).map_err(|e| err(std::io::Error::other(e)))?;
        std::io::Write::write_all(&mut self.writer, &skippable_frame(&json)).map_err(err)?;
        let bytes = self.writer.finish().map_err(err)?;
        Ok(SealedPack {
            id: PackId::of(&bytes),
            kind: trailer.kind,
            bytes: Bytes::from(bytes),
            blobs: trailer.blobs,
        })
    }
}
