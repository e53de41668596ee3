//! Listing the files to back up, with the metadata that decides whether they changed and
//! what a restore needs to put them back exactly (owner, set-id bits, hard links, extended
//! attributes). Names are taken as the bytes they are.

use std::collections::HashSet;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::exclude::{CACHEDIR_TAG, Exclusions, is_cache_directory};
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
    /// Entries left out by an exclude pattern (a directory counts once, with what is in it).
    pub excluded: u64,
    /// Mount points saved without their content (`--one-file-system`), absolute.
    pub other_filesystems: Vec<String>,
}

impl Walked {
    fn skip(&mut self, path: &Path, error: impl std::fmt::Display) {
        self.skipped.push(SkippedPath {
            path: path.display().to_string(),
            error: error.to_string(),
        });
    }
}

/// Walks `roots` (absolute paths) without following symlinks, leaving out what `exclusions`
/// names. A root given twice, or inside another root, is walked once, as a root of its own:
/// its entries are listed and counted once (the root's own exclusion rule and device apply).
pub fn walk(roots: &[PathBuf], exclusions: &Exclusions) -> Walked {
    let mut out = Walked::default();
    let mut xattrs = XattrReader::default();
    let mut roots: Vec<&PathBuf> = roots.iter().collect();
    roots.sort();
    roots.dedup();
    // Roots that another root's walk reaches: left to their own walk there.
    let nested: HashSet<&Path> = roots
        .iter()
        .filter(|r| roots.iter().any(|o| o != *r && r.starts_with(o)))
        .map(|r| r.as_path())
        .collect();
    // Each entry with the device of the root it was found under (`None`: it is a root).
    let mut stack: Vec<(PathBuf, Option<u64>)> = roots.iter().map(|r| ((*r).clone(), None)).collect();
    while let Some((path, root_dev)) = stack.pop() {
        if root_dev.is_some() && nested.contains(path.as_path()) {
            continue;
        }
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                out.skip(&path, e);
                continue;
            }
        };
        let excluded = match root_dev {
            None => exclusions.excludes_root(&path, meta.is_dir()),
            Some(_) => exclusions.excludes(&path, meta.is_dir()),
        };
        if excluded {
            out.excluded += 1;
            continue;
        }
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
        let root_dev = root_dev.unwrap_or(meta.dev());
        if node.kind == NodeKind::Dir && exclusions.one_file_system && meta.dev() != root_dev {
            out.other_filesystems.push(path.display().to_string());
        } else if node.kind == NodeKind::Dir {
            let cache = exclusions.caches && is_cache_directory(&path);
            match std::fs::read_dir(&path) {
                Ok(entries) => {
                    for entry in entries {
                        match entry {
                            Ok(e) if cache && e.file_name() != CACHEDIR_TAG => out.excluded += 1,
                            Ok(e) => stack.push((e.path(), Some(root_dev))),
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
    // A mount point that is also a root was entered as one.
    out.other_filesystems
        .retain(|p| !roots.iter().any(|r| r.as_os_str() == std::ffi::OsStr::new(p)));
    out.other_filesystems.sort();
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
        let walked = walk(&[dir.path().to_path_buf(), gone.clone()], &Exclusions::default());
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

    /// The listed paths, relative to `root` (which lists as "").
    fn listed_under(root: &Path, walked: &Walked) -> Vec<String> {
        let prefix = root.as_os_str().as_bytes().len() - 1; // stored without the leading /
        walked
            .nodes
            .iter()
            .map(|n| String::from_utf8_lossy(&n.path_bytes()[prefix..]).into_owned())
            .collect()
    }

    /// Excluded entries are not listed, nor anything under an excluded directory; a file
    /// named like a directories-only pattern is kept; a root inside an excluded directory is
    /// left out.
    #[test]
    fn excluded_entries_and_what_they_hold_are_left_out_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["sub/cache/deep", "other", "node_modules/x"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        for f in [
            "keep.txt",
            "a.tmp",
            "sub/b.tmp",
            "sub/cache/deep/f",
            "other/cache",
            "node_modules/x/y",
        ] {
            std::fs::write(root.join(f), b"x").unwrap();
        }
        let patterns = ["*.tmp", "cache/", "node_modules"].map(String::from);
        let exclusions = Exclusions::new(&patterns).unwrap();
        let walked = walk(&[root.to_path_buf()], &exclusions);
        let listed = listed_under(root, &walked);
        assert_eq!(listed, ["", "/keep.txt", "/other", "/other/cache", "/sub"]);
        assert_eq!(walked.excluded, 4, "a.tmp, sub/b.tmp, sub/cache, node_modules");
        assert!(walked.skipped.is_empty() && walked.other_filesystems.is_empty());

        let walked = walk(&[root.join("node_modules/x")], &exclusions);
        assert_eq!((walked.nodes.len(), walked.excluded), (0, 1));
    }

    /// A root inside another root, or given twice, is listed and counted once.
    #[test]
    fn nested_and_repeated_roots_are_walked_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("sub/deep")).unwrap();
        for f in ["a.tmp", "sub/b.tmp", "sub/deep/c.tmp", "sub/deep/kept"] {
            std::fs::write(root.join(f), b"x").unwrap();
        }
        std::fs::write(root.join("sub/gone"), b"x").unwrap();
        let exclusions = Exclusions::new(&["*.tmp".to_string()]).unwrap();
        let roots = [
            root.join("sub"),
            root.to_path_buf(),
            root.join("sub/deep"),
            root.join("sub"),
        ];
        let walked = walk(&roots, &exclusions);
        assert_eq!(walked.excluded, 3, "a.tmp, sub/b.tmp, sub/deep/c.tmp, each once");
        let listed = listed_under(root, &walked);
        assert_eq!(listed, ["", "/sub", "/sub/deep", "/sub/deep/kept", "/sub/gone"]);
    }

    /// A cache directory keeps itself and its tag; a tag without the signature, or a
    /// symlink named like one, marks nothing.
    #[test]
    fn cache_directories_keep_only_their_tag() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["cache/sub", "fake", "linked"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let tag = b"Signature: 8a477f597d28d172789f06886806bc55\n# made by a test\n";
        std::fs::write(root.join("cache/CACHEDIR.TAG"), tag).unwrap();
        std::fs::write(root.join("cache/blob"), b"x").unwrap();
        std::fs::write(root.join("fake/CACHEDIR.TAG"), b"Signature: wrong").unwrap();
        std::os::unix::fs::symlink(root.join("cache/CACHEDIR.TAG"), root.join("linked/CACHEDIR.TAG"))
            .unwrap();
        let mut exclusions = Exclusions::default();
        exclusions.caches = true;
        let walked = walk(&[root.to_path_buf()], &exclusions);
        let listed = listed_under(root, &walked);
        assert_eq!(
            listed,
            [
                "",
                "/cache",
                "/cache/CACHEDIR.TAG",
                "/fake",
                "/fake/CACHEDIR.TAG",
                "/linked",
                "/linked/CACHEDIR.TAG"
            ]
        );
        assert_eq!(walked.excluded, 2, "cache/blob and cache/sub");
    }

    #[test]
    fn names_are_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let odd = dir.path().join(std::ffi::OsStr::from_bytes(b"caf\xe9"));
        std::fs::create_dir(&odd).unwrap();
        std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(b"\xff"), odd.join("l")).unwrap();
        let walked = walk(&[dir.path().to_path_buf()], &Exclusions::default());
        assert!(walked.skipped.is_empty(), "{:?}", walked.skipped);
        let link = walked.nodes.iter().find(|n| n.kind == NodeKind::Symlink).unwrap();
        assert!(link.path_bytes().ends_with(b"/caf\xe9/l"));
        assert_eq!(link.target_bytes(), Some(&b"\xff"[..]));
    }
}
