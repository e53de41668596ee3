//! Backing up files and directories.

mod walk;

pub use walk::walk;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::Utc;

use crate::blob::{BlobId, BlobKind, SnapshotId};
use crate::chunker::{Chunker, chunk_slice};
use crate::progress::Progress;
use crate::read::BlobReader;
use crate::repository::{LockKind, RepoError, Repository};
use crate::session::{BlobSink, Session, SessionShared};
use crate::snapshot::{Node, NodeKind, Snapshot, SnapshotDetails, Summary};

/// Options for a file backup.
#[derive(Debug, Clone, Default)]
pub struct FilesOptions {
    /// Tags to record.
    pub tags: BTreeMap<String, String>,
    /// Read every file even if the parent snapshot has it unchanged.
    pub force_full: bool,
    /// Worker threads (0: one per core).
    pub workers: usize,
}

/// Backs up `paths` into `repo`; returns the new snapshot.
pub async fn backup_files(
    repo: &Repository,
    paths: &[PathBuf],
    options: &FilesOptions,
    progress: Arc<Progress>,
) -> Result<Snapshot, RepoError> {
    let started = Instant::now();
    let time = Utc::now();
    let roots = absolute_roots(paths)?;
    let source = format!(
        "files:{}",
        roots
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    repo.while_locked(
        LockKind::Shared,
        "backup",
        run(repo, &roots, &source, time, options, progress, started),
    )
    .await
}

fn absolute_roots(paths: &[PathBuf]) -> Result<Vec<PathBuf>, RepoError> {
    let mut roots = Vec::new();
    for p in paths {
        let abs = std::path::absolute(p).map_err(|e| RepoError::io(p, e))?;
        std::fs::symlink_metadata(&abs).map_err(|e| RepoError::io(p, e))?;
        roots.push(abs);
    }
    roots.sort();
    roots.dedup();
    Ok(roots)
}

async fn run(
    repo: &Repository,
    roots: &[PathBuf],
    source: &str,
    time: chrono::DateTime<Utc>,
    options: &FilesOptions,
    progress: Arc<Progress>,
    started: Instant,
) -> Result<Snapshot, RepoError> {
    let index = repo.indexed().await?.index().clone();
    let hostname = crate::repository::hostname();
    let parent = repo
        .snapshots()
        .await?
        .into_iter()
        .rfind(|s| s.details == SnapshotDetails::Files && s.source == source && s.hostname == hostname);

    let walk_roots = roots.to_vec();
    let (mut nodes, mut warnings) = tokio::task::spawn_blocking(move || walk(&walk_roots))
        .await
        .map_err(|e| RepoError::Task(e.to_string()))?;

    if let (Some(parent), false) = (&parent, options.force_full) {
        let reader = BlobReader::new(repo, &index);
        let old = reader.read_tree(&parent.tree).await?;
        reuse_unchanged(&mut nodes, &old);
    }

    let to_read: Vec<usize> = nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.kind == NodeKind::File && n.chunks.is_empty() && n.size > 0)
        .map(|(i, _)| i)
        .collect();
    progress.add_total(to_read.iter().map(|&i| nodes[i].size).sum(), to_read.len() as u64);

    let session = Session::start(repo, index);
    let shared = session.shared().clone();
    let workers = if options.workers == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        options.workers
    };
    let jobs: Vec<(usize, PathBuf)> = to_read
        .iter()
        .map(|&i| (i, PathBuf::from("/").join(&nodes[i].path)))
        .collect();
    let work_progress = progress.clone();
    let results = tokio::task::spawn_blocking(move || read_files(&shared, &jobs, workers, &work_progress))
        .await
        .map_err(|e| RepoError::Task(e.to_string()))?;

    let mut failed = vec![false; nodes.len()];
    let mut fatal = None;
    for (i, result) in results {
        match result {
            Ok((chunks, size)) => {
                nodes[i].chunks = chunks;
                nodes[i].size = size;
            }
            Err(FileError::Skip(w)) => {
                warnings.push(w);
                failed[i] = true;
            }
            Err(FileError::Fatal(e)) => {
                fatal.get_or_insert(e);
            }
        }
    }
    if let Some(e) = fatal {
        // A worker saw the uploader stop; the uploader's own error names the object and the
        // store's answer, so prefer it.
        return Err(session.finish().await.err().unwrap_or(e));
    }
    let mut keep = failed.iter().map(|f| !f);
    nodes.retain(|_| keep.next().unwrap_or(true));

    let files_read = to_read.len() as u64 - failed.iter().filter(|f| **f).count() as u64;
    let tree_nodes = nodes;
    let (tree, tree_nodes, session) = tokio::task::spawn_blocking(move || {
        let tree = session.write_tree(&tree_nodes);
        (tree, tree_nodes, session)
    })
    .await
    .map_err(|e| RepoError::Task(e.to_string()))?;
    let tree = tree?;
    let stats = session.finish().await?;

    let mut snapshot = Snapshot {
        id: None,
        time,
        hostname,
        details: SnapshotDetails::Files,
        source: source.to_string(),
        paths: roots.iter().map(|p| p.display().to_string()).collect(),
        tags: options.tags.clone(),
        parent: parent.and_then(|p| p.id),
        tree,
        summary: Summary {
            files: tree_nodes.iter().filter(|n| n.kind == NodeKind::File).count() as u64,
            dirs: tree_nodes.iter().filter(|n| n.kind == NodeKind::Dir).count() as u64,
            bytes: tree_nodes.iter().map(|n| n.size).sum(),
            files_read,
            new_bytes: stats.new_bytes,
            stored_bytes: stats.stored_bytes,
            new_blobs: stats.new_blobs,
            duration_ms: started.elapsed().as_millis() as u64,
            warnings,
        },
    };
    let id: SnapshotId = repo.save_snapshot(&snapshot).await?;
    snapshot.id = Some(id);
    Ok(snapshot)
}

