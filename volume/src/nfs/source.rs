//! The NFS backup source: list the directory, take the parent's chunks for unchanged files,
//! read the rest on several connections into the engine's chunker.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use lifeboat_backup::RepoError;
use lifeboat_backup::archiver::{StreamUpload, Writer};
use lifeboat_backup::blob::BlobId;
use lifeboat_backup::session::BlobSink;
use lifeboat_backup::snapshot::{Node, SkippedPath, Snapshot, SnapshotDetails, Summary};
use lifeboat_backup::sources::{files_to_read, reuse_unchanged};
use lifeboat_backup::{IndexedRepository, Source, Written};
use nfs3_client::nfs3_types::nfs3::{fattr3, nfs_fh3, nfsstat3};

use super::client::Client;
use super::walk::{Listed, nanos, shown, walk};
use super::{AfterWalk, NfsBackupOptions, NfsError, NfsLocation, resolve_dir};

/// One directory of an NFS export as a backup source (see the module documentation).
pub struct NfsSource {
    location: NfsLocation,
    workers: usize,
    force_full: bool,
    after_walk: Option<AfterWalk>,
}

impl NfsSource {
    /// The source for `location`, with `options`' workers, `force_full` and hook.
    pub fn new(location: NfsLocation, options: &NfsBackupOptions) -> Self {
        Self {
            location,
            workers: if options.workers == 0 { 4 } else { options.workers },
            force_full: options.force_full,
            after_walk: options.after_walk.clone(),
        }
    }
}

impl Source for NfsSource {
    type Error = NfsError;

    /// `nfs:server:/export/path` ([`NfsLocation::source_id`]).
    fn source_id(&self) -> String {
        self.location.source_id()
    }

