//! Reading blobs back out of a downloaded pack.

use super::PackedBlob;
use super::writer::Trailer;
use std::io::Read;

use crate::blob::{BlobId, BlobKind, PackId, decompress};
use crate::crypto::{CryptoError, PartsReader, RepoKey};

/// Why a pack or a blob in it could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// Decryption failed: the pack was altered or is not ours.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
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
    /// The plaintext is `buffer[..len]`.
    buffer: Vec<u8>,
    len: usize,
}

impl OpenPack {
    /// Verifies and decrypts a pack downloaded from `key`, given as the parts it arrived in,
    /// into `buffer` (pass the [`Self::into_buffer`] of an earlier pack to reuse its memory,
    /// or an empty one).
    pub fn open<P: AsRef<[u8]>>(
        repo_key: &RepoKey,
        id: &PackId,
        key: &str,
        parts: &[P],
        buffer: Vec<u8>,
    ) -> Result<Self, PackError> {
        if PackId::of_parts(parts) != *id {
            return Err(PackError::WrongHash { key: key.to_string() });
        }
        let mut open = Self {
            key: key.to_string(),
            buffer,
            len: 0,
        };
        open.len = repo_key.decrypt_into(parts, key, &mut open.buffer)?;
        Ok(open)
    }

    fn plaintext(&self) -> &[u8] {
        &self.buffer[..self.len]
    }

    /// The memory the plaintext occupied, for the next [`Self::open`].
    pub fn into_buffer(self) -> Vec<u8> {
        self.buffer
    }

    /// One blob's content, verified against its id.
    pub fn blob(&self, entry: &PackedBlob, chunk_id_key: &[u8; 32]) -> Result<Vec<u8>, PackError> {
        let data = self.blob_unverified(entry)?;
        if BlobId::keyed(chunk_id_key, &data) != entry.id {
            return Err(PackError::Blob {
                key: self.key.clone(),
                blob: entry.id,
                message: "content does not match its id".to_string(),
            });
        }
        Ok(data)
    }

    /// One blob's content without re-hashing it. Safe where speed matters (restore): age has
    /// already authenticated every byte of the pack, and a wrong offset fails the zstd frame
    /// or length check. `repo check --read-data` still verifies ids.
    pub fn blob_unverified(&self, entry: &PackedBlob) -> Result<Vec<u8>, PackError> {
        let frame = self.frame(entry)?;
        decompress(frame, entry.raw_length as usize).map_err(|e| self.bad_blob(entry, e.to_string()))
    }

    fn frame(&self, entry: &PackedBlob) -> Result<&[u8], PackError> {
        let start = entry.offset as usize;
        let end = start + entry.length as usize;
        self.plaintext()
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
        let bad = |message: &str| PackError::Trailer {
            key: self.key.clone(),
            message: message.to_string(),
        };
        // The trailer is the last frame: scan back for a skippable-frame header whose length
        // reaches exactly to the end of the plaintext.
        let p = self.plaintext();
        let mut pos = p.len().checked_sub(8).ok_or_else(|| bad("pack too short"))?;
        loop {
            if p[pos..pos + 4] == 0x184D_2A5Bu32.to_le_bytes() {
                let len = u32::from_le_bytes([p[pos + 4], p[pos + 5], p[pos + 6], p[pos + 7]]) as usize;
                if pos + 8 + len == p.len() {
                    let t: Trailer =
                        serde_json::from_slice(&p[pos + 8..]).map_err(|e| bad(&e.to_string()))?;
                    return Ok((t.kind, t.blobs));
                }
            }
            pos = pos.checked_sub(1).ok_or_else(|| bad("no trailer frame"))?;
        }
    }
}

/// A pack read front to back, one frame at a time, without holding its whole plaintext: the
/// restore path, which needs each blob once and in pack order.
pub struct PackStream<'a, P> {
    key: String,
    reader: age::stream::StreamReader<PartsReader<'a, P>>,
    /// Plaintext offset of the next byte `reader` returns.
    pos: u64,
    /// Set once the stream failed; nothing after that point can be trusted.
    broken: Option<String>,
}

impl<'a, P: AsRef<[u8]>> PackStream<'a, P> {
    /// Verifies a pack downloaded from `key` (given as the parts it arrived in) against its
    /// id and starts decrypting it.
    pub fn open(repo_key: &RepoKey, id: &PackId, key: &str, parts: &'a [P]) -> Result<Self, PackError> {
        if PackId::of_parts(parts) != *id {
            return Err(PackError::WrongHash { key: key.to_string() });
        }
        Ok(Self {
            key: key.to_string(),
            reader: repo_key.decrypt_reader(parts, key)?,
            pos: 0,
            broken: None,
        })
    }

