//! NFS volumes backed up and restored through a userspace NFSv3 client: no mount, no
//! privilege beyond what the export grants the client (AUTH_UNIX as uid 0; an export with
//! root squashing lets only world-readable files be read).
//!
//! A backup ([`backup_nfs`], [`NfsSource`]) lists one directory of `server:/export` with
//! READDIRPLUS — directories, regular files and symlinks (never followed) with mode (set-id
//! and sticky bits included), owner, group, mtime, ctime, fileid as the inode, and size —
//! and reads file content with READ requests of up to 1 MiB on several connections at once.
//! The snapshot is an ordinary files snapshot (the files tree format, docs/FORMAT.md) whose
//! paths are relative to the directory backed up, which plays the part `/` plays in a files
//! backup: it has no node of its own. With a parent (the newest snapshot of the same
//! [`NfsLocation::source_id`]), a file whose path, size, mtime, ctime and fileid are the
//! parent's keeps the parent's chunks unread, so an incremental reads only changed files.
//!
//! A restore ([`restore_nfs`], [`NfsSink`]) writes a snapshot's tree into a directory of an
//! export (see [`NfsSink`]); [`verify_dir`] reads one back against the snapshot, and
//! [`remove_restored_dir`] removes one a restore wrote.

mod client;
mod error;
mod mark;
mod restore;
mod source;
mod verify;
mod walk;

use std::collections::BTreeMap;
use std::sync::Arc;

use lifeboat_backup::progress::Progress;
use lifeboat_backup::restore::RestoreReport;
use lifeboat_backup::snapshot::{Node, Snapshot};
use lifeboat_backup::{BackupOptions, Repository};

pub use error::NfsError;
pub use mark::{RestoredRemoval, read_restore_mark, remove_restored_dir, write_restore_mark};
pub use restore::NfsSink;
pub use source::NfsSource;
pub use verify::{DirCheck, verify_dir};

/// A directory of an NFS export: what a backup reads and a restore writes into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NfsLocation {
    /// The server's address (name or IP), as a StorageClass's `server`.
    pub server: String,
    /// The exported path the client mounts (`/srv/nfs`), without a trailing `/`.
    pub export: String,
    /// The directory under the export, `/`-separated plain names without leading or trailing
    /// `/`; empty for the export's root.
    pub path: String,
}

impl NfsLocation {
    /// The location of `path` (relative to the export, `/`s at either end ignored) in
    /// `server:export`. Refuses `.`, `..` and NUL in `path`: it is resolved name by name on
    /// the server, and a restore must not leave the directory it was given.
    pub fn new(server: &str, export: &str, path: &str) -> Result<Self, NfsError> {
        let mut parts = Vec::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            if part == "." || part == ".." || part.contains('\0') {
                return Err(NfsError::BadPath {
                    path: path.to_string(),
                });
            }
            parts.push(part);
        }
        let export = export.trim_end_matches('/');
        Ok(Self {
            server: server.to_string(),
            export: if export.is_empty() {
                "/".to_string()
            } else {
                export.to_string()
            },
            path: parts.join("/"),
        })
    }

    /// `server:/export/path` (`server:/export` for the export's root).
    pub fn display(&self) -> String {
        if self.path.is_empty() {
            format!("{}:{}", self.server, self.export)
        } else {
            format!(
                "{}:{}/{}",
                self.server,
                self.export.trim_end_matches('/'),
                self.path
            )
        }
    }

    /// What snapshots of this directory are grouped by and parents are matched on:
    /// `nfs:server:/export/path`.
    pub fn source_id(&self) -> String {
        format!("nfs:{}", self.display())
    }
}

/// A hook given the listing before any content is read (a progress display; a test that
/// changes the tree between listing and reading).
pub type AfterWalk = Arc<dyn Fn(&[Node]) + Send + Sync>;

/// How an NFS backup runs.
#[derive(Clone, Default)]
pub struct NfsBackupOptions {
    /// Tags for the snapshot.
    pub tags: BTreeMap<String, String>,
    /// The host name recorded (`None`: this machine's). Parents are matched on the source id
    /// alone, whatever host took them: the data lives on the server.
    pub host: Option<String>,
    /// Counters for a progress bar (bytes and files read of those to read).
    pub progress: Arc<Progress>,
    /// NFS connections reading files at once (0: 4).
    pub workers: usize,
    /// Read every file even when the parent has it unchanged.
    pub force_full: bool,
    /// Called with the listing before content is read.
    pub after_walk: Option<AfterWalk>,
}

