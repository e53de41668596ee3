//! Scheduled drills: each `Drill` runs on its cron schedule, one at a time, through the same
//! engine as `drctl drill`; its status keeps the history of measured RPO and RTO, and the
//! `lifeboat_drill_*` metrics show the latest.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use lifeboat_backup::progress::Progress;
use lifeboat_controller::crd::Condition;
use lifeboat_controller::reconcile::schedule::CronSchedule;
use lifeboat_controller::volumes::CephAccess;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Agent, event, pause};
use crate::crd::{Drill, DrillStatus, DrillSummary, FailoverPlan};
use crate::drill::{self, DrillRequest};
use crate::failover::Env;
use crate::failover::data::VolumeMover;

pub(super) async fn run(agent: Arc<Agent>, mut stop: watch::Receiver<bool>) {
    let mut running: HashMap<String, JoinHandle<()>> = HashMap::new();
    loop {
        running.retain(|_, h| !h.is_finished());
        let api: Api<Drill> = Api::namespaced(agent.client.clone(), &agent.config.namespace);
        let drills = api
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        let now = Utc::now();
        for d in drills {
            let name = d.name_any();
            if running.contains_key(&name) {
                continue;
            }
            let mut status = d.status.clone().unwrap_or_default();
            let cron = match CronSchedule::parse(&d.spec.schedule, d.spec.time_zone.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    Condition::set(
                        &mut status.conditions,
                        Condition::new("Valid", false, "InvalidSchedule", e.message),
                    );
                    write(&api, &d, &status).await;
                    continue;
                }
            };
            let last = status
                .last_run_time
                .as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc));
            let created = d
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| DateTime::from_timestamp(t.0.as_second(), 0).unwrap_or(now));
            let due = cron
                .latest(now)
                .is_some_and(|t| last.is_none_or(|l| t > l) && created.is_none_or(|c| t >= c));
            let next = cron.next(now).map(|t| t.to_rfc3339());
            if d.spec.suspend || !due {
                if status.next_run_time != next {
                    status.next_run_time = next;
                    write(&api, &d, &status).await;
                }
                continue;
            }
            status.last_run_time = Some(now.to_rfc3339());
            status.last_result = Some("Running".to_string());
            status.next_run_time = next;
            write(&api, &d, &status).await;
            let agent = agent.clone();
            let api = api.clone();
            running.insert(
                name.clone(),
                tokio::spawn(async move {
                    let summary = one_on_own_thread(agent.clone(), d.clone(), now).await;
                    // Re-read: status may have moved on meanwhile.
                    let Ok(fresh) = api.get(&name).await else { return };
                    let mut status = fresh.status.clone().unwrap_or_default();
                    status.last_result =
                        Some(if summary.success { "Succeeded" } else { "Failed" }.to_string());
                    Condition::set(
                        &mut status.conditions,
                        Condition::new(
                            "Succeeded",
                            summary.success,
                            if summary.success {
                                "TargetsMet"
                            } else {
                                "DrillFailed"
                            },
                            summary
                                .message
                                .clone()
                                .unwrap_or_else(|| "every step passed and every target was met".into()),
                        ),
                    );
                    status.history.insert(0, summary.clone());
                    status.history.truncate(fresh.spec.history_limit.max(1) as usize);
                    write(&api, &fresh, &status).await;
                    event(
                        &agent,
                        "Drill",
                        &name,
                        !summary.success,
                        if summary.success {
                            "DrillSucceeded"
                        } else {
                            "DrillFailed"
                        },
                        &format!(
                            "run {}: RPO {} s, RTO {} s{}",
                            summary.run,
                            summary
                                .rpo_seconds
                                .map(|v| format!("{v:.1}"))
                                .unwrap_or_else(|| "?".into()),
                            summary
                                .rto_seconds
                                .map(|v| format!("{v:.1}"))
                                .unwrap_or_else(|| "?".into()),
                            summary.message.map(|m| format!(": {m}")).unwrap_or_default()
                        ),
                    )
                    .await;
                }),
            );
        }
        if !pause(&mut stop, Duration::from_secs(1)).await {
            for (_, h) in running {
                h.abort();
            }
            return;
        }
    }
}

