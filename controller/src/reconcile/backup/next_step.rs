//! The next step for a Backup, decided from what is observed. Pure, so every transition is
//! unit-tested without a cluster.

use chrono::{DateTime, Utc};

use crate::crd::BackupPhase;

/// Runs started before a Backup is declared Failed (each controller restart mid-run starts
/// one more).
pub const MAX_ATTEMPTS: u32 = 3;

/// What the reconciler observed of one Backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupView {
    /// `deletionTimestamp` is set.
    pub deleting: bool,
    /// Our finalizer is present.
    pub has_finalizer: bool,
    /// A run of it is in flight in this process.
    pub running_here: bool,
    /// Its phase.
    pub phase: BackupPhase,
    /// Runs started so far.
    pub attempts: u32,
    /// When its TTL runs out.
    pub expiration: Option<DateTime<Utc>>,
    /// Created by backup sync from a snapshot: never run, only restored from.
    pub synced: bool,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupStep {
    /// Being deleted: clean up the snapshot per the deletion policy, then drop the finalizer.
    Finalize,
    /// Being deleted and already cleaned up: nothing to do.
    Gone,
    /// Add the finalizer before anything is written to the repository.
    AddFinalizer,
    /// Mark InProgress with this attempt number, then run.
    Start {
        /// The attempt about to start.
        attempt: u32,
    },
    /// Interrupted too often: mark Failed.
    GiveUp {
        /// Runs started.
        attempts: u32,
    },
    /// Running here; look again later.
    Running,
    /// Past its TTL: delete the Backup (the finalizer handles the snapshot).
    Expire,
    /// Finished; look again at `until` (expiration), or only on change.
    Idle {
        /// When something is due.
        until: Option<DateTime<Utc>>,
    },
}

/// Decides the next step at `now`.
pub fn next_step(v: &BackupView, now: DateTime<Utc>) -> BackupStep {
    if v.deleting {
        return if v.has_finalizer {
            BackupStep::Finalize
        } else {
            BackupStep::Gone
        };
    }
    if !v.has_finalizer {
        return BackupStep::AddFinalizer;
    }
    match v.phase {
        // Backup sync writes its status; there is nothing to run.
        BackupPhase::New | BackupPhase::InProgress if v.synced => BackupStep::Idle { until: None },
        BackupPhase::New => BackupStep::Start {
            attempt: v.attempts + 1,
        },
        BackupPhase::InProgress if v.running_here => BackupStep::Running,
        BackupPhase::InProgress if v.attempts >= MAX_ATTEMPTS => BackupStep::GiveUp { attempts: v.attempts },
        BackupPhase::InProgress => BackupStep::Start {
            attempt: v.attempts + 1,
        },
        BackupPhase::Completed
        | BackupPhase::PartiallyFailed
        | BackupPhase::Failed
        | BackupPhase::Deleting => match v.expiration {
            Some(e) if e <= now => BackupStep::Expire,
            until => BackupStep::Idle { until },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0)
            .single()
            .expect("valid time")
    }

    fn view(phase: BackupPhase) -> BackupView {
        BackupView {
            deleting: false,
            has_finalizer: true,
            running_here: false,
            phase,
            attempts: 0,
            expiration: None,
            synced: false,
        }
    }

    #[test]
    fn a_synced_backup_is_never_run() {
        let mut v = view(BackupPhase::New);
        v.synced = true;
        assert_eq!(next_step(&v, at(0)), BackupStep::Idle { until: None });
        v.has_finalizer = false;
        assert_eq!(next_step(&v, at(0)), BackupStep::AddFinalizer);
    }

    #[test]
    fn a_new_backup_gets_the_finalizer_then_starts() {
        let mut v = view(BackupPhase::New);
        v.has_finalizer = false;
        assert_eq!(next_step(&v, at(0)), BackupStep::AddFinalizer);
        v.has_finalizer = true;
        assert_eq!(next_step(&v, at(0)), BackupStep::Start { attempt: 1 });
    }

    #[test]
    fn an_interrupted_run_is_started_again_until_the_limit() {
        let mut v = view(BackupPhase::InProgress);
        v.attempts = 1;
        v.running_here = true;
        assert_eq!(next_step(&v, at(0)), BackupStep::Running);
        v.running_here = false;
        assert_eq!(next_step(&v, at(0)), BackupStep::Start { attempt: 2 });
        v.attempts = MAX_ATTEMPTS;
        assert_eq!(
            next_step(&v, at(0)),
            BackupStep::GiveUp {
                attempts: MAX_ATTEMPTS
            }
        );
    }

    #[test]
    fn finished_backups_expire_at_their_ttl() {
        let mut v = view(BackupPhase::Completed);
        v.expiration = Some(at(10));
        assert_eq!(next_step(&v, at(5)), BackupStep::Idle { until: Some(at(10)) });
        assert_eq!(next_step(&v, at(10)), BackupStep::Expire);
        v.expiration = None;
        assert_eq!(next_step(&v, at(10)), BackupStep::Idle { until: None });
    }

    #[test]
    fn deletion_runs_the_finalizer_once() {
        let mut v = view(BackupPhase::InProgress);
        v.deleting = true;
        assert_eq!(next_step(&v, at(0)), BackupStep::Finalize);
        v.has_finalizer = false;
        assert_eq!(next_step(&v, at(0)), BackupStep::Gone);
    }
}
