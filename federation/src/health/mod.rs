//! Cluster health, measured by probes and judged by several observers: each observer (the
//! federation agent of another cluster, or drctl on an operator's machine) probes a cluster,
//! records its [`Observation`] in the federation state, and anyone can [`verdict::assess`]
//! the observations of all observers.

pub mod probe;
pub mod verdict;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use probe::{ProbeOptions, probe};
pub use verdict::{Policy, Verdict, assess, observe};

use crate::state::{StateError, StateStore, key};

/// One check of a probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// `api`, `nodes`, `controller`, `repository …`, `backups …`, `ceph`.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// Whether a failure makes the probe fail (the cluster unusable), or only degrades it.
    pub critical: bool,
    /// What was seen.
    pub message: String,
    /// How long it took.
    pub millis: u64,
}

/// What one probe found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// Every check, in order.
    pub checks: Vec<Check>,
}

impl ProbeResult {
    /// Passed: no critical check failed.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok || !c.critical)
    }
}

/// `federation/health/<cluster>/<observer>`: an observer's latest view of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// The cluster observed.
    pub cluster: String,
    /// Who observed it.
    pub observer: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Whether the latest probe passed.
    pub ok: bool,
    /// Failed probes in a row, up to this one.
    pub consecutive_failures: u32,
    /// When the current run of failures began.
    pub first_failure: Option<DateTime<Utc>>,
    /// The last probe that passed.
    pub last_success: Option<DateTime<Utc>>,
    /// The latest probe's checks.
    pub checks: Vec<Check>,
}

/// An observer name usable in object keys (`drctl@laptop.example` → `drctl@laptop.example`;
/// anything outside `[A-Za-z0-9._@-]` becomes `-`).
pub fn observer_key(observer: &str) -> String {
    observer
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The observation's key.
pub fn observation_key(cluster: &str, observer: &str) -> String {
    key(&["health", cluster, &observer_key(observer)])
}

/// Every observer's latest observation of `cluster` (the newest copy of each).
pub async fn observations(state: &StateStore, cluster: &str) -> Result<Vec<Observation>, StateError> {
    let mut out = Vec::new();
    for k in state.list_union(&key(&["health", cluster])).await? {
        let copies: Vec<Observation> = state.read_values(&k).await?;
        if let Some(o) = copies.into_iter().max_by_key(|o| o.at) {
            out.push(o);
        }
    }
    Ok(out)
}

/// Probes, records the observation in every repository and returns it with the verdict over
/// all observers.
pub async fn observe_and_record(
    state: &StateStore,
    cluster: &str,
    observer: &str,
    result: ProbeResult,
    policy: &Policy,
) -> Result<(Observation, Verdict), StateError> {
    let mut all = observations(state, cluster).await?;
    let previous = all
        .iter()
        .find(|o| observer_key(&o.observer) == observer_key(observer))
        .cloned();
    let now = Utc::now();
    let obs = observe(previous.as_ref(), cluster, observer, result, now);
    state
        .overwrite_all(&observation_key(cluster, observer), &obs)
        .await?;
    all.retain(|o| observer_key(&o.observer) != observer_key(observer));
    all.push(obs.clone());
    Ok((obs, assess(&all, policy, now)))
}
