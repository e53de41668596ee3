//! Retention (`forget`): which snapshots a policy keeps. The plan is a pure function of the
//! snapshot list ([`plan_forget`], [`plan_retention`]); [`forget`] applies it under a lock.
//!
//! The rules are restic's (`restic forget`): a snapshot is kept when any rule keeps it.
//! `keep_last` keeps the N newest; `keep_hourly`…`keep_monthly` keep the newest snapshot of
//! each of the N newest hours (days, ISO weeks, months) that have one; `keep_within` keeps
//! everything made within that long before the group's newest snapshot (not before now, so a
//! repository that stopped receiving backups keeps its last ones); `keep_tags` keeps every
//! snapshot carrying one of the tags.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Datelike, Utc};

use crate::blob::SnapshotId;
use crate::repository::{LockKind, RepoError, Repository};
use crate::snapshot::{Snapshot, snapshot_key};
use crate::store::object_lock::Retention;

/// How many snapshots to keep, per rule. A snapshot is kept when any rule keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    /// Everything made within this long before the group's newest snapshot.
    #[serde(default)]
    pub keep_within: Option<Duration>,
    /// Every snapshot carrying one of these tags: `key=value`, or `key` for any value.
    #[serde(default)]
    pub keep_tags: Vec<String>,
}

impl RetentionPolicy {
    /// True when no rule keeps anything (applying it would forget every snapshot); a zero
    /// `keep_within` is no rule either (as restic reads `--keep-within 0h`).
    pub fn is_empty(&self) -> bool {
        self.keep_last == 0
            && self.keep_hourly == 0
            && self.keep_daily == 0
            && self.keep_weekly == 0
            && self.keep_monthly == 0
            && self.keep_within.is_none_or(|d| d.is_zero())
            && self.keep_tags.is_empty()
    }
}

/// Why `forget` did not run.
#[derive(Debug, thiserror::Error)]
pub enum ForgetError {
    /// The policy has no rule, which would forget every snapshot.
    #[error("the retention policy has no rule; refusing to forget every snapshot")]
    NoRule,
    /// The repository failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
}

/// What `forget` will do to one group of snapshots (same host, kind and source).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ForgetGroup {
    /// `hostname kind source`.
    pub group: String,
    /// Kept snapshots, newest first, with the rules that keep each.
    pub keep: Vec<(SnapshotId, Vec<&'static str>)>,
    /// Snapshots to remove, newest first.
    pub remove: Vec<SnapshotId>,
}

/// One snapshot as retention sees it: the Schedule controller applies the same rules to
/// Backup resources, which are not snapshots.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    /// Its id.
    pub id: SnapshotId,
    /// When it was made.
    pub time: DateTime<Utc>,
    /// Snapshots are kept per group.
    pub group: String,
    /// Its tags, for `keep_tags`.
    pub tags: &'a BTreeMap<String, String>,
}

