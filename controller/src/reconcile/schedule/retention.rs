//! Which of a Schedule's Backups retention removes, by the same rules as `drctl forget`
//! (`lifeboat_backup::maintenance::forget`), applied to the Backups' scheduled times.

use std::collections::{BTreeMap, HashMap};

use lifeboat_backup::blob::SnapshotId;
use lifeboat_backup::maintenance::forget::{Candidate, RetentionPolicy, plan_retention};

use super::next_step::ScheduledBackup;
use crate::crd::{BackupPhase, Retention};

/// The engine's retention policy for a CRD `Retention`.
pub(crate) fn policy(r: &Retention) -> RetentionPolicy {
    RetentionPolicy {
        keep_last: r.keep_last.unwrap_or(0),
        keep_hourly: r.keep_hourly.unwrap_or(0),
        keep_daily: r.keep_daily.unwrap_or(0),
        keep_weekly: r.keep_weekly.unwrap_or(0),
        keep_monthly: r.keep_monthly.unwrap_or(0),
        ..RetentionPolicy::default()
    }
}

/// Backups to delete. Retention counts Backups that hold a snapshot (Completed,
/// PartiallyFailed); Failed ones are kept only while no newer Backup succeeded, so the
/// latest failure stays visible. Running Backups are never touched. No rule, no pruning.
pub fn beyond_retention(backups: &[ScheduledBackup], retention: &Retention) -> Vec<String> {
    let policy = policy(retention);
    if policy.is_empty() {
        return Vec::new();
    }
    let with_snapshot: Vec<&ScheduledBackup> = backups
        .iter()
        .filter(|b| matches!(b.phase, BackupPhase::Completed | BackupPhase::PartiallyFailed))
        .collect();
    let mut by_id: HashMap<SnapshotId, String> = HashMap::new();
    let no_tags = BTreeMap::new();
    let candidates: Vec<Candidate<'_>> = with_snapshot
        .iter()
        .map(|b| {
            let id = SnapshotId::of(b.name.as_bytes());
            by_id.insert(id, b.name.clone());
            Candidate {
                id,
                time: b.scheduled + chrono::Duration::milliseconds(i64::from(b.attempt)),
                group: String::new(),
                tags: &no_tags,
            }
        })
        .collect();
    let mut out: Vec<String> = plan_retention(candidates, &policy)
        .unwrap_or_default()
        .into_iter()
        .flat_map(|g| g.remove)
        .filter_map(|id| by_id.get(&id).cloned())
        .collect();
    let newest_success = with_snapshot.iter().map(|b| (b.scheduled, b.attempt)).max();
    if let Some(newest) = newest_success {
        out.extend(
            backups
                .iter()
                .filter(|b| b.phase == BackupPhase::Failed && (b.scheduled, b.attempt) < newest)
                .map(|b| b.name.clone()),
        );
    }
    out.sort();
    out
}
