//! The Schedule controller: Backups on a per-second cron, pruned beyond retention; bad cron
//! and time zones reported on the Schedule.
//!
//! ```sh
//! cargo test -p lifeboat-tests --test controller_schedule
//! ```

mod controller_support;

use std::collections::BTreeSet;
use std::time::Duration;

use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use lifeboat_controller::SCHEDULE_LABEL;
use lifeboat_controller::crd::{Backup, BackupPhase, BackupSpec, Retention, Schedule, ScheduleSpec};
use serde_json::json;

use controller_support::*;

fn schedule(name: &str, cron: &str, ns: &str) -> Schedule {
    Schedule::new(
        name,
        ScheduleSpec {
            schedule: cron.into(),
            template: BackupSpec {
                repository: REPO.into(),
                included_namespaces: vec![ns.to_string()],
                included_resources: vec!["configmaps".into()],
                ..BackupSpec::default()
            },
            retention: Retention {
                keep_last: Some(2),
                ..Retention::default()
            },
            ..ScheduleSpec::default()
        },
    )
}

async fn backups_of(api: &Api<Backup>, schedule: &str) -> Vec<Backup> {
    api.list(&ListParams::default().labels(&format!("{SCHEDULE_LABEL}={schedule}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

#[tokio::test]
async fn a_schedule_creates_backups_and_prunes_beyond_retention() {
    let env = env("ctl-schedule").await;
    env.config_maps(2).await;
    let ctl = env.controller("a").await;
    let schedules: Api<Schedule> = env.api();
    let backups: Api<Backup> = env.api();
    schedules
        .create(
            &PostParams::default(),
            &schedule("every2s", "*/2 * * * * *", &env.ns),
        )
        .await
        .expect("create Schedule");

    let mut seen = BTreeSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let list = backups_of(&backups, "every2s").await;
        for b in &list {
            seen.insert(b.metadata.name.clone().unwrap_or_default());
        }
        let done = list
            .iter()
            .filter(|b| {
                b.status
                    .as_ref()
                    .is_some_and(|s| s.phase == BackupPhase::Completed)
            })
            .count();
        if seen.len() >= 4 && (1..=2).contains(&done) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for four scheduled Backups (seen {seen:?}, {done} Completed)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for name in &seen {
        assert!(
            name.starts_with("every2s-") && name.len() == "every2s-".len() + 14,
            "{name}"
        );
    }
    // Retention removed the oldest: never more than two Completed ones kept at a time. A
    // Backup retention deleted stays listed, Completed, until its finalizer has forgotten its
    // snapshot; it is no longer kept.
    let list = backups_of(&backups, "every2s").await;
    let completed = list
        .iter()
        .filter(|b| b.metadata.deletion_timestamp.is_none())
        .filter(|b| {
            b.status
                .as_ref()
                .is_some_and(|s| s.phase == BackupPhase::Completed)
        })
        .count();
    assert!(completed <= 2, "{completed} Completed Backups kept");

    let s = schedules
        .get("every2s")
        .await
        .expect("get")
        .status
        .expect("status");
    assert!(s.last_run_time.is_some() && s.next_run_time.is_some(), "{s:?}");
    assert!(s.last_successful_backup.is_some(), "{s:?}");

    let (_, metrics) = ctl.get("/metrics").await;
    let gauge = format!(
        r#"lifeboat_schedule_last_success_timestamp_seconds{{namespace="{}",schedule="every2s"}}"#,
        env.ns
    );
    assert!(metrics.contains(&gauge), "{gauge} missing:\n{metrics}");

    // Pruned Backups took their snapshots with them (finalizer): at most the kept ones and
    // one or two in flight remain.
    let repo = env.open().await;
    eventually("pruned snapshots to be forgotten", 30, || {
        let repo = &repo;
        async move {
            let n = repo.snapshots().await.ok()?.len();
            (n <= 4).then_some(())
        }
    })
    .await;

    // Paused: no new Backups.
    schedules
        .patch(
            "every2s",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"paused": true}})),
        )
        .await
        .expect("pause");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before: BTreeSet<String> = backups_of(&backups, "every2s")
        .await
        .into_iter()
        .filter_map(|b| b.metadata.name)
        .collect();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after: BTreeSet<String> = backups_of(&backups, "every2s")
        .await
        .into_iter()
        .filter_map(|b| b.metadata.name)
        .collect();
    assert!(
        after.is_subset(&before),
        "a paused Schedule created {:?}",
        after.difference(&before)
    );
    ctl.stop().await;
}

