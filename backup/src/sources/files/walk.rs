//! Listing the files to back up, with the metadata that decides whether they changed.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::snapshot::{Node, NodeKind};

/// Walks `roots` (absolute paths) without following symlinks; returns nodes sorted by path,
/// and a warning per entry that could not be read.
pub fn walk(roots: &[PathBuf]) -> (Vec<Node>, Vec<String>) {
    let mut nodes = Vec::new();
    let mut warnings = Vec::new();
    let mut stack: Vec<PathBuf> = roots.to_vec();
    while let Some(path) = stack.pop() {
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                warnings.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        let Some(node) = node_for(&path, &meta, &mut warnings) else {
            continue;
        };
        if node.kind == NodeKind::Dir {
            match std::fs::read_dir(&path) {
                Ok(entries) => {
                    for entry in entries {
                        match entry {
                            Ok(e) => stack.push(e.path()),
                            Err(e) => warnings.push(format!("{}: {e}", path.display())),
                        }
                    }
                }
                Err(e) => warnings.push(format!("{}: cannot list: {e}", path.display())),
            }
        }
        nodes.push(node);
    }
    nodes.sort_by(|a, b| a.path.cmp(&b.path));
    nodes.dedup_by(|a, b| a.path == b.path);
    (nodes, warnings)
}

fn node_for(path: &Path, meta: &std::fs::Metadata, warnings: &mut Vec<String>) -> Option<Node> {
    let rel = match path.to_str() {
        Some(s) => s.trim_start_matches('/').to_string(),
        None => {
            warnings.push(format!("{}: skipped: the name is not UTF-8", path.display()));
            return None;
        }
    };
    let ft = meta.file_type();
    let (kind, target) = if ft.is_file() {
        (NodeKind::File, None)
    } else if ft.is_dir() {
        (NodeKind::Dir, None)
    } else if ft.is_symlink() {
        match std::fs::read_link(path) {
            Ok(t) => (NodeKind::Symlink, Some(t.to_string_lossy().into_owned())),
            Err(e) => {
                warnings.push(format!("{}: cannot read link: {e}", path.display()));
                return None;
            }
        }
    } else {
        warnings.push(format!(
            "{}: skipped: not a file, directory or symlink",
            path.display()
        ));
        return None;
    };
    Some(Node {
        path: rel,
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
        inode: meta.ino(),
        size: if kind == NodeKind::File { meta.len() } else { 0 },
        chunks: Vec::new(),
        target,
    })
}
