//! The BackupReplication controller: copy the source repository's snapshots to every
//! destination after each finished Backup into the source and on the schedule, in a run of its
//! own (`run.rs`); the decision is `plan.rs`.

mod execute;
pub mod next_step;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};

use super::context::Context;
use super::status::write_status;
use crate::crd::{Backup, BackupReplication, BackupReplicationStatus, Condition, ReplicationPhase};
use crate::error::{Error, Result};
use crate::metrics::DestinationLabels;
use next_step::{InvalidReplication, ReplicationStep, ReplicationView, next_step, validate};

fn run_key(r: &BackupReplication) -> String {
    format!(
        "replication/{}/{}/{}",
        r.namespace().unwrap_or_default(),
        r.name_any(),
        r.uid().unwrap_or_default()
    )
}

fn parse_time(s: Option<&String>) -> Option<DateTime<Utc>> {
    s.and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// When the newest finished Backup into `repository` (in `api`'s namespace) ended.
async fn newest_backup(api: &Api<Backup>, repository: &str) -> Result<Option<DateTime<Utc>>> {
    let list = api
        .list(&Default::default())
        .await
        .map_err(|e| Error::kube("list Backups for replication".to_string(), e))?;
    Ok(list
        .items
        .iter()
        .filter(|b| b.spec.repository == repository)
        .filter(|b| !b.labels().contains_key(crate::SYNCED_LABEL))
        .filter_map(|b| b.status.as_ref())
        .filter(|s| s.phase.is_finished())
        .filter_map(|s| parse_time(s.completion_time.as_ref()))
        .max())
}

/// Feeds the lag metric from status, so a controller that just became leader (or restarted)
/// reports each destination's lag before its first copy.
fn report_lag(ctx: &Context, namespace: &str, name: &str, status: &BackupReplicationStatus) {
    for d in &status.destinations {
        if let Some(t) = parse_time(d.newest_snapshot_time.as_ref()) {
            let labels = DestinationLabels {
                namespace: namespace.to_string(),
                replication: name.to_string(),
                destination: d.name.clone(),
            };
            ctx.metrics.replication.set_newest(&labels, t.timestamp());
        }
    }
}

/// Reconciles one BackupReplication.
pub async fn reconcile(replication: Arc<BackupReplication>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = replication.namespace().ok_or_else(|| {
        Error::Malformed(format!(
            "BackupReplication {} has no namespace",
            replication.name_any()
        ))
    })?;
    let name = replication.name_any();
    let api: Api<BackupReplication> = Api::namespaced(ctx.client.clone(), &namespace);
    let key = run_key(&replication);
    let status = replication.status.clone().unwrap_or_default();
    report_lag(&ctx, &namespace, &name, &status);
    let now = Utc::now();
    let schedule = match validate(&replication.spec) {
        Ok(s) => s,
        Err(InvalidReplication(message)) => {
            let mut invalid = status.clone();
            invalid.phase = ReplicationPhase::Invalid;
            Condition::set(
                &mut invalid.conditions,
                Condition::new("Valid", false, "InvalidSpec", &message),
            );
            invalid.message = Some(message);
            if invalid != status {
                write_status(&api, &name, Some(&status), &invalid).await?;
            }
            return Ok(Action::await_change());
        }
    };
    let backups: Api<Backup> = Api::namespaced(ctx.client.clone(), &namespace);
    let view = ReplicationView {
        suspended: replication.spec.suspend,
        running_here: ctx.runs.is_running(&key),
        copying: status.phase == ReplicationPhase::Copying,
        generation: replication.metadata.generation,
        observed_generation: status.observed_generation,
        last_copy: parse_time(status.last_copy_time.as_ref()),
        last_failure: (status.phase == ReplicationPhase::Failed)
            .then(|| parse_time(status.last_completion_time.as_ref()))
            .flatten(),
        after_each_backup: replication.spec.after_each_backup,
        newest_backup: newest_backup(&backups, &replication.spec.source_repository).await?,
        schedule,
    };
    let poll = ctx.config.progress_interval.max(Duration::from_secs(1)) * 2;
    match next_step(&view, now) {
        ReplicationStep::Suspended => {
            if status.phase != ReplicationPhase::Suspended {
                let mut s = status.clone();
                s.phase = ReplicationPhase::Suspended;
                write_status(&api, &name, Some(&status), &s).await?;
            }
            Ok(Action::await_change())
        }
        ReplicationStep::Running => Ok(Action::requeue(poll)),
        ReplicationStep::Copy(reason) => {
            let mut running = status.clone();
            running.phase = ReplicationPhase::Copying;
            running.last_copy_time = Some(now.to_rfc3339());
            running.observed_generation = replication.metadata.generation;
            running.message = None;
            Condition::set(
                &mut running.conditions,
                Condition::new("Valid", true, "Valid", ""),
            );
            // Status first: a controller that dies after this line copies again (resuming).
            write_status(&api, &name, Some(&status), &running).await?;
            tracing::info!(replication = %name, namespace = %namespace, "copying: {reason}");
            ctx.runs
                .start(key, execute::run(ctx.clone(), replication.clone(), running));
            Ok(Action::requeue(poll))
        }
        ReplicationStep::Wait { until } => {
            if matches!(
                status.phase,
                ReplicationPhase::Invalid | ReplicationPhase::Suspended
            ) {
                let mut s = status.clone();
                s.phase = ReplicationPhase::Idle;
                s.message = None;
                Condition::set(&mut s.conditions, Condition::new("Valid", true, "Valid", ""));
                write_status(&api, &name, Some(&status), &s).await?;
            }
            Ok(match until {
                Some(t) => Action::requeue(
                    (t - now)
                        .to_std()
                        .unwrap_or(Duration::from_secs(1))
                        .min(Duration::from_secs(3600))
                        + Duration::from_millis(100),
                ),
                None => Action::await_change(),
            })
        }
    }
}
