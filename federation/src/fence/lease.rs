//! The fencing lease of one protected application, and the pure decisions about it.
//!
//! A lease names the cluster that may run the application and back it up into the shared
//! repositories, at an **epoch** that only grows. A failover takes the lease over by writing
//! `epoch + 1` with a compare-and-swap; a cluster that reads a lease held by another cluster
//! at a higher epoch than its own is fenced. The lease also keeps the history of terms, so a
//! recovery point can be checked against who held the application when it was taken.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How many past terms a lease remembers.
pub const HISTORY: usize = 100;

/// One term: who held the application from when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Term {
    /// The epoch of the term.
    pub epoch: u64,
    /// The cluster holding it.
    pub holder: String,
    /// When it began.
    pub since: DateTime<Utc>,
    /// Why (`initial`, `failover run …`, `relocate run …`).
    pub reason: String,
}

/// `federation/fence/<plan>/<application>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceLease {
    /// The plan.
    pub plan: String,
    /// The application.
    pub application: String,
    /// The current epoch; starts at 1.
    pub epoch: u64,
    /// The cluster that holds it.
    pub holder: String,
    /// When the holder last renewed it (its controller, through the store): a liveness signal
    /// seen by every observer that reads the store.
    pub renewed: DateTime<Utc>,
    /// Past and current terms, oldest first, at most [`HISTORY`].
    pub history: Vec<Term>,
}

impl FenceLease {
    /// The first lease of an application.
    pub fn initial(plan: &str, application: &str, holder: &str, now: DateTime<Utc>) -> Self {
        Self {
            plan: plan.to_string(),
            application: application.to_string(),
            epoch: 1,
            holder: holder.to_string(),
            renewed: now,
            history: vec![Term {
                epoch: 1,
                holder: holder.to_string(),
                since: now,
                reason: "initial".to_string(),
            }],
        }
    }

    /// The lease after `to` takes it over.
    pub fn taken_over(&self, to: &str, now: DateTime<Utc>, reason: &str) -> Self {
        let mut next = self.clone();
        next.epoch = self.epoch + 1;
        next.holder = to.to_string();
        next.renewed = now;
        next.history.push(Term {
            epoch: next.epoch,
            holder: to.to_string(),
            since: now,
            reason: reason.to_string(),
        });
        if next.history.len() > HISTORY {
            let excess = next.history.len() - HISTORY;
            next.history.drain(..excess);
        }
        next
    }

    /// Who held the application at `t`: the term that had begun by then. `None` before the
    /// first remembered term.
    pub fn holder_at(&self, t: DateTime<Utc>) -> Option<&str> {
        self.history
            .iter()
            .rev()
            .find(|term| term.since <= t)
            .map(|term| term.holder.as_str())
    }
}

/// What a cluster should do about a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// No lease yet.
    Free,
    /// This cluster holds it.
    Holder {
        /// The epoch held.
        epoch: u64,
    },
    /// Another cluster holds it: this one must not run or back up the application.
    Fenced {
        /// The holder.
        by: String,
        /// Its epoch.
        epoch: u64,
    },
}

/// Where `me` stands given the highest-epoch lease found in the reachable copies.
pub fn standing(lease: Option<&FenceLease>, me: &str) -> Standing {
    match lease {
        None => Standing::Free,
        Some(l) if l.holder == me => Standing::Holder { epoch: l.epoch },
        Some(l) => Standing::Fenced {
            by: l.holder.clone(),
            epoch: l.epoch,
        },
    }
}

/// The lease with the highest epoch (the newest renewal among equals): what every reader
/// believes when copies disagree.
pub fn newest<'a>(leases: impl IntoIterator<Item = &'a FenceLease>) -> Option<&'a FenceLease> {
    leases
        .into_iter()
        .max_by(|a, b| a.epoch.cmp(&b.epoch).then(a.renewed.cmp(&b.renewed)))
}

