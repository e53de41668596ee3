//! What a source of a tree of files (a directory here, an NFS export's directory in
//! `lifeboat-volume`) reads and what it takes from its parent snapshot unread, as restic's
//! archiver does: one decision for every such source.

use std::collections::HashMap;

use crate::blob::BlobId;
use crate::snapshot::{Node, NodeKind};

/// The files of `nodes` whose content must be read (all but those `reused` from the parent,
/// as [`reuse_unchanged`] says), by index, and for every further name of an inode already in
/// that list, (that name, the first name): a hard-linked file is read once, keyed on
/// (`dev`, `inode`), for nodes with `nlink` > 1. Files whose size is 0 are read too: /proc and
/// /sys files say 0 and have content.
pub fn files_to_read(nodes: &[Node], reused: &[bool]) -> (Vec<usize>, Vec<(usize, usize)>) {
    let mut to_read = Vec::new();
    let mut same_inode = Vec::new();
    let mut first_name: HashMap<(u64, u64), usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        if n.kind != NodeKind::File || reused.get(i).copied().unwrap_or(false) {
            continue;
        }
        if n.nlink > 1 {
            if let Some(&first) = first_name.get(&(n.dev, n.inode)) {
                same_inode.push((i, first));
                continue;
            }
            first_name.insert((n.dev, n.inode), i);
        }
        to_read.push(i);
    }
    (to_read, same_inode)
}

/// Copies chunk lists from the parent tree `old` into `nodes` for files whose metadata says
/// they did not change ([`Node::unchanged_since`]: size, mtime, ctime, inode) and whose every
/// chunk `indexed` still lists (after `repo repair index` dropped a lost pack, the file is
/// read again and its lost blobs are stored anew). Both lists are sorted by path bytes, so
/// this is one merge pass. Returns which nodes were reused, by index.
pub fn reuse_unchanged(nodes: &mut [Node], old: &[Node], indexed: impl Fn(&BlobId) -> bool) -> Vec<bool> {
    let mut reused = vec![false; nodes.len()];
    let mut j = 0;
    for (i, node) in nodes.iter_mut().enumerate() {
        while j < old.len() && old[j].path_bytes() < node.path_bytes() {
            j += 1;
        }
        if j < old.len()
            && old[j].path_bytes() == node.path_bytes()
            && node.unchanged_since(&old[j])
            && old[j].chunks.iter().all(&indexed)
        {
            node.chunks = old[j].chunks.clone();
            reused[i] = true;
        }
    }
    reused
}
