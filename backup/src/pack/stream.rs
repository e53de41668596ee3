//! Reading a pack front to back as it downloads, one frame at a time: the restore path. It
//! never holds a whole pack (ciphertext or plaintext), and decoding overlaps the download.
//!
//! Integrity: age authenticates each 64 KiB chunk before returning any of it, and the end of
//! the stream, so every byte read is a byte the pack's writer wrote, unaltered and uncut. That
//! it is the pack the index names, with each blob where the index says, is checked by
//! [`PackStream::finish`] against the pack's own blob list (its trailer, authenticated with the
//! rest) once every byte has passed: another pack stored under this name, or an index that
//! disagrees with the pack, fails there. (Hashing the whole ciphertext against the pack's name
//! would check the same, and one more thing that cannot change the data: that the same
//! plaintext was not encrypted again. It cost 8 % of a restore's CPU; `repo check` still does
//! it.) Until `finish` succeeds the caller must treat what it wrote from the pack as
//! provisional, and undo it if `finish` fails.

use std::collections::HashMap;
use std::io::{BufRead, Read};

use super::reader::find_trailer;
use super::{PackError, PackedBlob};
use crate::blob::decompress_into;
use crate::crypto::RepoKey;

/// See the module documentation.
pub struct PackStream<R: BufRead> {
    key: String,
    reader: age::stream::StreamReader<R>,
    /// Plaintext offset of the next byte `reader` returns.
    pos: u64,
    /// Set once the stream failed; nothing after that point can be trusted.
    broken: Option<String>,
}

impl<R: BufRead> PackStream<R> {
    /// Starts decrypting the pack stored under `key` from its ciphertext `input`.
    pub fn open(repo_key: &RepoKey, key: &str, input: R) -> Result<Self, PackError> {
        Ok(Self {
            key: key.to_string(),
            reader: repo_key.decrypt_reader(input, key)?,
            pos: 0,
            broken: None,
        })
    }