#[tokio::test]
async fn invalid_cron_and_time_zone_are_reported_on_the_schedule() {
    let env = env("ctl-badcron").await;
    let ctl = env.controller("a").await;
    let schedules: Api<Schedule> = env.api();
    schedules
        .create(
            &PostParams::default(),
            &schedule("bad-cron", "every day at noon", &env.ns),
        )
        .await
        .expect("create");
    let mut tz = schedule("bad-zone", "@daily", &env.ns);
    tz.spec.time_zone = Some("Atlantis/Capital".into());
    schedules
        .create(&PostParams::default(), &tz)
        .await
        .expect("create");
    for (name, field) in [("bad-cron", "spec.schedule"), ("bad-zone", "spec.timeZone")] {
        let cond = eventually(&format!("{name} to be marked invalid"), 30, || {
            let schedules = schedules.clone();
            async move {
                let s = schedules.get(name).await.ok()?.status?;
                s.conditions
                    .into_iter()
                    .find(|c| c.type_ == "Valid" && c.status == "False")
            }
        })
        .await;
        assert!(cond.message.contains(field), "{name}: {}", cond.message);
    }
    // Fixing the spec clears the condition.
    schedules
        .patch(
            "bad-cron",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"schedule": "0 3 * * *"}})),
        )
        .await
        .expect("fix");
    eventually("bad-cron to become valid", 30, || {
        let schedules = schedules.clone();
        async move {
            let s = schedules.get("bad-cron").await.ok()?.status?;
            (s.conditions
                .iter()
                .any(|c| c.type_ == "Valid" && c.status == "True")
                && s.next_run_time.is_some())
            .then_some(())
        }
    })
    .await;
    ctl.stop().await;
}

#[tokio::test]
async fn a_failed_run_is_retried_with_backoff_before_the_next_run() {
    let env = env("ctl-retry").await;
    let ctl = env.controller("a").await;
    let schedules: Api<Schedule> = env.api();
    let backups: Api<Backup> = env.api();
    let mut s = schedule("flaky", "*/15 * * * * *", &env.ns);
    // Every run fails validation: the repository does not exist.
    s.spec.template.repository = "missing".into();
    s.spec.retry = lifeboat_controller::crd::RetryPolicy {
        limit: 1,
        backoff_seconds: 1,
    };
    schedules
        .create(&PostParams::default(), &s)
        .await
        .expect("create");
    let retry = eventually("a retry Backup", 40, || {
        let backups = backups.clone();
        async move {
            backups_of(&backups, "flaky")
                .await
                .into_iter()
                .find(|b| b.metadata.name.as_deref().is_some_and(|n| n.ends_with("-r1")))
        }
    })
    .await;
    let name = retry.metadata.name.clone().unwrap_or_default();
    let first = name.trim_end_matches("-r1").to_string();
    let original = backups.get(&first).await.expect("the failed run");
    let failed_at = original
        .status
        .and_then(|s| s.completion_time)
        .expect("completion");
    let created = retry.metadata.creation_timestamp.expect("created").0;
    let failed_at = chrono::DateTime::parse_from_rfc3339(&failed_at).expect("time");
    // creationTimestamp has whole seconds (as on a real API server): compare at that
    // precision, against the second in which the 1 s backoff ends.
    let backoff_ends = failed_at + chrono::Duration::seconds(1);
    assert!(
        created.as_second() >= backoff_ends.timestamp(),
        "the retry waited its backoff: created {created}, failed at {failed_at}"
    );
    // No second retry: the limit is 1.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        backups_of(&backups, "flaky").await.iter().all(|b| !b
            .metadata
            .name
            .as_deref()
            .unwrap_or_default()
            .ends_with("-r2")),
        "retried beyond the limit"
    );
    ctl.stop().await;
}
