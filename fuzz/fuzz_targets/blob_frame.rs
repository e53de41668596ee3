//! A blob's zstd frame and the uncompressed length an index claims for it (first 4 bytes,
//! little-endian): decoded whole, into a buffer of the claimed size, and read in place as raw
//! blocks. A frame that does not decode to exactly the claimed length is an error, never a
//! panic or a short blob.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lifeboat_backup::blob::{decompress, decompress_into, raw_frame_parts};
use lifeboat_fuzz as _;

fuzz_target!(|data: &[u8]| {
    let Some((claimed, frame)) = data.split_first_chunk::<4>() else {
        return;
    };
    // Claims up to 16 MiB, the chunker's largest blob (the index's field is 32 bits).
    let raw_len = (u32::from_le_bytes(*claimed) & 0x00ff_ffff) as usize;
    if let Ok(out) = decompress(frame, raw_len) {
        assert_eq!(out.len(), raw_len, "decompress returned a blob of another length");
    }
    let mut out = vec![0u8; raw_len];
    let _ = decompress_into(frame, &mut out);
    if let Some(parts) = raw_frame_parts(frame) {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        assert!(total <= frame.len(), "raw parts longer than their frame");
    }
});
