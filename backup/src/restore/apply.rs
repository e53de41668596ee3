//! Putting restored entries in place and giving them their recorded metadata, always through
//! a handle: files are written under a fresh temporary name (`O_CREAT | O_EXCL`), their
//! metadata is set on the open file (`fchown`, `fsetxattr`, `fchmod`, `futimens`), and they
//! are renamed over whatever the target held, so an existing file, hard link or symlink there
//! is replaced, never written into. Symlinks are handled by name relative to their directory's
//! handle with no-follow calls.
//!
//! Order, per entry: owner first (Linux clears set-user-ID, set-group-ID and file capabilities
//! on `chown`), then extended attributes and ACLs, then the mode (restoring set-id bits),
//! then the times; directories last of all, deepest first, since creating entries in a
//! directory changes its times.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;

use super::error::EntryError;
use crate::snapshot::{Node, NodeKind, Xattr};

/// A restored file's content under its temporary name, and the inode it is, so it is
/// recognised when opened again.
#[derive(Debug, Clone)]
pub(super) struct TempFile {
    /// The temporary name in the file's directory.
    pub(super) name: OsString,
    /// (device, inode) of the file created.
    pub(super) id: (u64, u64),
}

/// Prefix of temporary names; a restore killed part-way can leave files named so.
pub(crate) const TEMP_PREFIX: &str = ".lifeboat-restore-";

fn temp_name() -> OsString {
    temporary_name(rand::random::<u32>())
}

/// The temporary name a restore gives a file while writing it, from 32 random bits:
/// `.lifeboat-restore-` + those bits as 8 hex digits + the first 4 bytes of BLAKE3 of
/// `lifeboat restore temporary` followed by the bits (little-endian) as 8 hex digits
/// (docs/FORMAT.md). The check digits let a later restore tell its leftovers from a user's
/// file that merely looks like one ([`is_temporary_name`]).
pub fn temporary_name(random: u32) -> OsString {
    OsString::from(format!("{TEMP_PREFIX}{random:08x}{:08x}", temp_check(random)))
}

fn temp_check(random: u32) -> u32 {
    let mut h = blake3::Hasher::new();
    h.update(b"lifeboat restore temporary");
    h.update(&random.to_le_bytes());
    let b = h.finalize();
    u32::from_be_bytes([b.as_bytes()[0], b.as_bytes()[1], b.as_bytes()[2], b.as_bytes()[3]])
}

/// Whether `name` has the shape of a temporary name, `TEMP_PREFIX` + 16 hex digits: what
/// releases before check digits wrote (such files are now reported, not removed), and the
/// first test of [`is_temporary_name`].
pub(crate) fn is_older_temporary_name(name: &[u8]) -> bool {
    name.strip_prefix(TEMP_PREFIX.as_bytes())
        .is_some_and(|hex| hex.len() == 16 && hex.iter().all(u8::is_ascii_hexdigit))
}

/// Whether `name` is one [`temporary_name`] makes.
pub(crate) fn is_temporary_name(name: &[u8]) -> bool {
    if !is_older_temporary_name(name) {
        return false;
    }
    // 16 hex digits after the prefix (checked above): lowercase, as written.
    let hex = &name[TEMP_PREFIX.len()..];
    let parse = |h: &[u8]| {
        std::str::from_utf8(h)
            .ok()
            .filter(|h| !h.bytes().any(|b| b.is_ascii_uppercase()))
            .and_then(|h| u32::from_str_radix(h, 16).ok())
    };
    match (parse(&hex[..8]), parse(&hex[8..])) {
        (Some(random), Some(check)) => temp_check(random) == check,
        _ => false,
    }
}

