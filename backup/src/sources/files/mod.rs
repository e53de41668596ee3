//! Backing up files and directories.

mod exclude;
mod open;
mod walk;
mod xattrs;

pub use exclude::{Exclusions, InvalidExclude, patterns_in_file};
pub use walk::{Walked, walk};

use open::Anchors;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::archiver::{BackupOptions, Writer};
use crate::blob::{BlobId, BlobKind};
use crate::chunker::{Chunker, chunk_slice};
use crate::progress::Progress;
use crate::repository::{IndexedRepository, RepoError, Repository};
use crate::session::{BlobSink, SessionShared};
use crate::snapshot::{FilesBackup, SkippedPath, Snapshot, SnapshotDetails, Summary};
use crate::sources::{Source, Written, files_to_read, reuse_unchanged};

/// Options for a file backup.
#[derive(Debug, Clone, Default)]
pub struct FilesOptions {
    /// Tags to record.
    pub tags: BTreeMap<String, String>,
    /// Read every file even if the parent snapshot has it unchanged.
    pub force_full: bool,
    /// Worker threads (0: one per core).
    pub workers: usize,
    /// The host name to record (restic's `--host`): retention groups and the parent snapshot
    /// go by it, so pods whose host names change each run (CronJobs) give one fixed name.
    /// `None`: this machine's host name.
    pub host: Option<String>,
    /// What to leave out (`--exclude`, `--one-file-system`).
    pub exclusions: Exclusions,
}

/// Backs up `paths` into `repo`; returns the new snapshot. Paths that cannot be read are
/// left out and listed in its `summary.skipped` (the snapshot is then partial); the store
/// failing is an error, and then no snapshot is written. The lifecycle around the walk and
/// the reads (lock, index, session, tree, manifest) is [`Repository::backup`]'s.
pub async fn backup_files(
    repo: &Repository,
    paths: &[PathBuf],
    options: &FilesOptions,
    progress: Arc<Progress>,
) -> Result<Snapshot, RepoError> {
    let host = options.host.clone().unwrap_or_else(crate::repository::hostname);
    let mut source = FilesSource {
        roots: absolute_roots(paths)?,
        host: host.clone(),
        force_full: options.force_full,
        workers: options.workers,
        exclusions: options.exclusions.clone(),
    };
    let options = BackupOptions {
        tags: options.tags.clone(),
        host: Some(host),
        progress,
    };
    repo.backup(&mut source, &options).await
}

fn absolute_roots(paths: &[PathBuf]) -> Result<Vec<PathBuf>, RepoError> {
    let mut roots = Vec::new();
    for p in paths {
        let abs = source_path(p).map_err(|e| RepoError::io(p, e))?;
        let meta = std::fs::symlink_metadata(&abs).map_err(|e| RepoError::io(p, e))?;
        // `link/` or `link/.` asks for the directory, but lexical normalisation (as restic's)
        // leaves the link itself: refuse rather than store an empty backup of it.
        let given = p.as_os_str().as_bytes();
        if meta.file_type().is_symlink() && (given.ends_with(b"/") || given.ends_with(b"/.")) {
            let target = std::fs::canonicalize(&abs).map_err(|e| RepoError::io(p, e))?;
            return Err(RepoError::SourceIsSymlink {
                path: abs.display().to_string(),
                target: target.display().to_string(),
            });
        }
        roots.push(abs);
    }
    roots.sort();
    roots.dedup();
    Ok(roots)
}

/// `path` as a snapshot records it: made absolute against the working directory, then
/// normalised lexically (see [`normalize`]); `./src/` run in `/tmp/y` is `/tmp/y/src`.
pub fn source_path(path: &Path) -> std::io::Result<PathBuf> {
    Ok(normalize(&std::path::absolute(path)?))
}

/// How a snapshot's `paths` and `source` write an absolute path: as it is when it is UTF-8,
/// else `base64:` and its exact bytes in base64 (no absolute path starts that way), so two
/// paths that differ only in bytes that are not UTF-8 stay two retention groups.
pub fn path_text(path: &Path) -> String {
    let bytes = path.as_os_str().as_bytes();
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(_) => {
            use base64::Engine;
            format!(
                "base64:{}",
                base64::engine::general_purpose::STANDARD.encode(bytes)
            )
        }
    }
}

