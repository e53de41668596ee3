//! Drills: a failover rehearsed in isolation. The application is restored into a scratch
//! cluster or suffixed namespaces (no traffic hooks, no fencing: the primary and its
//! replication are untouched), waited for, verified against the recovery point, measured
//! (RPO: age of the recovery point; RTO: start to ready) and torn down; the report is kept
//! in the repositories and written as JSON, Markdown and HTML.

pub mod render;
pub mod report;

pub use report::DrillReport;

use kube::ResourceExt;

use crate::crd::FailoverPlan;
use crate::failover::{self, Env, FailoverError, Kind, Plan, Request, RunRecord};
use crate::state::{StateError, StateStore, WriteReport, key};

/// Where a drill goes.
#[derive(Debug, Clone, Default)]
pub struct DrillRequest {
    /// The target cluster (the first healthy standby if unset).
    pub to: Option<String>,
    /// Suffix of the restored namespaces.
    pub namespace_suffix: Option<String>,
}

/// Observes and plans a drill (what `--dry-run` prints).
pub async fn plan(env: &Env, fp: &FailoverPlan, request: &DrillRequest) -> Result<Plan, FailoverError> {
    let observed = failover::observe(env, fp, Kind::Drill).await?;
    let r = Request {
        kind: Some(Kind::Drill),
        to: request.to.clone(),
        force: false,
        namespace_suffix: request.namespace_suffix.clone(),
    };
    Ok(failover::run_plan::plan(&r, fp, &observed)?)
}

/// Runs a planned drill to the end (teardown included) and stores its report.
pub async fn run(
    env: &Env,
    fp: &FailoverPlan,
    plan: Plan,
) -> Result<(RunRecord, DrillReport), FailoverError> {
    let (record, mut store) = failover::start(env, fp, plan).await?;
    let record = failover::run(env, record, &mut store).await?;
    let report = DrillReport::from_run(&record);
    save(&env.state, &report).await?;
    Ok((record, report))
}

/// The report's key.
pub fn report_key(plan: &str, run: &str) -> String {
    key(&["drills", plan, run])
}

/// Stores a report in every repository.
pub async fn save(state: &StateStore, report: &DrillReport) -> Result<WriteReport, StateError> {
    state
        .create_all(&report_key(&report.plan, &report.run), report)
        .await
}

/// The stored reports of `plan`, oldest first.
pub async fn history(state: &StateStore, plan: &FailoverPlan) -> Result<Vec<DrillReport>, StateError> {
    let mut out = Vec::new();
    for k in state.list_union(&key(&["drills", &plan.name_any()])).await? {
        let copies: Vec<DrillReport> = state.read_values(&k).await?;
        out.extend(copies.into_iter().next());
    }
    out.sort_by_key(|r| r.started);
    Ok(out)
}
