//! Page-aligned staging buffers for `O_DIRECT` I/O (pack writes to a local repository, file
//! writes during a restore), pooled so each write does not fault in fresh pages.

use std::sync::Mutex;

/// Alignment `O_DIRECT` needs for buffers, offsets and lengths (the largest logical block
/// size in use).
pub(crate) const ALIGN: usize = 4096;
/// Bytes one staging buffer holds.
pub(crate) const STAGE: usize = 4 << 20;

/// Returned buffers; at most one per concurrent direct writer is ever allocated.
static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// A `STAGE`-byte aligned buffer, back in the pool when dropped.
pub(crate) struct Stage {
    buffer: Vec<u8>,
}

impl Stage {
    /// A buffer from the pool, or a new one.
    pub(crate) fn take() -> Self {
        let buffer = POOL
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .unwrap_or_else(|| vec![0u8; STAGE + ALIGN]);
        Self { buffer }
    }

    /// The aligned `STAGE` bytes.
    pub(crate) fn bytes(&mut self) -> &mut [u8] {
        let start = self.buffer.as_ptr().align_offset(ALIGN);
        &mut self.buffer[start..start + STAGE]
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        let buffer = std::mem::take(&mut self.buffer);
        POOL.lock().unwrap_or_else(|p| p.into_inner()).push(buffer);
    }
}

/// A reusable buffer that hands out slices at a chosen alignment: data decoded into it for
/// file offset `o` sits at an address ≡ `o` (mod [`ALIGN`]), so its whole blocks can be
/// written with `O_DIRECT` straight from it, without another copy.
#[derive(Default)]
pub(crate) struct Placed {
    buffer: Vec<u8>,
}

impl Placed {
    /// `len` bytes whose first byte's address is ≡ `offset` (mod [`ALIGN`]). The content is
    /// whatever an earlier use left.
    pub(crate) fn slot(&mut self, len: usize, offset: u64) -> &mut [u8] {
        let need = len + 2 * ALIGN;
        if self.buffer.len() < need {
            // Grown in whole MiB so slightly larger blobs do not reallocate each time.
            self.buffer = vec![0u8; need.next_multiple_of(1 << 20)];
        }
        let start = self.buffer.as_ptr().align_offset(ALIGN) + (offset % ALIGN as u64) as usize;
        &mut self.buffer[start..start + len]
    }
}

/// Rounds `n` down to a multiple of [`ALIGN`].
pub(crate) fn align_down(n: u64) -> u64 {
    n / ALIGN as u64 * ALIGN as u64
}

/// Rounds `n` up to a multiple of [`ALIGN`].
pub(crate) fn align_up(n: u64) -> u64 {
    n.div_ceil(ALIGN as u64) * ALIGN as u64
}
