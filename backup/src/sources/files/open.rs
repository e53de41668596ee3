//! Opening a listed file for reading without following a symlink anywhere below the source
//! root.
//!
//! The walk lists the tree first and the readers open the files later, so any directory on a
//! file's path may have been replaced by a symlink in between (`mv dir dir.old; ln -s /secret
//! dir`). Opening the full path with `O_NOFOLLOW` protects only its last component: the backup
//! (often run as root) would read `/secret/…` and store it under the listed name. So the
//! directory holding each source root is opened once, at the start, following whatever
//! symlinks the path the user gave holds (`/var/lib` → `/data` is theirs to choose); every
//! name below it, the root's own included, is then resolved from that descriptor without
//! following any symlink (`openat2` with `RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH`, or one
//! `openat(…, O_NOFOLLOW)` per component where the kernel lacks `openat2`).

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// The directories holding the source roots, opened once when the backup starts.
pub(super) struct Anchors {
    /// Per root: the root's path and its parent directory (`/` for `/`), or why that could
    /// not be opened (the walk then reports the root too).
    anchors: Vec<(PathBuf, PathBuf, Result<OwnedFd, String>)>,
}

impl Anchors {
    /// Opens the directory holding each of `roots` (absolute, normalised paths).
    pub(super) fn open(roots: &[PathBuf]) -> Self {
        let anchors = roots
            .iter()
            .map(|root| {
                let base = root.parent().unwrap_or(Path::new("/")).to_path_buf();
                let dir = rustix::fs::open(
                    &base,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| format!("cannot open {}: {}", base.display(), io::Error::from(e)));
                (root.clone(), base, dir)
            })
            .collect();
        Self { anchors }
    }

    /// Opens `path` (absolute, as the walk listed it under one of the roots) for reading if
    /// it still is a regular file reached without any symlink below its root's directory.
    /// The name may since have been replaced: by a symlink, or a directory above it by one
    /// (not followed, `ELOOP`/`ENOTDIR`), or by a FIFO or device (opening a FIFO would wait
    /// for a writer forever, hence `O_NONBLOCK`, which regular files ignore).
    pub(super) fn open_regular(&self, path: &Path) -> io::Result<File> {
        let (base, dir) = self
            .anchors
            .iter()
            .filter(|(root, _, _)| path.starts_with(root))
            .max_by_key(|(root, _, _)| root.as_os_str().len())
            .map(|(_, base, dir)| (base, dir))
            .ok_or_else(|| io::Error::other("not under any of the source paths"))?;
        let dir = dir.as_ref().map_err(|e| io::Error::other(e.clone()))?;
        let rel = path
            .strip_prefix(base)
            .map_err(|_| io::Error::other("not under any of the source paths"))?;
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let file = File::from(open_beneath(dir.as_fd(), rel, flags).map_err(replaced)?);
        let kind = file.metadata()?.file_type();
        if !kind.is_file() {
            return Err(io::Error::other(format!(
                "no longer a regular file (now {kind:?}) after it was listed"
            )));
        }
        Ok(file)
    }
}

/// Says what a symlink met on the way means here.
fn replaced(e: Errno) -> io::Error {
    match e {
        Errno::LOOP | Errno::NOTDIR | Errno::XDEV => io::Error::other(
            "it or a directory above it was replaced by a symlink (or a non-directory) after it \
             was listed; not followed",
        ),
        e => e.into(),
    }
}

/// Opens `rel` (relative, plain names only) under `dir` with `flags`, following no symlink
/// in any of its components.
fn open_beneath(dir: BorrowedFd<'_>, rel: &Path, flags: OFlags) -> Result<OwnedFd, Errno> {
    match rustix::fs::openat2(
        dir,
        rel,
        flags,
        Mode::empty(),
        ResolveFlags::NO_SYMLINKS | ResolveFlags::BENEATH,
    ) {
        // No openat2 (Linux < 5.6, or a seccomp filter that does not know it), or a race the
        // kernel asks to retry: one component at a time does the same.
        Err(Errno::NOSYS | Errno::PERM | Errno::AGAIN) => open_by_components(dir, rel, flags),
        other => other,
    }
}

