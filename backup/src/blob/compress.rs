//! zstd framing. Every stored blob is exactly one zstd frame, so `zstd -d` decodes any of
//! them; data that does not compress goes into a frame of raw blocks, written by hand, which
//! costs 3 bytes per 128 KiB instead of a wasted compression pass.

/// Compression settings. The default, level 1, compresses logs and JSON about as well as level
/// 3 at roughly twice the speed (measured on the benchmark's JSON-lines logs in 1 MiB chunks:
/// level 1 was even 7 % smaller); a backup is usually CPU-bound on 2-core nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Compression {
    /// zstd level (1–19; negative levels trade ratio for speed).
    pub level: i32,
}

impl Compression {
    /// The levels zstd takes (its `ZSTD_minCLevel()..=ZSTD_maxCLevel()`: -131072 to 22); a
    /// level outside is refused by drctl rather than clamped by zstd.
    pub fn levels() -> std::ops::RangeInclusive<i32> {
        zstd::compression_level_range()
    }
}

impl Default for Compression {
    fn default() -> Self {
        Self { level: 1 }
    }
}

/// Bytes of a chunk sampled to decide whether it is worth compressing.
const SAMPLE: usize = 64 * 1024;
/// A sample that shrinks less than this (compressed/raw) is treated as incompressible.
const MIN_GAIN: f64 = 0.97;
/// zstd's largest block.
const MAX_BLOCK: usize = 128 * 1024;

/// Encodes `data` as one zstd frame: compressed when that helps, raw blocks otherwise.
///
/// A large chunk is stored raw without a full compression pass only when samples from its
/// start, middle and end all fail to shrink: a chunk that begins in random data and ends in a
/// run of zeros (the edge of a sparse file's hole, a partly filled disk image) still compresses.
pub fn compress(data: &[u8], compression: Compression) -> Vec<u8> {
    if data.len() >= 2 * SAMPLE && !any_sample_shrinks(data) {
        return raw_frame(data);
    }
    match zstd::bulk::compress(data, compression.level) {
        Ok(c) if c.len() < data.len() => c,
        _ => raw_frame(data),
    }
}

/// Whether a level-1 probe of any of three `SAMPLE`-byte windows (start, middle, end) of
/// `data` shrinks below `MIN_GAIN`; `data` must hold at least `SAMPLE` bytes.
fn any_sample_shrinks(data: &[u8]) -> bool {
    let last = data.len() - SAMPLE;
    [0, last / 2, last].into_iter().any(|at| {
        let sample = &data[at..at + SAMPLE];
        let probe = zstd::bulk::compress(sample, 1).map(|c| c.len()).unwrap_or(SAMPLE);
        probe as f64 / SAMPLE as f64 <= MIN_GAIN
    })
}

/// Decodes a frame made by [`compress`]; `raw_len` is the expected size.
pub fn decompress(frame: &[u8], raw_len: usize) -> std::io::Result<Vec<u8>> {
    let out = with_decoder(|d| d.decompress(frame, raw_len))?;
    if out.len() != raw_len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("decoded {} bytes, expected {raw_len}", out.len()),
        ));
    }
    Ok(out)
}

/// Runs `f` with this thread's zstd decoder (a fresh context per frame cost an allocation and
/// its page faults every time).
fn with_decoder<T>(
    f: impl FnOnce(&mut zstd::bulk::Decompressor<'static>) -> std::io::Result<T>,
) -> std::io::Result<T> {
    thread_local! {
        static DECODER: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    DECODER.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new()?);
        }
        match d.as_mut() {
            Some(dec) => f(dec),
            None => Err(std::io::Error::other("no zstd decoder")),
        }
    })
}

/// Decodes a frame made by [`compress`] into `out`, which must be exactly the content's
/// size: a restore decodes straight into the buffer it writes from. Stored frames are
/// copied out of their raw blocks without going through the decoder.
pub fn decompress_into(frame: &[u8], out: &mut [u8]) -> std::io::Result<()> {
    let expected = out.len();
    let wrong = |got: usize| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("decoded {got} bytes, expected {expected}"),
        )
    };
    if let Some(parts) = raw_frame_parts(frame) {
        let got: usize = parts.iter().map(|p| p.len()).sum();
        if got != expected {
            return Err(wrong(got));
        }
        let mut at = 0;
        for part in parts {
            out[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        return Ok(());
    }
    // Content longer than `out` fails in zstd ("destination buffer is too small").
    let got = with_decoder(|d| d.decompress_to_buffer(frame, out))?;
    if got != expected {
        return Err(wrong(got));
    }
    Ok(())
}

/// A zstd frame (RFC 8878) holding `data` uncompressed in raw blocks.
pub fn raw_frame(data: &[u8]) -> Vec<u8> {
    let blocks = data.len().div_ceil(MAX_BLOCK).max(1);
    let mut out = Vec::with_capacity(data.len() + 9 + 3 * blocks);
    out.extend_from_slice(&0xFD2F_B528u32.to_le_bytes());
    let size = data.len() as u64;
    if size <= u64::from(u32::MAX) {
        // Single segment, 4-byte content size, no checksum, no dictionary.
        out.push(0b1010_0000);
        out.extend_from_slice(&(size as u32).to_le_bytes());
    } else {
        out.push(0b1110_0000);
        out.extend_from_slice(&size.to_le_bytes());
    }
    let mut chunks = data.chunks(MAX_BLOCK).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&block_header(0, true));
    }
    while let Some(block) = chunks.next() {
        out.extend_from_slice(&block_header(block.len(), chunks.peek().is_none()));
        out.extend_from_slice(block);
    }
    out
}