    /// Reads the frame of `entry` into the start of `buf` (grown when too short, never shrunk,
    /// so a reused buffer is not zeroed again). Entries must come in increasing offset order;
    /// the bytes between them are decrypted and dropped.
    pub fn frame<'b>(&mut self, entry: &PackedBlob, buf: &'b mut Vec<u8>) -> Result<&'b [u8], PackError> {
        self.skip_to(entry)?;
        let len = entry.length as usize;
        if buf.len() < len {
            buf.resize(len, 0);
        }
        self.read_exact(entry, &mut buf[..len])?;
        Ok(&buf[..len])
    }

    /// Decodes the blob of `entry` into `out`, which must be exactly its raw length. Raw-block
    /// frames (incompressible data, about half a typical backup) are decrypted straight into
    /// `out`, block by block, without passing through `frame`; other frames are read into
    /// `frame` (grown, never shrunk) and decompressed into `out`. Entries must come in
    /// increasing offset order. A frame that does not decode fails this blob only: the stream
    /// goes on after it.
    pub fn decode_into(
        &mut self,
        entry: &PackedBlob,
        frame: &mut Vec<u8>,
        out: &mut [u8],
    ) -> Result<(), PackError> {
        self.skip_to(entry)?;
        let end = u64::from(entry.offset) + u64::from(entry.length);
        let decoded = self.decode_frame(entry, frame, out);
        if self.broken.is_none() && self.pos < end {
            // A frame refused part-way: the next one starts after it.
            self.read_through(entry, end - self.pos)?;
        }
        decoded
    }

    /// [`Self::decode_into`] from the frame's first byte.
    fn decode_frame(
        &mut self,
        entry: &PackedBlob,
        frame: &mut Vec<u8>,
        out: &mut [u8],
    ) -> Result<(), PackError> {
        let length = entry.length as usize;
        let mut head = [0u8; 13];
        let probe = length.min(5);
        self.read_exact(entry, &mut head[..probe])?;
        let Some(header_len) = raw_header_len(&head[..probe]).filter(|n| *n <= length) else {
            return self.decode_whole(entry, &head[..probe], &[], frame, out);
        };
        self.read_exact(entry, &mut head[probe..header_len])?;
        let size = match header_len {
            9 => u64::from(u32::from_le_bytes([head[5], head[6], head[7], head[8]])),
            _ => u64::from_le_bytes([
                head[5], head[6], head[7], head[8], head[9], head[10], head[11], head[12],
            ]),
        };
        let expected = out.len();
        let wrong = |got: u64| format!("decoded {got} bytes, expected {expected}");
        if size != out.len() as u64 {
            return Err(self.blob_error(entry, wrong(size)));
        }
        // (header, payload length) of each raw block read so far, to rebuild the frame for
        // zstd if a compressed block follows.
        let mut blocks: Vec<([u8; 3], usize)> = Vec::new();
        let (mut at, mut consumed) = (0usize, header_len);
        loop {
            if consumed + 3 > length {
                return Err(self.blob_error(entry, "the frame ends inside a block".to_string()));
            }
            let mut block = [0u8; 3];
            self.read_exact(entry, &mut block)?;
            consumed += 3;
            let h = u32::from(block[0]) | u32::from(block[1]) << 8 | u32::from(block[2]) << 16;
            let len = (h >> 3) as usize;
            if (h >> 1) & 3 != 0 {
                // Not a raw block: zstd decodes the whole frame.
                let mut rebuilt = Vec::with_capacity(blocks.len() * 3 + at + 3);
                let mut from = 0;
                for (header, n) in &blocks {
                    rebuilt.extend_from_slice(header);
                    rebuilt.extend_from_slice(&out[from..from + n]);
                    from += n;
                }
                rebuilt.extend_from_slice(&block);
                return self.decode_whole(entry, &head[..header_len], &rebuilt, frame, out);
            }
            if at + len > out.len() || consumed + len > length {
                return Err(self.blob_error(entry, wrong((at + len) as u64)));
            }
            self.read_exact(entry, &mut out[at..at + len])?;
            blocks.push((block, len));
            at += len;
            consumed += len;
            if h & 1 == 1 {
                break;
            }
        }
        if consumed != length || at != out.len() {
            return Err(self.blob_error(
                entry,
                format!("the frame's blocks hold {at} bytes in {consumed} of its {length}"),
            ));
        }
        Ok(())
    }

    /// Reads the rest of a frame whose first bytes were `head` then `read`, into `frame`, and
    /// decompresses it into `out`.
    fn decode_whole(
        &mut self,
        entry: &PackedBlob,
        head: &[u8],
        read: &[u8],
        frame: &mut Vec<u8>,
        out: &mut [u8],
    ) -> Result<(), PackError> {
        let length = entry.length as usize;
        let done = head.len() + read.len();
        if frame.len() < length {
            frame.resize(length, 0);
        }
        frame[..head.len()].copy_from_slice(head);
        frame[head.len()..done].copy_from_slice(read);
        self.read_exact(entry, &mut frame[done..length])?;
        decompress_into(&frame[..length], out).map_err(|e| self.blob_error(entry, e.to_string()))
    }

    /// Checks that `entry` is ahead of the stream and a possible blob, and reads up to its
    /// frame.
    fn skip_to(&mut self, entry: &PackedBlob) -> Result<(), PackError> {
        if let Some(why) = &self.broken {
            return Err(self.blob_error(entry, why.clone()));
        }
        if let Some(why) = entry.impossible_length() {
            return Err(self.blob_error(entry, why));
        }
        let offset = u64::from(entry.offset);
        if offset < self.pos {
            return Err(self.blob_error(
                entry,
                format!("frame at {offset} is behind the stream ({})", self.pos),
            ));
        }
        self.read_through(entry, offset - self.pos)
    }

    /// Decrypts and drops the next `n` bytes.
    fn read_through(&mut self, entry: &PackedBlob, n: u64) -> Result<(), PackError> {
        let skipped = std::io::copy(&mut (&mut self.reader).take(n), &mut std::io::sink());
        match skipped {
            Ok(s) if s == n => {
                self.pos += n;
                Ok(())
            }
            Ok(_) => Err(self.fail(entry, std::io::ErrorKind::UnexpectedEof.into())),
            Err(e) => Err(self.fail(entry, e)),
        }
    }

    /// Fills `buf` from the stream.
    fn read_exact(&mut self, entry: &PackedBlob, buf: &mut [u8]) -> Result<(), PackError> {
        match self.reader.read_exact(buf) {
            Ok(()) => {
                self.pos += buf.len() as u64;
                Ok(())
            }
            Err(e) => Err(self.fail(entry, e)),
        }
    }

    /// Marks the stream broken by a read error: nothing after it can be trusted.
    fn fail(&mut self, entry: &PackedBlob, e: std::io::Error) -> PackError {
        let why = if e.kind() == std::io::ErrorKind::UnexpectedEof {
            "the pack ends before this frame".to_string()
        } else {
            format!("cannot read the pack: {e}")
        };
        self.broken = Some(why.clone());
        self.blob_error(entry, why)
    }

    /// Reads the rest of the pack and checks that its own blob list records each of `used`
    /// (the entries read from it) exactly as the index does. Only after this succeeds is what
    /// was read from it known to be the pack the index named. The rest is at most a pack
    /// (blobs the restore did not need, then the list).
    pub fn finish(mut self, used: &[PackedBlob]) -> Result<(), PackError> {
        if let Some(message) = self.broken {
            return Err(PackError::Trailer {
                key: self.key,
                message,
            });
        }
        let mut rest = Vec::new();
        self.reader
            .read_to_end(&mut rest)
            .map_err(|e| PackError::Trailer {
                key: self.key.clone(),
                message: format!("cannot read the pack: {e}"),
            })?;
        let (_, listed) = find_trailer(&rest).map_err(|message| PackError::Trailer {
            key: self.key.clone(),
            message,
        })?;
        let by_offset: HashMap<u32, &PackedBlob> = listed.iter().map(|b| (b.offset, b)).collect();
        match used
            .iter()
            .find(|u| by_offset.get(&u.offset).copied() != Some(*u))
        {
            Some(u) => Err(PackError::NotThePack {
                key: self.key,
                blob: u.id,
            }),
            None => Ok(()),
        }
    }

    /// A blob of this pack that decoded but is not the content its id names.
    pub fn blob_mismatch(&self, entry: &PackedBlob) -> PackError {
        PackError::BlobMismatch {
            key: self.key.clone(),
            blob: entry.id,
        }
    }

    /// A blob that could not be decoded, with what went wrong.
    pub fn blob_error(&self, entry: &PackedBlob, message: String) -> PackError {
        PackError::Blob {
            key: self.key.clone(),
            blob: entry.id,
            message,
        }
    }
}

