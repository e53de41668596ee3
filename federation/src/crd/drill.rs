//! `Drill`: a failover drill the federation agent runs on a cron schedule, keeping a history
//! of measured RPO and RTO in status (and the full reports in the repositories).

use kube::CustomResource;
use lifeboat_controller::crd::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A scheduled drill of a FailoverPlan.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "lifeboat.dev",
    version = "v1alpha1",
    kind = "Drill",
    namespaced,
    status = "DrillStatus",
    shortname = "lbdrill",
    category = "lifeboat",
    printcolumn = r#"{"name":"Plan","type":"string","jsonPath":".spec.plan"}"#,
    printcolumn = r#"{"name":"Schedule","type":"string","jsonPath":".spec.schedule"}"#,
    printcolumn = r#"{"name":"Last","type":"string","jsonPath":".status.lastResult"}"#,
    printcolumn = r#"{"name":"RPO","type":"number","jsonPath":".status.history[0].rpoSeconds"}"#,
    printcolumn = r#"{"name":"RTO","type":"number","jsonPath":".status.history[0].rtoSeconds"}"#,
    printcolumn = r#"{"name":"Next","type":"string","jsonPath":".status.nextRunTime"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct DrillSpec {
    /// The FailoverPlan (same namespace) to drill.
    pub plan: String,
    /// Cron expression (five fields, or six with seconds; `@daily`…).
    pub schedule: String,
    /// IANA time zone of the expression; UTC if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Cluster to restore into (the plan's first standby if unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Suffix for the restored namespaces (`-drill`), so a drill can share a cluster with
    /// the real thing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_suffix: Option<String>,
    /// Drills kept in status.
    #[serde(default = "ten")]
    pub history_limit: u32,
    /// Suspended drills do not run.
    #[serde(default)]
    pub suspend: bool,
}

fn ten() -> u32 {
    10
}

/// Results of past drills.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrillStatus {
    /// `Succeeded`, `Failed` (targets missed or a step failed) or `Running`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_result: Option<String>,
    /// When the latest drill started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_time: Option<String>,
    /// When the next one is due (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_time: Option<String>,
    /// Newest first, at most `historyLimit`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<DrillSummary>,
    /// `Valid`, `Succeeded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// One drill.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrillSummary {
    /// The run id (its report is `federation/drills/<plan>/<run>` in the repositories).
    pub run: String,
    /// When it started (RFC 3339).
    pub start_time: String,
    /// The cluster restored into.
    pub target: String,
    /// Every step passed and every target was met.
    pub success: bool,
    /// Age of the recovery point used, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpo_seconds: Option<f64>,
    /// Start to ready, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rto_seconds: Option<f64>,
    /// What failed or was missed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
