//! Fault injection for one test server: latency, injected 409/429/5xx answers, dropped watch
//! streams, compacted history (at once or at a chosen request) and network partitions; and a
//! log of the requests seen, so a test can tell what its faults hit and how clients reacted.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// Watch streams ended by [`Faults::drop_watches`].
    pub(crate) watches_dropped: AtomicU64,
    /// Whether requests are recorded in `log`.
    logging: AtomicBool,
    log: Mutex<Vec<SeenRequest>>,
}

impl Default for FaultState {
    fn default() -> Self {
        Self {
            latency: Mutex::new(Duration::ZERO),
            failures: Mutex::new(VecDeque::new()),
            drop_watches: watch::channel(0).0,
            partitioned: watch::channel(false).0,
            listening: std::sync::atomic::AtomicBool::new(true),
            watches_dropped: AtomicU64::new(0),
            logging: AtomicBool::new(false),
            log: Mutex::new(Vec::new()),
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

    /// The fault for a request (`target`: its path and query), if a queued rule matches it.
    pub(crate) fn take_failure(&self, method: &str, target: &str) -> Option<Injected> {
        self.take_rule(method, target)
    }

    /// Records an answered request when logging is on.
    pub(crate) fn record(
        &self,
        method: &str,
        target: &str,
        name: Option<String>,
        injected: Option<Injected>,
        code: u16,
    ) {
        if self.logging()
            && let Ok(mut log) = self.log.lock()
        {
            log.push(SeenRequest {
                at: Instant::now(),
                method: method.to_string(),
                target: target.to_string(),
                name,
                injected,
                code,
            });
        }
    }

    /// Whether requests are being recorded.
    pub(crate) fn logging(&self) -> bool {
        self.logging.load(Ordering::SeqCst)
    }

    /// Every matching rule sees the request: one still skipping counts it, and the first
    /// with nothing left to skip fires.
    fn take_rule(&self, method: &str, target: &str) -> Option<Injected> {
        let mut rules = self.failures.lock().ok()?;
        let mut fired = None;
        for (i, rule) in rules.iter_mut().enumerate() {
            if !rule.matches(method, target) {
                continue;
            }
            if rule.skip > 0 {
                rule.skip -= 1;
            } else if fired.is_none() {
                fired = Some(i);
            }
        }
        let i = fired?;
        let rule = rules.get_mut(i)?;
        rule.count -= 1;
        let fault = rule.fault;
        if rule.count == 0 {
            rules.remove(i);
        }
        Some(fault)
    }
}

/// What a matching request meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injected {
    /// An answer with this HTTP code and the `Status` kube-apiserver sends with it (409
    /// `Conflict` naming the object, 429 `TooManyRequests` with `Retry-After`…); the request
    /// is not carried out.
    Answer(u16),
    /// The history is compacted just before the request is carried out, so a continue token
    /// or a watch's resourceVersion it carries is too old (410 `Expired`).
    Compact,
}

/// A request the server saw while [`Faults::record_requests`] was on.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    /// When it was answered (a watch: when its stream started).
    pub at: Instant,
    /// Its HTTP method.
    pub method: String,
    /// Its path, with the query if it had one.
    pub target: String,
    /// The name of the object a create (POST) carries, so a retried create can be told
    /// from the next one.
    pub name: Option<String>,
    /// The fault it met, if any.
    pub injected: Option<Injected>,
    /// The HTTP status it was answered with.
    pub code: u16,
}

/// Which requests an injected failure hits.
#[derive(Debug, Clone)]
struct FailRule {
    fault: Injected,
    /// Matching requests let through before the first fault.
    skip: usize,
    count: usize,
    method: Option<String>,
    path_contains: Option<String>,
}

impl FailRule {
    fn matches(&self, method: &str, target: &str) -> bool {
        self.count > 0
            && self
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self.path_contains.as_deref().is_none_or(|p| target.contains(p))
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

    /// Answers the next `count` requests with HTTP `code` (409, 429, 500, 503…) and the
    /// `Status` kube-apiserver sends with it: 409 is a `Conflict` naming the object ("the
    /// object has been modified"), 429 `TooManyRequests` with `details.retryAfterSeconds` and
    /// a `Retry-After` header (1 s), 500 an `InternalError`.
    pub fn fail_next(&self, code: u16, count: usize) {
        self.push(FailRule {
            fault: Injected::Answer(code),
            skip: 0,
            count,
            method: None,
            path_contains: None,
        });
    }

    /// Like [`fail_next`](Self::fail_next), but only for requests with HTTP `method` (any
    /// when `None`) whose path (with its query: `"continue="`, `"watch="` match too) contains
    /// `path_contains` (e.g. `"/configmaps"`), so a test can break one call of the code under
    /// test and leave the rest working.
    pub fn fail_matching(&self, code: u16, count: usize, method: Option<&str>, path_contains: &str) {
        self.fail_matching_after(code, 0, count, method, path_contains);
    }

    /// Like [`fail_matching`](Self::fail_matching), but lets the first `skip` matching
    /// requests through: the fault lands at a chosen point of an operation.
    pub fn fail_matching_after(
        &self,
        code: u16,
        skip: usize,
        count: usize,
        method: Option<&str>,
        path_contains: &str,
    ) {
        self.push(FailRule {
            fault: Injected::Answer(code),
            skip,
            count,
            method: method.map(String::from),
            path_contains: Some(path_contains.to_string()),
        });
    }

    /// [`compact`](Self::compact)s the history just before the matching request after the
    /// first `skip` is carried out (matching as [`fail_matching`](Self::fail_matching)
    /// does): a list page continuing a listing, or a watch resuming from a resourceVersion,
    /// then gets the real 410 `Expired`.
    pub fn compact_at(&self, skip: usize, method: Option<&str>, path_contains: &str) {
        self.push(FailRule {
            fault: Injected::Compact,
            skip,
            count: 1,
            method: method.map(String::from),
            path_contains: Some(path_contains.to_string()),
        });
    }

    /// How many injected failures (and compactions at a request) are still to come.
    pub fn pending_failures(&self) -> usize {
        self.state
            .failures
            .lock()
            .map(|f| f.iter().map(|r| r.count).sum())
            .unwrap_or(0)
    }

    /// Starts (`true`) or stops recording every request in [`seen`](Self::seen); starting
    /// forgets what was recorded before.
    pub fn record_requests(&self, on: bool) {
        if on && let Ok(mut log) = self.state.log.lock() {
            log.clear();
        }
        self.state.logging.store(on, Ordering::SeqCst);
    }

    /// The requests recorded since [`record_requests`](Self::record_requests)`(true)`, in
    /// the order they arrived.
    pub fn seen(&self) -> Vec<SeenRequest> {
        self.state.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// How many watch streams [`drop_watches`](Self::drop_watches) has broken so far.
    pub fn watches_dropped(&self) -> u64 {
        self.state.watches_dropped.load(Ordering::SeqCst)
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
        compact(&self.store);
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

/// Compacts `store`'s history (see [`Faults::compact`]).
pub(crate) fn compact(store: &Mutex<Store>) {
    if let Ok(mut s) = store.lock() {
        s.compact();
    }
}
