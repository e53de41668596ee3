//! What a Schedule does next, decided from its spec, its status, the time and the Backups it
//! made. Pure: the controller applies the step and asks again.
//!
//! Backups are named after their scheduled time (`<schedule>-<YYYYMMDDhhmmss>` in UTC, retries
//! `…-r<N>`), so a controller that restarts between creating a Backup and recording it in
//! status finds the name taken instead of creating a second one.

use chrono::{DateTime, Utc};

use super::cron::{CronSchedule, InvalidField};
use super::retention::beyond_retention;
use crate::crd::{BackupPhase, ConcurrencyPolicy, ScheduleSpec, ScheduleStatus};

/// A Backup this Schedule created, as the plan sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledBackup {
    /// Its name.
    pub name: String,
    /// The scheduled time it was created for.
    pub scheduled: DateTime<Utc>,
    /// 0 for the scheduled run, N for its Nth retry.
    pub attempt: u32,
    /// Its phase.
    pub phase: BackupPhase,
    /// When it finished.
    pub completion: Option<DateTime<Utc>>,
}

/// The next thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The spec cannot be scheduled; the status says which field and why.
    Invalid(InvalidField),
    /// Delete these Backups, beyond retention.
    Prune(Vec<String>),
    /// Paused: create nothing.
    Paused,
    /// Create the Backup for `scheduled`.
    CreateBackup {
        /// Its name.
        name: String,
        /// The scheduled time.
        scheduled: DateTime<Utc>,
    },
    /// Create retry `attempt` of the failed run at `scheduled`.
    Retry {
        /// Its name.
        name: String,
        /// The scheduled time of the run being retried.
        scheduled: DateTime<Utc>,
        /// The retry number (1 for the first retry).
        attempt: u32,
    },
    /// Record the run at `scheduled` as skipped, for `reason`.
    Skip {
        /// The run skipped.
        scheduled: DateTime<Utc>,
        /// Why.
        reason: String,
    },
    /// Nothing to do until `until` (the next run or retry).
    Wait {
        /// When to look again.
        until: Option<DateTime<Utc>>,
    },
}

/// The Backup name for the run at `scheduled`.
pub fn backup_name(schedule: &str, scheduled: DateTime<Utc>, attempt: u32) -> String {
    let base = format!("{schedule}-{}", scheduled.format("%Y%m%d%H%M%S"));
    if attempt == 0 {
        base
    } else {
        format!("{base}-r{attempt}")
    }
}

fn parse(t: Option<&String>) -> Option<DateTime<Utc>> {
    t.and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Everything `next_step` looks at.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    /// The Schedule's name.
    pub name: &'a str,
    /// Its spec.
    pub spec: &'a ScheduleSpec,
    /// Its status.
    pub status: &'a ScheduleStatus,
    /// When it was created (runs before that are never due).
    pub created: DateTime<Utc>,
    /// Now.
    pub now: DateTime<Utc>,
    /// The Backups it created.
    pub backups: &'a [ScheduledBackup],
}

/// Decides the next step.
pub fn next_step(o: &Observed<'_>) -> Step {
    let cron = match CronSchedule::parse(&o.spec.schedule, o.spec.time_zone.as_deref()) {
        Ok(c) => c,
        Err(e) => return Step::Invalid(e),
    };
    let prune = beyond_retention(o.backups, &o.spec.retention);
    if !prune.is_empty() {
        return Step::Prune(prune);
    }
    if o.spec.paused {
        return Step::Paused;
    }
    let next = cron.next(o.now);
    let newest_made = o.backups.iter().map(|b| b.scheduled).max();
    let baseline = [
        parse(o.status.last_run_time.as_ref()),
        newest_made,
        Some(o.created),
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(o.created);
    if let Some(latest) = cron.latest(o.now).filter(|t| *t > baseline) {
        let late = (o.now - latest).num_seconds();
        if let Some(deadline) = o.spec.starting_deadline_seconds
            && late > i64::try_from(deadline).unwrap_or(i64::MAX)
        {
            return Step::Skip {
                scheduled: latest,
                reason: format!(
                    "run at {} missed by {late}s (startingDeadlineSeconds {deadline}); the controller was down",
                    latest.to_rfc3339()
                ),
            };
        }
        let running = o.backups.iter().find(|b| !b.phase.is_finished());
        if let (ConcurrencyPolicy::Forbid, Some(r)) = (o.spec.concurrency_policy, running) {
            return Step::Skip {
                scheduled: latest,
                reason: format!(
                    "run at {} skipped: Backup {} is still running (concurrencyPolicy Forbid)",
                    latest.to_rfc3339(),
                    r.name
                ),
            };
        }
        return Step::CreateBackup {
            name: backup_name(o.name, latest, 0),
            scheduled: latest,
        };
    }
    // Retries of the newest run, if it failed, before the next run is due.
    let newest = o.backups.iter().max_by_key(|b| (b.scheduled, b.attempt));
    if let Some(last) = newest
        && last.phase == BackupPhase::Failed
        && last.attempt < o.spec.retry.limit
    {
        let backoff = o
            .spec
            .retry
            .backoff_seconds
            .saturating_mul(1 << last.attempt.min(16));
        let at = last.completion.unwrap_or(o.now)
            + chrono::Duration::seconds(i64::try_from(backoff).unwrap_or(i64::MAX / 2));
        if next.is_none_or(|n| at < n) {
            if at <= o.now {
                return Step::Retry {
                    name: backup_name(o.name, last.scheduled, last.attempt + 1),
                    scheduled: last.scheduled,
                    attempt: last.attempt + 1,
                };
            }
            return Step::Wait { until: Some(at) };
        }
    }
    Step::Wait { until: next }
}

/// The status fields derived from the Backups and the next run (the step adds the rest).
pub fn derived_status(o: &Observed<'_>) -> ScheduleStatus {
    let mut s = o.status.clone();
    let newest = o.backups.iter().max_by_key(|b| (b.scheduled, b.attempt));
    if let Some(b) = newest {
        s.last_backup = Some(b.name.clone());
        if parse(s.last_run_time.as_ref()).is_none_or(|t| t < b.scheduled) {
            s.last_run_time = Some(b.scheduled.to_rfc3339());
        }
    }
    let success = o
        .backups
        .iter()
        .filter(|b| b.phase == BackupPhase::Completed)
        .max_by_key(|b| (b.scheduled, b.attempt));
    if let Some(b) = success {
        s.last_successful_backup = Some(b.name.clone());
        s.last_success_time = b.completion.map(|t| t.to_rfc3339());
    }
    s.next_run_time = match CronSchedule::parse(&o.spec.schedule, o.spec.time_zone.as_deref()) {
        Ok(c) if !o.spec.paused => c.next(o.now).map(|t| t.to_rfc3339()),
        _ => None,
    };
    s
}
