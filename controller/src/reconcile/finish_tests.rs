//! The end of a run, as whole statuses: each failure class and a success, for both kinds.

use super::*;
use crate::crd::{BackupPhase, BackupStatus, Condition, RestorePhase, RestoreStatus, VolumeProgress};

const NOW: &str = "2026-12-01T04:00:00+00:00";

fn progress(done: u64, total: u64) -> ProgressStatus {
    ProgressStatus {
        total_items: total,
        items_done: done,
        ..ProgressStatus::default()
    }
}

fn running_backup() -> BackupStatus {
    BackupStatus {
        phase: BackupPhase::InProgress,
        attempts: 2,
        start_time: Some("2026-12-01T03:59:00+00:00".into()),
        progress: Some(progress(3, 10)),
        ..Default::default()
    }
}

fn never_applied<S>(_: &mut S, _: ()) -> Succeeded {
    panic!("apply runs only for a success")
}

fn without_time(mut c: Vec<Condition>) -> Vec<Condition> {
    for x in &mut c {
        x.last_transition_time = None;
    }
    c
}

#[test]
fn a_transient_failure_keeps_the_run_in_progress_with_a_retry_message() {
    let current = running_backup();
    let end = ending(
        &current,
        progress(7, 10),
        Err::<(), _>(Failure::Transient("API server unreachable".into())),
        NOW.into(),
        |m| format!("attempt 2 interrupted: {m}; retrying"),
        never_applied,
    );
    let expected = BackupStatus {
        message: Some("attempt 2 interrupted: API server unreachable; retrying".into()),
        ..current
    };
    assert_eq!(end, Ending::Interrupted(expected));
}

#[test]
fn an_invalid_resource_fails_with_valid_false_and_the_message() {
    let current = running_backup();
    let end = ending(
        &current,
        progress(0, 0),
        Err::<(), _>(Failure::Invalid("BackupRepository ns/r not found".into())),
        NOW.into(),
        |m| m.to_string(),
        never_applied,
    );
    let Ending::Over {
        status,
        finished,
        items,
        bytes,
        note,
    } = end
    else {
        panic!("an invalid resource ends the run: {end:?}")
    };
    assert_eq!((finished, items, bytes), (Finished::Failed, 0, 0));
    assert_eq!(note, "Failed: BackupRepository ns/r not found");
    assert_eq!(
        without_time(status.conditions.clone()),
        vec![Condition {
            last_transition_time: None,
            ..Condition::new("Valid", false, "Invalid", "BackupRepository ns/r not found")
        }]
    );
    let expected = BackupStatus {
        phase: BackupPhase::Failed,
        message: Some("BackupRepository ns/r not found".into()),
        completion_time: Some(NOW.into()),
        progress: Some(progress(0, 0)),
        conditions: status.conditions.clone(),
        ..current
    };
    assert_eq!(status, expected);
}

#[test]
fn a_failed_run_fails_without_touching_valid() {
    let current = RestoreStatus {
        phase: RestorePhase::InProgress,
        conditions: vec![Condition::new("Valid", true, "Valid", "")],
        volume_progress: vec![VolumeProgress {
            claim: "shop/db".into(),
            total_bytes: 100,
            bytes_done: 40,
            done: false,
        }],
        ..Default::default()
    };
    let end = ending(
        &current,
        progress(4, 9),
        Err::<(), _>(Failure::Failed("pack 1f2e… is damaged".into())),
        NOW.into(),
        |m| m.to_string(),
        never_applied,
    );
    let expected = RestoreStatus {
        phase: RestorePhase::Failed,
        message: Some("pack 1f2e… is damaged".into()),
        completion_time: Some(NOW.into()),
        progress: Some(progress(4, 9)),
        // The per-volume list is of a run in progress: an ended run has none.
        volume_progress: Vec::new(),
        ..current.clone()
    };
    assert_eq!(
        end,
        Ending::Over {
            status: expected,
            finished: Finished::Failed,
            items: 0,
            bytes: 0,
            note: "Failed: pack 1f2e… is damaged".into(),
        }
    );
}

#[test]
fn a_success_is_applied_and_its_summary_is_the_note_unless_there_is_a_message() {
    let current = RestoreStatus {
        phase: RestorePhase::InProgress,
        ..Default::default()
    };
    let apply = |done: &mut RestoreStatus, (n, failed): (u64, bool)| {
        done.items_restored = n;
        done.phase = if failed {
            RestorePhase::PartiallyFailed
        } else {
            RestorePhase::Completed
        };
        done.message = failed.then(|| "1 items could not be restored".to_string());
        Succeeded {
            finished: if failed {
                Finished::PartiallyFailed
            } else {
                Finished::Completed
            },
            items: n,
            bytes: 0,
            note: format!("{n} items restored"),
        }
    };
    let clean = ending(
        &current,
        progress(12, 12),
        Ok((12, false)),
        NOW.into(),
        |m| m.into(),
        apply,
    );
    let expected = RestoreStatus {
        phase: RestorePhase::Completed,
        items_restored: 12,
        completion_time: Some(NOW.into()),
        progress: Some(progress(12, 12)),
        ..current.clone()
    };
    assert_eq!(
        clean,
        Ending::Over {
            status: expected,
            finished: Finished::Completed,
            items: 12,
            bytes: 0,
            note: "Completed: 12 items restored".into(),
        }
    );
    let partial = ending(
        &current,
        progress(12, 12),
        Ok((11, true)),
        NOW.into(),
        |m| m.into(),
        apply,
    );
    let Ending::Over { finished, note, .. } = partial else {
        panic!("a success ends the run")
    };
    assert_eq!(finished, Finished::PartiallyFailed);
    assert_eq!(note, "PartiallyFailed: 1 items could not be restored");
}

#[test]
fn kinds_name_their_metric_operation() {
    assert_eq!(RunKind::Backup.operation(), "backup");
    assert_eq!(RunKind::Restore.operation(), "restore");
    assert_eq!(Finished::PartiallyFailed.as_str(), "PartiallyFailed");
}