fn block_header(len: usize, last: bool) -> [u8; 3] {
    // Bit 0: last block; bits 1-2: type (0 = raw); bits 3-23: size.
    let h = ((len as u32) << 3) | u32::from(last);
    let b = h.to_le_bytes();
    [b[0], b[1], b[2]]
}

/// The payloads of a frame made by [`raw_frame`], in order, borrowed from the frame: stored
/// data needs no decoding, and a restore writes these slices straight out instead of copying
/// half a backup through the decoder. `None` for any other frame (decode it instead).
pub fn raw_frame_parts(frame: &[u8]) -> Option<Vec<&[u8]>> {
    if frame.get(..4)? != 0xFD2F_B528u32.to_le_bytes() {
        return None;
    }
    let (size, mut at) = match *frame.get(4)? {
        0b1010_0000 => (
            u64::from(u32::from_le_bytes(frame.get(5..9)?.try_into().ok()?)),
            9,
        ),
        0b1110_0000 => (u64::from_le_bytes(frame.get(5..13)?.try_into().ok()?), 13),
        _ => return None,
    };
    let mut parts = Vec::new();
    let mut total = 0u64;
    loop {
        let h = frame.get(at..at + 3)?;
        let h = u32::from(h[0]) | u32::from(h[1]) << 8 | u32::from(h[2]) << 16;
        if (h >> 1) & 3 != 0 {
            return None;
        }
        let len = (h >> 3) as usize;
        let part = frame.get(at + 3..at + 3 + len)?;
        at += 3 + len;
        total += len as u64;
        if !part.is_empty() {
            parts.push(part);
        }
        if h & 1 == 1 {
            break;
        }
    }
    (at == frame.len() && total == size).then_some(parts)
}

/// A zstd skippable frame carrying `payload`; decoders pass over it, so metadata can travel
/// inside a stream of data frames without disturbing `zstd -d`.
pub fn skippable_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&0x184D_2A5Bu32.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_frames_decode_with_zstd() {
        for len in [0usize, 1, 1000, MAX_BLOCK, MAX_BLOCK + 1, 3 * MAX_BLOCK + 17] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let frame = raw_frame(&data);
            assert_eq!(decompress(&frame, len).unwrap(), data, "len {len}");
        }
    }

    #[test]
    fn raw_frames_are_read_in_place_and_others_are_not() {
        for len in [0usize, 1, MAX_BLOCK, 3 * MAX_BLOCK + 17] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let frame = raw_frame(&data);
            let parts = raw_frame_parts(&frame).expect("a raw frame");
            assert_eq!(parts.concat(), data, "len {len}");
            // Cut short, or with a byte too many: not trusted.
            assert!(raw_frame_parts(&frame[..frame.len() - 1]).is_none() || len == 0);
            let mut longer = frame.clone();
            longer.push(0);
            assert!(raw_frame_parts(&longer).is_none());
        }
        let text = "{\"msg\":\"ok\"}\n".repeat(10_000);
        let compressed = compress(text.as_bytes(), Compression::default());
        assert!(raw_frame_parts(&compressed).is_none());
    }

    #[test]
    fn frames_decode_into_a_buffer_of_exactly_their_size() {
        let text = "{\"msg\":\"ok\"}\n".repeat(10_000);
        let random: Vec<u8> = (0..300_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let frames = [
            (text.as_bytes(), compress(text.as_bytes(), Compression::default())),
            (&random[..], raw_frame(&random)),
        ];
        for (data, frame) in frames {
            let mut out = vec![0u8; data.len()];
            decompress_into(&frame, &mut out).unwrap();
            assert!(out == data);
            assert!(decompress_into(&frame, &mut vec![0u8; data.len() - 1]).is_err());
            assert!(decompress_into(&frame, &mut vec![0u8; data.len() + 1]).is_err());
        }
    }

    #[test]
    fn compressible_data_shrinks_and_random_data_is_stored_raw() {
        let text = "{\"level\":\"info\",\"msg\":\"request served\",\"status\":200}\n".repeat(10_000);
        let c = compress(text.as_bytes(), Compression::default());
        assert!(c.len() < text.len() / 10);
        assert_eq!(decompress(&c, text.len()).unwrap(), text.as_bytes());

        let random: Vec<u8> = (0..300_000).map(|_| rand::random::<u8>()).collect();
        let c = compress(&random, Compression::default());
        assert_eq!(c, raw_frame(&random));
    }

    #[test]
    fn a_chunk_that_starts_random_and_ends_in_zeros_is_compressed() {
        // The edge of a sparse file's hole: 128 KiB of random data, then 4 MiB of zeros.
        let mut data: Vec<u8> = (0..128 * 1024).map(|_| rand::random::<u8>()).collect();
        data.resize(data.len() + 4 * 1024 * 1024, 0);
        let c = compress(&data, Compression::default());
        assert!(c.len() < 160 * 1024, "stored {} bytes", c.len());
        assert_eq!(decompress(&c, data.len()).unwrap(), data);
        // Zeros first, random data last: the same.
        data.reverse();
        let c = compress(&data, Compression::default());
        assert!(c.len() < 160 * 1024, "stored {} bytes", c.len());
    }

    #[test]
    fn skippable_frames_are_skipped() {
        let mut stream = compress(b"hello ", Compression::default());
        stream.extend(skippable_frame(b"{\"meta\":1}"));
        stream.extend(raw_frame(b"world"));
        let mut out = Vec::new();
        zstd::stream::copy_decode(&stream[..], &mut out).unwrap();
        assert_eq!(out, b"hello world");
    }
}