    /// Reads the frame of `entry` into the start of `buf` (grown when too short, never shrunk,
    /// so a reused buffer is not zeroed again). Entries must come in increasing offset order;
    /// the bytes between them are decrypted and dropped.
    pub fn frame<'b>(&mut self, entry: &PackedBlob, buf: &'b mut Vec<u8>) -> Result<&'b [u8], PackError> {
        if let Some(why) = &self.broken {
            return Err(self.blob_error(entry, why.clone()));
        }
        let offset = u64::from(entry.offset);
        if offset < self.pos {
            return Err(self.blob_error(
                entry,
                format!("frame at {offset} is behind the stream ({})", self.pos),
            ));
        }
        let len = entry.length as usize;
        if buf.len() < len {
            buf.resize(len, 0);
        }
        let frame = &mut buf[..len];
        let read = std::io::copy(
            &mut (&mut self.reader).take(offset - self.pos),
            &mut std::io::sink(),
        )
        .and_then(|skipped| {
            if skipped == offset - self.pos {
                self.reader.read_exact(frame)
            } else {
                Err(std::io::ErrorKind::UnexpectedEof.into())
            }
        });
        if let Err(e) = read {
            let why = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                "the pack ends before this frame".to_string()
            } else {
                format!("decryption failed: {e}")
            };
            self.broken = Some(why.clone());
            return Err(self.blob_error(entry, why));
        }
        self.pos = offset + u64::from(entry.length);
        Ok(frame)
    }

    /// An error about one blob of this pack.
    pub fn blob_error(&self, entry: &PackedBlob, message: String) -> PackError {
        PackError::Blob {
            key: self.key.clone(),
            blob: entry.id,
            message,
        }
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
        let open = OpenPack::open(&key, &sealed.id, "p", &[&sealed.bytes], Vec::new()).unwrap();
        for (entry, data) in sealed.blobs.iter().zip(&blobs) {
            assert_eq!(&open.blob(entry, key.chunk_id_key()).unwrap(), data);
        }
        let (kind, listed) = open.trailer().unwrap();
        assert_eq!(kind, BlobKind::Data);
        assert_eq!(listed, sealed.blobs);

        let mut bad = sealed.bytes.to_vec();
        bad[100] ^= 1;
        assert!(matches!(
            OpenPack::open(&key, &sealed.id, "p", &[&bad], Vec::new()),
            Err(PackError::WrongHash { .. })
        ));
    }

    #[test]
    fn a_stream_reads_frames_in_order_and_stops_at_damage() {
        let key = RepoKey::generate();
        let mut w = PackWriter::new(&key, BlobKind::Data, 0).unwrap();
        let blobs: Vec<Vec<u8>> = (0..6u8)
            .map(|i| vec![i; 50_000 + usize::from(i) * 7_001])
            .collect();
        for b in &blobs {
            let frame = crate::blob::raw_frame(b);
            w.add(BlobId::keyed(key.chunk_id_key(), b), &frame, b.len())
                .unwrap();
        }
        let sealed = w.seal().unwrap();
        let parts: Vec<&[u8]> = sealed.bytes.chunks(10_007).collect();
        let mut buf = Vec::new();

        // Every other blob, in order: the skipped ones are read past.
        let mut stream = PackStream::open(&key, &sealed.id, "p", &parts).unwrap();
        for i in [1, 3, 5] {
            let frame = stream.frame(&sealed.blobs[i], &mut buf).unwrap();
            assert_eq!(decompress(frame, blobs[i].len()).unwrap(), blobs[i]);
        }
        // Going back is refused.
        assert!(stream.frame(&sealed.blobs[2], &mut buf).is_err());

        // Damage in the middle: blobs before it are fine, it and everything after fail.
        let mut bad = sealed.bytes.to_vec();
        let at = sealed.bytes.len() / 2;
        bad[at] ^= 1;
        let bad_id = PackId::of(&bad);
        let bad_parts = [&bad[..]];
        let mut stream = PackStream::open(&key, &bad_id, "p", &bad_parts).unwrap();
        let mut results = Vec::new();
        for entry in &sealed.blobs {
            results.push(stream.frame(entry, &mut buf).is_ok());
        }
        assert!(results[0], "{results:?}");
        assert!(!results[5], "{results:?}");
        let first_bad = results.iter().position(|ok| !ok).unwrap();
        assert!(results[first_bad..].iter().all(|ok| !ok), "{results:?}");

        // A pack that does not hash to its name is refused before decrypting.
        assert!(matches!(
            PackStream::open(&key, &sealed.id, "p", &[&bad]),
            Err(PackError::WrongHash { .. })
        ));
    }
}
