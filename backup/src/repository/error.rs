//! Repository errors: each names the repository or object involved, keeps the meaning of
//! what went wrong (an object store's answer stays a [`StoreFailure`], not text), and says the
//! fix where the library knows one. Front ends add their own hints: the library never names a
//! command-line flag.

use crate::chunker::ChunkerError;
use crate::crypto::CryptoError;
use crate::pack::PackError;

/// Why a repository operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// No `config` at the URL.
    #[error("{url} is not a Lifeboat repository (no config object)")]
    NotARepository {
        /// The URL.
        url: String,
    },
    /// `init` on an existing repository.
    #[error("{url} already holds a repository; nothing was written")]
    AlreadyExists {
        /// The URL.
        url: String,
    },
    /// `init` where other data lives.
    #[error(
        "{url} is not empty ({found} is there) and holds no repository; nothing was written. Create the repository in an empty directory or prefix"
    )]
    NotEmpty {
        /// The URL.
        url: String,
        /// One object found there.
        found: String,
    },
    /// `init` without any user key.
    #[error("no user key given to wrap the repository key for; nothing was written")]
    NoRecipients,
    /// Opening without any key source.
    #[error("no key given to open {url}")]
    NoKeyGiven {
        /// The URL.
        url: String,
    },
    /// No given key opens any `keys/` entry.
    #[error(
        "none of the keys tried ({tried}) opens repository {url} ({key_count} keys stored); check the identity or passphrase"
    )]
    WrongKey {
        /// The URL.
        url: String,
        /// The key sources tried (paths, never contents).
        tried: String,
        /// How many `keys/` entries exist.
        key_count: usize,
    },
    /// Chunk sizes FastCDC cannot use.
    #[error("invalid repository options: {0}")]
    Chunker(#[from] ChunkerError),
    /// Bad options for an operation (a restore's include pattern).
    #[error("{0}")]
    InvalidOptions(String),
    /// An object that should exist does not.
    #[error("object {key} not found in {url}")]
    NotFound {
        /// The object key.
        key: String,
        /// The repository URL.
        url: String,
    },
    /// The object store refused or failed (after its own retries).
    #[error("{op} {key} in {url}: {message}")]
    Store {
        /// What was being done.
        op: &'static str,
        /// The object key.
        key: String,
        /// The repository URL.
        url: String,
        /// What kind of failure it was.
        failure: StoreFailure,
        /// What the store said.
        message: String,
    },
    /// A worker could not hand a sealed pack over because the session's uploader had
    /// stopped after an upload failed. The session replaces it with that upload's own error
    /// (naming the object and the store's answer) when it ends ([`crate::session::Session::abandon`]).
    #[error("a pack could not be queued: the uploader stopped after an upload failed")]
    UploaderStopped,
    /// Something to store whole (not chunked) is larger than any blob may be
    /// ([`crate::pack::MAX_BLOB_LENGTH`]): readers would refuse it.
    #[error(
        "cannot store {length} bytes as one blob: the repository format allows at most {} (store it as a chunked file instead)",
        crate::pack::MAX_BLOB_LENGTH
    )]
    BlobTooLarge {
        /// Its length in bytes.
        length: usize,
    },
    /// An object's content is not what the format says.
    #[error("{object}: {message}")]
    Corrupt {
        /// The object key.
        object: String,
        /// What is wrong.
        message: String,
    },
    /// Encryption or decryption failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// A pack could not be read.
    #[error(transparent)]
    Pack(#[from] PackError),
    /// A snapshot id matched nothing.
    #[error("no snapshot {id} in {url}")]
    SnapshotNotFound {
        /// What was asked for.
        id: String,
        /// The URL.
        url: String,
    },
    /// `latest` matched no snapshot of the kind, host and paths asked for.
    #[error("no {what} in {url}")]
    NoMatchingSnapshot {
        /// The filter, in words.
        what: String,
        /// The URL.
        url: String,
    },
    /// A snapshot of another kind than the command restores.
    #[error("snapshot {id} is of kind {kind}, not {wanted}")]
    WrongSnapshotKind {
        /// The snapshot (short id).
        id: String,
        /// Its kind.
        kind: String,
        /// The kind the command restores.
        wanted: String,
    },
    /// A snapshot prefix matched several.
    #[error("snapshot prefix {prefix} matches several snapshots; give more digits")]
    AmbiguousSnapshot {
        /// The prefix.
        prefix: String,
    },
    /// An index file that does not decrypt or parse.
    #[error("index file {key} in {url} is damaged ({message}); the index can be rebuilt from the packs")]
    DamagedIndex {
        /// The index file's key.
        key: String,
        /// The repository URL.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// A snapshot object that does not decrypt or parse, where every snapshot must be read.
    #[error(
        "snapshot {key} in {url} cannot be read ({message}); prune needs every snapshot's blob list, so nothing was deleted"
    )]
    DamagedSnapshot {
        /// The snapshot object's key.
        key: String,
        /// Its id.
        id: String,
        /// The repository URL.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// Prune would delete data snapshots need, or work from an index that does not match
    /// storage; nothing was deleted.
    #[error("prune refused, nothing was deleted: {reason}")]
    PruneRefused {
        /// The repository URL.
        url: String,
        /// What is wrong, and what to do in words.
        reason: crate::maintenance::prune::PruneRefusal,
    },
    /// A blob a snapshot needs is not in the index.
    #[error("blob {blob} is not in the index of {url}: the repository is damaged")]
    MissingBlob {
        /// The blob id.
        blob: String,
        /// The URL.
        url: String,
    },
    /// A pack could not be fetched or opened; every blob in it is unreadable.
    #[error("pack {pack} could not be read: {why}")]
    PackUnreadable {
        /// The pack id.
        pack: String,
        /// What went wrong.
        why: String,
    },
    /// Someone else holds a conflicting lock.
    #[error("{url} is locked by {holder}. {advice} Left alone, the lock lapses at {expires}.")]
    Locked {
        /// The URL.
        url: String,
        /// Who holds it: pid, host, operation, age.
        holder: String,
        /// What to do: wait, or remove it.
        advice: LockAdvice,
        /// When it expires.
        expires: String,
    },
    /// The lock could not be refreshed in time: the operation was stopped before the lock
    /// lapsed, since a prune could then delete what it was writing or reading.
    #[error(
        "stopped: the lock on {url} could not be refreshed ({why}); nothing more was written, and no snapshot refers to what was"
    )]
    LockLost {
        /// The URL.
        url: String,
        /// The store's answer to the last refresh.
        why: String,
    },
    /// A user key id matched nothing.
    #[error("no key {id} in {url}")]
    KeyNotFound {
        /// The key id asked for.
        id: String,
        /// The URL.
        url: String,
    },
    /// Removing the last user key would lock everyone out.
    #[error("key {id} is the only key of {url}; add another key before removing it")]
    LastKey {
        /// The key id.
        id: String,
        /// The URL.
        url: String,
    },
    /// The lock object could not be written (a read-only mount or bucket, no permission).
    /// Read-only operations can run without a lock.
    #[error("cannot take a lock in {url}: {message}")]
    LockNotWritten {
        /// The URL.
        url: String,
        /// Why the write failed.
        message: String,
    },
    /// Removing the key that opened the repository for this operation, without `force`.
    #[error("key {id} is the key that opened {url}: removing it may lock you out")]
    KeyInUse {
        /// The key id.
        id: String,
        /// The URL.
        url: String,
    },
    /// A backup source given as a directory (`link/`, `link/.`) that is a symbolic link: the
    /// backup would store only the link.
    #[error(
        "{path} is a symbolic link to {target}, given as a directory: a backup stores a link as a \
         link, so it would hold no file of that directory; pass {target} to back up the directory \
         (or {path} without the trailing `/` to keep just the link)"
    )]
    SourceIsSymlink {
        /// The source as recorded (absolute, normalised).
        path: String,
        /// Where the link leads (resolved).
        target: String,
    },
    /// Local I/O failed (reading files to back up, writing restored files).
    #[error("{path}: {message}")]
    Io {
        /// The local path.
        path: String,
        /// The OS error.
        message: String,
    },
    /// S3 Object Lock retains the object: it cannot be deleted yet.
    #[error("{key} in {url} is locked (S3 Object Lock) until {until}; it can be removed after that")]
    Retained {
        /// The object key.
        key: String,
        /// The repository URL.
        url: String,
        /// When its retention ends.
        until: chrono::DateTime<chrono::Utc>,
    },
    /// A restore's `--include` pattern is not a glob.
    #[error(transparent)]
    InvalidInclude(#[from] crate::restore::InvalidInclude),
    /// A background task failed to run.
    #[error("internal task failed: {0}")]
    Task(String),
}

