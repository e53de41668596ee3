//! Why an object backup or restore could not run at all (per-object problems are reported
//! in the outcome instead, and never stop the rest).

use lifeboat_backup::RepoError;

/// A failure of the whole operation.
#[derive(Debug, thiserror::Error)]
pub enum ObjectsError {
    /// The API server refused or could not be reached.
    #[error("Kubernetes API: {what}: {message}")]
    Kube {
        /// What was being done.
        what: String,
        /// The server's or client's answer.
        message: String,
    },
    /// The repository failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The request itself is wrong; the message names the field and the fix.
    #[error("{0}")]
    Invalid(String),
    /// An included resource name names no resource type (kubectl's names: plural,
    /// singular, kind, short name, optionally `.group`).
    #[error(
        "{field}: no resource type named {name:?} here; use a name `kubectl api-resources` lists \
         (plural, singular, kind or short name, optionally with .group) or a glob"
    )]
    UnknownResource {
        /// The field (`includedResources`).
        field: &'static str,
        /// The name given.
        name: String,
    },
    /// The repository holds no snapshot of the Backup.
    #[error("no snapshot of Backup {name} in {url}")]
    NoSnapshotOfBackup {
        /// The Backup's name.
        name: String,
        /// The repository.
        url: String,
    },
    /// A restore named neither a snapshot nor a Backup.
    #[error("nothing to restore from: name a Backup or a snapshot id")]
    NothingToRestore,
    /// Volume data has nowhere to go in the target cluster: each entry names a StorageClass,
    /// why, and the claims needing it. Nothing was written.
    #[error(
        "volume data cannot be restored, so nothing was restored: {}",
        .0.join("; ")
    )]
    VolumeTargets(Vec<String>),
    /// The etcd snapshot a Backup takes beside its objects failed; no objects snapshot was
    /// written.
    #[error("the recovery point's etcd snapshot: {0}")]
    Etcd(#[from] lifeboat_etcd::EtcdError),
    /// The snapshot is not an object backup.
    #[error("snapshot {id} is a {kind} snapshot, not a Kubernetes objects backup")]
    WrongKind {
        /// The snapshot.
        id: String,
        /// What it holds.
        kind: String,
    },
}

impl ObjectsError {
    /// Wraps a client error with what was being done.
    pub fn kube(what: impl Into<String>, e: kube::Error) -> Self {
        Self::Kube {
            what: what.into(),
            message: e.to_string(),
        }
    }
}
