//! `drctl failover`, `failback`, `relocate`: plan (print it for --dry-run), run with
//! progress, resume with --resume.

use anyhow::Result;
use kube::ResourceExt;
use lifeboat_federation::failover::{self, Kind, Phase, Plan, Request, RunRecord, StepState, execute};

use super::plan_env;
use crate::cli::{FailbackArgs, FailoverArgs, GlobalArgs, Output, PlanArgs, RelocateArgs};
use crate::output;
use crate::progress::Bar;

/// `drctl failover`.
pub async fn failover(args: &FailoverArgs, g: &GlobalArgs) -> Result<u8> {
    go(&args.plan, g, Kind::Failover, args.to.clone(), args.force).await
}

/// `drctl failback`.
pub async fn failback(args: &FailbackArgs, g: &GlobalArgs) -> Result<u8> {
    go(&args.plan, g, Kind::Failback, None, false).await
}

/// `drctl relocate`.
pub async fn relocate(args: &RelocateArgs, g: &GlobalArgs) -> Result<u8> {
    go(&args.plan, g, Kind::Relocate, Some(args.to.clone()), false).await
}

/// The plan as people read it.
pub fn plan_table(p: &Plan) -> String {
    let mut s = format!(
        "{} of plan {}: {} → {}\n",
        p.kind.as_str(),
        p.plan,
        p.from.as_deref().unwrap_or("-"),
        p.to
    );
    for (app, rp) in &p.recovery_points {
        if let Some(rp) = rp {
            s.push_str(&format!(
                "recovery point of {app}: {} taken {} by {} in {}\n",
                &rp.id[..rp.id.len().min(12)],
                rp.time.to_rfc3339(),
                rp.cluster.as_deref().unwrap_or("?"),
                rp.repository
            ));
        }
    }
    for w in &p.warnings {
        s.push_str(&format!("warning: {w}\n"));
    }
    let rows: Vec<Vec<String>> = p
        .steps
        .iter()
        .enumerate()
        .map(|(i, st)| vec![(i + 1).to_string(), st.title()])
        .collect();
    s.push_str(&output::table(&["#", "STEP"], &rows));
    s
}

fn summary(r: &RunRecord) -> String {
    let secs = |t: chrono::DateTime<chrono::Utc>| (t - r.started).num_milliseconds() as f64 / 1000.0;
    let mut s = format!(
        "{} {} {}: {} → {}",
        r.plan.kind.as_str(),
        r.id,
        match r.phase {
            Phase::Succeeded => "succeeded",
            Phase::Failed => "FAILED",
            Phase::Running => "stopped",
        },
        r.plan.from.as_deref().unwrap_or("-"),
        r.plan.to
    );
    if let Some(ready) = r.ready_at() {
        s.push_str(&format!("; ready {:.1} s after the start", secs(ready)));
        if let Some(rto) = r.recovery_seconds().filter(|rto| *rto < secs(ready) - 0.05) {
            s.push_str(&format!(
                " (RTO {rto:.1} s: the read-back of volume data is left out)"
            ));
        }
    }
    if let Some(end) = r.finished {
        s.push_str(&format!("; finished after {:.1} s", secs(end)));
    }
    s.push('\n');
    s
}

async fn go(args: &PlanArgs, g: &GlobalArgs, kind: Kind, to: Option<String>, force: bool) -> Result<u8> {
    let (fp, env) = plan_env(g, &args.fed, &args.volumes, &args.plan).await?;
    let (record, mut store) = if args.resume {
        let (record, store) = execute::resume(&env, &fp.name_any(), kind).await?;
        note!("resuming {} at revision {}", record.id, record.revision);
        (record, store)
    } else {
        let observed = failover::observe(&env, &fp, kind).await?;
        let request = Request {
            kind: Some(kind),
            to,
            force,
            namespace_suffix: None,
        };
        let plan = failover::run_plan::plan(&request, &fp, &observed)?;
        if args.dry_run {
            output::print(g.format, &plan, plan_table)?;
            return Ok(0);
        }
        if g.format == Output::Table {
            note!("{}", plan_table(&plan).trim_end());
        }
        failover::start(&env, &fp, plan).await?
    };
    let bar = Bar::start_items(&env.items, "objects", g.quiet);
    let record = failover::run(&env, record, &mut store).await?;
    drop(bar);
    output::print(g.format, &record, summary)?;
    if record.phase == Phase::Succeeded {
        Ok(0)
    } else {
        // The cause, even with --quiet (which hides the step lines above).
        if let Some(failed) = record.steps.iter().find(|s| s.state == StepState::Failed) {
            eprintln!(
                "error: {} failed: {}",
                failed.step.title(),
                failed.message.as_deref().unwrap_or("no reason recorded")
            );
        }
        note!(
            "the run stopped; fix the cause, then `drctl {} --plan {} --resume` continues it",
            kind.as_str(),
            args.plan
        );
        Ok(1)
    }
}
