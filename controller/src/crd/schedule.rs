//! `Schedule`: Backups created on a cron schedule, with retention.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::backup::BackupSpec;
use super::common::Condition;

/// A cron schedule of backups.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "lifeboat.dev",
    version = "v1alpha1",
    kind = "Schedule",
    namespaced,
    status = "ScheduleStatus",
    shortname = "lbschedule",
    category = "lifeboat",
    printcolumn = r#"{"name":"Schedule","type":"string","jsonPath":".spec.schedule"}"#,
    printcolumn = r#"{"name":"Paused","type":"boolean","jsonPath":".spec.paused"}"#,
    printcolumn = r#"{"name":"Last Run","type":"date","jsonPath":".status.lastRunTime"}"#,
    printcolumn = r#"{"name":"Next Run","type":"string","jsonPath":".status.nextRunTime"}"#,
    printcolumn = r#"{"name":"Last Success","type":"string","jsonPath":".status.lastSuccessfulBackup"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleSpec {
    /// Cron expression, five fields (`0 2 * * *`) or six with seconds; `@daily` and friends.
    pub schedule: String,
    /// IANA time zone the expression is read in (`Europe/Berlin`); UTC if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// The Backup each run creates.
    pub template: BackupSpec,
    /// Paused schedules create no Backups.
    #[serde(default)]
    pub paused: bool,
    /// Which of this schedule's Backups to keep; the others are deleted (their deletion
    /// policy decides what happens to the snapshots).
    #[serde(default)]
    pub retention: Retention,
    /// What to do when a run is due while the previous one is still going.
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,
    /// Retries of a failed run.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// A run missed by more than this many seconds (controller down) is skipped rather
    /// than started late.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_deadline_seconds: Option<u64>,
}

/// How many backups to keep, as `drctl forget` counts them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Retention {
    /// The newest N.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    /// The newest of each of the last N hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_hourly: Option<u32>,
    /// The newest of each of the last N days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u32>,
    /// The newest of each of the last N ISO weeks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<u32>,
    /// The newest of each of the last N months.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_monthly: Option<u32>,
}

/// What a due run does while the previous one runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConcurrencyPolicy {
    /// Skip the new run (the default: backups of one source should not overlap).
    #[default]
    Forbid,
    /// Start it anyway.
    Allow,
}

/// Retries for failed runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    /// Extra attempts after a Failed run, before the next scheduled time.
    #[serde(default = "default_retries")]
    pub limit: u32,
    /// Wait before the first retry; doubles with each further one.
    #[serde(default = "default_backoff")]
    pub backoff_seconds: u64,
}

fn default_retries() -> u32 {
    2
}

fn default_backoff() -> u64 {
    60
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            limit: default_retries(),
            backoff_seconds: default_backoff(),
        }
    }
}

/// What the schedule did last and will do next.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleStatus {
    /// The scheduled time of the last run started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_time: Option<String>,
    /// When the next run is due (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_time: Option<String>,
    /// The Backup the last run created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<String>,
    /// The newest Backup that Completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_backup: Option<String>,
    /// When that backup completed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_time: Option<String>,
    /// Why the schedule cannot run (bad cron or time zone), or what it last did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Conditions (`Valid`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
