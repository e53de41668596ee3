//! `BackupRepository`: where backups are stored and the keys that open it.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Condition, SecretKeyRef};

/// An encrypted Lifeboat repository on object storage.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "lifeboat.dev",
    version = "v1alpha1",
    kind = "BackupRepository",
    namespaced,
    status = "BackupRepositoryStatus",
    shortname = "lbrepo",
    category = "lifeboat",
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".spec.url"}"#,
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.accessMode"}"#,
    printcolumn = r#"{"name":"Reachable","type":"boolean","jsonPath":".status.reachable"}"#,
    printcolumn = r#"{"name":"Last Check","type":"date","jsonPath":".status.lastCheckTime"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BackupRepositorySpec {
    /// `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix` or a path.
    pub url: String,
    /// S3 endpoint for non-AWS services (Ceph RGW, MinIO), path-style.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_endpoint: Option<String>,
    /// S3 region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_region: Option<String>,
    /// Azure Blob endpoint (Azurite, sovereign clouds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_endpoint: Option<String>,
    /// Secret with the store's credentials: `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY`, or
    /// `AZURE_STORAGE_ACCOUNT_NAME` + `AZURE_STORAGE_ACCOUNT_KEY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<SecretKeyRef>,
    /// Secret with the key that opens the repository: an age identity (key `identity`) or a
    /// passphrase (key `passphrase`); `key` picks one explicitly.
    pub key_secret: SecretKeyRef,
    /// ReadOnly repositories are only restored from (a replica, another cluster's backups).
    #[serde(default)]
    pub access_mode: AccessMode,
    /// Backup sync: create a read-only Backup (label `lifeboat.dev/synced`) for every object
    /// backup found in the repository that this namespace has no Backup of, as Velero does, so
    /// a cluster that never ran them can list and restore them. On by default for ReadOnly
    /// repositories; for ReadWrite ones it is opt-in, since there a Backup deleted with
    /// `deletionPolicy: Retain` would come back at the next sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_sync: Option<bool>,
    /// A Secret in this namespace with the cephx user and key (`userID`/`userKey`, or
    /// `adminID`/`adminKey`) that Backups into this repository read RBD volume data with,
    /// unless the Backup names its own (`spec.volumes.cephSecret`); default: each
    /// StorageClass's provisioner Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceph_secret: Option<String>,
}

impl BackupRepositorySpec {
    /// Whether backup sync runs for this repository.
    pub fn syncs_backups(&self) -> bool {
        self.backup_sync
            .unwrap_or(self.access_mode == AccessMode::ReadOnly)
    }
}

/// Whether backups may be written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AccessMode {
    /// Backups and restores.
    #[default]
    ReadWrite,
    /// Restores only.
    ReadOnly,
}

/// What the controller last saw of the repository.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupRepositoryStatus {
    /// Whether it could be opened with the key at the last check.
    #[serde(default)]
    pub reachable: bool,
    /// When it was last checked (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check_time: Option<String>,
    /// The repository's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_id: Option<String>,
    /// Snapshots it held at the last check.
    #[serde(default)]
    pub snapshots: u64,
    /// Backups created by backup sync so far (`kubectl get backups -l lifeboat.dev/synced`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_backups: Option<u64>,
    /// Whether the store locks objects (S3 Object Lock), or why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_lock: Option<String>,
    /// What went wrong and the fix, or a summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Conditions (`Ready`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
