//! Directory handles under a restore target. Every directory is reached from the target's
//! own handle one name at a time with `openat(O_NOFOLLOW | O_DIRECTORY)`, so a symlink in
//! the target (there before the restore, or planted during it) is never followed, and
//! everything the restore creates or changes is named relative to one of these handles.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::error::EntryError;

/// Open directory handles kept for reuse. Tree order keeps siblings together, so a few
/// hundred cover the working set; beyond that the cache starts over (handles in use stay
/// open) rather than approach the process's file limit.
const CACHED: usize = 256;

/// The restore target and handles to the directories under it.
pub(super) struct Dirs {
    target: PathBuf,
    root: Arc<OwnedFd>,
    cache: Mutex<HashMap<PathBuf, Arc<OwnedFd>>>,
}

fn open_dir(parent: &OwnedFd, name: &OsStr) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

impl Dirs {
    /// Opens the target directory (which must exist).
    pub(super) fn open(target: &Path) -> std::io::Result<Self> {
        let root = rustix::fs::openat(
            rustix::fs::CWD,
            target,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self {
            target: target.to_path_buf(),
            root: Arc::new(root),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// `rel` under the target, for messages.
    pub(super) fn shown(&self, rel: &Path) -> String {
        self.target.join(rel).display().to_string()
    }

    /// The existing directory `rel` ("" is the target itself).
    pub(super) fn get(&self, rel: &Path) -> Result<Arc<OwnedFd>, EntryError> {
        self.walk(rel, None)
    }

    /// The directory `rel`, created if missing: with `mode` for `rel` itself, and 0o777 (less
    /// the umask) for missing directories above it.
    pub(super) fn make(&self, rel: &Path, mode: u32) -> Result<Arc<OwnedFd>, EntryError> {
        self.walk(rel, Some(mode))
    }

    fn walk(&self, rel: &Path, create: Option<u32>) -> Result<Arc<OwnedFd>, EntryError> {
        let Some(name) = rel.file_name() else {
            return Ok(self.root.clone());
        };
        if let Some(fd) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(rel) {
            return Ok(fd.clone());
        }
        let parent_rel = rel.parent().unwrap_or(Path::new(""));
        let parent = self.walk(parent_rel, create.map(|_| 0o777))?;
        let fd = match open_dir(&parent, name) {
            Ok(fd) => fd,
            Err(Errno::NOENT) if create.is_some() => {
                let mode = Mode::from_bits_truncate(create.unwrap_or(0o700));
                match rustix::fs::mkdirat(&parent, name, mode) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(EntryError::os(&self.shown(rel), "create directory", e)),
                }
                open_dir(&parent, name).map_err(|e| self.not_a_dir(&parent, rel, e))?
            }
            Err(e) => return Err(self.not_a_dir(&parent, rel, e)),
        };
        let fd = Arc::new(fd);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHED {
            cache.clear();
        }
        cache.insert(rel.to_path_buf(), fd.clone());
        Ok(fd)
    }

    /// Explains why `rel` could not be opened as a directory.
    fn not_a_dir(&self, parent: &OwnedFd, rel: &Path, e: Errno) -> EntryError {
        let path = self.shown(rel);
        if !matches!(e, Errno::LOOP | Errno::NOTDIR) {
            return EntryError::os(&path, "open directory", e);
        }
        let name = rel.file_name().unwrap_or_default();
        match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                EntryError::SymlinkInTheWay { path }
            }
            _ => EntryError::NotADirectory { path },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_walks_through_symlinks() {
        let target = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), target.path().join("link")).unwrap();
        std::fs::write(target.path().join("file"), b"x").unwrap();
        let dirs = Dirs::open(target.path()).unwrap();
        let err = dirs.make(Path::new("link/evil"), 0o700).unwrap_err();
        assert!(matches!(err, EntryError::SymlinkInTheWay { .. }), "{err}");
        let err = dirs.make(Path::new("file/evil"), 0o700).unwrap_err();
        assert!(matches!(err, EntryError::NotADirectory { .. }), "{err}");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        assert!(dirs.make(Path::new("ok/dir"), 0o700).is_ok());
        assert!(target.path().join("ok/dir").is_dir());
        assert!(dirs.get(Path::new("missing")).is_err());
    }
}
