//! Checking an NFS directory against a files snapshot without reading the repository's data:
//! every entry the snapshot lists is looked up (names only, symlinks never followed) and must
//! be of the same kind; each symlink's target must match; each file must have the snapshot's
//! size, and each of its chunks' ranges is read back and hashed, and compared with the
//! chunk's id (the keyed BLAKE3 of its plaintext under the repository's blob-id key,
//! docs/FORMAT.md "Blobs and chunking"). The directory's own extra entries are not counted:
//! it is what a drill uses to say its copy holds the recovery point's files.

use std::collections::HashMap;

use lifeboat_backup::blob::BlobId;
use lifeboat_backup::snapshot::{Node, NodeKind, Snapshot};
use lifeboat_backup::{RepoError, Repository};
use nfs3_client::nfs3_types::nfs3::{ftype3, nfs_fh3, nfsstat3};

use super::client::Client;
use super::{NfsError, NfsLocation, resolve_dir};

/// Entries that differ named in a [`DirCheck`], at most.
const NAMED: usize = 20;

/// Bytes asked for in one READ.
const READ_SIZE: u64 = 1 << 20;

/// What [`verify_dir`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirCheck {
    /// Entries the snapshot lists that were compared (directories, files, symlinks).
    pub entries: u64,
    /// Files whose content was read back.
    pub files: u64,
    /// Bytes read back and hashed.
    pub bytes: u64,
    /// The first entries (at most 20) that differ: `path: how`.
    pub mismatches: Vec<String>,
    /// All entries that differ.
    pub mismatched: u64,
}

impl DirCheck {
    /// The directory holds the snapshot's entries and bytes.
    pub fn ok(&self) -> bool {
        self.mismatched == 0
    }

    fn differs(&mut self, path: &str, how: impl Into<String>) {
        self.mismatched += 1;
        if self.mismatches.len() < NAMED {
            self.mismatches.push(format!("{path}: {}", how.into()));
        }
    }
}

/// Reads back directory `location` and compares it with files snapshot `snapshot` of `repo`
/// (its tree and the index only; no pack is read). Set-id bits, owners and times are not
/// compared: a server that squashes root changes them, and restores say so themselves.
///
/// Errors: the snapshot is not of files, a chunk is missing from the index, the export
/// unreachable or the directory missing.
pub async fn verify_dir(
    repo: &Repository,
    snapshot: &Snapshot,
    location: &NfsLocation,
) -> Result<DirCheck, NfsError> {
    let id = snapshot.id.map(|i| i.short()).unwrap_or_default();
    let indexed = repo.indexed().await?;
    let nodes = indexed.tree(snapshot).await?;
    if nodes.iter().any(|n| n.kind == NodeKind::Volume) {
        return Err(NfsError::NotFiles {
            id,
            kind: snapshot.details.kind().to_string(),
        });
    }
    let key = *repo.key().chunk_id_key();
    let mut client = Client::connect(&location.server, &location.export).await?;
    let result = async {
        let root = resolve_dir(&mut client, location, false).await?;
        let mut dirs: HashMap<Vec<u8>, nfs_fh3> = HashMap::from([(Vec::new(), root)]);
        let mut check = DirCheck::default();
        for node in &nodes {
            compare(&mut client, &indexed, &key, location, node, &mut dirs, &mut check).await?;
        }
        Ok(check)
    }
    .await;
    client.close().await;
    result
}

