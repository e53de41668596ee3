//! Reading a pack front to back as it downloads, one frame at a time: the restore path. It
//! never holds a whole pack (ciphertext or plaintext), and decoding overlaps the download.
//!
//! Integrity: age authenticates each 64 KiB chunk before returning any of it, and the end of
//! the stream; the pack's name (BLAKE3 of its ciphertext) is checked by [`PackStream::finish`]
//! once every byte has passed. Until then the caller must treat what it wrote from the pack
//! as provisional, and undo it if `finish` fails.

use std::cell::RefCell;
use std::io::{BufRead, Read};
use std::rc::Rc;

use super::{PackError, PackedBlob};
use crate::blob::PackId;
use crate::crypto::RepoKey;

/// See the module documentation.
pub struct PackStream<R: BufRead> {
    key: String,
    id: PackId,
    reader: age::stream::StreamReader<Hashing<R>>,
    hasher: Rc<RefCell<blake3::Hasher>>,
    /// Plaintext offset of the next byte `reader` returns.
    pos: u64,
    /// Set once the stream failed; nothing after that point can be trusted.
    broken: Option<String>,
}

impl<R: BufRead> PackStream<R> {
    /// Starts decrypting pack `id`, stored under `key`, from its ciphertext `input`.
    pub fn open(repo_key: &RepoKey, id: &PackId, key: &str, input: R) -> Result<Self, PackError> {
        let hasher = Rc::new(RefCell::new(blake3::Hasher::new()));
        let hashing = Hashing {
            inner: input,
            hasher: hasher.clone(),
        };
        Ok(Self {
            key: key.to_string(),
            id: *id,
            reader: repo_key.decrypt_reader(hashing, key)?,
            hasher,
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
        let gap = offset - self.pos;
        let read =
            std::io::copy(&mut (&mut self.reader).take(gap), &mut std::io::sink()).and_then(|skipped| {
                if skipped == gap {
                    self.reader.read_exact(frame)
                } else {
                    Err(std::io::ErrorKind::UnexpectedEof.into())
                }
            });
        if let Err(e) = read {
            let why = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                "the pack ends before this frame".to_string()
            } else {
                format!("cannot read the pack: {e}")
            };
            self.broken = Some(why.clone());
            return Err(self.blob_error(entry, why));
        }
        self.pos = offset + u64::from(entry.length);
        Ok(frame)
    }

    /// Reads the rest of the pack and checks that it hashes to its name. Only after this
    /// succeeds is what was read from it known to be the pack the index named.
    pub fn finish(mut self) -> Result<(), PackError> {
        if let Some(message) = self.broken {
            return Err(PackError::Trailer {
                key: self.key,
                message,
            });
        }
        std::io::copy(&mut self.reader, &mut std::io::sink()).map_err(|e| PackError::Trailer {
            key: self.key.clone(),
            message: format!("cannot read the pack: {e}"),
        })?;
        if *self.hasher.borrow().finalize().as_bytes() != self.id.0 {
            return Err(PackError::WrongHash { key: self.key });
        }
        Ok(())
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

/// Passes a reader through, hashing every byte taken from it.
struct Hashing<R> {
    inner: R,
    hasher: Rc<RefCell<blake3::Hasher>>,
}

impl<R: BufRead> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.borrow_mut().update(&buf[..n]);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Hashing<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, n: usize) {
        // The bytes being consumed are the front of what `fill_buf` returned.
        if let Ok(available) = self.inner.fill_buf() {
            self.hasher
                .borrow_mut()
                .update(&available[..n.min(available.len())]);
        }
        self.inner.consume(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::{BlobId, BlobKind, decompress};
    use crate::crypto::PartsReader;
    use crate::pack::PackWriter;

    /// Six blobs of different lengths, each spanning a few of age's 64 KiB chunks.
    fn six_blobs() -> Vec<Vec<u8>> {
        (0..6u8)
            .map(|i| vec![i; 50_000 + usize::from(i) * 7_001])
            .collect()
    }

    fn pack_of(key: &RepoKey, blobs: &[Vec<u8>]) -> crate::pack::SealedPack {
        let mut w = PackWriter::new(key, BlobKind::Data, 0).unwrap();
        for b in blobs {
            let frame = crate::blob::raw_frame(b);
            w.add(BlobId::keyed(key.chunk_id_key(), b), &frame, b.len())
                .unwrap();
        }
        w.seal().unwrap()
    }

    #[test]
    fn frames_come_in_order_and_the_name_is_checked_at_the_end() {
        let key = RepoKey::generate();
        let blobs = six_blobs();
        let sealed = pack_of(&key, &blobs);
        let parts: Vec<&[u8]> = sealed.bytes.chunks(10_007).collect();
        let mut buf = Vec::new();

        // Every other blob, in order: the skipped ones are read past.
        let mut stream = PackStream::open(&key, &sealed.id, "p", PartsReader::new(&parts)).unwrap();
        for i in [1, 3, 5] {
            let frame = stream.frame(&sealed.blobs[i], &mut buf).unwrap();
            assert_eq!(decompress(frame, blobs[i].len()).unwrap(), blobs[i]);
        }
        stream.finish().unwrap();

        // Going back is refused.
        let mut stream = PackStream::open(&key, &sealed.id, "p", PartsReader::new(&parts)).unwrap();
        stream.frame(&sealed.blobs[3], &mut buf).unwrap();
        assert!(stream.frame(&sealed.blobs[2], &mut buf).is_err());

        // Another valid pack under this one's name: every frame reads, the name check fails.
        let other = pack_of(&key, &blobs);
        let other_parts = [&other.bytes[..]];
        let stream = PackStream::open(&key, &sealed.id, "p", PartsReader::new(&other_parts)).unwrap();
        assert!(matches!(stream.finish(), Err(PackError::WrongHash { .. })));
    }

    #[test]
    fn damage_fails_its_frame_and_everything_after_it() {
        let key = RepoKey::generate();
        let blobs = six_blobs();
        let sealed = pack_of(&key, &blobs);
        let mut bad = sealed.bytes.to_vec();
        let at = bad.len() / 2;
        bad[at] ^= 1;
        let bad_parts = [&bad[..]];
        let mut stream = PackStream::open(&key, &sealed.id, "p", PartsReader::new(&bad_parts)).unwrap();
        let mut buf = Vec::new();
        let results: Vec<bool> = sealed
            .blobs
            .iter()
            .map(|e| stream.frame(e, &mut buf).is_ok())
            .collect();
        assert!(results[0] && !results[5], "{results:?}");
        let first_bad = results.iter().position(|ok| !ok).unwrap();
        assert!(results[first_bad..].iter().all(|ok| !ok), "{results:?}");
        assert!(stream.finish().is_err());

        // Cut short: the end is missing, so the stream is refused at the end too.
        let short = [&sealed.bytes[..sealed.bytes.len() - 100]];
        let stream = PackStream::open(&key, &sealed.id, "p", PartsReader::new(&short)).unwrap();
        assert!(stream.finish().is_err());
    }
}
