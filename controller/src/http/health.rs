//! What `/healthz` and `/readyz` answer.

use std::sync::atomic::{AtomicBool, Ordering};

/// Readiness of this process: ready once it knows whether it leads and, when it does, its
/// controllers have listed their resources.
#[derive(Debug, Default)]
pub struct Health {
    leader_known: AtomicBool,
    leading: AtomicBool,
    synced: AtomicBool,
}

impl Health {
    /// Records the outcome of a leader-election round.
    pub fn set_leading(&self, leading: bool) {
        self.leading.store(leading, Ordering::SeqCst);
        self.leader_known.store(true, Ordering::SeqCst);
        if !leading {
            self.synced.store(false, Ordering::SeqCst);
        }
    }

    /// Records that the controllers listed their resources.
    pub fn set_synced(&self, synced: bool) {
        self.synced.store(synced, Ordering::SeqCst);
    }

    /// Whether this process currently leads.
    pub fn is_leading(&self) -> bool {
        self.leading.load(Ordering::SeqCst)
    }

    /// Ready for `/readyz`.
    pub fn is_ready(&self) -> bool {
        self.leader_known.load(Ordering::SeqCst)
            && (!self.leading.load(Ordering::SeqCst) || self.synced.load(Ordering::SeqCst))
    }
}
