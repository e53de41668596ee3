//! Why an NFS backup or restore failed as a whole. Failures of single entries (a file that
//! vanished or cannot be read, an entry a restore could not make) are not errors: they are
//! listed in the snapshot's summary or the restore report.

use lifeboat_backup::RepoError;
use nfs3_client::nfs3_types::nfs3::nfsstat3;

/// An NFS backup or restore failure.
#[derive(Debug, thiserror::Error)]
pub enum NfsError {
    /// The repository failed (lock, store, index, a missing or damaged blob).
    #[error(transparent)]
    Repository(#[from] RepoError),
    /// The export could not be mounted (rpcbind, mountd or the NFS port unreachable, or the
    /// export refused to this client).
    #[error(
        "cannot mount {server}:{export} over NFSv3: {why}; check that the server runs NFSv3 with rpcbind and exports the path to this host"
    )]
    Mount {
        /// The server.
        server: String,
        /// The export.
        export: String,
        /// What the client saw.
        why: String,
    },
    /// An RPC failed on the wire (connection lost, garbled reply, no answer in time): the
    /// connection is unusable, so the whole operation stops.
    #[error("NFS {op} of {path} on {server}: {why}")]
    Rpc {
        /// The server and export.
        server: String,
        /// The procedure (`READ`, `READDIRPLUS`…).
        op: &'static str,
        /// The path under the export it was about.
        path: String,
        /// What went wrong.
        why: String,
    },
    /// The server answered an operation the whole backup or restore depends on with an error
    /// status (the directory to back up or restore into is missing, not a directory, or
    /// refused).
    #[error("NFS {op} of {path} on {server}: {status}")]
    Status {
        /// The server and export.
        server: String,
        /// The procedure.
        op: &'static str,
        /// The path under the export it was about.
        path: String,
        /// The server's status.
        status: nfsstat3,
    },
    /// A component of the directory to back up or restore into is not a directory (a
    /// symlink there is refused, never followed).
    #[error("{path} on {server}: {component:?} is not a directory (symlinks are never followed)")]
    NotADirectory {
        /// The server and export.
        server: String,
        /// The directory asked for.
        path: String,
        /// The component that is something else.
        component: String,
    },
    /// A path asked for holds `..`, `.` or a NUL byte.
    #[error("{path:?}: a path under the export must be plain names separated by '/' (no '.', '..' or NUL)")]
    BadPath {
        /// The path given.
        path: String,
    },
    /// The snapshot given to an NFS restore is not a tree of files.
    #[error("snapshot {id} is a {kind} snapshot, not files; restore it with its own kind's restore")]
    NotFiles {
        /// The snapshot.
        id: String,
        /// Its kind.
        kind: String,
    },
}