async fn write(api: &Api<Drill>, d: &Drill, status: &DrillStatus) {
    if let Err(e) =
        lifeboat_controller::reconcile::status::write_status(api, &d.name_any(), d.status.as_ref(), status)
            .await
    {
        tracing::debug!("federation agent: status of Drill {}: {e}", d.name_any());
    }
}

/// Runs [`one`] on a blocking-pool thread with `Handle::block_on`, which needs no `Send`
/// future: rustc cannot prove the engine's future `Send` for every lifetime ("implementation
/// of `Send` is not general enough", rust-lang/rust#64552 and kin), so it cannot go through
/// `tokio::spawn`. A drill is long and mostly waits, so a thread of its own costs nothing.
async fn one_on_own_thread(agent: Arc<Agent>, d: Drill, started: DateTime<Utc>) -> DrillSummary {
    let handle = tokio::runtime::Handle::current();
    let target = d.spec.target.clone().unwrap_or_default();
    match tokio::task::spawn_blocking(move || handle.block_on(one(&agent, &d, started))).await {
        Ok(summary) => summary,
        Err(e) => DrillSummary {
            run: String::new(),
            start_time: started.to_rfc3339(),
            target,
            success: false,
            rpo_seconds: None,
            rto_seconds: None,
            message: Some(format!("the drill's thread ended abnormally: {e}")),
        },
    }
}

/// Runs one drill; never fails, the summary says what went wrong.
async fn one(agent: &Agent, d: &Drill, started: DateTime<Utc>) -> DrillSummary {
    let failed = |target: &str, message: String| DrillSummary {
        run: String::new(),
        start_time: started.to_rfc3339(),
        target: target.to_string(),
        success: false,
        rpo_seconds: None,
        rto_seconds: None,
        message: Some(message),
    };
    let plans: Api<FailoverPlan> = Api::namespaced(agent.client.clone(), &agent.config.namespace);
    let plan = match plans.get_opt(&d.spec.plan).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            return failed(
                "",
                format!("FailoverPlan {} not found; fix spec.plan", d.spec.plan),
            );
        }
        Err(e) => return failed("", format!("read FailoverPlan {}: {e}", d.spec.plan)),
    };
    if let Err(e) = plan.validate() {
        return failed("", e.to_string());
    }
    let repos = agent.plan_repositories(&plan).await;
    let Some(state) = Agent::state(&repos) else {
        return failed(
            "",
            "none of the plan's repositories could be opened here".to_string(),
        );
    };
    let env = Env {
        records: agent.records(Some(&state)).await,
        state,
        repositories: repos,
        connector: agent.connector(),
        actor: agent.actor.clone(),
        // Ceph keys from the target classes' Secrets go through a short-lived file under
        // /tmp (a memory-backed emptyDir in the chart), as for a Restore.
        volumes: Some(VolumeMover {
            access: CephAccess::FromCluster {
                dir: std::env::temp_dir(),
            },
            secret: None,
            parallelism: 4,
        }),
        items: Arc::new(Progress::default()),
        events: Arc::new(|_| {}),
    };
    let request = DrillRequest {
        to: d.spec.target.clone(),
        namespace_suffix: d.spec.namespace_suffix.clone(),
    };
    let planned = match drill::plan(&env, &plan, &request).await {
        Ok(p) => p,
        Err(e) => return failed(d.spec.target.as_deref().unwrap_or(""), e.to_string()),
    };
    let target = planned.to.clone();
    match drill::run(&env, &plan, planned).await {
        Ok((_, report)) => {
            agent
                .metrics
                .drill(&plan.namespace().unwrap_or_default(), &report);
            DrillSummary {
                run: report.run.clone(),
                start_time: report.started.to_rfc3339(),
                target,
                success: report.success,
                rpo_seconds: report.rpo.measured_seconds,
                rto_seconds: report.rto.measured_seconds,
                message: (!report.success).then(|| report.failure()),
            }
        }
        Err(e) => failed(&target, e.to_string()),
    }
}
