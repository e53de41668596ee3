//! A per-volume in-flight guard: a second operation on a key already being worked on gets
//! ABORTED at once instead of racing the first (the CO retries with backoff); and
//! [`to_completion`], which keeps the guard held until the operation has really ended.

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

/// Runs a mutating RPC's work on its own task and waits for it, so the work ends as it would
/// have had the CO waited.
///
/// tonic drops a handler's future when the client cancels or its `grpc-timeout` passes (a CO
/// gives up after its `--timeout`, 10 s in external-provisioner, and retries). Dropped
/// halfway, the handler would release its [`Guard`] while a blocking Ceph call of the
/// abandoned attempt still runs, and the retry would race that call on the same image. Here
/// the guard lives as long as the work, so the retry is answered ABORTED until it ends — as in
/// gRPC-Go drivers (ceph-csi), whose handlers run to their end after their context is
/// cancelled. A panic in the work is answered INTERNAL.
pub async fn to_completion<T: Send + 'static>(
    rpc: &'static str,
    work: impl Future<Output = std::result::Result<T, tonic::Status>> + Send + 'static,
) -> std::result::Result<T, tonic::Status> {
    tokio::spawn(work).await.unwrap_or_else(|e| {
        tracing::error!(rpc, error = %e, "the operation's task failed");
        Err(tonic::Status::internal(format!(
            "{rpc}: the operation's task failed: {e}"
        )))
    })
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
