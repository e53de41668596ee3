//! Split-brain protection: an epoch-fenced lease per protected application, kept in every
//! repository of the plan by compare-and-swap ([`lease`]: the pure rules, this module: the
//! writes), and what a fenced cluster does about it ([`enforce`]: scale the application to
//! zero and stop backing it up; [`blocklist`]: cut its RBD clients off at Ceph).

pub mod blocklist;
pub mod enforce;
pub mod lease;

use chrono::Utc;
pub use lease::{FenceLease, Standing, Term, standing};

use crate::state::{Cas, Replica, StateError, StateStore, Versioned, key};

/// How often a take-over re-reads and retries after losing a race.
const ATTEMPTS: usize = 8;

/// Why the lease could not be read or moved.
#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// Others kept writing the lease while this take-over retried.
    #[error(
        "the fencing lease of {plan}/{application} kept changing while taking it over ({attempts} \
         attempts): another failover is running; try again when it is over"
    )]
    Contended {
        /// The plan.
        plan: String,
        /// The application.
        application: String,
        /// Attempts made.
        attempts: usize,
    },
}

impl FenceError {
    /// What the operator can do about it, if anything.
    pub fn advice(&self) -> Option<crate::advice::Advice> {
        match self {
            Self::Contended { .. } => Some(crate::advice::Advice::ReviewRuns),
            Self::State(_) => None,
        }
    }
}

/// The lease's key.
pub fn lease_key(plan: &str, application: &str) -> String {
    key(&["fence", plan, application])
}

/// What the copies of a lease say.
#[derive(Debug, Clone, Default)]
pub struct LeaseView {
    /// The highest-epoch lease among the reachable copies.
    pub newest: Option<FenceLease>,
    /// Repositories that could not be read, and why.
    pub unreachable: Vec<(String, String)>,
}

/// Reads every copy of the lease of `plan`/`application`.
pub async fn read(state: &StateStore, plan: &str, application: &str) -> Result<LeaseView, FenceError> {
    let k = lease_key(plan, application);
    let mut view = LeaseView::default();
    let mut found = Vec::new();
    for (r, got) in state.read_all::<FenceLease>(&k).await {
        match got {
            Ok(v) => found.extend(v.map(|v| v.value)),
            Err(e) => view.unreachable.push((r.url().to_string(), e.to_string())),
        }
    }
    if view.unreachable.len() == state.replicas().len() {
        let why: Vec<String> = view.unreachable.iter().map(|(_, e)| e.clone()).collect();
        return Err(StateError::Unreachable(why.join("; ")).into());
    }
    view.newest = lease::newest(&found).cloned();
    Ok(view)
}

/// What a take-over wrote.
#[derive(Debug, Clone)]
pub struct TakenOver {
    /// The lease now in force.
    pub lease: FenceLease,
    /// Whether the holder already had it (a resumed run): nothing was bumped.
    pub already_held: bool,
    /// Repositories that now hold it.
    pub written: Vec<String>,
    /// Repositories that could not be reached; their copy is brought up to date by the next
    /// renewal that reaches them (a lower epoch never wins over a higher one anyway).
    pub unreachable: Vec<(String, String)>,
}

/// Moves the lease of `plan`/`application` to `to`, bumping the epoch; idempotent per
/// `reason` (see [`lease::take_over`]). Every reachable copy is written by compare-and-swap,
/// in the plan's order, so concurrent take-overs serialise on the first reachable repository.
pub async fn take_over(
    state: &StateStore,
    plan: &str,
    application: &str,
    to: &str,
    reason: &str,
) -> Result<TakenOver, FenceError> {
    let k = lease_key(plan, application);
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            let jitter = rand::random::<u64>() % 200;
            tokio::time::sleep(std::time::Duration::from_millis(50 * attempt as u64 + jitter)).await;
        }
        let (copies, unreachable) = split(state.read_all::<FenceLease>(&k).await);
        if copies.is_empty() {
            let why: Vec<String> = unreachable.iter().map(|(_, e)| e.clone()).collect();
            return Err(StateError::Unreachable(why.join("; ")).into());
        }
        let newest = lease::newest(copies.iter().filter_map(|(_, c)| c.as_ref().map(|v| &v.value)));
        let decision = lease::take_over(newest, plan, application, to, Utc::now(), reason);
        let (target, already_held) = match decision {
            lease::TakeOver::Held(l) => (l, true),
            lease::TakeOver::Write(l) => (l, false),
        };
        match write_copies(&k, &copies, &target).await {
            Written::All(written, mut failed) => {
                failed.extend(unreachable);
                return Ok(TakenOver {
                    lease: target,
                    already_held,
                    written,
                    unreachable: failed,
                });
            }
            Written::Lost => continue,
            Written::Nowhere(failed) => {
                let why: Vec<String> = failed.iter().map(|(_, e)| e.clone()).collect();
                return Err(StateError::Unreachable(why.join("; ")).into());
            }
        }
    }
    Err(FenceError::Contended {
        plan: plan.to_string(),
        application: application.to_string(),
        attempts: ATTEMPTS,
    })
}

