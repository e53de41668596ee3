//! The Schedule controller: apply [`plan::next_step`] one step at a time, keep the status
//! (last/next run, last success) current, and requeue at the next run.

pub(crate) mod cron;
pub mod next_step;
pub(crate) mod retention;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ListParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};

pub use cron::{CronSchedule, InvalidField};
use next_step::{Observed, ScheduledBackup, Step, derived_status, next_step};

use super::context::Context;
use super::status::write_status;
use crate::SCHEDULE_LABEL;
use crate::crd::{Backup, Condition, Schedule};
use crate::error::{Error, Result};
use crate::metrics::ScheduleLabels;

/// Annotation on a scheduled Backup: the scheduled time it was made for (RFC 3339).
pub const SCHEDULED_TIME_ANNOTATION: &str = "lifeboat.dev/scheduled-time";
/// Annotation on a scheduled Backup: 0 for the run, N for its Nth retry.
pub const ATTEMPT_ANNOTATION: &str = "lifeboat.dev/attempt";

fn time_of(t: Option<&String>) -> Option<DateTime<Utc>> {
    t.and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn scheduled(b: &Backup) -> Option<ScheduledBackup> {
    let ann = b.annotations();
    let status = b.status.clone().unwrap_or_default();
    Some(ScheduledBackup {
        name: b.name_any(),
        scheduled: time_of(ann.get(SCHEDULED_TIME_ANNOTATION)).or_else(|| {
            b.creation_timestamp()
                .and_then(|t| DateTime::from_timestamp_millis(t.0.as_millisecond()))
        })?,
        attempt: ann
            .get(ATTEMPT_ANNOTATION)
            .and_then(|a| a.parse().ok())
            .unwrap_or(0),
        phase: status.phase,
        completion: time_of(status.completion_time.as_ref()),
    })
}

fn new_backup(schedule: &Schedule, name: &str, at: DateTime<Utc>, attempt: u32) -> Backup {
    let mut labels = BTreeMap::new();
    labels.insert(SCHEDULE_LABEL.to_string(), schedule.name_any());
    let mut annotations = BTreeMap::new();
    annotations.insert(SCHEDULED_TIME_ANNOTATION.to_string(), at.to_rfc3339());
    annotations.insert(ATTEMPT_ANNOTATION.to_string(), attempt.to_string());
    Backup {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: schedule.namespace(),
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        spec: schedule.spec.template.clone(),
        status: None,
    }
}

async fn create_backup(
    ctx: &Context,
    schedule: &Schedule,
    name: &str,
    scheduled: DateTime<Utc>,
    attempt: u32,
) -> Result<()> {
    let namespace = schedule.namespace().unwrap_or_default();
    let api: Api<Backup> = Api::namespaced(ctx.client.clone(), &namespace);
    let backup = new_backup(schedule, name, scheduled, attempt);
    match api.create(&PostParams::default(), &backup).await {
        Ok(_) => {
            let what = if attempt == 0 {
                "scheduled run".to_string()
            } else {
                format!("retry {attempt}")
            };
            let reference = schedule.object_ref(&());
            ctx.event(&reference, false, "BackupCreated", format!("{name} ({what})"))
                .await;
            Ok(())
        }
        // Made before a restart; the next round sees it.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(Error::kube(format!("create Backup {namespace}/{name}"), e)),
    }
}

/// Reconciles one Schedule.
pub async fn reconcile(schedule: Arc<Schedule>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = schedule
        .namespace()
        .ok_or_else(|| Error::Malformed(format!("Schedule {} has no namespace", schedule.name_any())))?;
    let name = schedule.name_any();
    let schedules: Api<Schedule> = Api::namespaced(ctx.client.clone(), &namespace);
    let backups_api: Api<Backup> = Api::namespaced(ctx.client.clone(), &namespace);
    if schedule.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let listed = backups_api
        .list(&ListParams::default().labels(&format!("{SCHEDULE_LABEL}={name}")))
        .await
        .map_err(|e| Error::kube(format!("list Backups of Schedule {namespace}/{name}"), e))?;
    let backups: Vec<ScheduledBackup> = listed
        .items
        .iter()
        .filter(|b| b.metadata.deletion_timestamp.is_none())
        .filter_map(scheduled)
        .collect();
    let old = schedule.status.clone().unwrap_or_default();
    let now = Utc::now();
    let created = schedule
        .creation_timestamp()
        .and_then(|t| DateTime::from_timestamp_millis(t.0.as_millisecond()))
        .unwrap_or(now);
    let observed = Observed {
        name: &name,
        spec: &schedule.spec,
        status: &old,
        created,
        now,
        backups: &backups,
    };
    let mut status = derived_status(&observed);
    if let Some(t) = time_of(status.last_success_time.as_ref()) {
        ctx.metrics
            .last_success
            .get_or_create(&ScheduleLabels {
                namespace: namespace.clone(),
                schedule: name.clone(),
            })
            .set(t.timestamp());
    }
    let reference = schedule.object_ref(&());
    let step = next_step(&observed);
    let valid = !matches!(step, Step::Invalid(_));
    let soon = Action::requeue(Duration::from_millis(200));
    let action = match step {
        Step::Invalid(invalid) => {
            Condition::set(
                &mut status.conditions,
                Condition::new("Valid", false, "InvalidSpec", &invalid.message),
            );
            status.message = Some(invalid.message.clone());
            status.next_run_time = None;
            if old.message.as_ref() != Some(&invalid.message) {
                ctx.event(&reference, true, "InvalidSchedule", invalid.message)
                    .await;
            }
            Action::await_change()
        }
        Step::Prune(names) => {
            for b in &names {
                match backups_api.delete(b, &Default::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => {
                        return Err(Error::kube(
                            format!("delete Backup {namespace}/{b} (retention)"),
                            e,
                        ));
                    }
                }
            }
            ctx.event(
                &reference,
                false,
                "BackupsPruned",
                format!("deleted beyond retention: {}", names.join(", ")),
            )
            .await;
            soon
        }
        Step::Paused => {
            status.message = Some("paused; no Backups are created".to_string());
            Action::await_change()
        }
        Step::CreateBackup { name: b, scheduled } => {
            create_backup(&ctx, &schedule, &b, scheduled, 0).await?;
            status.last_run_time = Some(scheduled.to_rfc3339());
            status.last_backup = Some(b);
            status.message = None;
            soon
        }
        Step::Retry {
            name: b,
            scheduled,
            attempt,
        } => {
            create_backup(&ctx, &schedule, &b, scheduled, attempt).await?;
            status.last_backup = Some(b);
            status.message = Some(format!(
                "retry {attempt} of the run at {}",
                scheduled.to_rfc3339()
            ));
            soon
        }
        Step::Skip { scheduled, reason } => {
            status.last_run_time = Some(scheduled.to_rfc3339());
            ctx.event(&reference, true, "RunSkipped", reason.clone()).await;
            status.message = Some(reason);
            soon
        }
        Step::Wait { until } => match until {
            Some(t) => {
                let wait = (t - now).to_std().unwrap_or_default();
                Action::requeue(wait.min(Duration::from_secs(3600)) + Duration::from_millis(50))
            }
            None => Action::await_change(),
        },
    };
    if valid {
        Condition::set(&mut status.conditions, Condition::new("Valid", true, "Valid", ""));
    }
    if status != old {
        write_status(&schedules, &name, Some(&old), &status).await?;
    }
    Ok(action)
}