/// What a take-over must write, given the newest lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TakeOver {
    /// `to` already holds it from this very take-over (same `reason`, which names the run):
    /// nothing to bump, so a resumed failover does not bump twice.
    Held(FenceLease),
    /// Write this lease.
    Write(FenceLease),
}

/// Decides a take-over by `to` for the reason `reason` (which names the run, so the decision
/// is idempotent per run).
pub fn take_over(
    newest: Option<&FenceLease>,
    plan: &str,
    application: &str,
    to: &str,
    now: DateTime<Utc>,
    reason: &str,
) -> TakeOver {
    match newest {
        Some(l) if l.holder == to && l.history.last().is_some_and(|t| t.reason == reason) => {
            TakeOver::Held(l.clone())
        }
        Some(l) => TakeOver::Write(l.taken_over(to, now, reason)),
        None => {
            // Nobody recorded a holder: the first term goes straight to `to`, one epoch above
            // the initial epoch 1, so a cluster that believed itself the initial holder is fenced.
            let mut first = FenceLease::initial(plan, application, to, now);
            first.epoch = 2;
            if let Some(t) = first.history.first_mut() {
                t.epoch = 2;
                t.reason = reason.to_string();
            }
            TakeOver::Write(first)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).expect("time")
    }

    #[test]
    fn a_take_over_bumps_the_epoch_and_fences_the_old_holder() {
        let l = FenceLease::initial("p", "shop", "c1", at(0));
        assert_eq!(standing(Some(&l), "c1"), Standing::Holder { epoch: 1 });
        let TakeOver::Write(next) = take_over(Some(&l), "p", "shop", "c2", at(10), "failover run r1") else {
            panic!("must write");
        };
        assert_eq!(next.epoch, 2);
        assert_eq!(
            standing(Some(&next), "c1"),
            Standing::Fenced {
                by: "c2".into(),
                epoch: 2
            }
        );
        assert_eq!(standing(None, "c1"), Standing::Free);
        assert_eq!(next.holder_at(at(5)), Some("c1"));
        assert_eq!(next.holder_at(at(10)), Some("c2"));
        assert_eq!(next.holder_at(at(-1)), None);
    }

    #[test]
    fn a_resumed_take_over_does_not_bump_twice() {
        let l = FenceLease::initial("p", "shop", "c1", at(0)).taken_over("c2", at(1), "run r1");
        assert!(matches!(
            take_over(Some(&l), "p", "shop", "c2", at(2), "run r1"),
            TakeOver::Held(_)
        ));
        // Another run to the same holder is a new term.
        assert!(matches!(
            take_over(Some(&l), "p", "shop", "c2", at(2), "run r2"),
            TakeOver::Write(x) if x.epoch == 3
        ));
        // Someone else moved it meanwhile: write above theirs.
        let moved = l.taken_over("c3", at(3), "other");
        assert!(matches!(
            take_over(Some(&moved), "p", "shop", "c2", at(4), "run r1"),
            TakeOver::Write(x) if x.epoch == 4 && x.holder == "c2"
        ));
    }

    #[test]
    fn the_newest_copy_wins_and_history_is_bounded() {
        let a = FenceLease::initial("p", "x", "c1", at(0));
        let b = a.taken_over("c2", at(5), "f");
        assert_eq!(newest([&a, &b]).map(|l| l.epoch), Some(2));
        let mut l = a.clone();
        for i in 0..(HISTORY as i64 + 20) {
            l = l.taken_over(if i % 2 == 0 { "c2" } else { "c1" }, at(i + 1), "f");
        }
        assert_eq!(l.history.len(), HISTORY);
        assert_eq!(l.history.last().map(|t| t.epoch), Some(l.epoch));
    }

    #[test]
    fn a_first_take_over_outranks_an_unrecorded_initial_holder() {
        let TakeOver::Write(l) = take_over(None, "p", "x", "c2", at(0), "failover") else {
            panic!("must write");
        };
        assert_eq!((l.epoch, l.holder.as_str()), (2, "c2"));
    }
}
