//! Why an etcd snapshot or restore failed. Each variant names the endpoint, snapshot, file or
//! revision involved; none names a command-line flag (front ends add those hints).

use lifeboat_backup::RepoError;

/// An etcd backup or restore failure.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// No endpoints were given.
    #[error("no etcd endpoints given")]
    NoEndpoints,
    /// A TLS file could not be read.
    #[error("etcd TLS file {path}: {message}")]
    TlsFile {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// Every endpoint failed; each is listed with its reason.
    #[error("no healthy etcd member: {0}")]
    NoHealthyMember(String),
    /// The snapshot stream or the watch failed.
    #[error("etcd snapshot from {endpoint}: {message}")]
    Snapshot {
        /// The member streamed from.
        endpoint: String,
        /// What went wrong.
        message: String,
    },
    /// The snapshot's integrity hash did not match.
    #[error(
        "etcd snapshot from {endpoint} failed its integrity check (SHA-256 trailer mismatch); nothing was saved"
    )]
    Integrity {
        /// The member streamed from.
        endpoint: String,
    },
    /// The snapshot asked for is not an etcd snapshot.
    #[error("snapshot {id} is a {kind} snapshot, not etcd")]
    NotEtcd {
        /// The snapshot.
        id: String,
        /// Its kind.
        kind: String,
    },
    /// A delta was given where a full snapshot is needed.
    #[error("snapshot {id} is an etcd delta; restore it as a point of its chain")]
    NotFull {
        /// The delta.
        id: String,
    },
    /// The repository holds no etcd snapshot.
    #[error("no etcd snapshot in {url}")]
    NoSnapshot {
        /// The repository.
        url: String,
    },
    /// The restore's output file exists and replacing it was not asked for.
    #[error("{path} already exists; it was left as it is")]
    OutputExists {
        /// The file.
        path: String,
    },
    /// The revision asked for is before the chain's full snapshot.
    #[error(
        "revision {revision} is before this chain's full snapshot (revision {full}); pick an older full snapshot"
    )]
    RevisionBeforeFull {
        /// Asked for.
        revision: i64,
        /// The full snapshot's revision.
        full: i64,
    },
    /// The revision asked for is after the chain's newest delta.
    #[error(
        "revision {revision} is after the newest delta (revision {latest}); the latest point is {latest}"
    )]
    RevisionAfterLatest {
        /// Asked for.
        revision: i64,
        /// The newest delta's last revision.
        latest: i64,
    },
    /// A delta's full snapshot is gone.
    #[error("etcd delta {delta}: its full snapshot {base} is missing; restore needs it")]
    MissingFull {
        /// The delta.
        delta: String,
        /// The full snapshot it continues.
        base: String,
    },
    /// A link of the chain before a delta is missing.
    #[error(
        "etcd delta {delta}: the delta chain has a gap before it (a delta is missing); restore to an earlier point"
    )]
    ChainGap {
        /// The first delta after the gap.
        delta: String,
    },
    /// A delta's content is not what the format says (its key is not base64, a line is not
    /// JSON, the listing is missing): replaying it would restore wrong data.
    #[error("etcd delta {delta} is damaged: {problem}")]
    CorruptDelta {
        /// The delta.
        delta: String,
        /// What is wrong.
        problem: String,
    },
    /// A restored database failed etcd's integrity check; nothing was written to the output.
    #[error("{what} fails etcd's SHA-256 integrity check; nothing was written")]
    CorruptDatabase {
        /// Which database.
        what: String,
    },
    /// `etcd` or `etcdctl` could not be run.
    #[error(
        "cannot run {tool} ({message}); restoring to a point after a full snapshot needs the etcd and etcdctl binaries on PATH"
    )]
    ToolMissing {
        /// The binary.
        tool: &'static str,
        /// Why.
        message: String,
    },
    /// The private etcd used for replaying deltas failed.
    #[error("replaying deltas into a private etcd: {what}: {message}")]
    Replay {
        /// The step.
        what: String,
        /// What went wrong.
        message: String,
    },
    /// A local file (the output database, a temporary directory) could not be written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        error: std::io::Error,
    },
    /// The repository failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
}

impl EtcdError {
    pub(crate) fn io(path: &std::path::Path, error: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            error,
        }
    }

    pub(crate) fn replay(what: impl Into<String>, message: impl ToString) -> Self {
        Self::Replay {
            what: what.into(),
            message: message.to_string(),
        }
    }
}
