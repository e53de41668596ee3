//! Restoring a files snapshot into a directory of an NFS export.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use futures::StreamExt;
use lifeboat_backup::progress::Progress;
use lifeboat_backup::restore::RestoreReport;
use lifeboat_backup::snapshot::{Node, NodeKind, Snapshot, SnapshotDetails, tree_damage};
use lifeboat_backup::{Sink, SnapshotReader};
use nfs3_client::nfs3_types::nfs3::{Nfs3Option, ftype3, nfs_fh3, nfsstat3, nfstime3, sattr3, set_mtime};

use super::client::{Client, Reply};
use super::walk::shown;
use super::{NfsError, NfsLocation, resolve_dir};

/// Packs fetched at once while restoring.
const PACKS_AT_ONCE: usize = 4;
/// All-zero runs of this many bytes are not written (a new file reads zero there).
const HOLE_BLOCK: usize = 64 * 1024;

/// Where a files snapshot is restored: directory `location` of an export (created if
/// missing; a symlink on the way is refused). The snapshot's paths go under it: an NFS
/// backup's tree, whose paths are relative to the directory backed up, comes back as that
/// directory's content.
///
/// Directories are made (an existing directory is kept, and its attributes set), files are
/// created anew with CREATE GUARDED and written with WRITE (all-zero runs left as holes),
/// symlinks with SYMLINK; an existing entry of another kind, any existing file and any
/// existing symlink are removed first (a directory in the way with everything below it), so
/// no existing inode is written into and no symlink in the target is followed. Then owner
/// and group, then mode (set-id bits after the owner change that clears them) and mtime are
/// set, directories after everything below them. Entries a damaged tree would put outside
/// the target (`..`, absolute paths, a name twice, something under a non-directory) are
/// refused with everything below them. What could not be restored is in the report's
/// `errors`, never silently missing.
pub struct NfsSink {
    /// The directory to restore into.
    pub location: NfsLocation,
    /// Counters for a progress bar (bytes written of bytes to write).
    pub progress: Arc<Progress>,
}

impl Sink for NfsSink {
    type Output = RestoreReport;
    type Error = NfsError;

    fn purpose(&self) -> &'static str {
        "nfs restore"
    }

    /// Files snapshots (NFS and local files backups share the format).
    fn accepts(&self, snapshot: &Snapshot) -> Result<(), NfsError> {
        match &snapshot.details {
            SnapshotDetails::Files(_) => Ok(()),
            other => Err(NfsError::NotFiles {
                id: snapshot.id.map(|i| i.short()).unwrap_or_default(),
                kind: other.kind().to_string(),
            }),
        }
    }

    async fn restore(self, reader: &SnapshotReader<'_>) -> Result<RestoreReport, NfsError> {
        let nodes = reader.nodes().await?;
        let mut client = Client::connect(&self.location.server, &self.location.export).await?;
        let target = resolve_dir(&mut client, &self.location, true).await?;
        let mut run = Run {
            client,
            report: RestoreReport::default(),
        };
        let result = run.restore(reader, nodes, target, &self.progress).await;
        let Run { client, report } = run;
        client.close().await;
        result.map(|()| report)
    }
}

/// A restore in progress: the connection and what was done so far.
struct Run {
    client: Client,
    report: RestoreReport,
}

/// An entry made, waiting for its content and attributes.
struct Made {
    node: usize,
    fh: nfs_fh3,
}