/// Creates an empty private file of `size` bytes (a hole: blobs of zeros are never written,
/// so sparse files stay sparse) under a new temporary name in `dir`.
pub(super) fn create_temp(dir: &OwnedFd, size: u64) -> Result<TempFile, Errno> {
    loop {
        let name = temp_name();
        let fd = match rustix::fs::openat(
            dir,
            &name,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_bits_truncate(0o600),
        ) {
            Ok(fd) => fd,
            Err(Errno::EXIST) => continue,
            Err(e) => return Err(e),
        };
        let cleanup = |e: Errno| {
            let _ = rustix::fs::unlinkat(dir, &name, AtFlags::empty());
            e
        };
        rustix::fs::ftruncate(&fd, size).map_err(cleanup)?;
        let st = rustix::fs::fstat(&fd).map_err(cleanup)?;
        return Ok(TempFile {
            name,
            id: (st.st_dev, st.st_ino),
        });
    }
}

/// Opens a temporary file again, refusing anything but the inode the restore created.
pub(super) fn open_temp(
    dir: &OwnedFd,
    temp: &TempFile,
    flags: OFlags,
    shown: &str,
) -> Result<OwnedFd, EntryError> {
    let fd = rustix::fs::openat(
        dir,
        &temp.name,
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        Errno::LOOP | Errno::NOENT => EntryError::Replaced {
            path: shown.to_string(),
        },
        e => EntryError::os(shown, "open the restored file", e),
    })?;
    let st = rustix::fs::fstat(&fd).map_err(|e| EntryError::os(shown, "stat the restored file", e))?;
    if (st.st_dev, st.st_ino) != temp.id {
        return Err(EntryError::Replaced {
            path: shown.to_string(),
        });
    }
    Ok(fd)
}

/// Removes a temporary name (a file that could not be completed).
pub(super) fn discard(dir: &OwnedFd, name: &OsStr) {
    let _ = rustix::fs::unlinkat(dir, name, AtFlags::empty());
}

/// Renames `temp` over `name` in `dir`: whatever was there (a file, a hard link to a file
/// elsewhere, a symlink) is replaced as a directory entry; a directory is left alone.
pub(super) fn put_in_place(
    dir: &OwnedFd,
    temp: &OsStr,
    name: &OsStr,
    kind: &'static str,
    shown: &str,
) -> Result<(), EntryError> {
    rustix::fs::renameat(dir, temp, dir, name).map_err(|e| {
        discard(dir, temp);
        match e {
            Errno::ISDIR | Errno::NOTEMPTY | Errno::EXIST => EntryError::DirectoryInTheWay {
                path: shown.to_string(),
                kind,
            },
            e => EntryError::os(shown, "rename into place", e),
        }
    })
}