    fn purpose(&self) -> &'static str {
        "nfs backup"
    }

    /// The newest files snapshot of the same source id, from any host.
    async fn parent(&self, repo: &IndexedRepository) -> Result<Option<Snapshot>, NfsError> {
        let source = self.source_id();
        Ok(repo
            .snapshots()
            .await?
            .into_iter()
            .rfind(|s| matches!(s.details, SnapshotDetails::Files(_)) && s.source == source))
    }

    async fn write(&mut self, writer: &Writer<'_>) -> Result<Written, NfsError> {
        let loc = &self.location;
        let mut first = Client::connect(&loc.server, &loc.export).await?;
        let top = resolve_dir(&mut first, loc, false).await?;
        let Listed {
            mut nodes,
            handles,
            mut skipped,
        } = walk(&mut first, top).await?;
        if let Some(hook) = &self.after_walk {
            hook(&nodes);
        }

        let mut reused = vec![false; nodes.len()];
        if !self.force_full
            && let Some(old) = writer.parent_tree().await?
        {
            reused = reuse_unchanged(&mut nodes, &old, |c| writer.is_indexed(c));
        }
        let (to_read, same_inode) = files_to_read(&nodes, &reused);
        let progress = writer.progress().clone();
        progress.add_total(to_read.iter().map(|&i| nodes[i].size).sum(), to_read.len() as u64);

        let queue: Mutex<VecDeque<usize>> = Mutex::new(to_read.iter().copied().collect());
        let results: Mutex<Vec<(usize, Result<ReadFile, String>)>> = Mutex::new(Vec::new());
        let mut clients = vec![first];
        for _ in 1..self.workers.min(to_read.len()).max(1) {
            clients.push(Client::connect(&loc.server, &loc.export).await?);
        }
        let (nodes_ref, handles_ref) = (&nodes, &handles);
        let run = clients.into_iter().map(|mut client| {
            let (queue, results, progress) = (&queue, &results, &progress);
            async move {
                let mut sink = Some(writer.sink());
                let mut outcome = Ok(());
                loop {
                    let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
                    let Some(i) = next else { break };
                    let node = &nodes_ref[i];
                    match read_file(&mut client, writer, &mut sink, &handles_ref[i], node, progress).await {
                        Ok(r) => results.lock().unwrap_or_else(|p| p.into_inner()).push((i, r)),
                        Err(e) => {
                            // Stop the other workers too: the connection or the store failed.
                            queue.lock().unwrap_or_else(|p| p.into_inner()).clear();
                            outcome = Err(e);
                            break;
                        }
                    }
                }
                client.close().await;
                if let Some(sink) = sink.take() {
                    let finished = tokio::task::spawn_blocking(move || sink.finish())
                        .await
                        .map_err(|e| RepoError::Task(e.to_string()))
                        .and_then(|r| r);
                    outcome = outcome.and(finished.map_err(NfsError::from));
                }
                outcome
            }
        });
        for done in futures::future::join_all(run).await {
            done?;
        }

        let mut warnings = Vec::new();
        let mut failed = vec![false; nodes.len()];
        for (i, result) in results.into_inner().unwrap_or_else(|p| p.into_inner()) {
            match result {
                Ok(read) => {
                    nodes[i].chunks = read.chunks;
                    nodes[i].size = read.size;
                    warnings.extend(read.warning);
                }
                Err(error) => {
                    skipped.push(SkippedPath {
                        path: shown(nodes[i].path_bytes()),
                        error,
                    });
                    failed[i] = true;
                }
            }
        }
        for (other, first) in same_inode {
            if failed[first] {
                failed[other] = true;
                skipped.push(SkippedPath {
                    path: shown(nodes[other].path_bytes()),
                    error: format!(
                        "a hard link to {}, which could not be read",
                        shown(nodes[first].path_bytes())
                    ),
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
            ..Summary::of_tree(&nodes)
        };
        Ok(Written {
            nodes,
            details: SnapshotDetails::Files(Default::default()),
            paths: vec![loc.display()],
            summary,
        })
    }
}

/// A file's content as stored.
struct ReadFile {
    chunks: Vec<BlobId>,
    /// Bytes read (to the end of the file, whatever its size said).
    size: u64,
    /// Set when the file changed while it was read.
    warning: Option<String>,
}

/// Files up to this size (one READ) are read whole into memory and chunked in one go on the
/// worker's own blob writer, which saves a chunker and its threads per small file; larger
/// ones (and files that grow past it while read) stream through the engine's chunker, which
/// compresses and encrypts on several threads. The chunks are the same either way.
const WHOLE_FILE_LIMIT: usize = 1024 * 1024;

/// Reads one file to its end into the chunker. `Ok(Err(why))`: the file is left out (it
/// vanished, or the server refused the read); `Err`: the connection or the store failed.
/// `sink` is the worker's blob writer for files read whole (`None` only after a failure).
async fn read_file(
    client: &mut Client,
    writer: &Writer<'_>,
    sink: &mut Option<BlobSink>,
    fh: &nfs_fh3,
    node: &Node,
    progress: &lifeboat_backup::progress::Progress,
) -> Result<Result<ReadFile, String>, NfsError> {
    let path = shown(node.path_bytes());
    let mut whole: Option<Vec<u8>> = (node.size as usize <= WHOLE_FILE_LIMIT).then(Vec::new);
    let mut upload = None;
    let mut offset = 0u64;
    let mut last_attr: Option<fattr3> = None;
    let refused = loop {
        let (data, eof, attr) = match client.read(fh, offset, client.read_size, &path).await {
            Ok(Ok(read)) => read,
            Ok(Err(status)) => break Some(status),
            Err(e) => {
                if let Some(u) = upload {
                    let _ = StreamUpload::finish(u).await;
                }
                return Err(e);
            }
        };
        last_attr = attr.or(last_attr);
        let len = data.len() as u64;
        offset += len;
        progress.add_done(len, 0);
        match &mut whole {
            Some(buf) if buf.len() + data.len() <= WHOLE_FILE_LIMIT => buf.extend_from_slice(&data),
            _ => {
                let u = upload.get_or_insert_with(|| writer.stream(writer.chunker()));
                if let Some(buf) = whole.take().filter(|b| !b.is_empty())
                    && !u.send(Bytes::from(buf)).await
                {
                    break None; // the writer stopped; `finish` says why
                }
                if len > 0 && !u.send(Bytes::from(data)).await {
                    break None;
                }
            }
        }
        if eof || len == 0 {
            break None;
        }
    };
    // The chunks of a file left out stay indexed for a later backup, or go with `prune`.
    let (chunks, size) = match upload {
        Some(u) => {
            let stored = u.finish().await?;
            (stored.chunks, stored.size)
        }
        None if refused.is_some() => (Vec::new(), 0),
        None => {
            let buf = whole.unwrap_or_default();
            let size = buf.len() as u64;
            let Some(mut blobs) = sink.take() else {
                return Err(RepoError::Task("the blob writer failed earlier".to_string()).into());
            };
            let params = writer.chunker();
            let (blobs, put) = tokio::task::spawn_blocking(move || {
                let put = blobs.put_chunked(&buf, params);
                (blobs, put)
            })
            .await
            .map_err(|e| RepoError::Task(e.to_string()))?;
            *sink = Some(blobs);
            (put?, size)
        }
    };
    if let Some(status) = refused {
        return Ok(Err(why_unread(status)));
    }
    progress.add_done(0, 1);
    let warning = last_attr.and_then(|after| changed_while_read(node, &after)).map(|what| {
        format!(
            "{path}: changed while it was read ({what}); the saved content may mix old and new data: back it up again once it is quiet"
        )
    });
    Ok(Ok(ReadFile {
        chunks,
        size,
        warning,
    }))
}

/// Why a file could not be read, from the server's status.
fn why_unread(status: nfsstat3) -> String {
    match status {
        nfsstat3::NFS3ERR_NOENT | nfsstat3::NFS3ERR_STALE => {
            format!("vanished after it was listed ({status})")
        }
        nfsstat3::NFS3ERR_ACCES | nfsstat3::NFS3ERR_PERM => format!(
            "permission denied ({status}); an export with root squashing lets the backup read only what everyone may"
        ),
        other => format!("read failed: {other}"),
    }
}

/// How a file's attributes after the read differ from the listing's, if they do.
fn changed_while_read(node: &Node, after: &fattr3) -> Option<String> {
    if after.size != node.size {
        Some(format!("size {} became {}", node.size, after.size))
    } else if nanos(after.mtime) != node.mtime_ns {
        Some("its modification time changed".to_string())
    } else if nanos(after.ctime) != node.ctime_ns {
        Some("its status change time changed".to_string())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use lifeboat_backup::snapshot::NodeKind;

    use super::*;

    fn file(path: &str, size: u64, mtime: i128, inode: u64) -> Node {
        let mut n = Node::with_path(path.as_bytes(), NodeKind::File);
        (n.size, n.mtime_ns, n.ctime_ns, n.inode) = (size, mtime, mtime, inode);
        n
    }

    /// A file is reused only when size, mtime, ctime and fileid all match, and its chunks
    /// are still indexed.
    #[test]
    fn only_unchanged_indexed_files_are_reused() {
        let chunk = BlobId::of(b"chunk");
        let mut old = vec![
            file("a", 3, 10, 1),
            file("b", 3, 10, 2),
            file("c", 3, 10, 3),
            file("d", 3, 10, 4),
        ];
        for n in &mut old {
            n.chunks = vec![chunk];
        }
        let mut now = vec![
            file("a", 3, 10, 1),
            file("b", 4, 10, 2),
            file("c", 3, 11, 3),
            file("d", 3, 10, 5),
            file("e", 3, 10, 6),
        ];
        let reused = reuse_unchanged(&mut now, &old, |_| true);
        assert_eq!(reused, vec![true, false, false, false, false]);
        assert_eq!(now[0].chunks, vec![chunk]);
        let mut again = vec![file("a", 3, 10, 1)];
        assert_eq!(reuse_unchanged(&mut again, &old, |_| false), vec![false]);
    }

    #[test]
    fn vanished_and_refused_files_say_why() {
        assert!(why_unread(nfsstat3::NFS3ERR_STALE).contains("vanished"));
        assert!(why_unread(nfsstat3::NFS3ERR_NOENT).contains("vanished"));
        assert!(why_unread(nfsstat3::NFS3ERR_ACCES).contains("permission denied"));
    }
}
