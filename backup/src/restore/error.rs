//! Why one entry of a restore could not be restored. A restore goes on past these and lists
//! them in its report (drctl then exits 3); each names the path and, where there is one, the
//! fix.

use rustix::io::Errno;

/// Why one path was not restored (or not completely).
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// Something that is not a directory sits where a directory must be.
    #[error(
        "{path}: exists and is not a directory; nothing is restored below it (move it away and restore again)"
    )]
    NotADirectory {
        /// The path in the target.
        path: String,
    },
    /// A symlink sits where the snapshot has a directory.
    #[error(
        "{path}: is a symlink; nothing is restored through it (remove it, or restore into an empty directory)"
    )]
    SymlinkInTheWay {
        /// The path in the target.
        path: String,
    },
    /// A directory sits where the snapshot has a file or symlink; it is not replaced.
    #[error(
        "{path}: exists and is a directory; not replaced by the snapshot's {kind} (move it away and restore again)"
    )]
    DirectoryInTheWay {
        /// The path in the target.
        path: String,
        /// What the snapshot has there.
        kind: &'static str,
    },
    /// The restore's temporary file was swapped for another while the restore ran.
    #[error(
        "{path}: the file being restored was replaced by another process during the restore; not restored"
    )]
    Replaced {
        /// The path in the target.
        path: String,
    },
    /// The hard link's first name could not be restored.
    #[error("{path}: not restored: it is a hard link to {to}, which could not be restored")]
    LinkSourceFailed {
        /// The path in the target.
        path: String,
        /// The first name of the inode.
        to: String,
    },
    /// A device node could not be made: that needs root (`CAP_MKNOD`), and a container may
    /// be denied it even as root.
    #[error(
        "{path}: device node ({kind}) not made: making device nodes needs root (CAP_MKNOD), which this restore lacks; restore as root to have it"
    )]
    DeviceNeedsRoot {
        /// The path in the target.
        path: String,
        /// `chardev` or `blockdev`.
        kind: &'static str,
    },
    /// A system call failed.
    #[error("{path}: {op}: {error}")]
    Os {
        /// The path in the target.
        path: String,
        /// What was being done (`create`, `set owner`, `rename into place`…).
        op: &'static str,
        /// The OS error.
        error: std::io::Error,
    },
}

impl EntryError {
    pub(super) fn os(path: &str, op: &'static str, errno: Errno) -> Self {
        Self::Os {
            path: path.to_string(),
            op,
            error: errno.into(),
        }
    }
}