/// An absolute path in its one lexical form, as Go's `filepath.Clean` (restic) makes it: no
/// `.`, `..`, empty components or trailing `/` (`/tmp/y/src/sub/../` is `/tmp/y/src`; `..`
/// of `/` is `/`). Lexical like restic's: `..` after a symlink names the link's parent, not
/// its target's.
fn normalize(abs: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::from("/");
    for c in abs.components() {
        match c {
            Component::Normal(name) => out.push(name),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Files and directories under absolute, normalised, sorted `roots` on this machine.
struct FilesSource {
    roots: Vec<PathBuf>,
    /// The host name recorded; the parent is the newest snapshot of the same roots from it.
    host: String,
    /// Read every file even if the parent has it unchanged.
    force_full: bool,
    /// Reader threads (0: one per core).
    workers: usize,
    /// What the walk leaves out.
    exclusions: Exclusions,
}

impl Source for FilesSource {
    type Error = RepoError;

    /// `files:` and the roots ([`path_text`]), comma-separated.
    fn source_id(&self) -> String {
        let roots: Vec<String> = self.roots.iter().map(|p| path_text(p)).collect();
        format!("files:{}", roots.join(","))
    }

    fn purpose(&self) -> &'static str {
        "backup"
    }

    /// The newest files snapshot of the same roots from the same host.
    async fn parent(&self, repo: &IndexedRepository) -> Result<Option<Snapshot>, RepoError> {
        let source = self.source_id();
        Ok(repo.snapshots().await?.into_iter().rfind(|s| {
            matches!(s.details, SnapshotDetails::Files(_)) && s.source == source && s.hostname == self.host
        }))
    }

    /// Walks the roots, takes the chunk lists of files the parent has unchanged (and whose
    /// chunks the index still lists), and reads the rest on `workers` threads, each inode
    /// once.
    async fn write(&mut self, writer: &Writer<'_>) -> Result<Written, RepoError> {
        // Each root's directory is resolved now, once; the reads below resolve nothing
        // through a symlink from there (see `open`).
        let anchors = Anchors::open(&self.roots);
        let walk_roots = self.roots.clone();
        let exclusions = self.exclusions.clone();
        let Walked {
            mut nodes,
            mut skipped,
            mut warnings,
            excluded,
            other_filesystems,
        } = tokio::task::spawn_blocking(move || walk(&walk_roots, &exclusions))
            .await
            .map_err(|e| RepoError::Task(e.to_string()))?;

        let mut reused = vec![false; nodes.len()];
        if !self.force_full
            && let Some(old) = writer.parent_tree().await?
        {
            reused = reuse_unchanged(&mut nodes, &old, |c| writer.is_indexed(c));
        }

        // Each inode is read once, however many names (hard links) it has.
        let (to_read, same_inode) = files_to_read(&nodes, &reused);
        let progress = writer.progress().clone();
        progress.add_total(to_read.iter().map(|&i| nodes[i].size).sum(), to_read.len() as u64);

        let shared = writer.shared().clone();
        let workers = if self.workers == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            self.workers
        };
        let jobs: Vec<(usize, PathBuf)> = to_read
            .iter()
            .map(|&i| (i, Path::new("/").join(OsStr::from_bytes(nodes[i].path_bytes()))))
            .collect();
        let results =
            tokio::task::spawn_blocking(move || read_files(&shared, &anchors, &jobs, workers, &progress))
                .await
                .map_err(|e| RepoError::Task(e.to_string()))?;

        let mut failed = vec![false; nodes.len()];
        for (i, result) in results {
            match result {
                Ok(read) => {
                    nodes[i].chunks = read.chunks;
                    nodes[i].size = read.size;
                    warnings.extend(read.warning);
                }
                Err(FileError::Skip(path, error)) => {
                    skipped.push(SkippedPath { path, error });
                    failed[i] = true;
                }
                // The engine prefers the uploader's own error, which names the object and
                // the store's answer, to what a worker saw.
                Err(FileError::Fatal(e)) => return Err(e),
            }
        }
        for (other, first) in same_inode {
            if failed[first] {
                failed[other] = true;
                skipped.push(SkippedPath {
                    path: format!("/{}", nodes[other].path),
                    error: format!("a hard link to /{}, which could not be read", nodes[first].path),
                });
            } else {
                nodes[other].chunks = nodes[first].chunks.clone();
                nodes[other].size = nodes[first].size;
            }
        }
        let mut keep = failed.iter().map(|f| !f);
        nodes.retain(|_| keep.next().unwrap_or(true));

        let files_read = to_read.iter().filter(|&&i| !failed[i]).count() as u64;
        let summary = Summary {
            files_read,
            warnings,
            skipped,
            excluded,
            other_filesystems,
            ..Summary::of_tree(&nodes)
        };
        Ok(Written {
            nodes,
            details: SnapshotDetails::Files(FilesBackup {
                excludes: self.exclusions.patterns().to_vec(),
                one_file_system: self.exclusions.one_file_system,
                exclude_caches: self.exclusions.caches,
            }),
            paths: self.roots.iter().map(|p| path_text(p)).collect(),
            summary,
        })
    }
}

enum FileError {
    /// This file is left out of the snapshot (unreadable, vanished): its path, and why.
    Skip(String, String),
    /// The backup cannot continue (the store failed).
    Fatal(RepoError),
}

/// A file's content as stored.
struct ReadFile {
    chunks: Vec<BlobId>,
    /// Bytes read: to its end, whatever its size said, but at most [`PAST_SIZE_LIMIT`] past it.
    size: u64,
    /// Set when the file changed while it was read (what was stored may be torn), or held
    /// more than that limit (what was stored is cut there).
    warning: Option<String>,
}

type FileResult = (usize, Result<ReadFile, FileError>);

fn read_files(
    shared: &Arc<SessionShared>,
    anchors: &Anchors,
    jobs: &[(usize, PathBuf)],
    workers: usize,
    progress: &Progress,
) -> Vec<FileResult> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<FileResult>> = Mutex::new(Vec::with_capacity(jobs.len()));
    std::thread::scope(|scope| {
        for _ in 0..workers.max(1) {
            scope.spawn(|| {
                let mut sink = BlobSink::new(shared.clone(), BlobKind::Data);
                let mut buf = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let Some((node_index, path)) = jobs.get(n) else {
                        break;
                    };
                    let result = read_one(&mut sink, &mut buf, shared, anchors, path, progress);
                    let fatal = matches!(result, Err(FileError::Fatal(_)));
                    results
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((*node_index, result));
                    if fatal {
                        // Make every worker stop: the store is failing.
                        next.store(usize::MAX / 2, Ordering::Relaxed);
                        return;
                    }
                }
                if let Err(e) = sink.finish() {
                    results
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((usize::MAX, Err(FileError::Fatal(e))));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    // A sink failure has no node; surface it as the first fatal error.
    if let Some(pos) = results.iter().position(|(i, _)| *i == usize::MAX) {
        let (_, r) = results.swap_remove(pos);
        results.insert(0, (0, r));
    }
    results
}

/// Files up to this size are read whole into a reused buffer and chunked in place, which
/// saves a copy per chunk; larger ones stream through the chunker.
const WHOLE_FILE_LIMIT: u64 = 32 * 1024 * 1024;

/// How far past its size a file is read into that buffer: far enough for the pseudo-files
/// whose size says 0 but that hold a few kilobytes (`/proc/version`, `/proc/PID/status`),
/// which are read to their end as restic reads them. What is longer streams on.
const IN_MEMORY_MARGIN: u64 = 1024 * 1024;

/// How far past the size it had when opened a file is read at all. Beyond it the file is cut
/// and reported: `/proc/PID/pagemap` says 0 and holds ~256 GB, and a file appended to faster
/// than it is read never ends.
const PAST_SIZE_LIMIT: u64 = 64 * 1024 * 1024;

fn read_one(
    sink: &mut BlobSink,
    buf: &mut Vec<u8>,
    shared: &SessionShared,
    anchors: &Anchors,
    path: &Path,
    progress: &Progress,
) -> Result<ReadFile, FileError> {
    use std::io::Read;
    let skip =
        |what: &str, e: std::io::Error| FileError::Skip(path.display().to_string(), format!("{what}{e}"));
    let mut file = anchors.open_regular(path).map_err(|e| skip("", e))?;
    let before = file.metadata().map_err(|e| skip("", e))?;
    let size = before.len();
    let limit = size.saturating_add(PAST_SIZE_LIMIT);
    let mut chunks = Vec::new();
    let mut total = 0u64;
    let mut put = |chunk: &[u8]| -> Result<(), FileError> {
        total += chunk.len() as u64;
        chunks.push(sink.put(chunk).map_err(FileError::Fatal)?);
        progress.add_done(chunk.len() as u64, 0);
        Ok(())
    };
    // Memory holds at most the size said plus a margin; a file that turns out longer goes on
    // through the chunker (the same cut points as chunking it whole), up to `limit`.
    let mut whole = false;
    buf.clear();
    if size <= WHOLE_FILE_LIMIT {
        let want = size + IN_MEMORY_MARGIN;
        // At most WHOLE_FILE_LIMIT + IN_MEMORY_MARGIN, which fits in `usize`.
        buf.reserve_exact(usize::try_from(want).unwrap_or(0));
        (&mut file)
            .take(want)
            .read_to_end(buf)
            .map_err(|e| skip("read failed: ", e))?;
        whole = (buf.len() as u64) < want;
    }
    if whole {
        for chunk in chunk_slice(buf, shared.chunker, shared.seed) {
            put(chunk)?;
        }
    } else {
        let stream = std::io::Cursor::new(&buf[..]).chain(&mut file).take(limit);
        for chunk in Chunker::new(stream, shared.chunker, shared.seed) {
            put(&chunk.map_err(|e| skip("read failed: ", e))?)?;
        }
    }
    let cut = if total == limit {
        more_beyond(&mut file)
    } else {
        Ok(false)
    };
    progress.add_done(0, 1);
    let after = file.metadata().map_err(|e| skip("", e))?;
    let changed = changed_while_read(&before, &after);
    let past = PAST_SIZE_LIMIT >> 20;
    let warning = match (cut, changed) {
        (Ok(true), Some(what)) => Some(format!(
            "{}: changed while it was read ({what}) and still had more {past} MiB past its size \
             when opened: only its first {limit} bytes are saved, and they may mix old and new \
             data: back it up again once it is quiet",
            path.display()
        )),
        (Ok(true), None) => Some(format!(
            "{}: holds more than {past} MiB past the {size} bytes its size says (a pseudo-file, \
             as under /proc?): only its first {limit} bytes are saved",
            path.display()
        )),
        (Err(e), _) => Some(format!(
            "{}: could not tell whether it ends after {limit} bytes, {past} MiB past its size \
             ({e}): only those are saved",
            path.display()
        )),
        (Ok(false), Some(what)) => Some(format!(
            "{}: changed while it was read ({what}); the saved content may mix old and new data: back it up again once it is quiet",
            path.display()
        )),
        (Ok(false), None) => None,
    };
    Ok(ReadFile {
        chunks,
        size: total,
        warning,
    })
}

/// Whether `file`, read up to [`PAST_SIZE_LIMIT`] past its size, has more. One small read (a multiple of 8 bytes, which
/// `/proc/PID/pagemap` insists on).
fn more_beyond(file: &mut std::fs::File) -> std::io::Result<bool> {
    let mut probe = [0u8; 64];
    loop {
        match std::io::Read::read(file, &mut probe) {
            Ok(n) => return Ok(n > 0),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// How a file's status differs after reading it from before (size, modification or change
/// time), if it does; the file changed during the read.
fn changed_while_read(before: &std::fs::Metadata, after: &std::fs::Metadata) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    if before.len() != after.len() {
        Some(format!("size {} became {}", before.len(), after.len()))
    } else if (before.mtime(), before.mtime_nsec()) != (after.mtime(), after.mtime_nsec()) {
        Some("its modification time changed".to_string())
    } else if (before.ctime(), before.ctime_nsec()) != (after.ctime(), after.ctime_nsec()) {
        Some("its status change time changed".to_string())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::{absolute_roots, normalize};
    use crate::repository::RepoError;
    use std::path::Path;
    use std::path::PathBuf;

    #[test]
    fn paths_that_are_not_utf8_keep_their_bytes() {
        use std::os::unix::ffi::OsStrExt;
        let e9 = super::path_text(Path::new(std::ffi::OsStr::from_bytes(b"/tmp/l/caf\xe9")));
        let e8 = super::path_text(Path::new(std::ffi::OsStr::from_bytes(b"/tmp/l/caf\xe8")));
        assert_ne!(e9, e8);
        assert_eq!(e9, "base64:L3RtcC9sL2NhZuk=");
        assert_eq!(super::path_text(Path::new("/tmp/l/café")), "/tmp/l/café");
    }

    /// `link/` and `link/.` for a symlinked directory are refused naming the directory to
    /// pass (normalised, they would back up only the link); `link` alone is the link.
    #[test]
    fn a_symlinked_directory_given_as_a_directory_is_refused_naming_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("realdir");
        std::fs::create_dir(&real).unwrap();
        std::fs::write(real.join("f"), b"data").unwrap();
        let link = dir.path().join("linkdir");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        for given in [format!("{}/", link.display()), format!("{}/.", link.display())] {
            let e = absolute_roots(&[PathBuf::from(&given)]).unwrap_err();
            let text = e.to_string();
            assert!(matches!(e, RepoError::SourceIsSymlink { .. }), "{given}: {text}");
            let real = std::fs::canonicalize(&real).unwrap();
            assert!(text.contains(&format!("pass {}", real.display())), "{text}");
        }
        assert_eq!(absolute_roots(std::slice::from_ref(&link)).unwrap(), vec![link]);
    }

    #[test]
    fn source_paths_are_normalized_lexically() {
        for (given, clean) in [
            ("/tmp/y/src/", "/tmp/y/src"),
            ("/tmp/y/./src//", "/tmp/y/src"),
            ("/tmp/y/src/sub/../", "/tmp/y/src"),
            ("/tmp/y/src/..", "/tmp/y"),
            ("/..", "/"),
            ("/", "/"),
            ("//", "/"),
        ] {
            assert_eq!(normalize(Path::new(given)), Path::new(clean), "{given}");
        }
    }
}
