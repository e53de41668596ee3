//! Deciding that a cluster has failed, from the observations every observer records: a
//! cluster is **failed** only when at least `confirmations` different observers each saw at
//! least `failure_threshold` probes in a row fail, recently. One observer's flaky link makes
//! it **suspect**, never failed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Observation, ProbeResult};

/// When to call a cluster failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Consecutive failed probes an observer needs to see.
    pub failure_threshold: u32,
    /// Distinct observers that must agree (this one included).
    pub confirmations: u32,
    /// Observations older than this are ignored (an observer that stopped reporting does
    /// not confirm anything).
    pub freshness_secs: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            failure_threshold: 3,
            confirmations: 2,
            freshness_secs: 120,
        }
    }
}

/// What the observations say about one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "PascalCase")]
pub enum Verdict {
    /// No fresh observation.
    Unknown,
    /// Every fresh observer's last probe passed.
    Healthy,
    /// Some observers see failures, not (yet) enough to call it failed.
    Suspect {
        /// Observers whose last probe failed, with their consecutive failures.
        failing: Vec<(String, u32)>,
        /// Observers still needed to confirm.
        need: u32,
    },
    /// Confirmed failed.
    Failed {
        /// The observers that confirmed it.
        confirmed_by: Vec<String>,
        /// The earliest first failure among them.
        since: Option<DateTime<Utc>>,
    },
}

impl Verdict {
    /// `Healthy`, `Suspect`, `Failed`, `Unknown`.
    pub fn phase(&self) -> &'static str {
        match self {
            Self::Unknown => "Unknown",
            Self::Healthy => "Healthy",
            Self::Suspect { .. } => "Suspect",
            Self::Failed { .. } => "Failed",
        }
    }

    /// One line for people.
    pub fn describe(&self, policy: &Policy) -> String {
        match self {
            Self::Unknown => "no observer has probed it recently".to_string(),
            Self::Healthy => "every observer's last probe passed".to_string(),
            Self::Suspect { failing, need } => format!(
                "{} observer(s) see failures ({}); {} more must see {} in a row to confirm",
                failing.len(),
                failing
                    .iter()
                    .map(|(o, n)| format!("{o}: {n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                need,
                policy.failure_threshold
            ),
            Self::Failed { confirmed_by, since } => format!(
                "failed, confirmed by {}{}",
                confirmed_by.join(", "),
                since
                    .map(|s| format!(" (failing since {})", s.to_rfc3339()))
                    .unwrap_or_default()
            ),
        }
    }
}

/// The verdict on one cluster from the observations of it.
pub fn assess(observations: &[Observation], policy: &Policy, now: DateTime<Utc>) -> Verdict {
    let fresh: Vec<&Observation> = observations
        .iter()
        .filter(|o| (now - o.at).num_seconds() <= policy.freshness_secs as i64)
        .collect();
    if fresh.is_empty() {
        return Verdict::Unknown;
    }
    let failing: Vec<&Observation> = fresh.iter().copied().filter(|o| !o.ok).collect();
    if failing.is_empty() {
        return Verdict::Healthy;
    }
    let mut confirmed: Vec<&Observation> = failing
        .iter()
        .copied()
        .filter(|o| o.consecutive_failures >= policy.failure_threshold.max(1))
        .collect();
    confirmed.sort_by(|a, b| a.observer.cmp(&b.observer));
    confirmed.dedup_by(|a, b| a.observer == b.observer);
    let needed = policy.confirmations.max(1);
    if confirmed.len() as u32 >= needed {
        return Verdict::Failed {
            confirmed_by: confirmed.iter().map(|o| o.observer.clone()).collect(),
            since: confirmed.iter().filter_map(|o| o.first_failure).min(),
        };
    }
    Verdict::Suspect {
        failing: failing
            .iter()
            .map(|o| (o.observer.clone(), o.consecutive_failures))
            .collect(),
        need: needed - confirmed.len() as u32,
    }
}

/// The observer's new observation after a probe: consecutive failures carry over from its
/// previous observation of the same cluster.
pub fn observe(
    previous: Option<&Observation>,
    cluster: &str,
    observer: &str,
    probe: ProbeResult,
    now: DateTime<Utc>,
) -> Observation {
    let ok = probe.ok();
    let (failures, first_failure) = match (ok, previous) {
        (true, _) => (0, None),
        (false, Some(p)) if !p.ok => (p.consecutive_failures + 1, p.first_failure.or(Some(p.at))),
        (false, _) => (1, Some(now)),
    };
    Observation {
        cluster: cluster.to_string(),
        observer: observer.to_string(),
        at: now,
        ok,
        consecutive_failures: failures,
        first_failure,
        last_success: if ok {
            Some(now)
        } else {
            previous.and_then(|p| p.last_success)
        },
        checks: probe.checks,
    }
}

#[cfg(test)]
mod tests {
    use super::super::Check;
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).expect("time")
    }

    fn probe(ok: bool) -> ProbeResult {
        ProbeResult {
            checks: vec![Check {
                name: "readyz".into(),
                ok,
                critical: true,
                message: String::new(),
                millis: 1,
            }],
        }
    }

    fn run(observer: &str, results: &[bool], start: i64) -> Observation {
        let mut o: Option<Observation> = None;
        for (i, ok) in results.iter().enumerate() {
            o = Some(observe(
                o.as_ref(),
                "c1",
                observer,
                probe(*ok),
                at(start + i as i64 * 10),
            ));
        }
        o.expect("at least one probe")
    }

    #[test]
    fn one_observer_never_fails_a_cluster() {
        let p = Policy::default();
        let a = run("c2", &[true, false, false, false, false], 0);
        assert_eq!(a.consecutive_failures, 4);
        assert_eq!(a.first_failure, Some(at(10)));
        let b = run("c3", &[true, true, true, true, true], 0);
        let v = assess(&[a.clone(), b], &p, at(45));
        assert!(
            matches!(&v, Verdict::Suspect { need: 1, failing } if failing.len() == 1),
            "{v:?}"
        );
        assert!(v.describe(&p).contains("1 more"));
    }

    #[test]
    fn two_observers_with_enough_failures_confirm() {
        let p = Policy::default();
        let a = run("c2", &[false, false, false], 0);
        let b = run("laptop", &[true, false, false], 0);
        // b has seen only two in a row: not yet.
        assert!(matches!(
            assess(&[a.clone(), b.clone()], &p, at(25)),
            Verdict::Suspect { need: 1, .. }
        ));
        let b = observe(Some(&b), "c1", "laptop", probe(false), at(30));
        let v = assess(&[a, b], &p, at(31));
        assert_eq!(
            v,
            Verdict::Failed {
                confirmed_by: vec!["c2".into(), "laptop".into()],
                since: Some(at(0))
            }
        );
    }

    #[test]
    fn stale_observations_and_recoveries_do_not_count() {
        let p = Policy::default();
        let a = run("c2", &[false, false, false], 0);
        let b = run("c3", &[false, false, false], 0);
        // An hour later, nobody has reported since: unknown, not failed.
        assert_eq!(assess(&[a.clone(), b.clone()], &p, at(3600)), Verdict::Unknown);
        let healed = observe(Some(&b), "c1", "c3", probe(true), at(40));
        assert_eq!(healed.consecutive_failures, 0);
        assert_eq!(healed.last_success, Some(at(40)));
        assert!(matches!(
            assess(&[a, healed], &p, at(41)),
            Verdict::Suspect { .. }
        ));
        assert_eq!(assess(&[], &p, at(0)), Verdict::Unknown);
    }
}
