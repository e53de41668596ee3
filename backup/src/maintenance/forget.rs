//! Retention: which snapshots a policy keeps. Pure functions over snapshot lists.

use std::collections::BTreeMap;

use chrono::Datelike;

use crate::blob::SnapshotId;
use crate::snapshot::Snapshot;

/// How many snapshots to keep, per rule. A snapshot is kept when any rule keeps it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RetentionPolicy {
    /// The N most recent.
    pub keep_last: u32,
    /// The newest of each of the last N hours that have one.
    pub keep_hourly: u32,
    /// The newest of each of the last N days that have one.
    pub keep_daily: u32,
    /// The newest of each of the last N ISO weeks that have one.
    pub keep_weekly: u32,
    /// The newest of each of the last N months that have one.
    pub keep_monthly: u32,
}

/// A rule's name, count, and the time bucket it keeps one snapshot of.
type Rule = (&'static str, u32, fn(&Snapshot) -> String);

/// What `forget` will do to one group of snapshots (same host, kind and source).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ForgetGroup {
    /// `hostname kind source`.
    pub group: String,
    /// Kept snapshots, newest first, with the rules that keep each.
    pub keep: Vec<(SnapshotId, Vec<&'static str>)>,
    /// Snapshots to remove.
    pub remove: Vec<SnapshotId>,
}

/// What makes snapshots one retention group besides their kind (restic's `--group-by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupBy {
    /// The host that made them.
    pub host: bool,
    /// What they back up (`source`: for files, the paths).
    pub paths: bool,
    /// Their tags.
    pub tags: bool,
}

impl Default for GroupBy {
    /// Host and paths, as restic.
    fn default() -> Self {
        Self {
            host: true,
            paths: true,
            tags: false,
        }
    }
}

impl GroupBy {
    fn key(&self, s: &Snapshot) -> String {
        let mut key = s.kind.clone();
        if self.host {
            key = format!("{} {key}", s.hostname);
        }
        if self.paths {
            key = format!("{key} {}", s.source);
        }
        if self.tags {
            let tags: Vec<String> = s.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
            key = format!("{key} [{}]", tags.join(","));
        }
        key
    }
}

/// Applies `policy` to each group of `snapshots` (same host, kind and source).
pub fn plan_forget(snapshots: &[Snapshot], policy: &RetentionPolicy) -> Result<Vec<ForgetGroup>, String> {
    plan_forget_grouped(snapshots, policy, GroupBy::default())
}

