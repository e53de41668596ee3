//! `Backup`: one backup of a cluster's objects (or of its etcd) into a repository.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Condition, ItemMessage, Progress, SecretKeyRef};

/// What a backup takes and where it goes.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "lifeboat.dev",
    version = "v1alpha1",
    kind = "Backup",
    namespaced,
    status = "BackupStatus",
    shortname = "lbbackup",
    category = "lifeboat",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Items","type":"integer","jsonPath":".status.itemsBackedUp"}"#,
    printcolumn = r#"{"name":"Errors","type":"integer","jsonPath":".status.errorCount"}"#,
    printcolumn = r#"{"name":"Snapshot","type":"string","jsonPath":".status.snapshotId"}"#,
    printcolumn = r#"{"name":"Repository","type":"string","jsonPath":".spec.repository"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// Name of a BackupRepository in this namespace.
    pub repository: String,
    /// Namespaces to include (globs; empty means all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_namespaces: Vec<String>,
    /// Namespaces to leave out (globs), applied after the inclusions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_namespaces: Vec<String>,
    /// Resources to include, as `plural` or `plural.group` (globs; empty means all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_resources: Vec<String>,
    /// Resources to leave out, as `plural` or `plural.group` (globs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_resources: Vec<String>,
    /// Whether cluster-scoped objects are taken.
    #[serde(default)]
    pub cluster_scoped: ClusterScoped,
    /// Only objects matching this label selector (`app=web,tier!=cache`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
    /// How long the backup is kept before it is deleted (`720h`, `30m`); none means forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// What deleting this Backup does to its snapshot in the repository.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Back up an etcd cluster: alone (no `includedNamespaces`), or, with `includedNamespaces`
    /// (`["*"]` for all), in the same recovery point as those namespaces' objects and volume
    /// data — the etcd
    /// snapshot is started right after the volumes' group snapshot, beside the objects' read,
    /// and the volume catalog's `point.etcd` names it (forgotten with the Backup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<EtcdSource>,
    /// Tags recorded on the snapshot.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Which PersistentVolumeClaims' data is taken (default: every bound claim in the
    /// backup's namespaces). See docs/volumes.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<VolumeSelection>,
}

/// Which claims' volume data a backup takes, narrowing the backup's namespaces. Claims left
/// out here are recorded as excluded; claims selected whose data cannot be taken (another
/// driver, unbound, NFS for now) make the backup PartiallyFailed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSelection {
    /// Take volume data at all (`false`: objects only, every claim recorded as excluded).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Namespaces whose claims are taken (globs; empty means all the backup covers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_namespaces: Vec<String>,
    /// Namespaces whose claims are left out (globs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_namespaces: Vec<String>,
    /// Only claims matching this label selector (`app=db,tier!=cache`, `backup in (yes)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
    /// StorageClasses whose claims are taken (globs; empty means all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_storage_classes: Vec<String>,
    /// StorageClasses whose claims are left out (globs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_storage_classes: Vec<String>,
    /// A Secret in the Backup's namespace with the cephx user and key (`userID`/`userKey`, or
    /// `adminID`/`adminKey`) to read every RBD image with, instead of each StorageClass's
    /// provisioner Secret (default: the BackupRepository's `cephSecret`, else those).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceph_secret: Option<String>,
}

impl Default for VolumeSelection {
    fn default() -> Self {
        Self {
            enabled: true,
            included_namespaces: Vec::new(),
            excluded_namespaces: Vec::new(),
            label_selector: None,
            included_storage_classes: Vec::new(),
            excluded_storage_classes: Vec::new(),
            ceph_secret: None,
        }
    }
}

fn default_true() -> bool {
    true
}

/// Whether cluster-scoped objects are backed up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ClusterScoped {
    /// All of them when no namespace filter is set; otherwise only those the included
    /// namespaced objects need (PersistentVolumes bound to their claims, CRDs of their kinds).
    #[default]
    Auto,
    /// Always.
    Include,
    /// Never.
    Exclude,
}

/// What deleting a Backup does to its snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    /// Forget the snapshot (its data goes with the next prune).
    #[default]
    Delete,
    /// Keep the snapshot in the repository.
    Retain,
}

/// An etcd cluster to snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EtcdSource {
    /// Client URLs of the members (`https://10.0.0.1:2379`); the first healthy one is used.
    pub endpoints: Vec<String>,
    /// Secret with `ca.crt`, `tls.crt` and `tls.key` for mutual TLS (kubeadm's etcd).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret: Option<SecretKeyRef>,
}

/// Where a backup is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum BackupPhase {
    /// Not started.
    #[default]
    New,
    /// Running.
    InProgress,
    /// Every item was stored.
    Completed,
    /// The snapshot exists but some items could not be stored (see `errors`).
    PartiallyFailed,
    /// No snapshot was made (see `message`).
    Failed,
    /// Being removed (finalizer running).
    Deleting,
}

impl BackupPhase {
    /// True once the backup will not change any more.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::PartiallyFailed | Self::Failed)
    }
}

/// What happened.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    /// Where it is.
    #[serde(default)]
    pub phase: BackupPhase,
    /// When it started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// When it finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
    /// When the TTL runs out (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<String>,
    /// Objects stored.
    #[serde(default)]
    pub items_backed_up: u64,
    /// Objects deliberately left out (each kind of skip with its reason is in `warnings`).
    #[serde(default)]
    pub items_skipped: u64,
    /// Number of entries in `errors`, for printer columns.
    #[serde(default)]
    pub error_count: u64,
    /// Things worth knowing that did not fail the backup.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<ItemMessage>,
    /// Items that could not be backed up, each with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ItemMessage>,
    /// The repository snapshot holding it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// The etcd snapshot taken in the same recovery point (`spec.etcd` with
    /// `includedNamespaces`): its id, the revision its database holds, when it was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<crate::volumes::EtcdPoint>,
    /// What became of each selected claim's volume data: its volume snapshot, or why it was
    /// not taken (claims the selection left out are only in the snapshot's catalog).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<crate::volumes::CatalogEntry>,
    /// Bytes new to the repository.
    #[serde(default)]
    pub bytes_added: u64,
    /// How far it has got.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// While it runs: each claim whose volume data is being read or was read (at most 500);
    /// cleared when it completes (`volumes` then says what became of each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_progress: Vec<super::common::VolumeProgress>,
    /// Why it failed, or what it is waiting for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Runs started for this Backup (a controller restart mid-run starts another).
    #[serde(default)]
    pub attempts: u32,
    /// Conditions (`Valid`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