impl Run {
    async fn restore(
        &mut self,
        reader: &SnapshotReader<'_>,
        nodes: &[Node],
        target: nfs_fh3,
        progress: &Progress,
    ) -> Result<(), NfsError> {
        let (refused, why) = refused_entries(nodes);
        self.report.errors.extend(why);

        let mut dirs: HashMap<Vec<u8>, nfs_fh3> = HashMap::new();
        dirs.insert(Vec::new(), target);
        let mut made_dirs = Vec::new();
        let mut made_files = Vec::new();
        let mut made_links = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            let path = node.path_bytes();
            if refused.contains(&i) {
                continue;
            }
            let (parent, name) = split(path);
            let Some(dir) = dirs.get(parent).cloned() else {
                self.report.errors.push(format!(
                    "{}: not restored: its directory was not restored",
                    node.path
                ));
                continue;
            };
            let made = match node.kind {
                NodeKind::Dir => self.make_dir(&dir, name, node).await?,
                NodeKind::File => self.make(&dir, name, node, None).await?,
                NodeKind::Symlink => {
                    let target = node.target_bytes().unwrap_or_default();
                    self.make(&dir, name, node, Some(target)).await?
                }
                other => {
                    self.report.errors.push(format!(
                        "{}: not restored: a {other:?} node is not a file, directory or symlink",
                        node.path
                    ));
                    continue;
                }
            };
            let fh = match made {
                Ok(fh) => fh,
                Err(why) => {
                    self.report
                        .errors
                        .push(format!("{}: not restored: {why}", node.path));
                    continue;
                }
            };
            match node.kind {
                NodeKind::Dir => {
                    dirs.insert(path.to_vec(), fh.clone());
                    made_dirs.push(Made { node: i, fh });
                }
                NodeKind::File => made_files.push(Made { node: i, fh }),
                _ => made_links.push(Made { node: i, fh }),
            }
        }