/// The header length of a single-segment frame without checksum or dictionary (the form
/// [`crate::blob::raw_frame`] writes) from its first 5 bytes, or `None` for any other frame.
fn raw_header_len(head: &[u8]) -> Option<usize> {
    if head.len() < 5 || head[..4] != 0xFD2F_B528u32.to_le_bytes() {
        return None;
    }
    match head[4] {
        0b1010_0000 => Some(9),
        0b1110_0000 => Some(13),
        _ => None,
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
        let mut stream = PackStream::open(&key, "p", PartsReader::new(&parts)).unwrap();
        for i in [1, 3, 5] {
            let frame = stream.frame(&sealed.blobs[i], &mut buf).unwrap();
            assert_eq!(decompress(frame, blobs[i].len()).unwrap(), blobs[i]);
        }
        stream.finish(&sealed.blobs).unwrap();

        // Going back is refused.
        let mut stream = PackStream::open(&key, "p", PartsReader::new(&parts)).unwrap();
        stream.frame(&sealed.blobs[3], &mut buf).unwrap();
        assert!(stream.frame(&sealed.blobs[2], &mut buf).is_err());

        // Another valid pack under this one's name: its blob list differs, so it is refused.
        let mut others = blobs.clone();
        others[2][0] = 99;
        let other = pack_of(&key, &others);
        let other_parts = [&other.bytes[..]];
        let stream = PackStream::open(&key, "p", PartsReader::new(&other_parts)).unwrap();
        assert!(matches!(
            stream.finish(&sealed.blobs),
            Err(PackError::NotThePack { blob, .. }) if blob == sealed.blobs[2].id
        ));
        // An index that puts a blob elsewhere than the pack does: refused too.
        let mut moved = sealed.blobs[4];
        moved.raw_length += 1;
        let stream = PackStream::open(&key, "p", PartsReader::new(&parts)).unwrap();
        assert!(matches!(
            stream.finish(&[moved]),
            Err(PackError::NotThePack { .. })
        ));
        // The same plaintext encrypted again is the same pack's content: accepted.
        let again = pack_of(&key, &blobs);
        let again_parts = [&again.bytes[..]];
        let stream = PackStream::open(&key, "p", PartsReader::new(&again_parts)).unwrap();
        stream.finish(&sealed.blobs).unwrap();
    }

    #[test]
    fn blobs_decode_into_place_whatever_their_frames() {
        let key = RepoKey::generate();
        let random: Vec<u8> = (0..200_000).map(|_| rand::random::<u8>()).collect();
        let text = "{\"msg\":\"ok\"}\n".repeat(20_000);
        // zstd's own frame for this starts with a raw block, then compressed ones.
        let mixed: Vec<u8> = random[..150_000].iter().chain(text.as_bytes()).copied().collect();
        let blobs = [
            random.clone(),
            text.clone().into_bytes(),
            mixed,
            Vec::new(),
            vec![7u8; 3],
        ];
        let mut w = PackWriter::new(&key, BlobKind::Data, 0).unwrap();
        for b in &blobs {
            let frame = crate::blob::compress(b, crate::blob::Compression::default());
            w.add(BlobId::keyed(key.chunk_id_key(), b), &frame, b.len())
                .unwrap();
        }
        let sealed = w.seal().unwrap();
        let parts: Vec<&[u8]> = sealed.bytes.chunks(9_973).collect();
        let mut stream = PackStream::open(&key, "p", PartsReader::new(&parts)).unwrap();
        let mut frame = Vec::new();
        for (b, entry) in blobs.iter().zip(&sealed.blobs) {
            let mut out = vec![0u8; b.len()];
            stream.decode_into(entry, &mut frame, &mut out).unwrap();
            assert!(out == *b, "blob of {} bytes differs", b.len());
        }
        stream.finish(&sealed.blobs).unwrap();

        // A wrong length fails that blob only; the next one still decodes.
        let mut stream = PackStream::open(&key, "p", PartsReader::new(&parts)).unwrap();
        for (b, entry) in blobs.iter().zip(&sealed.blobs).take(3) {
            let mut short = vec![0u8; b.len() - 1];
            assert!(stream.decode_into(entry, &mut frame, &mut short).is_err());
        }
        let mut out = vec![0u8; 3];
        stream
            .decode_into(&sealed.blobs[4], &mut frame, &mut out)
            .unwrap();
        assert_eq!(out, blobs[4]);
        stream.finish(&sealed.blobs).unwrap();
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
        let mut stream = PackStream::open(&key, "p", PartsReader::new(&bad_parts)).unwrap();
        let mut buf = Vec::new();
        let results: Vec<bool> = sealed
            .blobs
            .iter()
            .map(|e| stream.frame(e, &mut buf).is_ok())
            .collect();
        assert!(results[0] && !results[5], "{results:?}");
        let first_bad = results.iter().position(|ok| !ok).unwrap();
        assert!(results[first_bad..].iter().all(|ok| !ok), "{results:?}");
        assert!(stream.finish(&sealed.blobs).is_err());

        // Cut short: the end is missing, so the stream is refused at the end too.
        let short = [&sealed.bytes[..sealed.bytes.len() - 100]];
        let stream = PackStream::open(&key, "p", PartsReader::new(&short)).unwrap();
        assert!(stream.finish(&sealed.blobs).is_err());
    }
}