/// What an object store's failure means, as object_store classifies it (plus whether trying
/// again later may succeed), so callers decide on meaning rather than on text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum StoreFailure {
    /// A create-only write found the object there.
    AlreadyExists,
    /// A conditional write's condition did not hold (someone else changed the object).
    Precondition,
    /// A conditional read found the object unchanged.
    NotModified,
    /// The credentials may not do this.
    PermissionDenied,
    /// The credentials were not accepted.
    Unauthenticated,
    /// The store does not support the operation.
    NotSupported,
    /// The network or the service failed (connection, timeout, 5xx, throttling) even after
    /// the store's retries: trying again later may succeed.
    Transient,
    /// Anything else (a bad path, a local I/O error).
    Other,
}

impl StoreFailure {
    /// Classifies an object store error (other than not-found, which is [`RepoError::NotFound`]).
    pub fn of(e: &object_store::Error) -> Self {
        use object_store::Error as E;
        match e {
            E::AlreadyExists { .. } => Self::AlreadyExists,
            E::Precondition { .. } => Self::Precondition,
            E::NotModified { .. } => Self::NotModified,
            E::PermissionDenied { .. } => Self::PermissionDenied,
            E::Unauthenticated { .. } => Self::Unauthenticated,
            E::NotSupported { .. } | E::NotImplemented { .. } => Self::NotSupported,
            E::JoinError { .. } => Self::Transient,
            other if transient_cause(other) => Self::Transient,
            _ => Self::Other,
        }
    }
}

