//! Full snapshots: the maintenance API's stream, chunked straight into the repository.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use chrono::Utc;
use sha2::Digest;
use tokio::sync::mpsc;

use super::connect::{EtcdEndpoints, EtcdError};
use super::{DB_PATH, ETCD_CHUNKS};
use crate::progress::Progress;
use crate::repository::{LockKind, RepoError, Repository};
use crate::session::Session;
use crate::snapshot::{Node, Snapshot, Summary};

/// Why an etcd snapshot failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// etcd could not be reached or read.
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    /// The repository failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
}

/// Reads a channel of byte chunks as a blocking reader (the chunker is synchronous).
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.current = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

/// Takes a full snapshot of the etcd cluster behind `endpoints` into `repo`, verifying etcd's
/// SHA-256 trailer; the snapshot becomes visible only if the check passes.
pub async fn snapshot_etcd(
    repo: &Repository,
    endpoints: &EtcdEndpoints,
    tags: BTreeMap<String, String>,
    progress: Arc<Progress>,
) -> Result<Snapshot, SnapshotError> {
    let started = Instant::now();
    let time = Utc::now();
    let mut member = endpoints.healthy_member().await?;
    progress.add_total(u64::try_from(member.db_size).unwrap_or(0), 1);
    repo.while_locked(LockKind::Shared, "etcd snapshot", async {
        let index = Arc::new(repo.load_index().await?);
        let session = Session::start(repo, index);

        let (tx, rx) = mpsc::channel::<Bytes>(16);
        let writer = tokio::task::spawn_blocking(move || {
            let result = session.write_stream(
                ChannelReader {
                    rx,
                    current: Bytes::new(),
                },
                ETCD_CHUNKS,
            );
            (result, session)
        });

        let endpoint = member.endpoint.clone();
        let fail = |message: String| EtcdError::Snapshot {
            endpoint: endpoint.clone(),
            message,
        };
        let mut hasher = sha2::Sha256::new();
        let mut tail: Vec<u8> = Vec::with_capacity(64);
        let mut revision = member.revision;
        let streamed = async {
            let mut stream = member.client.snapshot().await.map_err(|e| fail(e.to_string()))?;
            while let Some(resp) = stream.message().await.map_err(|e| fail(e.to_string()))? {
                if let Some(h) = resp.header() {
                    revision = revision.max(h.revision());
                }
                let blob = resp.blob();
                // Everything but the final 32 bytes feeds the hash; those are the expected digest.
                tail.extend_from_slice(blob);
                if tail.len() > 32 {
                    let cut = tail.len() - 32;
                    hasher.update(&tail[..cut]);
                    tail.drain(..cut);
                }
                progress.add_done(blob.len() as u64, 0);
                if tx.send(Bytes::copy_from_slice(blob)).await.is_err() {
                    break;
                }
            }
            Ok::<(), EtcdError>(())
        }
        .await;
        drop(tx);
        let (written, session) = writer.await.map_err(|e| RepoError::Task(e.to_string()))?;
        async {
            streamed?;
            let (chunks, size) = written?;
            if tail.len() != 32 || hasher.finalize().as_slice() != tail.as_slice() {
                return Err(EtcdError::Integrity {
                    endpoint: member.endpoint.clone(),
                }
                .into());
            }
            let node = Node::stream(DB_PATH, size, chunks, time);
            let (tree, session) = tokio::task::spawn_blocking(move || (session.write_tree(&[node]), session))
                .await
                .map_err(|e| RepoError::Task(e.to_string()))?;
            let tree = tree?;
            let stats = session.finish().await?;
            let cluster = format!("{:016x}", member.cluster_id);
            let mut snapshot = Snapshot {
                id: None,
                time,
                hostname: crate::repository::hostname(),
                kind: "etcd".to_string(),
                source: format!("etcd:{cluster}"),
                paths: vec![member.endpoint.clone()],
                tags,
                meta: BTreeMap::from([
                    ("cluster_id".to_string(), cluster),
                    ("member_id".to_string(), format!("{:016x}", member.member_id)),
                    ("endpoint".to_string(), member.endpoint.clone()),
                    ("revision".to_string(), revision.to_string()),
                    ("type".to_string(), "full".to_string()),
                ]),
                parent: None,
                tree,
                summary: Summary {
                    files: 1,
                    bytes: size,
                    files_read: 1,
                    new_bytes: stats.new_bytes,
                    stored_bytes: stats.stored_bytes,
                    new_blobs: stats.new_blobs,
                    duration_ms: started.elapsed().as_millis() as u64,
                    ..Summary::default()
                },
            };
            snapshot.id = Some(repo.save_snapshot(&snapshot).await?);
            progress.add_done(0, 1);
            Ok::<Snapshot, SnapshotError>(snapshot)
        }
        .await
    })
    .await
}
