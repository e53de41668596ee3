//! When a BackupReplication copies, decided from what is observed. Pure.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use crate::crd::BackupReplicationSpec;
use crate::reconcile::schedule::cron::CronSchedule;

/// How long after a failed copy it is tried again.
pub const RETRY_AFTER: chrono::Duration = chrono::Duration::seconds(60);

/// What the reconciler observed of one BackupReplication.
#[derive(Debug, Clone)]
pub struct ReplicationView {
    /// `spec.suspend`.
    pub suspended: bool,
    /// A copy of it runs in this process.
    pub running_here: bool,
    /// Status says Copying (a copy that is not running here was interrupted).
    pub copying: bool,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// `status.observedGeneration`.
    pub observed_generation: Option<i64>,
    /// When the last copy started.
    pub last_copy: Option<DateTime<Utc>>,
    /// When the last copy ended, if it failed for some destination.
    pub last_failure: Option<DateTime<Utc>>,
    /// `spec.afterEachBackup`.
    pub after_each_backup: bool,
    /// When the newest Backup into the source repository finished.
    pub newest_backup: Option<DateTime<Utc>>,
    /// The parsed `spec.schedule`.
    pub schedule: Option<CronSchedule>,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationStep {
    /// `spec.suspend`: nothing.
    Suspended,
    /// A copy runs here; look again later.
    Running,
    /// Start a copy, for this reason.
    Copy(&'static str),
    /// Nothing due; look again at `until` (or on change).
    Wait {
        /// The next scheduled time or retry.
        until: Option<DateTime<Utc>>,
    },
}

/// Decides the next step at `now`.
pub fn next_step(v: &ReplicationView, now: DateTime<Utc>) -> ReplicationStep {
    if v.suspended {
        return ReplicationStep::Suspended;
    }
    if v.running_here {
        return ReplicationStep::Running;
    }
    let Some(last) = v.last_copy else {
        return ReplicationStep::Copy("first copy");
    };
    if v.copying {
        return ReplicationStep::Copy("the last copy was interrupted");
    }
    if v.generation != v.observed_generation {
        return ReplicationStep::Copy("the spec changed");
    }
    if v.after_each_backup && v.newest_backup.is_some_and(|b| b > last) {
        return ReplicationStep::Copy("a backup finished");
    }
    if let Some(s) = &v.schedule
        && s.latest(now).is_some_and(|t| t > last)
    {
        return ReplicationStep::Copy("scheduled");
    }
    let retry = v.last_failure.map(|f| f + RETRY_AFTER);
    if retry.is_some_and(|r| r <= now) {
        return ReplicationStep::Copy("retrying after a failure");
    }
    let next = v.schedule.as_ref().and_then(|s| s.next(now));
    let until = match (next, retry) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    ReplicationStep::Wait { until }
}

/// A BackupReplication spec that the API server's schema let through but cannot run; the
/// message names the field and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidReplication(pub String);

/// Checks what the API server's schema cannot: each problem names the field and the fix.
pub fn validate(spec: &BackupReplicationSpec) -> Result<Option<CronSchedule>, InvalidReplication> {
    validate_fields(spec).map_err(InvalidReplication)
}

fn validate_fields(spec: &BackupReplicationSpec) -> Result<Option<CronSchedule>, String> {
    if spec.destinations.is_empty() {
        return Err("spec.destinations is empty; name at least one BackupRepository to copy to".to_string());
    }
    let mut names = BTreeSet::new();
    for d in &spec.destinations {
        if d.name.is_empty() || d.name.len() > 63 {
            return Err(format!(
                "destination name {:?} must be 1 to 63 characters (it is a metric label)",
                d.name
            ));
        }
        if !names.insert(d.name.as_str()) {
            return Err(format!(
                "destination name {:?} is used twice; names must be unique",
                d.name
            ));
        }
        if d.repository == spec.source_repository {
            return Err(format!(
                "destination {:?} is the source repository {:?}; copy to another BackupRepository",
                d.name, d.repository
            ));
        }
        if d.object_lock.is_some_and(|l| l.retention_days == 0) {
            return Err(format!(
                "destination {:?}: objectLock.retentionDays must be at least 1",
                d.name
            ));
        }
    }
    if let Some(b) = &spec.bandwidth_limit {
        lifeboat_backup::copy::parse_rate(b).map_err(|e| format!("spec.bandwidthLimit: {e}"))?;
    }
    match &spec.schedule {
        None => Ok(None),
        Some(expr) => CronSchedule::parse(expr, spec.time_zone.as_deref())
            .map(Some)
            .map_err(|e| e.message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ObjectLockSpec, ReplicationDestination};
    use chrono::TimeZone;

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0).single().expect("time")
    }

    fn view() -> ReplicationView {
        ReplicationView {
            suspended: false,
            running_here: false,
            copying: false,
            generation: Some(1),
            observed_generation: Some(1),
            last_copy: Some(at(0)),
            last_failure: None,
            after_each_backup: true,
            newest_backup: None,
            schedule: None,
        }
    }

    #[test]
    fn copies_first_after_each_backup_on_schedule_and_after_failures() {
        let mut v = view();
        assert_eq!(next_step(&v, at(10)), ReplicationStep::Wait { until: None });
        v.newest_backup = Some(at(5));
        assert_eq!(next_step(&v, at(10)), ReplicationStep::Copy("a backup finished"));
        v.after_each_backup = false;
        assert_eq!(next_step(&v, at(10)), ReplicationStep::Wait { until: None });
        v.schedule = CronSchedule::parse("*/30 * * * * *", None).ok();
        assert_eq!(next_step(&v, at(31)), ReplicationStep::Copy("scheduled"));
        let ReplicationStep::Wait { until: Some(t) } = next_step(&v, at(1)) else {
            panic!("waits for the schedule");
        };
        assert!(t > at(1) && t <= at(30));
        v.schedule = None;
        v.last_failure = Some(at(2));
        assert_eq!(
            next_step(&v, at(10)),
            ReplicationStep::Wait { until: Some(at(62)) }
        );
        assert_eq!(
            next_step(&v, at(62)),
            ReplicationStep::Copy("retrying after a failure")
        );
        v.last_copy = None;
        assert_eq!(next_step(&v, at(0)), ReplicationStep::Copy("first copy"));
        v.running_here = true;
        assert_eq!(next_step(&v, at(0)), ReplicationStep::Running);
        v.suspended = true;
        assert_eq!(next_step(&v, at(0)), ReplicationStep::Suspended);
    }

    #[test]
    fn an_interrupted_copy_or_a_new_spec_copies_again() {
        let mut v = view();
        v.copying = true;
        assert_eq!(
            next_step(&v, at(1)),
            ReplicationStep::Copy("the last copy was interrupted")
        );
        v.copying = false;
        v.generation = Some(2);
        assert_eq!(next_step(&v, at(1)), ReplicationStep::Copy("the spec changed"));
    }

    #[test]
    fn invalid_specs_name_the_field_and_the_fix() {
        let dest = |name: &str, repo: &str| ReplicationDestination {
            name: name.into(),
            repository: repo.into(),
            ..Default::default()
        };
        let mut spec = BackupReplicationSpec {
            source_repository: "primary".into(),
            ..Default::default()
        };
        assert!(validate(&spec).unwrap_err().0.contains("spec.destinations"));
        spec.destinations = vec![dest("a", "primary")];
        assert!(validate(&spec).unwrap_err().0.contains("source repository"));
        spec.destinations = vec![dest("a", "dr"), dest("a", "dr2")];
        assert!(validate(&spec).unwrap_err().0.contains("used twice"));
        spec.destinations = vec![dest("a", "dr")];
        spec.bandwidth_limit = Some("lots".into());
        assert!(validate(&spec).unwrap_err().0.contains("spec.bandwidthLimit"));
        spec.bandwidth_limit = Some("50Mi".into());
        spec.schedule = Some("every day".into());
        assert!(validate(&spec).unwrap_err().0.contains("spec.schedule"));
        spec.schedule = Some("@hourly".into());
        spec.destinations[0].object_lock = Some(ObjectLockSpec {
            retention_days: 0,
            ..Default::default()
        });
        assert!(validate(&spec).unwrap_err().0.contains("retentionDays"));
        spec.destinations[0].object_lock = None;
        assert!(validate(&spec).unwrap().is_some());
    }
}