        let failed = self.write_content(reader, nodes, &made_files, progress).await?;
        for (k, m) in made_files.iter().enumerate() {
            let node = &nodes[m.node];
            if let Some(why) = failed.get(&k) {
                self.report
                    .errors
                    .push(format!("{}: not restored: {why}", node.path));
                // A partly written file would look restored.
                let (parent, name) = split(node.path_bytes());
                if let Some(dir) = dirs.get(parent).cloned() {
                    let _ = self.client.remove(&dir, name, &shown(node.path_bytes())).await?;
                }
                continue;
            }
            self.finish(m, node, true).await?;
            self.report.files += 1;
        }
        for m in &made_links {
            self.finish(m, &nodes[m.node], false).await?;
            self.report.symlinks += 1;
        }
        // Deepest first: setting a directory's mtime before writing into it would be undone.
        for m in made_dirs.iter().rev() {
            self.finish(m, &nodes[m.node], true).await?;
            self.report.dirs += 1;
        }
        Ok(())
    }

    /// Makes directory `name` in `dir`, keeping an existing directory and replacing anything
    /// else there. `Ok(Err(why))`: this entry failed.
    async fn make_dir(
        &mut self,
        dir: &nfs_fh3,
        name: &[u8],
        node: &Node,
    ) -> Result<Result<nfs_fh3, String>, NfsError> {
        let path = shown(node.path_bytes());
        match self.client.lookup(dir, name, &path).await? {
            Ok((fh, attr)) if attr.type_ == ftype3::NF3DIR => return Ok(Ok(fh)),
            Ok(_) => {
                if let Err(s) = self.client.remove(dir, name, &path).await? {
                    return Ok(Err(format!("cannot remove what is in its place: {s}")));
                }
            }
            Err(nfsstat3::NFS3ERR_NOENT) => {}
            Err(s) => return Ok(Err(format!("lookup failed: {s}"))),
        }
        Ok(self
            .client
            .mkdir(dir, name, &path)
            .await?
            .map_err(|s| format!("mkdir failed: {s}")))
    }

    /// Makes a new, empty file (or with `link`, a symlink to it) `name` in `dir`, removing
    /// whatever had that name first.
    async fn make(
        &mut self,
        dir: &nfs_fh3,
        name: &[u8],
        node: &Node,
        link: Option<&[u8]>,
    ) -> Result<Result<nfs_fh3, String>, NfsError> {
        let path = shown(node.path_bytes());
        if let Err(s) = self.client.remove_tree(dir, name, &path).await? {
            return Ok(Err(format!("cannot remove what is in its place: {s}")));
        }
        let made: Reply<nfs_fh3> = match link {
            Some(target) => self.client.symlink(dir, name, target, &path).await?,
            None => self.client.create(dir, name, &path).await?,
        };
        Ok(made.map_err(|s| format!("create failed: {s}")))
    }

    /// Writes every file's chunks at their offsets, each pack fetched once; all-zero runs
    /// are skipped. Returns the files (by position in `files`) that failed, with why.
    async fn write_content(
        &mut self,
        reader: &SnapshotReader<'_>,
        nodes: &[Node],
        files: &[Made],
        progress: &Progress,
    ) -> Result<HashMap<usize, String>, NfsError> {
        let mut failed: HashMap<usize, String> = HashMap::new();
        let index = reader.repository().index();
        let mut items = Vec::new();
        let mut total = 0u64;
        for (k, m) in files.iter().enumerate() {
            let node = &nodes[m.node];
            let mut offset = 0u64;
            let mut planned = Vec::with_capacity(node.chunks.len());
            for id in &node.chunks {
                let Some(loc) = index.get(id) else {
                    failed.insert(
                        k,
                        format!("blob {} is not in the repository's index", id.to_hex()),
                    );
                    break;
                };
                let len = u64::from(loc.entry.raw_length);
                planned.push(((k, offset, len), *id));
                offset += len;
            }
            if failed.contains_key(&k) {
                continue;
            }
            if offset != node.size {
                failed.insert(
                    k,
                    format!(
                        "its chunks hold {offset} bytes but its size is {} (a damaged tree)",
                        node.size
                    ),
                );
                continue;
            }
            total += offset;
            items.extend(planned);
        }
        progress.add_total(total, files.len() as u64);
        let mut stream = std::pin::pin!(reader.read_items(items, PACKS_AT_ONCE));
        while let Some(((k, offset, len), content)) = stream.next().await {
            if failed.contains_key(&k) {
                continue;
            }
            let data = match content {
                Ok(d) if d.len() as u64 == len => d,
                Ok(d) => {
                    failed.insert(
                        k,
                        format!("a chunk holds {} bytes, the index says {len}", d.len()),
                    );
                    continue;
                }
                Err(e) => {
                    failed.insert(k, e.to_string());
                    continue;
                }
            };
            let path = shown(nodes[files[k].node].path_bytes());
            for (at, run) in data_runs(&data) {
                if let Err(s) = self
                    .client
                    .write(&files[k].fh, offset + at as u64, run, &path)
                    .await?
                {
                    failed.insert(k, format!("write failed: {s}"));
                    break;
                }
            }
            self.report.bytes += len;
            progress.add_done(len, 0);
        }
        for k in reader.damaged_packs() {
            self.report.damaged_packs.insert(k);
        }
        Ok(failed)
    }

    /// Sets an entry's size (files: a trailing hole), owner and group, then mode and mtime.
    /// What the server refuses is a warning.
    async fn finish(&mut self, made: &Made, node: &Node, with_mode: bool) -> Result<(), NfsError> {
        let path = shown(node.path_bytes());
        // The size on its own: a file ending in a hole is whole only once it is set, and a
        // server refusing the owner (root squashing) must not leave it short.
        if node.kind == NodeKind::File {
            let size = sattr3 {
                size: Nfs3Option::Some(node.size),
                ..Default::default()
            };
            if let Err(s) = self.client.setattr(&made.fh, size, &path).await? {
                self.report.errors.push(format!(
                    "{path}: size {} not set (its end may be missing): {s}",
                    node.size
                ));
            }
        }
        let owner = sattr3 {
            uid: Nfs3Option::Some(node.uid),
            gid: Nfs3Option::Some(node.gid),
            ..Default::default()
        };
        if let Err(s) = self.client.setattr(&made.fh, owner, &path).await? {
            self.report
                .warnings
                .push(format!("{path}: owner {}:{} not set: {s}", node.uid, node.gid));
        }
        let rest = sattr3 {
            mode: if with_mode {
                Nfs3Option::Some(node.mode & 0o7777)
            } else {
                Nfs3Option::None
            },
            mtime: match nfs_time(node.mtime_ns) {
                Some(t) => set_mtime::SET_TO_CLIENT_TIME(t),
                None => set_mtime::DONT_CHANGE,
            },
            ..Default::default()
        };
        if let Err(s) = self.client.setattr(&made.fh, rest, &path).await? {
            self.report
                .warnings
                .push(format!("{path}: mode and modification time not set: {s}"));
        }
        Ok(())
    }
}