/// Applies `policy` to each group of `snapshots`, grouped by kind and what `group_by` names.
pub fn plan_forget_grouped(
    snapshots: &[Snapshot],
    policy: &RetentionPolicy,
    group_by: GroupBy,
) -> Result<Vec<ForgetGroup>, String> {
    if *policy == RetentionPolicy::default() {
        return Err("no --keep-* option given; refusing to forget every snapshot".to_string());
    }
    let mut groups: BTreeMap<String, Vec<&Snapshot>> = BTreeMap::new();
    for s in snapshots {
        groups.entry(group_by.key(s)).or_default().push(s);
    }
    let mut out = Vec::new();
    for (group, mut snaps) in groups {
        snaps.sort_by_key(|s| std::cmp::Reverse(s.time));
        let mut reasons: Vec<Vec<&'static str>> = vec![Vec::new(); snaps.len()];
        let rules: [Rule; 5] = [
            ("last", policy.keep_last, |s| {
                s.time.timestamp_nanos_opt().unwrap_or(0).to_string()
            }),
            ("hourly", policy.keep_hourly, |s| {
                s.time.format("%Y-%m-%d %H").to_string()
            }),
            ("daily", policy.keep_daily, |s| {
                s.time.format("%Y-%m-%d").to_string()
            }),
            ("weekly", policy.keep_weekly, |s| {
                let w = s.time.iso_week();
                format!("{}-W{}", w.year(), w.week())
            }),
            ("monthly", policy.keep_monthly, |s| {
                format!("{}-{}", s.time.year(), s.time.month())
            }),
        ];
        for (name, count, bucket) in rules {
            let mut last_bucket: Option<String> = None;
            let mut kept = 0;
            for (i, s) in snaps.iter().enumerate() {
                if kept >= count {
                    break;
                }
                let b = if name == "last" { format!("{i}") } else { bucket(s) };
                if last_bucket.as_ref() != Some(&b) {
                    reasons[i].push(name);
                    kept += 1;
                    last_bucket = Some(b);
                }
            }
        }
        let mut g = ForgetGroup {
            group,
            keep: Vec::new(),
            remove: Vec::new(),
        };
        for (s, why) in snaps.iter().zip(reasons) {
            let Some(id) = s.id else { continue };
            if why.is_empty() {
                g.remove.push(id);
            } else {
                g.keep.push((id, why));
            }
        }
        out.push(g);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Summary;
    use chrono::{TimeZone, Utc};

    /// CronJob pods get a new host name each run: grouping by paths alone keeps the policy
    /// working across them.
    #[test]
    fn group_by_chooses_what_makes_a_group() {
        let mut snaps: Vec<Snapshot> = (0..4).map(|n| snap(n, 2026, 1, 1 + u32::from(n), 0)).collect();
        for (n, s) in snaps.iter_mut().enumerate() {
            s.hostname = format!("pod-{n}");
        }
        let policy = RetentionPolicy {
            keep_last: 1,
            ..RetentionPolicy::default()
        };
        let by_host = plan_forget(&snaps, &policy).unwrap();
        assert_eq!(by_host.len(), 4);
        assert!(by_host.iter().all(|g| g.remove.is_empty()));
        let by_paths = GroupBy {
            host: false,
            ..GroupBy::default()
        };
        let plan = plan_forget_grouped(&snaps, &policy, by_paths).unwrap();
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].remove.len(), 3);
        assert_eq!(plan[0].keep[0].0, snaps[3].id.unwrap());
    }

    fn snap(n: u8, y: i32, m: u32, d: u32, h: u32) -> Snapshot {
        Snapshot {
            id: Some(SnapshotId::of(&[n])),
            time: Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap(),
            hostname: "h".into(),
            kind: "files".into(),
            source: "files:/data".into(),
            paths: vec![],
            tags: Default::default(),
            meta: Default::default(),
            parent: None,
            tree: vec![],
            summary: Summary::default(),
        }
    }

    #[test]
    fn keeps_the_newest_per_bucket() {
        let snaps = vec![
            snap(1, 2026, 1, 1, 10),
            snap(2, 2026, 1, 1, 11),
            snap(3, 2026, 1, 2, 9),
            snap(4, 2026, 1, 2, 9),
            snap(5, 2026, 2, 1, 0),
        ];
        let plan = plan_forget(
            &snaps,
            &RetentionPolicy {
                keep_daily: 2,
                ..Default::default()
            },
        )
        .unwrap();
        let kept: Vec<_> = plan[0].keep.iter().map(|(id, _)| *id).collect();
        // Newest of 2026-02-01, then the first of 2026-01-02 (ties keep their listed order).
        assert_eq!(kept, [SnapshotId::of(&[5]), SnapshotId::of(&[3])]);
        assert_eq!(
            plan[0].remove,
            [SnapshotId::of(&[4]), SnapshotId::of(&[2]), SnapshotId::of(&[1])]
        );

        let plan = plan_forget(
            &snaps,
            &RetentionPolicy {
                keep_last: 1,
                keep_monthly: 2,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(plan[0].keep[0], (SnapshotId::of(&[5]), vec!["last", "monthly"]));
        assert_eq!(plan[0].keep[1], (SnapshotId::of(&[3]), vec!["monthly"]));
        assert_eq!(plan[0].keep.len(), 2);
    }

    #[test]
    fn refuses_an_empty_policy() {
        assert!(
            plan_forget(&[], &RetentionPolicy::default())
                .unwrap_err()
                .contains("--keep")
        );
    }
}
