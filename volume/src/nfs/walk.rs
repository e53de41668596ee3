//! Listing a directory tree of an export over NFS: every directory, regular file and symlink
//! with the attributes that decide whether it changed (size, mtime, ctime, fileid) and what a
//! restore puts back (mode with the set-id and sticky bits, owner, group, link target).
//! Paths are relative to the directory backed up, names taken as the bytes they are.

use lifeboat_backup::snapshot::{Node, NodeKind, SkippedPath};
use nfs3_client::nfs3_types::nfs3::{fattr3, ftype3, nfs_fh3, nfstime3};

use super::NfsError;
use super::client::Client;

/// What a walk found.
#[derive(Default)]
pub(crate) struct Listed {
    /// Every entry, sorted by path bytes.
    pub(crate) nodes: Vec<Node>,
    /// The handle of each node, in the same order (what the reads use).
    pub(crate) handles: Vec<nfs_fh3>,
    /// Entries left out, each with why: a directory whose listing was refused, a symlink
    /// whose target cannot be read, a name that is not a plain name, and sockets, FIFOs and
    /// device nodes.
    pub(crate) skipped: Vec<SkippedPath>,
}

/// How a node's path is shown in messages: relative to the directory backed up, `/` for it.
pub(crate) fn shown(path: &[u8]) -> String {
    format!("/{}", String::from_utf8_lossy(path))
}

/// Nanoseconds since the epoch of an NFS time.
pub(crate) fn nanos(t: nfstime3) -> i128 {
    i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nseconds)
}

/// Lists everything under directory `top` without following a symlink. A directory whose
/// listing the server refuses is skipped with its contents; the connection failing is an
/// error.
pub(crate) async fn walk(client: &mut Client, top: nfs_fh3) -> Result<Listed, NfsError> {
    let mut out = Listed::default();
    let mut found: Vec<(Node, nfs_fh3)> = Vec::new();
    let mut dirs: Vec<(nfs_fh3, Vec<u8>)> = vec![(top, Vec::new())];
    while let Some((dir, dir_path)) = dirs.pop() {
        let entries = match client.list(&dir, &shown(&dir_path)).await? {
            Ok(e) => e,
            Err(status) => {
                out.skipped.push(SkippedPath {
                    path: shown(&dir_path),
                    error: format!("cannot list its entries: {status}"),
                });
                continue;
            }
        };
        for entry in entries {
            let mut path = dir_path.clone();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(&entry.name);
            if entry.name.is_empty() || entry.name.contains(&b'/') || entry.name.contains(&0) {
                out.skipped.push(SkippedPath {
                    path: shown(&path),
                    error: "the server listed a name that is not a plain file name".to_string(),
                });
                continue;
            }
            let Some(mut node) = node_for(&path, &entry.attr) else {
                // As the files source does: a kind not backed up is a path the snapshot
                // lacks, so it is listed with the skipped ones (docs/FORMAT.md, `skipped`).
                out.skipped.push(SkippedPath {
                    path: shown(&path),
                    error: "not backed up: a socket, FIFO or device node (only files, directories and symlinks are)"
                        .to_string(),
                });
                continue;
            };
            match node.kind {
                NodeKind::Dir => dirs.push((entry.fh.clone(), path.clone())),
                NodeKind::Symlink => match client.readlink(&entry.fh, &shown(&path)).await? {
                    Ok(target) => node.set_target_bytes(&target),
                    Err(status) => {
                        out.skipped.push(SkippedPath {
                            path: shown(&path),
                            error: format!("cannot read the link: {status}"),
                        });
                        continue;
                    }
                },
                _ => {}
            }
            found.push((node, entry.fh));
        }
    }
    found.sort_by(|a, b| a.0.path_bytes().cmp(b.0.path_bytes()));
    (out.nodes, out.handles) = found.into_iter().unzip();
    Ok(out)
}

/// The node for an entry with attributes `attr`; `None` for types not backed up.
pub(crate) fn node_for(path: &[u8], attr: &fattr3) -> Option<Node> {
    let kind = match attr.type_ {
        ftype3::NF3REG => NodeKind::File,
        ftype3::NF3DIR => NodeKind::Dir,
        ftype3::NF3LNK => NodeKind::Symlink,
        _ => return None,
    };
    let mut node = Node::with_path(path, kind);
    node.mode = attr.mode & 0o7777;
    node.uid = attr.uid;
    node.gid = attr.gid;
    node.mtime_ns = nanos(attr.mtime);
    node.ctime_ns = nanos(attr.ctime);
    node.inode = attr.fileid;
    if kind == NodeKind::File {
        node.size = attr.size;
        if attr.nlink > 1 {
            // The filesystem id stands in for the device number: hard links are names of one
            // (fsid, fileid).
            node.dev = attr.fsid;
            node.nlink = u64::from(attr.nlink);
        }
    }
    Some(node)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nfs3_client::nfs3_types::nfs3::specdata3;

    fn attr(type_: ftype3, mode: u32) -> fattr3 {
        fattr3 {
            type_,
            mode,
            nlink: 1,
            uid: 1000,
            gid: 100,
            size: 42,
            used: 4096,
            rdev: specdata3::default(),
            fsid: 7,
            fileid: 99,
            atime: nfstime3::default(),
            mtime: nfstime3 {
                seconds: 1_700_000_000,
                nseconds: 5,
            },
            ctime: nfstime3 {
                seconds: 1_700_000_001,
                nseconds: 6,
            },
        }
    }

    /// The set-id and sticky bits are kept, times are exact to the nanosecond, the fileid is
    /// the inode, and only files have a size.
    #[test]
    fn attributes_become_node_fields() {
        let n = node_for(b"a/b", &attr(ftype3::NF3REG, 0o104755)).expect("a file");
        assert_eq!(n.kind, NodeKind::File);
        assert_eq!(n.mode, 0o4755);
        assert_eq!((n.uid, n.gid, n.inode, n.size), (1000, 100, 99, 42));
        assert_eq!(n.mtime_ns, 1_700_000_000_000_000_005);
        assert_eq!(n.ctime_ns, 1_700_000_001_000_000_006);
        assert_eq!((n.dev, n.nlink), (0, 0));
        let d = node_for(b"a", &attr(ftype3::NF3DIR, 0o41777)).expect("a dir");
        assert_eq!((d.kind, d.mode, d.size), (NodeKind::Dir, 0o1777, 0));
    }

    #[test]
    fn special_files_have_no_node() {
        for t in [ftype3::NF3FIFO, ftype3::NF3SOCK, ftype3::NF3CHR, ftype3::NF3BLK] {
            assert!(node_for(b"x", &attr(t, 0o644)).is_none(), "{t:?}");
        }
    }

    #[test]
    fn hard_links_record_fsid_and_link_count() {
        let mut a = attr(ftype3::NF3REG, 0o644);
        a.nlink = 2;
        let n = node_for(b"f", &a).expect("a file");
        assert_eq!((n.dev, n.nlink), (7, 2));
    }
}