/// The entries a restore must not make, with why for each: those [`tree_damage`] refuses
/// (a path with `..`, `.`, an empty component or NUL, an absolute path, a name listed twice,
/// something under a non-directory, a symlink without a target) and everything below them.
/// Only what passes is ever created, so nothing is written outside the target.
fn refused_entries(nodes: &[Node]) -> (BTreeSet<usize>, Vec<String>) {
    let mut refused = BTreeSet::new();
    let mut why = Vec::new();
    let mut tops: Vec<&[u8]> = Vec::new();
    for d in tree_damage(nodes).into_iter().filter(|d| d.refuses_restore()) {
        why.push(format!("{}: not restored: {}", nodes[d.node].path, d.why));
        refused.insert(d.node);
        tops.push(nodes[d.node].path_bytes());
    }
    for (i, node) in nodes.iter().enumerate() {
        let path = node.path_bytes();
        if !refused.contains(&i)
            && tops
                .iter()
                .any(|t| path.starts_with(t) && path.get(t.len()) == Some(&b'/'))
        {
            why.push(format!(
                "{}: not restored: it lies under a refused entry",
                node.path
            ));
            refused.insert(i);
        }
    }
    (refused, why)
}

/// A path's directory and last name.
fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|b| *b == b'/') {
        Some(at) => (&path[..at], &path[at + 1..]),
        None => (&path[..0], path),
    }
}

/// An mtime in NFS's unsigned 32-bit seconds, when it fits.
fn nfs_time(ns: i128) -> Option<nfstime3> {
    let seconds = u32::try_from(ns.div_euclid(1_000_000_000)).ok()?;
    let nseconds = u32::try_from(ns.rem_euclid(1_000_000_000)).ok()?;
    Some(nfstime3 { seconds, nseconds })
}

/// The runs of `data` worth writing, as (offset in `data`, bytes): all-zero blocks of
/// [`HOLE_BLOCK`] bytes are left out.
fn data_runs(data: &[u8]) -> Vec<(usize, &[u8])> {
    let mut runs = Vec::new();
    let mut start: Option<usize> = None;
    for (b, block) in data.chunks(HOLE_BLOCK).enumerate() {
        let at = b * HOLE_BLOCK;
        let zero = block.iter().all(|x| *x == 0);
        match (zero, start) {
            (false, None) => start = Some(at),
            (true, Some(s)) => {
                runs.push((s, &data[s..at]));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        runs.push((s, &data[s..]));
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A forged tree cannot make a restore leave its target: `..`, absolute paths and what
    /// lies under a file are refused, with what is below them; plain entries pass.
    #[test]
    fn entries_that_would_leave_the_target_are_refused() {
        let node = |p: &[u8], kind| Node::with_path(p, kind);
        let nodes = vec![
            node(b"../escape", NodeKind::File),
            node(b"/etc/passwd", NodeKind::File),
            node(b"a", NodeKind::File),
            node(b"a/b", NodeKind::File),
            node(b"d", NodeKind::Dir),
            node(b"d/..", NodeKind::Dir),
            node(b"d/../x", NodeKind::File),
            node(b"d/ok", NodeKind::File),
        ];
        let (refused, why) = refused_entries(&nodes);
        let kept: Vec<&str> = (0..nodes.len())
            .filter(|i| !refused.contains(i))
            .map(|i| nodes[i].path.as_str())
            .collect();
        assert_eq!(kept, vec!["a", "d", "d/ok"], "{why:?}");
        assert_eq!(why.len(), 5, "{why:?}");
    }

    #[test]
    fn zero_blocks_are_holes() {
        let mut data = vec![0u8; 4 * HOLE_BLOCK + 10];
        data[HOLE_BLOCK + 1] = 1;
        data[4 * HOLE_BLOCK + 3] = 2;
        let runs: Vec<(usize, usize)> = data_runs(&data).iter().map(|(a, r)| (*a, r.len())).collect();
        assert_eq!(runs, vec![(HOLE_BLOCK, HOLE_BLOCK), (4 * HOLE_BLOCK, 10)]);
        assert!(data_runs(&[0u8; 100]).is_empty());
        assert_eq!(data_runs(b"abc").len(), 1);
    }

    #[test]
    fn times_before_1970_or_after_2106_are_not_set() {
        assert_eq!(
            nfs_time(1_500_000_000_123),
            Some(nfstime3 {
                seconds: 1500,
                nseconds: 123
            })
        );
        assert_eq!(nfs_time(-1), None);
        assert_eq!(nfs_time(i128::from(u32::MAX) * 2_000_000_000), None);
    }
}