/// Copies chunk lists from the parent for files whose metadata says they did not change.
/// Both lists are sorted by path, so this is one merge pass.
fn reuse_unchanged(nodes: &mut [Node], old: &[Node]) {
    let mut j = 0;
    for node in nodes.iter_mut() {
        while j < old.len() && old[j].path < node.path {
            j += 1;
        }
        if j < old.len() && old[j].path == node.path && node.unchanged_since(&old[j]) {
            node.chunks = old[j].chunks.clone();
        }
    }
}

enum FileError {
    /// This file is skipped with a warning (unreadable, vanished).
    Skip(String),
    /// The backup cannot continue (the store failed).
    Fatal(RepoError),
}

type FileResult = (usize, Result<(Vec<BlobId>, u64), FileError>);

fn read_files(
    shared: &Arc<SessionShared>,
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
                    let result = read_one(&mut sink, &mut buf, shared, path, progress);
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

fn read_one(
    sink: &mut BlobSink,
    buf: &mut Vec<u8>,
    shared: &SessionShared,
    path: &Path,
    progress: &Progress,
) -> Result<(Vec<BlobId>, u64), FileError> {
    let skip = |what: &str, e: std::io::Error| FileError::Skip(format!("{}: {what}{e}", path.display()));
    let mut file = std::fs::File::open(path).map_err(|e| skip("", e))?;
    let size = file.metadata().map_err(|e| skip("", e))?.len();
    let mut chunks = Vec::new();
    let mut total = 0u64;
    if size <= WHOLE_FILE_LIMIT {
        buf.clear();
        std::io::Read::read_to_end(&mut file, buf).map_err(|e| skip("read failed: ", e))?;
        for chunk in chunk_slice(buf, shared.chunker, shared.seed) {
            total += chunk.len() as u64;
            chunks.push(sink.put(chunk).map_err(FileError::Fatal)?);
            progress.add_done(chunk.len() as u64, 0);
        }
    } else {
        for chunk in Chunker::new(file, shared.chunker, shared.seed) {
            let chunk = chunk.map_err(|e| skip("read failed: ", e))?;
            total += chunk.len() as u64;
            chunks.push(sink.put(&chunk).map_err(FileError::Fatal)?);
            progress.add_done(chunk.len() as u64, 0);
        }
    }
    progress.add_done(0, 1);
    Ok((chunks, total))
}