/// [`open_beneath`] with one `openat(…, O_NOFOLLOW)` per component: each directory as an
/// `O_PATH` handle (search permission is all a path lookup needs), then the file.
fn open_by_components(dir: BorrowedFd<'_>, rel: &Path, flags: OFlags) -> Result<OwnedFd, Errno> {
    let mut names = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(name) => names.push(name),
            // The walk lists plain names only; anything else would leave the anchor.
            _ => return Err(Errno::XDEV),
        }
    }
    let Some((last, dirs)) = names.split_last() else {
        return Err(Errno::INVAL);
    };
    let mut held: Option<OwnedFd> = None;
    for name in dirs {
        let at = held.as_ref().map_or(dir, |fd| fd.as_fd());
        let next = rustix::fs::openat(
            at,
            *name,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        held = Some(next);
    }
    let at = held.as_ref().map_or(dir, |fd| fd.as_fd());
    rustix::fs::openat(at, *last, flags, Mode::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name the walk saw as a file but that is now a symlink, a FIFO or a directory is not
    /// read through (and a FIFO does not hang the backup); a file still is.
    #[test]
    fn only_regular_files_are_opened_for_reading() {
        let dir = tempfile::tempdir().expect("tempdir");
        let anchors = Anchors::open(&[dir.path().to_path_buf()]);
        let file = dir.path().join("file");
        std::fs::write(&file, b"content").expect("write");
        assert!(anchors.open_regular(&file).is_ok());

        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).expect("symlink");
        let err = anchors.open_regular(&link).expect_err("a symlink was followed");
        assert!(err.to_string().contains("symlink"), "{err}");

        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_bits_truncate(0o600),
            0,
        )
        .expect("mkfifo");
        let err = anchors
            .open_regular(&fifo)
            .expect_err("a FIFO was opened for reading");
        assert!(err.to_string().contains("no longer a regular file"), "{err}");

        let err = anchors
            .open_regular(dir.path())
            .expect_err("a directory was opened");
        assert!(err.to_string().contains("no longer a regular file"), "{err}");
    }

    /// A directory swapped for a symlink to another after the listing (the root's own name,
    /// or one deeper) is not followed, by `openat2` nor one component at a time; the
    /// symlinks in the path given above the root are (resolved once, at the start).
    #[test]
    fn a_directory_replaced_by_a_symlink_is_not_followed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let real = tmp.path().join("real");
        std::fs::create_dir_all(real.join("src/z")).expect("mkdir");
        std::fs::write(real.join("src/z/zz"), b"z\n").expect("write");
        std::fs::create_dir(tmp.path().join("secret")).expect("mkdir");
        std::fs::write(tmp.path().join("secret/zz"), b"TOPSECRET\n").expect("write");
        // The user's path goes through a symlink above the root: that one is followed.
        let given = tmp.path().join("via");
        std::os::unix::fs::symlink(&real, &given).expect("symlink");
        let root = given.join("src");
        let anchors = Anchors::open(std::slice::from_ref(&root));
        let zz = root.join("z/zz");
        let mut content = String::new();
        io::Read::read_to_string(&mut anchors.open_regular(&zz).expect("open"), &mut content).expect("read");
        assert_eq!(content, "z\n");

        std::fs::rename(real.join("src/z"), real.join("src/z.old")).expect("rename");
        std::os::unix::fs::symlink(tmp.path().join("secret"), real.join("src/z")).expect("symlink");
        let err = anchors
            .open_regular(&zz)
            .expect_err("read through the swapped directory");
        assert!(err.to_string().contains("replaced by a symlink"), "{err}");

        let dir = rustix::fs::open(&real, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).expect("open");
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW;
        for rel in ["src/z/zz", "src/z"] {
            let e = open_by_components(dir.as_fd(), Path::new(rel), flags).expect_err(rel);
            assert!(matches!(e, Errno::LOOP | Errno::NOTDIR), "{rel}: {e}");
        }
        assert!(open_by_components(dir.as_fd(), Path::new("src/z.old/zz"), flags).is_ok());

        // The root itself swapped after the start: not followed either.
        std::fs::rename(real.join("src"), real.join("src.old")).expect("rename");
        std::os::unix::fs::symlink(tmp.path().join("secret"), real.join("src")).expect("symlink");
        let err = anchors
            .open_regular(&root.join("zz"))
            .expect_err("read through the swapped root");
        assert!(err.to_string().contains("replaced by a symlink"), "{err}");
    }
}