/// Whether an error's causes say the network or the service failed. object_store keeps the
/// HTTP status of a failed request in a private type, so a server error is recognised by the
/// status its message quotes ("status code: 503"); connection failures and timeouts by the
/// public `HttpError` kind or the OS error kind.
fn transient_cause(e: &(dyn std::error::Error + 'static)) -> bool {
    use object_store::client::{HttpError, HttpErrorKind};
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(http) = c.downcast_ref::<HttpError>()
            && matches!(
                http.kind(),
                HttpErrorKind::Connect
                    | HttpErrorKind::Request
                    | HttpErrorKind::Timeout
                    | HttpErrorKind::Interrupted
            )
        {
            return true;
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::BrokenPipe
            )
        {
            return true;
        }
        let text = c.to_string();
        if ["status code: 5", "status code: 429"]
            .iter()
            .any(|s| text.contains(s))
        {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Whether a request failed because its connection broke after it went out (reset, closed,
/// timed out): the kinds object_store retries only for requests it knows to be idempotent, so
/// a create-only write or a delete comes back with them unretried.
pub(crate) fn interrupted(e: &object_store::Error) -> bool {
    use object_store::client::{HttpError, HttpErrorKind};
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(http) = c.downcast_ref::<HttpError>() {
            return matches!(http.kind(), HttpErrorKind::Interrupted | HttpErrorKind::Timeout);
        }
        cause = c.source();
    }
    false
}

impl RepoError {
    pub(crate) fn store(op: &'static str, key: &str, url: &str, e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => Self::NotFound {
                key: key.to_string(),
                url: url.to_string(),
            },
            other => Self::Store {
                op,
                key: key.to_string(),
                url: url.to_string(),
                failure: StoreFailure::of(&other),
                message: store_message(&other),
            },
        }
    }

    /// The store's classification, for store failures.
    pub fn store_failure(&self) -> Option<StoreFailure> {
        match self {
            Self::Store { failure, .. } => Some(*failure),
            _ => None,
        }
    }

    /// True when trying again later may succeed: the store (or the network to it) failed
    /// transiently, or the operation lost its lock to such a failure.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Store {
                failure: StoreFailure::Transient,
                ..
            } | Self::LockLost { .. }
        )
    }

    /// True when an object (or snapshot) asked for does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. } | Self::SnapshotNotFound { .. })
    }

    pub(crate) fn io(path: &std::path::Path, e: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }
}

/// What to do about a lock someone else holds (part of [`RepoError::Locked`]). In words:
/// drctl adds the commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockAdvice {
    /// Its holder is running: wait.
    Wait,
    /// Its holder is gone (this host can tell): the lock can be removed.
    HolderGone {
        /// How that is known.
        why: String,
    },
    /// Its holder runs elsewhere and cannot be checked from here.
    HolderUnknown {
        /// The holder's host.
        host: String,
        /// Why it cannot be checked.
        why: String,
    },
}

impl std::fmt::Display for LockAdvice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Wait => f.write_str("Wait for it to finish."),
            Self::HolderGone { why } => write!(
                f,
                "Its holder is gone ({why}): the lock can be removed (unlocking checks this again)."
            ),
            Self::HolderUnknown { host, why } => write!(
                f,
                "If that process is gone (killed, or its node lost), remove the lock by unlocking on \
                 {host} (which checks), or, after making sure, by removing every lock ({why}); \
                 otherwise wait for it to finish."
            ),
        }
    }
}

/// The store's own message, with the error chain but without repeating the object path.
fn store_message(e: &object_store::Error) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    msg
}
