//! Progress counters that long operations update and front ends (drctl's bar, CRD status)
//! poll. Plain atomics: updating them costs nothing measurable.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters for one backup, restore or check.
#[derive(Debug, Default)]
pub struct Progress {
    /// Total bytes expected (0 while unknown).
    pub total_bytes: AtomicU64,
    /// Bytes processed so far.
    pub done_bytes: AtomicU64,
    /// Total items (files, packs) expected.
    pub total_items: AtomicU64,
    /// Items processed so far.
    pub done_items: AtomicU64,
}

impl Progress {
    /// Adds to what is expected.
    pub fn add_total(&self, bytes: u64, items: u64) {
        self.total_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.total_items.fetch_add(items, Ordering::Relaxed);
    }

    /// Adds to what is done.
    pub fn add_done(&self, bytes: u64, items: u64) {
        self.done_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.done_items.fetch_add(items, Ordering::Relaxed);
    }

    /// (done, total) bytes.
    pub fn bytes(&self) -> (u64, u64) {
        (
            self.done_bytes.load(Ordering::Relaxed),
            self.total_bytes.load(Ordering::Relaxed),
        )
    }

    /// (done, total) items.
    pub fn items(&self) -> (u64, u64) {
        (
            self.done_items.load(Ordering::Relaxed),
            self.total_items.load(Ordering::Relaxed),
        )
    }
}