/// The outcome of a renewal round.
#[derive(Debug, Clone)]
pub struct Renewal {
    /// Where the renewing cluster stands.
    pub standing: Standing,
    /// The lease in force (after the renewal, when this cluster holds it).
    pub lease: Option<FenceLease>,
    /// Repositories that could not be reached.
    pub unreachable: Vec<(String, String)>,
}

/// The holder's heartbeat: renews the lease in every reachable copy if `me` holds it (and
/// brings stale copies up to its epoch); with `initialise`, creates the first lease for `me`
/// when there is none. A cluster that is not the holder only learns where it stands.
pub async fn renew(
    state: &StateStore,
    plan: &str,
    application: &str,
    me: &str,
    initialise: bool,
) -> Result<Renewal, FenceError> {
    let k = lease_key(plan, application);
    let (copies, unreachable) = split(state.read_all::<FenceLease>(&k).await);
    if copies.is_empty() {
        let why: Vec<String> = unreachable.iter().map(|(_, e)| e.clone()).collect();
        return Err(StateError::Unreachable(why.join("; ")).into());
    }
    let newest = lease::newest(copies.iter().filter_map(|(_, c)| c.as_ref().map(|v| &v.value))).cloned();
    let now = Utc::now();
    let target = match (lease::standing(newest.as_ref(), me), newest) {
        (Standing::Holder { .. }, Some(mut l)) => {
            l.renewed = now;
            l
        }
        (Standing::Free, _) if initialise => FenceLease::initial(plan, application, me, now),
        (standing, lease) => {
            return Ok(Renewal {
                standing,
                lease,
                unreachable,
            });
        }
    };
    // A lost race means someone moved the lease between our read and write: report where we
    // stood as read; the next round sees the new lease.
    let written = write_copies(&k, &copies, &target).await;
    let lease = match written {
        Written::All(..) => Some(target.clone()),
        Written::Lost => None,
        Written::Nowhere(failed) => {
            let why: Vec<String> = failed.iter().map(|(_, e)| e.clone()).collect();
            return Err(StateError::Unreachable(why.join("; ")).into());
        }
    };
    let standing = match &lease {
        Some(l) => lease::standing(Some(l), me),
        None => {
            let (copies, _) = split(state.read_all::<FenceLease>(&k).await);
            let newest =
                lease::newest(copies.iter().filter_map(|(_, c)| c.as_ref().map(|v| &v.value))).cloned();
            return Ok(Renewal {
                standing: lease::standing(newest.as_ref(), me),
                lease: newest,
                unreachable,
            });
        }
    };
    Ok(Renewal {
        standing,
        lease,
        unreachable,
    })
}

type Copy<'a> = (&'a Replica, Option<Versioned<FenceLease>>);
type Read<'a> = (&'a Replica, Result<Option<Versioned<FenceLease>>, StateError>);

fn split(reads: Vec<Read<'_>>) -> (Vec<Copy<'_>>, Vec<(String, String)>) {
    let mut copies = Vec::new();
    let mut unreachable = Vec::new();
    for (r, got) in reads {
        match got {
            Ok(v) => copies.push((r, v)),
            Err(e) => unreachable.push((r.url().to_string(), e.to_string())),
        }
    }
    (copies, unreachable)
}

/// What writing the copies did.
enum Written {
    /// Every reachable copy holds the target; those that failed, and why.
    All(Vec<String>, Vec<(String, String)>),
    /// A compare-and-swap was lost: re-read and decide again.
    Lost,
    /// No copy could be written.
    Nowhere(Vec<(String, String)>),
}

/// Writes `target` over every copy that is behind it. A copy already ahead of it, or at its
/// epoch with another holder, means a race was lost.
async fn write_copies(k: &str, copies: &[Copy<'_>], target: &FenceLease) -> Written {
    let mut written = Vec::new();
    let mut failed = Vec::new();
    for (r, current) in copies {
        let result = match current {
            Some(v) if v.value.epoch > target.epoch => return Written::Lost,
            Some(v) if v.value.epoch == target.epoch && v.value.holder != target.holder => {
                return Written::Lost;
            }
            Some(v) if v.value == *target => Ok(Cas::Written(v.version.clone())),
            Some(v) => r.update(k, target, &v.version).await,
            None => r.create(k, target).await,
        };
        match result {
            Ok(Cas::Written(_)) => written.push(r.url().to_string()),
            Ok(Cas::Conflict) => return Written::Lost,
            Err(e) => failed.push((r.url().to_string(), e.to_string())),
        }
    }
    if written.is_empty() {
        return Written::Nowhere(failed);
    }
    Written::All(written, failed)
}
