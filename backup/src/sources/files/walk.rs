//! Listing the files to back up, with the metadata that decides whether they changed and
//! what a restore needs to put them back exactly (owner, set-id bits, hard links, extended
//! attributes). Names are taken as the bytes they are.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::xattrs::XattrReader;
use crate::snapshot::{Node, NodeKind, SkippedPath};

/// What a walk found.
#[derive(Debug, Default)]
pub struct Walked {
    /// Every entry, sorted by path bytes.
    pub nodes: Vec<Node>,
    /// Entries that could not be listed, each with why.
    pub skipped: Vec<SkippedPath>,
    /// Entries listed with something missing (an unreadable extended attribute).
    pub warnings: Vec<String>,
}

impl Walked {
    fn skip(&mut self, path: &Path, error: impl std::fmt::Display) {
        self.skipped.push(SkippedPath {
            path: path.display().to_string(),
            error: error.to_string(),
        });
    }
}

/// Walks `roots` (absolute paths) without following symlinks.
pub fn walk(roots: &[PathBuf]) -> Walked {
    let mut out = Walked::default();
    let mut xattrs = XattrReader::default();
    let mut stack: Vec<PathBuf> = roots.to_vec();
    while let Some(path) = stack.pop() {
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                out.skip(&path, e);
                continue;
            }
        };
        // `/` itself has no node: its path would be empty (see docs/FORMAT.md, Trees); what
        // is in it is listed as usual.
        let root_dir = path.as_os_str().as_bytes() == b"/";
        let Some(mut node) = node_for(&path, &meta, &mut out) else {
            continue;
        };
        match xattrs.read(&path) {
            Ok(list) => node.xattrs = list,
            Err(e) => out
                .warnings
                .push(format!("{}: extended attributes not saved: {e}", path.display())),
        }
        if node.kind == NodeKind::Dir {
            match std::fs::read_dir(&path) {
                Ok(entries) => {
                    for entry in entries {
                        match entry {
                            Ok(e) => stack.push(e.path()),
                            Err(e) => out.skip(&path, format_args!("cannot list some entries: {e}")),
                        }
                    }
                }
                Err(e) => out.skip(&path, format_args!("cannot list its entries: {e}")),
            }
        }
        if !root_dir {
            out.nodes.push(node);
        }
    }
    out.nodes.sort_by(|a, b| a.path_bytes().cmp(b.path_bytes()));
    out.nodes.dedup_by(|a, b| a.path_bytes() == b.path_bytes());
    out
}

fn node_for(path: &Path, meta: &std::fs::Metadata, out: &mut Walked) -> Option<Node> {
    use std::os::unix::fs::FileTypeExt;
    let ft = meta.file_type();
    let kind = if ft.is_file() {
        NodeKind::File
    } else if ft.is_dir() {
        NodeKind::Dir
    } else if ft.is_symlink() {
        NodeKind::Symlink
    } else if ft.is_fifo() {
        NodeKind::Fifo
    } else if ft.is_socket() {
        NodeKind::Socket
    } else if ft.is_char_device() {
        NodeKind::CharDevice
    } else if ft.is_block_device() {
        NodeKind::BlockDevice
    } else {
        out.skip(path, "not backed up: a file type Linux does not have");
        return None;
    };
    let mut node = Node {
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        inode: meta.ino(),
        size: if kind == NodeKind::File { meta.len() } else { 0 },
        rdev: if matches!(kind, NodeKind::CharDevice | NodeKind::BlockDevice) {
            meta.rdev()
        } else {
            0
        },
        ..Node::default()
    };
    // Hard links: files, and FIFOs, sockets and device nodes (two names of one FIFO are
    // one pipe). Directories have no other names; symlinks' are not kept.
    if !matches!(kind, NodeKind::Dir | NodeKind::Symlink) && meta.nlink() > 1 {
        node.dev = meta.dev();
        node.nlink = meta.nlink();
    }
    let bytes = path.as_os_str().as_bytes();
    node.set_path_bytes(bytes.strip_prefix(b"/").unwrap_or(bytes));
    if kind == NodeKind::Symlink {
        match std::fs::read_link(path) {
            Ok(t) => node.set_target_bytes(t.as_os_str().as_bytes()),
            Err(e) => {
                out.skip(path, format_args!("cannot read the link: {e}"));
                return None;
            }
        }
    }
    Some(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A path that vanished between being listed and being looked at is named, not dropped;
    /// sockets and FIFOs are listed as what they are.
    #[test]
    fn vanished_entries_are_skipped_and_special_files_listed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("kept"), b"x").unwrap();
        let socket = std::os::unix::net::UnixListener::bind(dir.path().join("socket")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dir.path().join("fifo"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_bits_truncate(0o640),
            0,
        )
        .unwrap();
        let gone = dir.path().join("gone");
        let walked = walk(&[dir.path().to_path_buf(), gone.clone()]);
        let skipped: Vec<&str> = walked.skipped.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(skipped, [gone.to_str().unwrap()]);
        let kind = |name: &str| {
            walked
                .nodes
                .iter()
                .find(|n| n.path.ends_with(name))
                .map(|n| (n.kind, n.size, n.rdev))
        };
        assert_eq!(kind("/kept"), Some((NodeKind::File, 1, 0)));
        assert_eq!(kind("/socket"), Some((NodeKind::Socket, 0, 0)));
        assert_eq!(kind("/fifo"), Some((NodeKind::Fifo, 0, 0)));
        drop(socket);
    }

    #[test]
    fn names_are_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let odd = dir.path().join(std::ffi::OsStr::from_bytes(b"caf\xe9"));
        std::fs::create_dir(&odd).unwrap();
        std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(b"\xff"), odd.join("l")).unwrap();
        let walked = walk(&[dir.path().to_path_buf()]);
        assert!(walked.skipped.is_empty(), "{:?}", walked.skipped);
        let link = walked.nodes.iter().find(|n| n.kind == NodeKind::Symlink).unwrap();
        assert!(link.path_bytes().ends_with(b"/caf\xe9/l"));
        assert_eq!(link.target_bytes(), Some(&b"\xff"[..]));
    }
}