/// A bucket rule's name, count, and the time bucket it keeps one snapshot of.
type Rule = (&'static str, u32, fn(&DateTime<Utc>) -> String);

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
    /// The group's name: `[hostname ]kind[ source][ [k=v,…]]`.
    fn key(&self, s: &Snapshot) -> String {
        let mut key = s.kind().to_string();
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

/// Applies `policy` to each group of `snapshots` (host, kind and source, as restic groups by
/// host and paths).
pub fn plan_forget(
    snapshots: &[Snapshot],
    policy: &RetentionPolicy,
) -> Result<Vec<ForgetGroup>, ForgetError> {
    plan_forget_grouped(snapshots, policy, GroupBy::default())
}

/// Applies `policy` to each group of `snapshots`, grouped by kind and what `group_by` names.
pub fn plan_forget_grouped(
    snapshots: &[Snapshot],
    policy: &RetentionPolicy,
    group_by: GroupBy,
) -> Result<Vec<ForgetGroup>, ForgetError> {
    let candidates = snapshots
        .iter()
        .filter_map(|s| {
            Some(Candidate {
                id: s.id?,
                time: s.time,
                group: group_by.key(s),
                tags: &s.tags,
            })
        })
        .collect();
    plan_retention(candidates, policy)
}

/// Applies `policy` to each group of `candidates`; groups come out sorted by name.
pub fn plan_retention(
    candidates: Vec<Candidate<'_>>,
    policy: &RetentionPolicy,
) -> Result<Vec<ForgetGroup>, ForgetError> {
    if policy.is_empty() {
        return Err(ForgetError::NoRule);
    }
    let mut groups: BTreeMap<String, Vec<Candidate<'_>>> = BTreeMap::new();
    for c in candidates {
        groups.entry(c.group.clone()).or_default().push(c);
    }
    let rules: [Rule; 4] = [
        ("hourly", policy.keep_hourly, |t| {
            t.format("%Y-%m-%d %H").to_string()
        }),
        ("daily", policy.keep_daily, |t| t.format("%Y-%m-%d").to_string()),
        ("weekly", policy.keep_weekly, |t| {
            let w = t.iso_week();
            format!("{}-W{}", w.year(), w.week())
        }),
        ("monthly", policy.keep_monthly, |t| {
            format!("{}-{}", t.year(), t.month())
        }),
    ];
    let within = policy
        .keep_within
        .map(|d| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX));
    let mut out = Vec::new();
    for (group, mut snaps) in groups {
        // Newest first; equal times keep their listed order.
        snaps.sort_by_key(|s| std::cmp::Reverse(s.time));
        let mut reasons: Vec<Vec<&'static str>> = vec![Vec::new(); snaps.len()];
        for r in reasons.iter_mut().take(policy.keep_last as usize) {
            r.push("last");
        }
        for (name, count, bucket) in rules {
            let mut last_bucket: Option<String> = None;
            let mut kept = 0;
            for (i, s) in snaps.iter().enumerate() {
                if kept >= count {
                    break;
                }
                let b = bucket(&s.time);
                if last_bucket.as_ref() != Some(&b) {
                    reasons[i].push(name);
                    kept += 1;
                    last_bucket = Some(b);
                }
            }
        }
        if let (Some(within), Some(newest)) = (within, snaps.first().map(|s| s.time)) {
            for (i, s) in snaps.iter().enumerate() {
                if newest - s.time < within {
                    reasons[i].push("within");
                }
            }
        }
        if !policy.keep_tags.is_empty() {
            for (i, s) in snaps.iter().enumerate() {
                if policy.keep_tags.iter().any(|t| has_tag(s.tags, t)) {
                    reasons[i].push("tag");
                }
            }
        }
        let mut g = ForgetGroup {
            group,
            keep: Vec::new(),
            remove: Vec::new(),
        };
        for (s, why) in snaps.iter().zip(reasons) {
            if why.is_empty() {
                g.remove.push(s.id);
            } else {
                g.keep.push((s.id, why));
            }
        }
        out.push(g);
    }
    Ok(out)
}

/// Whether `tags` has `wanted` (`key=value`, or `key` with any value).
fn has_tag(tags: &BTreeMap<String, String>, wanted: &str) -> bool {
    match wanted.split_once('=') {
        Some((k, v)) => tags.get(k).is_some_and(|have| have == v),
        None => tags.contains_key(wanted),
    }
}

/// Applies `policy` under a shared lock, which is released whatever happens (a failed
/// delete does not leave it to lapse): plans with [`plan_forget_grouped`], then deletes the manifests
/// it removes (their data stays until `prune`). Manifests S3 Object Lock still retains are
/// kept and listed in [`Forgotten::held`]; a later forget removes them. With `dry_run`,
/// only plans. Refuses a policy without rules ([`ForgetError::NoRule`]).
pub async fn forget(
    repo: &Repository,
    policy: &RetentionPolicy,
    group_by: GroupBy,
    dry_run: bool,
) -> Result<Forgotten, ForgetError> {
    if policy.is_empty() {
        return Err(ForgetError::NoRule);
    }
    repo.while_locked(LockKind::Shared, "forget", async {
        let groups = plan_forget_grouped(&repo.snapshots().await?, policy, group_by)?;
        let removing = groups.iter().flat_map(|g| g.remove.iter().map(snapshot_key));
        let held = repo.retained(removing, Utc::now()).await?;
        if !dry_run {
            for id in groups.iter().flat_map(|g| &g.remove) {
                if !held.contains_key(&snapshot_key(id)) {
                    repo.delete_snapshot_locked(id).await?;
                }
            }
        }
        Ok(Forgotten { groups, held })
    })
    .await
}

/// What [`forget`] did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forgotten {
    /// The plan, per group.
    pub groups: Vec<ForgetGroup>,
    /// Manifests the plan removes that S3 Object Lock retains (by object key): kept.
    pub held: BTreeMap<String, Retention>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{SnapshotDetails, Summary};
    use chrono::TimeZone;

    /// CronJob pods get a new host name each run: grouping by paths alone keeps the policy
    /// working across them.
    #[test]
    fn a_zero_keep_within_is_no_rule() {
        let zero = RetentionPolicy {
            keep_within: Some(Duration::ZERO),
            ..Default::default()
        };
        assert!(zero.is_empty(), "it would forget every snapshot, the newest too");
        let hour = RetentionPolicy {
            keep_within: Some(Duration::from_secs(3600)),
            ..Default::default()
        };
        assert!(!hour.is_empty());
    }

    #[test]
    fn group_by_chooses_what_makes_a_group() {
        let mut snaps: Vec<Snapshot> = (0..4).map(|n| at(n, 2026, 1, 1 + u32::from(n), 0)).collect();
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

    fn at(n: u8, y: i32, m: u32, d: u32, h: u32) -> Snapshot {
        Snapshot {
            id: Some(SnapshotId::of(&[n])),
            time: Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap(),
            hostname: "h".into(),
            details: SnapshotDetails::Files(Default::default()),
            source: "files:/data".into(),
            paths: vec![],
            tags: Default::default(),
            parent: None,
            tree: vec![],
            summary: Summary::default(),
        }
    }

    /// The plan with snapshot numbers instead of ids: (group, kept with reasons, removed).
    type Named = Vec<(String, Vec<(u8, Vec<&'static str>)>, Vec<u8>)>;

    fn named(plan: Vec<ForgetGroup>, snaps: &[Snapshot]) -> Named {
        let n = |id: &SnapshotId| {
            snaps
                .iter()
                .position(|s| s.id == Some(*id))
                .map(|i| i as u8)
                .expect("known id")
        };
        plan.into_iter()
            .map(|g| {
                (
                    g.group,
                    g.keep.iter().map(|(id, why)| (n(id), why.clone())).collect(),
                    g.remove.iter().map(n).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn keeps_the_newest_per_bucket() {
        let snaps = vec![
            at(0, 2026, 1, 1, 10),
            at(1, 2026, 1, 1, 11),
            at(2, 2026, 1, 2, 9),
            at(3, 2026, 1, 2, 9),
            at(4, 2026, 2, 1, 0),
        ];
        let daily = RetentionPolicy {
            keep_daily: 2,
            ..Default::default()
        };
        // Newest of 2026-02-01, then the first of 2026-01-02 (ties keep their listed order).
        assert_eq!(
            named(plan_forget(&snaps, &daily).unwrap(), &snaps),
            vec![(
                "h files files:/data".to_string(),
                vec![(4, vec!["daily"]), (2, vec!["daily"])],
                vec![3, 1, 0]
            )]
        );
        let last_monthly = RetentionPolicy {
            keep_last: 1,
            keep_monthly: 2,
            ..Default::default()
        };
        assert_eq!(
            named(plan_forget(&snaps, &last_monthly).unwrap(), &snaps),
            vec![(
                "h files files:/data".to_string(),
                vec![(4, vec!["last", "monthly"]), (2, vec!["monthly"])],
                vec![3, 1, 0]
            )]
        );
    }

    /// A realistic history: nightly file backups at 02:00 for six weeks (one night missed,
    /// one night backed up twice), an etcd snapshot every 6 hours for the last two days, and
    /// a tagged pre-upgrade snapshot. The whole plan is asserted.
    #[test]
    fn golden_plan_for_six_weeks_of_nightly_backups() {
        let mut snaps = Vec::new();
        let mut n = 0u8;
        let start = Utc.with_ymd_and_hms(2026, 3, 1, 2, 0, 0).unwrap();
        for day in 0..42 {
            if day == 20 {
                continue; // the night the backup did not run
            }
            let mut s = at(n, 2026, 1, 1, 0);
            s.time = start + chrono::Duration::days(day);
            if day == 10 {
                s.tags.insert("reason".into(), "pre-upgrade".into());
            }
            snaps.push(s);
            n += 1;
            if day == 41 {
                let mut again = at(n, 2026, 1, 1, 0);
                again.time = start + chrono::Duration::days(day) + chrono::Duration::hours(9);
                snaps.push(again);
                n += 1;
            }
        }
        let etcd_start = Utc.with_ymd_and_hms(2026, 4, 10, 0, 0, 0).unwrap();
        for i in 0..8 {
            let mut s = at(n, 2026, 1, 1, 0);
            s.source = "etcd:9e190fc32020ecde".into();
            s.details = SnapshotDetails::Other {
                kind: "etcd".into(),
                meta: Default::default(),
            };
            s.time = etcd_start + chrono::Duration::hours(6 * i);
            snaps.push(s);
            n += 1;
        }
        let policy = RetentionPolicy {
            keep_last: 2,
            keep_daily: 7,
            keep_weekly: 4,
            keep_monthly: 3,
            keep_within: Some(Duration::from_secs(24 * 3600)),
            keep_tags: vec!["reason=pre-upgrade".into()],
            ..Default::default()
        };
        // Files: snapshot i is night i (i < 20) or night i + 1 (20 ≤ i ≤ 40), from Sunday
        // 2026-03-01 to Saturday 2026-04-11; 41 is 2026-04-11 at 11:00. The etcd snapshots
        // 42–49 run from 2026-04-10 00:00 to 2026-04-11 18:00.
        assert_eq!(
            named(plan_forget(&snaps, &policy).unwrap(), &snaps),
            vec![
                (
                    "h etcd etcd:9e190fc32020ecde".to_string(),
                    vec![
                        (49, vec!["last", "daily", "weekly", "monthly", "within"]),
                        (48, vec!["last", "within"]),
                        (47, vec!["within"]),
                        (46, vec!["within"]),
                        // Exactly 24 h before the newest: outside `within`, as with restic.
                        (45, vec!["daily"]),
                    ],
                    vec![44, 43, 42],
                ),
                (
                    "h files files:/data".to_string(),
                    vec![
                        (41, vec!["last", "daily", "weekly", "monthly", "within"]),
                        (40, vec!["last", "within"]),
                        (39, vec!["daily"]),
                        (38, vec!["daily"]),
                        (37, vec!["daily"]),
                        (36, vec!["daily"]),
                        (35, vec!["daily"]),
                        // Sunday 2026-04-05 ends ISO week 14.
                        (34, vec!["daily", "weekly"]),
                        // The newest of March.
                        (29, vec!["monthly"]),
                        (27, vec!["weekly"]),
                        // Week 12's Saturday was missed: its Sunday is kept.
                        (20, vec!["weekly"]),
                        (10, vec!["tag"]),
                    ],
                    vec![
                        33, 32, 31, 30, 28, 26, 25, 24, 23, 22, 21, 19, 18, 17, 16, 15, 14, 13, 12, 11, 9, 8,
                        7, 6, 5, 4, 3, 2, 1, 0
                    ],
                ),
            ]
        );
    }

    #[test]
    fn tags_match_by_key_or_pair() {
        let mut tagged = at(0, 2026, 1, 1, 0);
        tagged.tags.insert("env".into(), "prod".into());
        let plain = at(1, 2026, 1, 2, 0);
        let snaps = vec![tagged, plain];
        for (tag, kept) in [("env", vec![0u8]), ("env=prod", vec![0]), ("env=dev", vec![])] {
            let policy = RetentionPolicy {
                keep_tags: vec![tag.to_string()],
                ..Default::default()
            };
            let plan = named(plan_forget(&snaps, &policy).unwrap(), &snaps);
            let got: Vec<u8> = plan[0].1.iter().map(|(n, _)| *n).collect();
            assert_eq!(got, kept, "{tag}");
        }
    }

    #[test]
    fn refuses_an_empty_policy() {
        assert!(matches!(
            plan_forget(&[], &RetentionPolicy::default()),
            Err(ForgetError::NoRule)
        ));
    }
}
