//! `Restore`: objects put back from a Backup or a snapshot.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Condition, ItemMessage, Progress};

/// What to restore and how.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "lifeboat.dev",
    version = "v1alpha1",
    kind = "Restore",
    namespaced,
    status = "RestoreStatus",
    shortname = "lbrestore",
    category = "lifeboat",
    printcolumn = r#"{"name":"Backup","type":"string","jsonPath":".spec.backupName"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Restored","type":"integer","jsonPath":".status.itemsRestored"}"#,
    printcolumn = r#"{"name":"Failed","type":"integer","jsonPath":".status.itemsFailed"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RestoreSpec {
    /// The Backup (in this namespace) to restore from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_name: Option<String>,
    /// Or a snapshot id (or unique prefix) in `repository`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// The BackupRepository holding `snapshotId` (defaults to the Backup's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// Namespaces to restore (globs; empty means all in the backup).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_namespaces: Vec<String>,
    /// Namespaces to leave out (globs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_namespaces: Vec<String>,
    /// Resources to restore, `plural` or `plural.group` (globs; empty means all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_resources: Vec<String>,
    /// Resources to leave out (globs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_resources: Vec<String>,
    /// Old namespace → new namespace.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub namespace_mapping: BTreeMap<String, String>,
    /// What to do with objects that already exist.
    #[serde(default)]
    pub existing_resource_policy: ExistingResourcePolicy,
    /// Label selector (`app=web,tier!=cache`, `env in (a,b)`, `!legacy`; Velero's
    /// `labelSelector` as a string): only objects whose labels match are restored, with what
    /// they need — their Namespace objects, the CRDs of their custom resources, the
    /// PersistentVolumes bound to their claims and those StorageClasses — and volume data
    /// only of matching claims.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
    /// Also restore the `status` of objects whose status is a subresource.
    #[serde(default)]
    pub restore_status: bool,
    /// Labels added to every restored object.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// StorageClass in the backup → StorageClass in this cluster, for claims and their
    /// volumes, and for where restored volume data is written: the class's parameters and
    /// provisioner Secret name the Ceph cluster and pool (Velero's change-storage-class).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub storage_class_mapping: BTreeMap<String, String>,
    /// Restore the claims' volume data (default true): every claim the backup holds the data
    /// of gets a new RBD image with that data and a PersistentVolume bound to it. False: the
    /// claims and their volumes come back as objects only (Velero's `restorePVs`).
    #[serde(default, rename = "restorePVs", skip_serializing_if = "Option::is_none")]
    pub restore_pvs: Option<bool>,
    /// A Secret in the Restore's namespace with the cephx user and key to write restored
    /// volume data with, instead of each target StorageClass's provisioner Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceph_secret: Option<String>,
    /// Compute what would change and report it, changing nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// What happens to an object that already exists in the cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExistingResourcePolicy {
    /// Leave it alone and count it as skipped.
    #[default]
    None,
    /// Make it match the backup.
    Update,
}

/// Where a restore is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RestorePhase {
    /// Not started.
    #[default]
    New,
    /// Running.
    InProgress,
    /// Every item was restored or deliberately skipped.
    Completed,
    /// Some items failed (see `errors`).
    PartiallyFailed,
    /// Nothing could be restored (see `message`).
    Failed,
}

impl RestorePhase {
    /// True once the restore will not change any more.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::PartiallyFailed | Self::Failed)
    }
}

/// What changed, counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreSummary {
    /// Objects created.
    pub created: u64,
    /// Existing objects changed to match the backup.
    pub updated: u64,
    /// Existing objects that already matched.
    pub unchanged: u64,
    /// Existing objects left alone by the policy.
    pub skipped_existing: u64,
    /// Objects left out by the filters.
    pub filtered: u64,
}

/// What happened.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreStatus {
    /// Where it is.
    #[serde(default)]
    pub phase: RestorePhase,
    /// When it started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// When it finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
    /// Objects created or updated.
    #[serde(default)]
    pub items_restored: u64,
    /// Objects skipped (already present, policy `none`).
    #[serde(default)]
    pub items_skipped: u64,
    /// Objects that failed.
    #[serde(default)]
    pub items_failed: u64,
    /// Each failed object and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ItemMessage>,
    /// Things worth knowing that did not fail the restore.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<ItemMessage>,
    /// Counts of what changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<RestoreSummary>,
    /// For a dry run: the first changes it would make (`create configmaps/ns/name`…).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
    /// How far it has got.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// While it runs: each claim whose volume data is being written or was written (at most
    /// 500); cleared when it completes (`volumes` then says what became of each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_progress: Vec<super::common::VolumeProgress>,
    /// The snapshot restored from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// What became of each claim's volume data (at most 500 claims; errors and warnings name
    /// every failure).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<crate::volumes::RestoredVolume>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Conditions (`Valid`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