/// Compares one node; directories found are remembered in `dirs` for their children.
async fn compare(
    client: &mut Client,
    indexed: &lifeboat_backup::IndexedRepository,
    key: &[u8; 32],
    location: &NfsLocation,
    node: &Node,
    dirs: &mut HashMap<Vec<u8>, nfs_fh3>,
    check: &mut DirCheck,
) -> Result<(), NfsError> {
    let bytes = node.path_bytes();
    let (parent, name) = match bytes.iter().rposition(|b| *b == b'/') {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (&bytes[..0], bytes),
    };
    let path = format!("{}/{}", location.display(), node.path);
    check.entries += 1;
    let Some(dir) = dirs.get(parent).cloned() else {
        check.differs(&node.path, "its directory is missing or not a directory");
        return Ok(());
    };
    let (fh, attr) = match client.lookup(&dir, name, &path).await? {
        Ok(found) => found,
        Err(nfsstat3::NFS3ERR_NOENT) => {
            check.differs(&node.path, "missing");
            return Ok(());
        }
        Err(s) => {
            check.differs(&node.path, format!("LOOKUP failed: {s:?}"));
            return Ok(());
        }
    };
    let kind = match attr.type_ {
        ftype3::NF3REG => Some(NodeKind::File),
        ftype3::NF3DIR => Some(NodeKind::Dir),
        ftype3::NF3LNK => Some(NodeKind::Symlink),
        _ => None,
    };
    if kind != Some(node.kind) {
        check.differs(
            &node.path,
            format!("is a {:?}, not a {:?}", attr.type_, node.kind),
        );
        return Ok(());
    }
    match node.kind {
        NodeKind::Dir => {
            dirs.insert(bytes.to_vec(), fh);
        }
        NodeKind::Symlink => match client.readlink(&fh, &path).await? {
            Ok(target) if Some(target.as_slice()) == node.target_bytes() => {}
            Ok(target) => check.differs(
                &node.path,
                format!("links to {:?}", String::from_utf8_lossy(&target)),
            ),
            Err(s) => check.differs(&node.path, format!("READLINK failed: {s:?}")),
        },
        NodeKind::File => {
            if attr.size != node.size {
                check.differs(&node.path, format!("is {} bytes, not {}", attr.size, node.size));
                return Ok(());
            }
            check.files += 1;
            compare_content(client, indexed, key, node, &fh, &path, check).await?;
        }
        // The NFS source records neither (special files are reported as not backed up).
        NodeKind::Volume
        | NodeKind::Fifo
        | NodeKind::Socket
        | NodeKind::CharDevice
        | NodeKind::BlockDevice => {}
    }
    Ok(())
}

/// Reads each chunk's range of the file back and compares it with the chunk's id; stops at
/// the first that differs.
async fn compare_content(
    client: &mut Client,
    indexed: &lifeboat_backup::IndexedRepository,
    key: &[u8; 32],
    node: &Node,
    fh: &nfs_fh3,
    path: &str,
    check: &mut DirCheck,
) -> Result<(), NfsError> {
    let mut offset = 0u64;
    for chunk in &node.chunks {
        let loc = indexed.index().get(chunk).ok_or_else(|| RepoError::MissingBlob {
            blob: chunk.to_hex(),
            url: indexed.url().to_string(),
        })?;
        let len = u64::from(loc.entry.raw_length);
        let mut buf = Vec::with_capacity(len as usize);
        while (buf.len() as u64) < len {
            let at = offset + buf.len() as u64;
            let want = (len - buf.len() as u64).min(READ_SIZE) as u32;
            match client.read(fh, at, want, path).await? {
                Ok((data, eof, _)) => {
                    let empty = data.is_empty();
                    buf.extend_from_slice(&data);
                    if eof || empty {
                        break;
                    }
                }
                Err(s) => {
                    check.differs(&node.path, format!("READ at byte {at} failed: {s:?}"));
                    return Ok(());
                }
            }
        }
        check.bytes += buf.len() as u64;
        if buf.len() as u64 != len || BlobId::keyed(key, &buf) != *chunk {
            check.differs(&node.path, format!("differs in the chunk at byte {offset}"));
            return Ok(());
        }
        offset += len;
    }
    if offset != node.size {
        check.differs(
            &node.path,
            format!(
                "the snapshot's chunks hold {offset} bytes, its size is {}",
                node.size
            ),
        );
    }
    Ok(())
}
