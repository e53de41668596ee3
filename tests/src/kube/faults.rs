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
    failures: Mutex<VecDeque<FailRule>>,
    /// Bumped to make every open watch stream fail.
    pub(crate) drop_watches: watch::Sender<u64>,
    /// `true` while the cluster refuses connections.
    pub(crate) partitioned: watch::Sender<bool>,
    /// Whether the listener is open (it lags `partitioned` by a scheduling round).
    listening: std::sync::atomic::AtomicBool,
}

impl Default for FaultState {
    fn default() -> Self {
        Self {
            latency: Mutex::new(Duration::ZERO),
            failures: Mutex::new(VecDeque::new()),
            drop_watches: watch::channel(0).0,
            partitioned: watch::channel(false).0,
            listening: std::sync::atomic::AtomicBool::new(true),
        }
    }
}

impl FaultState {
    pub(crate) fn set_listening(&self, on: bool) {
        self.listening.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// Waits (up to 5 s) until the listener state matches `on`, so a partition or heal has
    /// taken effect when the fault call returns.
    fn wait_listening(&self, on: bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while self.listening.load(std::sync::atomic::Ordering::SeqCst) != on
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    pub(crate) fn latency(&self) -> Duration {
        self.latency.lock().map(|l| *l).unwrap_or_default()
    }

    /// The injected status code for a request, if a queued rule matches it.
    pub(crate) fn take_failure(&self, method: &str, path: &str) -> Option<u16> {
        let mut rules = self.failures.lock().ok()?;
        let i = rules.iter().position(|r| r.matches(method, path))?;
        let rule = rules.get_mut(i)?;
        rule.count -= 1;
        let code = rule.code;
        if rule.count == 0 {
            rules.remove(i);
        }
        Some(code)
    }
}

/// Which requests an injected failure hits.
#[derive(Debug, Clone)]
struct FailRule {
    code: u16,
    count: usize,
    method: Option<String>,
    path_contains: Option<String>,
}

impl FailRule {
    fn matches(&self, method: &str, path: &str) -> bool {
        self.count > 0
            && self
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self.path_contains.as_deref().is_none_or(|p| path.contains(p))
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
        self.push(FailRule {
            code,
            count,
            method: None,
            path_contains: None,
        });
    }

    /// Like [`fail_next`](Self::fail_next), but only for requests with HTTP `method` (any
    /// when `None`) whose path contains `path_contains` (e.g. `"/configmaps"`), so a test can
    /// break one call of the code under test and leave the rest working.
    pub fn fail_matching(&self, code: u16, count: usize, method: Option<&str>, path_contains: &str) {
        self.push(FailRule {
            code,
            count,
            method: method.map(String::from),
            path_contains: Some(path_contains.to_string()),
        });
    }

    /// Forgets every failure still to be injected.
    pub fn clear_failures(&self) {
        if let Ok(mut f) = self.state.failures.lock() {
            f.clear();
        }
    }

    fn push(&self, rule: FailRule) {
        if let Ok(mut f) = self.state.failures.lock() {
            f.push_back(rule);
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

    /// Makes the aggregated API `group/version` hang: its APIService reports Available (its
    /// server accepted the availability check) but every request under
    /// `/apis/GROUP/VERSION` gets no answer until the client gives up, or 504 after the
    /// 60 s request timeout: a backend that accepts connections and never answers.
    pub fn hang_api(&self, group_version: &str) {
        let Some((group, version)) = group_version.split_once('/') else {
            return;
        };
        if let Ok(mut s) = self.store.lock() {
            s.hanging_apis.insert((group.to_string(), version.to_string()));
            super::hooks::refresh_apiservice(&mut s, group, version);
        }
    }

    /// Cuts the cluster off: open connections are closed and new ones refused until
    /// [`heal`](Self::heal).
    pub fn partition(&self) {
        self.state.partitioned.send_replace(true);
        self.state.wait_listening(false);
    }

    /// Ends a [`partition`](Self::partition): the server listens on the same port again.
    pub fn heal(&self) {
        self.state.partitioned.send_replace(false);
        self.state.wait_listening(true);
    }
}