impl std::fmt::Debug for NfsBackupOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NfsBackupOptions")
            .field("tags", &self.tags)
            .field("host", &self.host)
            .field("workers", &self.workers)
            .field("force_full", &self.force_full)
            .field("after_walk", &self.after_walk.is_some())
            .finish_non_exhaustive()
    }
}

/// Backs up directory `location` into `repo` as a new files snapshot (see the module
/// documentation). Entries that cannot be listed or read (permission, vanished between the
/// listing and the read: `NFS3ERR_NOENT`, `NFS3ERR_STALE`) are left out and listed in the
/// snapshot's `summary.skipped` (the snapshot is then partial), as are sockets, FIFOs and
/// devices (as in a files backup); a file that changed while it was read is in
/// `summary.warnings`. The directory itself missing, the connection failing or the store
/// failing is an error, and then no snapshot is written.
pub async fn backup_nfs(
    repo: &Repository,
    location: &NfsLocation,
    options: &NfsBackupOptions,
) -> Result<Snapshot, NfsError> {
    let mut source = NfsSource::new(location.clone(), options);
    repo.backup(
        &mut source,
        &BackupOptions {
            tags: options.tags.clone(),
            host: options.host.clone(),
            progress: options.progress.clone(),
        },
    )
    .await
}

/// Restores files snapshot `snapshot` of `repo` into directory `location` (created if
/// missing); see [`NfsSink`]. Entries that could not be restored are in the report's
/// `errors`.
pub async fn restore_nfs(
    repo: &Repository,
    snapshot: &Snapshot,
    location: &NfsLocation,
    progress: Arc<Progress>,
) -> Result<RestoreReport, NfsError> {
    repo.restore(
        snapshot,
        NfsSink {
            location: location.clone(),
            progress,
        },
    )
    .await
}

/// Walks `path` (plain names) from the export's root, each component a directory reached
/// by LOOKUP (a symlink is refused, never followed); with `create`, missing components are
/// made (mode 0755).
async fn resolve_dir(
    client: &mut client::Client,
    location: &NfsLocation,
    create: bool,
) -> Result<nfs3_client::nfs3_types::nfs3::nfs_fh3, NfsError> {
    use nfs3_client::nfs3_types::nfs3::{Nfs3Option, ftype3, nfsstat3, sattr3};
    let mut fh = client.root();
    let mut so_far = String::new();
    for part in location.path.split('/').filter(|p| !p.is_empty()) {
        so_far.push('/');
        so_far.push_str(part);
        let status = |op, status| NfsError::Status {
            server: client_what(location),
            op,
            path: so_far.clone(),
            status,
        };
        match client.lookup(&fh, part.as_bytes(), &so_far).await? {
            Ok((next, attr)) if attr.type_ == ftype3::NF3DIR => fh = next,
            Ok(_) => {
                return Err(NfsError::NotADirectory {
                    server: client_what(location),
                    path: location.display(),
                    component: part.to_string(),
                });
            }
            Err(nfsstat3::NFS3ERR_NOENT) if create => {
                let made = client.mkdir(&fh, part.as_bytes(), &so_far).await?;
                let made = match made {
                    Ok(m) => m,
                    Err(s) => return Err(status("MKDIR", s)),
                };
                let mode = sattr3 {
                    mode: Nfs3Option::Some(0o755),
                    ..Default::default()
                };
                if let Err(s) = client.setattr(&made, mode, &so_far).await? {
                    return Err(status("SETATTR", s));
                }
                fh = made;
            }
            Err(s) => return Err(status("LOOKUP", s)),
        }
    }
    Ok(fh)
}

fn client_what(location: &NfsLocation) -> String {
    format!("{}:{}", location.server, location.export)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_normalised_and_name_the_source() {
        let l = NfsLocation::new("10.0.0.5", "/srv/nfs/", "/pvc-1/data/").expect("valid");
        assert_eq!(l.export, "/srv/nfs");
        assert_eq!(l.path, "pvc-1/data");
        assert_eq!(l.source_id(), "nfs:10.0.0.5:/srv/nfs/pvc-1/data");
        let root = NfsLocation::new("h", "/", "").expect("valid");
        assert_eq!(root.source_id(), "nfs:h:/");
    }

    #[test]
    fn dot_dot_is_refused() {
        for bad in ["../x", "a/../b", "a/./b", "a\0b"] {
            assert!(
                matches!(NfsLocation::new("h", "/e", bad), Err(NfsError::BadPath { .. })),
                "{bad}"
            );
        }
    }
}
