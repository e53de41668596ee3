//! Fault injection for one test server: latency, injected 429/5xx answers, dropped watch
//! streams, compacted history and network partitions.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::store::Store;

/// The fault settings the server consults on every request.
#[derive(Debug)]
pub(crate) struct FaultState {
    latency: Mutex<Duration>,
    failures: Mutex<VecDeque<u16>>,
    /// Bumped to make every open watch stream fail.
    pub(crate) drop_watches: watch::Sender<u64>,
    /// `true` while the cluster refuses connections.
    pub(crate) partitioned: watch::Sender<bool>,
}

impl Default for FaultState {
    fn default() -> Self {
        Self {
            latency: Mutex::new(Duration::ZERO),
            failures: Mutex::new(VecDeque::new()),
            drop_watches: watch::channel(0).0,
            partitioned: watch::channel(false).0,
        }
    }
}

impl FaultState {
    pub(crate) fn latency(&self) -> Duration {
        self.latency.lock().map(|l| *l).unwrap_or_default()
    }

    /// The injected status code for this request, if one is queued.
    pub(crate) fn take_failure(&self) -> Option<u16> {
        self.failures.lock().ok().and_then(|mut f| f.pop_front())
    }
}

/// Breaks a test server on purpose. Only the in-process server has one
/// ([`TestCluster::faults`](super::TestCluster::faults)); a real cluster cannot be broken from a
/// test, so fault tests skip there.
#[derive(Debug, Clone)]
pub struct Faults {
    pub(crate) state: Arc<FaultState>,
    pub(crate) store: Arc<Mutex<Store>>,
}

impl Faults {
    /// Delays every request by `latency` before it is handled (zero turns it off).
    pub fn set_latency(&self, latency: Duration) {
        if let Ok(mut l) = self.state.latency.lock() {
            *l = latency;
        }
    }

    /// Answers the next `count` requests with HTTP `code` (429, 500, 503…) and a `Status`.
    pub fn fail_next(&self, code: u16, count: usize) {
        if let Ok(mut f) = self.state.failures.lock() {
            f.extend(std::iter::repeat_n(code, count));
        }
    }

    /// Breaks every open watch stream mid-flight, as a lost connection would.
    pub fn drop_watches(&self) {
        self.state.drop_watches.send_modify(|n| *n += 1);
    }

    /// Forgets the watch history, so a watch resuming from any earlier resourceVersion gets
    /// 410 Gone (as after etcd compaction).
    pub fn compact(&self) {
        if let Ok(mut s) = self.store.lock() {
            s.compact();
        }
    }

    /// Cuts the cluster off: open connections are closed and new ones refused until
    /// [`heal`](Self::heal).
    pub fn partition(&self) {
        self.state.partitioned.send_replace(true);
    }

    /// Ends a [`partition`](Self::partition): the server listens on the same port again.
    pub fn heal(&self) {
        self.state.partitioned.send_replace(false);
    }
}
