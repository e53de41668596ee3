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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{Retention, RetryPolicy};
    use chrono::TimeZone;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, h, m, s)
            .single()
            .expect("valid time")
    }

    fn spec(cron: &str) -> ScheduleSpec {
        ScheduleSpec {
            schedule: cron.into(),
            ..ScheduleSpec::default()
        }
    }

    fn made(name: &str, scheduled: DateTime<Utc>, attempt: u32, phase: BackupPhase) -> ScheduledBackup {
        ScheduledBackup {
            name: name.into(),
            scheduled,
            attempt,
            phase,
            completion: Some(scheduled + chrono::Duration::seconds(30)),
        }
    }

    fn step(
        spec: &ScheduleSpec,
        status: &ScheduleStatus,
        now: DateTime<Utc>,
        backups: &[ScheduledBackup],
    ) -> Step {
        next_step(&Observed {
            name: "nightly",
            spec,
            status,
            created: at(0, 0, 0),
            now,
            backups,
        })
    }

    #[test]
    fn creates_the_due_backup_once_with_a_name_from_its_time() {
        let s = spec("0 * * * *");
        let none = ScheduleStatus::default();
        assert_eq!(
            step(&s, &none, at(1, 0, 5), &[]),
            Step::CreateBackup {
                name: "nightly-20260301010000".into(),
                scheduled: at(1, 0, 0)
            }
        );
        // The Backup exists (status write lost in a restart): nothing new, wait for 02:00.
        let b = [made(
            "nightly-20260301010000",
            at(1, 0, 0),
            0,
            BackupPhase::InProgress,
        )];
        assert_eq!(
            step(&s, &none, at(1, 0, 6), &b),
            Step::Wait {
                until: Some(at(2, 0, 0))
            }
        );
        // Nothing is due for times before the Schedule existed.
        assert_eq!(
            step(&s, &none, at(0, 30, 0), &[]),
            Step::Wait {
                until: Some(at(1, 0, 0))
            }
        );
    }

    #[test]
    fn invalid_cron_and_zone_name_the_field() {
        let mut s = spec("61 * * * *");
        let none = ScheduleStatus::default();
        let Step::Invalid(e) = step(&s, &none, at(1, 0, 0), &[]) else {
            panic!("expected Invalid")
        };
        assert_eq!(e.field, "spec.schedule");
        s.schedule = "@hourly".into();
        s.time_zone = Some("Nowhere/Special".into());
        let Step::Invalid(e) = step(&s, &none, at(1, 0, 0), &[]) else {
            panic!("expected Invalid")
        };
        assert_eq!(e.field, "spec.timeZone");
    }

    #[test]
    fn forbid_skips_a_run_while_one_is_going_and_allow_starts_it() {
        let mut s = spec("0 * * * *");
        let running = [made(
            "nightly-20260301010000",
            at(1, 0, 0),
            0,
            BackupPhase::InProgress,
        )];
        let Step::Skip { scheduled, reason } = step(&s, &ScheduleStatus::default(), at(2, 0, 1), &running)
        else {
            panic!("expected Skip")
        };
        assert_eq!(scheduled, at(2, 0, 0));
        assert!(reason.contains("nightly-20260301010000") && reason.contains("Forbid"));
        s.concurrency_policy = ConcurrencyPolicy::Allow;
        assert!(matches!(
            step(&s, &ScheduleStatus::default(), at(2, 0, 1), &running),
            Step::CreateBackup { .. }
        ));
    }

    #[test]
    fn a_missed_deadline_is_skipped_and_paused_creates_nothing() {
        let mut s = spec("0 * * * *");
        s.starting_deadline_seconds = Some(60);
        assert!(matches!(
            step(&s, &ScheduleStatus::default(), at(1, 5, 0), &[]),
            Step::Skip { .. }
        ));
        s.paused = true;
        assert_eq!(
            step(&s, &ScheduleStatus::default(), at(1, 0, 1), &[]),
            Step::Paused
        );
    }

    #[test]
    fn failed_runs_are_retried_with_doubling_backoff_before_the_next_run() {
        let mut s = spec("0 * * * *");
        s.retry = RetryPolicy {
            limit: 2,
            backoff_seconds: 60,
        };
        let failed = made("nightly-20260301010000", at(1, 0, 0), 0, BackupPhase::Failed);
        // Completed at 01:00:30; first retry at 01:01:30.
        assert_eq!(
            step(
                &s,
                &ScheduleStatus::default(),
                at(1, 1, 0),
                std::slice::from_ref(&failed)
            ),
            Step::Wait {
                until: Some(at(1, 1, 30))
            }
        );
        assert_eq!(
            step(
                &s,
                &ScheduleStatus::default(),
                at(1, 1, 31),
                std::slice::from_ref(&failed)
            ),
            Step::Retry {
                name: "nightly-20260301010000-r1".into(),
                scheduled: at(1, 0, 0),
                attempt: 1
            }
        );
        let mut retried = made("nightly-20260301010000-r1", at(1, 0, 0), 1, BackupPhase::Failed);
        retried.completion = Some(at(1, 2, 0));
        // Second retry waits 120 s after the first retry ended.
        assert_eq!(
            step(
                &s,
                &ScheduleStatus::default(),
                at(1, 2, 1),
                &[failed.clone(), retried.clone()]
            ),
            Step::Wait {
                until: Some(at(1, 4, 0))
            }
        );
        retried.attempt = 2;
        assert_eq!(
            step(&s, &ScheduleStatus::default(), at(1, 5, 0), &[failed, retried]),
            Step::Wait {
                until: Some(at(2, 0, 0))
            }
        );
    }

    #[test]
    fn prunes_beyond_retention_but_keeps_the_newest_failure() {
        let mut s = spec("0 * * * *");
        s.retention = Retention {
            keep_last: Some(2),
            ..Retention::default()
        };
        let backups = [
            made("b1", at(1, 0, 0), 0, BackupPhase::Completed),
            made("b2", at(2, 0, 0), 0, BackupPhase::Failed),
            made("b3", at(3, 0, 0), 0, BackupPhase::Completed),
            made("b4", at(4, 0, 0), 0, BackupPhase::PartiallyFailed),
            made("b5", at(5, 0, 0), 0, BackupPhase::Failed),
            made("b6", at(6, 0, 0), 0, BackupPhase::InProgress),
        ];
        assert_eq!(
            step(&s, &ScheduleStatus::default(), at(6, 0, 1), &backups),
            Step::Prune(vec!["b1".into(), "b2".into()])
        );
    }

    #[test]
    fn status_shows_last_and_next_runs_and_the_last_success() {
        let s = spec("0 * * * *");
        let backups = [
            made("b1", at(1, 0, 0), 0, BackupPhase::Completed),
            made("b2", at(2, 0, 0), 0, BackupPhase::Failed),
        ];
        let st = derived_status(&Observed {
            name: "nightly",
            spec: &s,
            status: &ScheduleStatus::default(),
            created: at(0, 0, 0),
            now: at(2, 10, 0),
            backups: &backups,
        });
        assert_eq!(st.last_backup.as_deref(), Some("b2"));
        assert_eq!(st.last_successful_backup.as_deref(), Some("b1"));
        assert_eq!(st.last_run_time, Some(at(2, 0, 0).to_rfc3339()));
        assert_eq!(st.next_run_time, Some(at(3, 0, 0).to_rfc3339()));
    }
}