/// Adds another name for a restored file (a hard link), under a temporary name in `to_dir`.
pub(super) fn link_temp(from_dir: &OwnedFd, from: &OsStr, to_dir: &OwnedFd) -> Result<OsString, Errno> {
    loop {
        let name = temp_name();
        match rustix::fs::linkat(from_dir, from, to_dir, &name, AtFlags::empty()) {
            Ok(()) => return Ok(name),
            Err(Errno::EXIST) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Creates a symlink holding exactly `target` under a temporary name in `dir`.
pub(super) fn symlink_temp(dir: &OwnedFd, target: &[u8]) -> Result<OsString, Errno> {
    loop {
        let name = temp_name();
        match rustix::fs::symlinkat(OsStr::from_bytes(target), dir, &name) {
            Ok(()) => return Ok(name),
            Err(Errno::EXIST) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Makes the FIFO, socket or device node `node` describes (mode 0600 until its metadata is
/// applied) under a temporary name in `dir`, and records which inode it is. Device nodes need
/// root (`CAP_MKNOD`): `EPERM` otherwise.
pub(super) fn special_temp(dir: &OwnedFd, node: &Node) -> Result<TempFile, Errno> {
    let (kind, rdev) = match node.kind {
        NodeKind::Fifo => (FileType::Fifo, 0),
        NodeKind::Socket => (FileType::Socket, 0),
        NodeKind::CharDevice => (FileType::CharacterDevice, node.rdev),
        NodeKind::BlockDevice => (FileType::BlockDevice, node.rdev),
        _ => return Err(Errno::INVAL),
    };
    loop {
        let name = temp_name();
        match rustix::fs::mknodat(dir, &name, kind, Mode::from_bits_truncate(0o600), rdev) {
            Ok(()) => {}
            Err(Errno::EXIST) => continue,
            Err(e) => return Err(e),
        }
        return match rustix::fs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(TempFile {
                name,
                id: (st.st_dev, st.st_ino),
            }),
            Err(e) => {
                discard(dir, &name);
                Err(e)
            }
        };
    }
}

/// What applying metadata could not do.
#[derive(Debug, Default)]
pub(super) struct MetaNotes {
    /// Failures, each naming the path and what failed.
    pub(super) errors: Vec<String>,
    /// Attributes in `trusted.` / `security.` left out because the restore is not run as root.
    pub(super) xattrs_need_root: u64,
}

/// Whether metadata only root may set is set.
#[derive(Debug, Clone, Copy)]
pub(super) struct Privileges {
    /// Running as root: set owners and every attribute namespace.
    pub(super) root: bool,
}

impl Privileges {
    pub(super) fn of_process() -> Self {
        Self {
            root: rustix::process::geteuid().is_root(),
        }
    }

    fn may_set(&self, x: &Xattr) -> bool {
        self.root || !(x.name.starts_with("trusted.") || x.name.starts_with("security."))
    }
}

fn mtime(node: &Node) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        last_modification: Timespec {
            // Beyond what the kernel's 64-bit seconds hold (±292 billion years): the nearest.
            tv_sec: i64::try_from(node.mtime_ns.div_euclid(1_000_000_000)).unwrap_or(if node.mtime_ns < 0 {
                i64::MIN
            } else {
                i64::MAX
            }),
            tv_nsec: node.mtime_ns.rem_euclid(1_000_000_000) as _,
        },
    }
}

fn xattr_error(shown: &str, x: &Xattr, e: Errno) -> String {
    match e {
        Errno::NOTSUP => format!(
            "{shown}: extended attribute {} not restored: the target filesystem does not support it",
            x.name
        ),
        e => format!(
            "{shown}: set extended attribute {}: {}",
            x.name,
            std::io::Error::from(e)
        ),
    }
}

/// Gives an open file or directory its recorded owner, attributes, mode and times.
pub(super) fn apply_to_fd(
    fd: BorrowedFd<'_>,
    node: &Node,
    privileges: Privileges,
    shown: &str,
    notes: &mut MetaNotes,
) {
    let mut fail = |op: &str, e: Errno| {
        notes
            .errors
            .push(format!("{shown}: {op}: {}", std::io::Error::from(e)))
    };
    if privileges.root
        && let Err(e) = rustix::fs::fchown(fd, Some(Uid::from_raw(node.uid)), Some(Gid::from_raw(node.gid)))
    {
        fail("set owner", e);
    }
    for x in &node.xattrs {
        if !privileges.may_set(x) {
            notes.xattrs_need_root += 1;
        } else if let Err(e) = rustix::fs::fsetxattr(fd, x.name.as_str(), &x.value, XattrFlags::empty()) {
            notes.errors.push(xattr_error(shown, x, e));
        }
    }
    let mut fail = |op: &str, e: Errno| {
        notes
            .errors
            .push(format!("{shown}: {op}: {}", std::io::Error::from(e)))
    };
    if let Err(e) = rustix::fs::fchmod(fd, Mode::from_bits_truncate(node.mode & 0o7777)) {
        fail("set mode", e);
    }
    if let Err(e) = rustix::fs::futimens(fd, &mtime(node)) {
        fail("set times", e);
    }
}

/// Gives the symlink `name` in `dir` its recorded owner, attributes and times (Linux has no
/// symlink modes), without following it.
pub(super) fn apply_to_symlink(
    dir: &OwnedFd,
    name: &OsStr,
    node: &Node,
    privileges: Privileges,
    shown: &str,
    notes: &mut MetaNotes,
) {
    let fail = |op: &str, e: Errno| format!("{shown}: {op}: {}", std::io::Error::from(e));
    if privileges.root
        && let Err(e) = rustix::fs::chownat(
            dir,
            name,
            Some(Uid::from_raw(node.uid)),
            Some(Gid::from_raw(node.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
    {
        notes.errors.push(fail("set owner", e));
    }
    if !node.xattrs.is_empty() {
        // No fd-relative l*xattr call before Linux 6.13: name the link through the directory
        // handle's /proc entry, which resolves to that directory whatever happens to its path.
        let mut path = OsString::from(format!("/proc/self/fd/{}/", dir.as_fd().as_raw_fd()));
        path.push(name);
        for x in &node.xattrs {
            if !privileges.may_set(x) {
                notes.xattrs_need_root += 1;
            } else if let Err(e) =
                rustix::fs::lsetxattr(&path, x.name.as_str(), &x.value, XattrFlags::empty())
            {
                notes.errors.push(xattr_error(shown, x, e));
            }
        }
    }
    if let Err(e) = rustix::fs::utimensat(dir, name, &mtime(node), AtFlags::SYMLINK_NOFOLLOW) {
        notes.errors.push(fail("set times", e));
    }
}

/// Gives the FIFO, socket or device node the restore just made (`temp` in `dir`) its
/// recorded owner, attributes, mode and times, in that order. None of these can be opened
/// for writing metadata without side effects (opening a device opens the device; a FIFO
/// waits for a writer), so the entry is opened with `O_PATH | O_NOFOLLOW`, checked to be the
/// inode made, and changed through that handle (`fchownat(AT_EMPTY_PATH)`) and its
/// `/proc/self/fd` link, which names exactly that inode whatever happens to the name
/// meanwhile. Errors: [`EntryError::Replaced`] when the name no longer holds that inode
/// (nothing is then put in place); failures of single changes go to `notes`.
pub(super) fn apply_to_special(
    dir: &OwnedFd,
    temp: &TempFile,
    node: &Node,
    privileges: Privileges,
    shown: &str,
    notes: &mut MetaNotes,
) -> Result<(), EntryError> {
    let fd = open_temp(dir, temp, OFlags::PATH, shown)?;
    let fail = |op: &str, e: Errno| format!("{shown}: {op}: {}", std::io::Error::from(e));
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    if privileges.root
        && let Err(e) = rustix::fs::chownat(
            &fd,
            "",
            Some(Uid::from_raw(node.uid)),
            Some(Gid::from_raw(node.gid)),
            AtFlags::EMPTY_PATH,
        )
    {
        notes.errors.push(fail("set owner", e));
    }
    for x in &node.xattrs {
        if !privileges.may_set(x) {
            notes.xattrs_need_root += 1;
        } else if let Err(e) = rustix::fs::setxattr(&path, x.name.as_str(), &x.value, XattrFlags::empty()) {
            notes.errors.push(xattr_error(shown, x, e));
        }
    }
    if let Err(e) = rustix::fs::chmod(&path, Mode::from_bits_truncate(node.mode & 0o7777)) {
        notes.errors.push(fail("set mode", e));
    }
    if let Err(e) = rustix::fs::utimensat(rustix::fs::CWD, &path, &mtime(node), AtFlags::empty()) {
        notes.errors.push(fail("set times", e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_carry_check_digits() {
        for random in [0, 1, 0xdead_beef, u32::MAX] {
            let name = temporary_name(random);
            assert!(is_temporary_name(name.as_bytes()), "{name:?}");
            assert_eq!(name.len(), TEMP_PREFIX.len() + 16);
        }
        // A user's file that looks like one, and near misses.
        for other in [
            ".lifeboat-restore-0123456789abcdef",
            ".lifeboat-restore-keep",
            ".lifeboat-restore-",
            "lifeboat-restore-0000000000000000",
        ] {
            assert!(!is_temporary_name(other.as_bytes()), "{other}");
        }
    }
}
