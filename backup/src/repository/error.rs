//! Repository errors: each names the repository or object involved and, where there is one,
//! the fix.

use crate::crypto::CryptoError;
use crate::pack::PackError;

/// Why a repository operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// No `config` at the URL.
    #[error(
        "{url} is not a Lifeboat repository (no config object); create one with `drctl repo init --repo {url}`"
    )]
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
    #[error("no user key given: pass --recipient AGE_OR_SSH_PUBLIC_KEY or --passphrase-file FILE")]
    NoRecipients,
    /// Opening without any key source.
    #[error(
        "no key given to open {url}: pass --identity FILE (or set DRCTL_IDENTITY) or --passphrase-file FILE"
    )]
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
    /// Bad init options.
    #[error("invalid repository options: {0}")]
    InvalidOptions(String),
    /// An object that should exist does not.
    #[error("object {key} not found in {url}")]
    NotFound {
        /// The object key.
        key: String,
        /// The repository URL.
        url: String,
    },
    /// The object store failed (after retries).
    #[error("{op} {key} in {url}: {message}")]
    Store {
        /// What was being done.
        op: &'static str,
        /// The object key.
        key: String,
        /// The repository URL.
        url: String,
        /// What the store said.
        message: String,
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
    #[error("no snapshot {id} in {url}; list them with `drctl snapshots --repo {url}`")]
    SnapshotNotFound {
        /// What was asked for.
        id: String,
        /// The URL.
        url: String,
    },
    /// `latest` matched no snapshot of the kind, host and paths asked for.
    #[error("no {what} in {url}; list the snapshots with `drctl snapshots --repo {url}`")]
    NoMatchingSnapshot {
        /// The filter, in words.
        what: String,
        /// The URL.
        url: String,
    },
    /// A snapshot of another kind than the command restores.
    #[error(
        "snapshot {id} is of kind {kind}, not {wanted}; {}",
        restore_hint(.kind)
    )]
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
    #[error(
        "index file {key} in {url} is damaged ({message}); rebuild the index from the packs with `drctl repo repair index --repo {url}`"
    )]
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
        "snapshot {key} in {url} cannot be read ({message}); prune needs every snapshot's blob list, so nothing was deleted: \
         remove it with `drctl forget --repo {url} {id}` (`drctl repo check` lists every such snapshot)"
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
        /// What is wrong and the fix.
        reason: String,
    },
    /// A blob a snapshot needs is not in the index.
    #[error("blob {blob} is not in the index of {url} (the repository is damaged; run `drctl repo check`)")]
    MissingBlob {
        /// The blob id.
        blob: String,
        /// The URL.
        url: String,
    },
    /// Someone else holds a conflicting lock.
    #[error("{url} is locked by {holder}. {advice} Left alone, the lock lapses at {expires}.")]
    Locked {
        /// The URL.
        url: String,
        /// Who holds it: pid, host, operation, age.
        holder: String,
        /// What to do: wait, or how to remove it.
        advice: String,
        /// When it expires.
        expires: String,
    },
    /// The lock object could not be written (a read-only mount or bucket, no permission).
    #[error(
        "cannot take a lock in {url}: {message}; if the repository is read-only, read-only commands \
         (restore files, repo check) work without a lock with --no-lock"
    )]
    LockNotWritten {
        /// The URL.
        url: String,
        /// Why the write failed.
        message: String,
    },
    /// A key operation that would lock everyone out.
    #[error("{0}")]
    KeyRefused(String),
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
                message: store_message(&other),
            },
        }
    }

    pub(crate) fn io(path: &std::path::Path, e: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }
}

/// How a snapshot of `kind` is restored.
fn restore_hint(kind: &str) -> &'static str {
    match kind {
        "etcd" => "restore it with `drctl etcd restore`",
        "kubernetes" => "restore it with `drctl restore create --from-snapshot`",
        _ => "give the id of a snapshot of the right kind (`drctl snapshots` lists them)",
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
