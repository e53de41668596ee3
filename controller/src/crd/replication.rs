//! `BackupReplication`: copy a repository's snapshots to other repositories (other clouds),
//! after each backup and on a schedule — what Velero users script with rclone, and what K10
//! calls exporting to a location profile. Each destination is a BackupRepository (as Velero's
//! BackupStorageLocations are), with its own retention and, on S3, object lock.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Condition, Progress};
use super::schedule::Retention;

fn yes() -> bool {
    true
}

/// Replicate the snapshots of one repository to others.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "lifeboat.dev",
    version = "v1alpha1",
    kind = "BackupReplication",
    namespaced,
    status = "BackupReplicationStatus",
    shortname = "lbrepl",
    category = "lifeboat",
    printcolumn = r#"{"name":"Source","type":"string","jsonPath":".spec.sourceRepository"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Newest Copied","type":"date","jsonPath":".status.destinations[0].newestSnapshotTime"}"#,
    printcolumn = r#"{"name":"Last Copy","type":"date","jsonPath":".status.lastCopyTime"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BackupReplicationSpec {
    /// The BackupRepository (in this namespace) whose snapshots are copied.
    pub source_repository: String,
    /// Where they go.
    pub destinations: Vec<ReplicationDestination>,
    /// Only snapshots carrying every one of these tags (`backup: nightly`); all when empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub snapshot_tags: BTreeMap<String, String>,
    /// Copy as soon as a Backup into the source repository finishes.
    #[serde(default = "yes")]
    pub after_each_backup: bool,
    /// Also copy on this cron schedule (five fields, six with seconds, or `@hourly`…), which
    /// catches snapshots written by other clusters or by drctl.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// IANA time zone of `schedule` (UTC by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Bandwidth per destination copy, bytes per second: `50Mi`, `10M`, `800Ki`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth_limit: Option<String>,
    /// Packs transferred at once per destination (default 8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u32>,
    /// No copies while true.
    #[serde(default)]
    pub suspend: bool,
}

/// One destination.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationDestination {
    /// A short name for status and the `destination` label of metrics (`dr-azure`).
    pub name: String,
    /// The BackupRepository (in this namespace, ReadWrite) copies go to. It need not hold a
    /// repository yet: the first copy creates it, opened by the same keys as the source.
    pub repository: String,
    /// Retention at this destination (`drctl forget` rules), applied after each copy and
    /// followed by a prune when it removed something; snapshots it would not keep are not
    /// copied. Without it the destination keeps every snapshot copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// Write every object with S3 Object Lock (the bucket must have object lock enabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_lock: Option<ObjectLockSpec>,
}

/// S3 Object Lock for a destination.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectLockSpec {
    /// `Governance` (removable with s3:BypassGovernanceRetention) or `Compliance` (by nobody).
    #[serde(default)]
    pub mode: ObjectLockMode,
    /// Days each object stays locked after the copy that wrote (or last needed) it.
    pub retention_days: u32,
}

/// Object lock mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ObjectLockMode {
    /// Users with s3:BypassGovernanceRetention may remove the lock.
    #[default]
    Governance,
    /// Nobody may delete a locked object before its date.
    Compliance,
}

/// Whether a copy is running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ReplicationPhase {
    /// Waiting for the next backup or scheduled time.
    #[default]
    Idle,
    /// Copying.
    Copying,
    /// The last copy failed for at least one destination (see its `message`).
    Failed,
    /// `spec.suspend` is set.
    Suspended,
    /// The spec cannot be acted on (see the `Valid` condition).
    Invalid,
}

/// What the controller last did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupReplicationStatus {
    /// Where it is.
    #[serde(default)]
    pub phase: ReplicationPhase,
    /// When the last copy started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_copy_time: Option<String>,
    /// When the last copy ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_completion_time: Option<String>,
    /// The spec generation the last copy ran with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Per destination.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<DestinationStatus>,
    /// Why it is Invalid or Failed, and the fix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Conditions (`Valid`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// One destination's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DestinationStatus {
    /// The destination's name from the spec.
    pub name: String,
    /// Its repository URL.
    #[serde(default)]
    pub url: String,
    /// The newest snapshot it holds of those selected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_snapshot: Option<String>,
    /// When that snapshot was taken: its age is the recovery point for losing the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_snapshot_time: Option<String>,
    /// Snapshots there after the last copy.
    #[serde(default)]
    pub snapshots: u64,
    /// When a copy last succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_time: Option<String>,
    /// Bytes the last copy sent.
    #[serde(default)]
    pub last_copy_bytes: u64,
    /// Bytes sent since this replication was created.
    #[serde(default)]
    pub bytes_copied: u64,
    /// Snapshots copied since this replication was created.
    #[serde(default)]
    pub snapshots_copied: u64,
    /// Snapshots retention removed there in the last run.
    #[serde(default)]
    pub snapshots_forgotten: u64,
    /// Object lock: what is written and what the store supports (`GOVERNANCE 30 days;
    /// object lock enabled`, or why there is none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_lock: Option<String>,
    /// While a copy to it runs: packs sent of those to send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// Why the last copy failed or was partial, and the fix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
