//! A per-volume in-flight guard: a second operation on a key already being worked on gets
//! ABORTED at once instead of racing the first (the CO retries with backoff).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::error::{CsiError, Result};

/// Keys (volume names, volume ids, snapshot names) with an operation running.
#[derive(Clone, Default)]
pub struct InFlight {
    keys: Arc<Mutex<HashSet<String>>>,
}

/// Held while an operation runs; releases its key on drop, even on panic or cancellation.
pub struct Guard {
    keys: Arc<Mutex<HashSet<String>>>,
    key: String,
}

impl InFlight {
    /// Claims `key`, or answers ABORTED if another operation holds it.
    pub fn claim(&self, key: impl Into<String>) -> Result<Guard> {
        let key = key.into();
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if !keys.insert(key.clone()) {
            return Err(CsiError::Aborted(key));
        }
        Ok(Guard {
            keys: self.keys.clone(),
            key,
        })
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_claim_is_aborted_until_the_first_is_dropped() {
        let f = InFlight::default();
        let g = f.claim("a").expect("first");
        assert!(matches!(f.claim("a"), Err(CsiError::Aborted(_))));
        assert!(f.claim("b").is_ok());
        drop(g);
        assert!(f.claim("a").is_ok());
    }
}
