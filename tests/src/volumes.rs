//! Helpers of the RBD volume tests: seeded data to write into images, and an image read back
//! whole to compare.
#![allow(clippy::unwrap_used)] // test helpers panic loudly

use lifeboat_rbd::Pool;

/// `len` pseudo-random bytes from `seed` (incompressible, so dedup and not compression is
/// measured; the same seed gives the same bytes).
pub fn seeded_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = crate::faults::SeededRng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The whole content of `image` (holes as zeros), read 4 MiB at a time.
pub fn read_image(pool: &Pool, image: &str) -> Vec<u8> {
    let img = pool.open_read_only(image, None).unwrap();
    let size = img.info().unwrap().size as usize;
    let mut out = vec![0u8; size];
    let mut done = 0;
    while done < size {
        let n = img
            .read_at(done as u64, &mut out[done..(done + (4 << 20)).min(size)])
            .unwrap();
        assert!(n > 0);
        done += n;
    }
    out
}
