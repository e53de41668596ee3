//! Failover, failback, relocate and drills: one engine. A run is planned by a pure function
//! from the request and what was observed ([`plan::plan`]), recorded as an explicit state
//! machine ([`machine::RunRecord`]) in every repository of the plan, and applied step by step
//! by a small executor ([`execute::run`]) that records every transition, so an interrupted
//! run resumes where it stopped; every step is idempotent.

pub mod data;
pub mod execute;
pub mod machine;
pub mod observe;
pub mod ready;
mod restart;
pub mod run_plan;
pub mod steps;
pub mod teardown;
pub mod traffic;
mod verify;
pub mod volume_check;
pub mod volume_preflight;

use std::collections::BTreeMap;
use std::sync::Arc;

use lifeboat_backup::Repository;
use lifeboat_backup::progress::Progress;

pub use execute::{Event, RunStore, run, start};
pub use machine::{Next, Phase, RunRecord, StepRecord, StepState};
pub use observe::observe;
pub use run_plan::{Observed, Plan, PlanError, Request};
pub use steps::{Kind, RecoveryPointRef, Step};

use crate::advice::Advice;
use crate::clusters::{ClusterRecord, Connector};
use crate::state::StateStore;

/// Why a run could not start or continue.
#[derive(Debug, thiserror::Error)]
pub enum FailoverError {
    /// The federation state failed.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// The fencing lease could not be read or moved.
    #[error(transparent)]
    Fence(#[from] crate::fence::FenceError),
    /// No plan could be made.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A run record cannot be continued.
    #[error(transparent)]
    Resume(#[from] machine::ResumeError),
    /// Another process wrote the run meanwhile.
    #[error("run {run} was changed by {owner} while this process ran it; it stops here")]
    TakenOver {
        /// The run.
        run: String,
        /// Who wrote it.
        owner: String,
    },
    /// A run of the plan is already in progress.
    #[error("{kind} run {run} of plan {plan} is in progress (step {step}); resume it, or wait for it")]
    InProgress {
        /// Its kind.
        kind: String,
        /// Its id.
        run: String,
        /// The plan.
        plan: String,
        /// The step it is at.
        step: String,
    },
    /// The run named does not exist.
    #[error("no run {0} in the federation state")]
    NoRun(String),
    /// A candidate recovery point could not be read to tell whether it holds an application.
    #[error(
        "read snapshot {snapshot} in {repository} to tell whether it holds application {application}: \
         {source}; nothing was changed: run again once the repository answers"
    )]
    RecoveryPointUnreadable {
        /// The application.
        application: String,
        /// The snapshot (hex id).
        snapshot: String,
        /// The repository's URL.
        repository: String,
        /// What the repository said.
        #[source]
        source: lifeboat_backup::RepoError,
    },
    /// A resume asked to move volume data differently from how the run was planned.
    #[error(
        "run {run} was planned {planned} volume data; resume it {fix} (mixing would restore claims \
         without the data the final backup took, or the other way round)"
    )]
    VolumesDiffer {
        /// The run.
        run: String,
        /// `with` or `without`.
        planned: &'static str,
        /// What to pass instead.
        fix: &'static str,
    },
}

impl FailoverError {
    /// What the operator can do about it, if anything.
    pub fn advice(&self) -> Option<Advice> {
        match self {
            Self::Fence(e) => e.advice(),
            Self::Plan(e) => e.advice(),
            Self::TakenOver { .. } | Self::NoRun(_) => Some(Advice::ReviewRuns),
            Self::InProgress { kind, plan, .. } => Some(Advice::ResumeRun {
                kind: kind.clone(),
                plan: plan.clone(),
            }),
            Self::State(e) => e.advice(),
            Self::Resume(_) | Self::VolumesDiffer { .. } | Self::RecoveryPointUnreadable { .. } => None,
        }
    }
}

/// The key of a plan's stored copy.
pub fn plan_key(name: &str) -> String {
    crate::state::key(&["plans", name])
}

/// Stores the plan a run uses in every repository, so a later run (or a resume from another
/// machine) can name it instead of carrying the file.
pub async fn store_plan(
    state: &StateStore,
    fp: &crate::crd::FailoverPlan,
) -> Result<(), crate::state::StateError> {
    use kube::ResourceExt;
    state
        .overwrite_all(&plan_key(&fp.name_any()), fp)
        .await
        .map(|_| ())
}

/// A plan stored by an earlier run.
pub async fn stored_plan(
    state: &StateStore,
    name: &str,
) -> Result<Option<crate::crd::FailoverPlan>, crate::state::StateError> {
    Ok(state.read_values(&plan_key(name)).await?.into_iter().next())
}

/// What a run works with: the federation state, the repositories that could be opened, a
/// way to reach each cluster, and where progress goes.
pub struct Env {
    /// The federation state (every repository of the plan that could be opened).
    pub state: StateStore,
    /// Repositories by URL.
    pub repositories: BTreeMap<String, Arc<Repository>>,
    /// How clusters are reached.
    pub connector: Connector,
    /// The registered clusters by name.
    pub records: BTreeMap<String, ClusterRecord>,
    /// Who runs it (`drctl@host`, `agent@cluster`), for records, audit and observations.
    pub actor: String,
    /// How volume data moves (`None`: objects only, claims come back without their data).
    pub volumes: Option<data::VolumeMover>,
    /// Objects restored and backed up, for a progress bar.
    pub items: Arc<Progress>,
    /// Step events, for printing.
    pub events: Arc<dyn Fn(&Event) + Send + Sync>,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("state", &self.state)
            .field("repositories", &self.repositories.keys().collect::<Vec<_>>())
            .field("connector", &self.connector)
            .field("actor", &self.actor)
            .finish_non_exhaustive()
    }
}
