//! Full snapshots: the maintenance API's stream, chunked straight into the repository and
//! checked against etcd's SHA-256 trailer before the snapshot may exist.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use lifeboat_backup::progress::Progress;
use lifeboat_backup::snapshot::{EtcdFull, Snapshot, SnapshotDetails, Summary};
use lifeboat_backup::{BackupOptions, Repository, Source, Written, archiver::Writer};
use sha2::Digest;

use crate::bolt::RevisionScanner;
use crate::connect::{EtcdEndpoints, Member};
use crate::{DB_PATH, ETCD_CHUNKS, EtcdError};

/// A full snapshot of one etcd cluster, streamed from its healthiest member (the leader when
/// it answers). Connect first ([`FullSnapshot::connect`]), then hand it to
/// [`Repository::backup`].
pub struct FullSnapshot {
    member: Member,
}

impl FullSnapshot {
    /// Picks the member to stream from; the error lists every endpoint with why it was
    /// unusable.
    pub async fn connect(endpoints: &EtcdEndpoints) -> Result<Self, EtcdError> {
        Ok(Self {
            member: endpoints.healthy_member().await?,
        })
    }

    /// The cluster id, 16 hex digits.
    pub fn cluster_id(&self) -> String {
        format!("{:016x}", self.member.cluster_id)
    }
}

impl FullSnapshot {
    /// The revision the streamed database holds, read from its pages; checked to lie between
    /// the revisions etcd's status answered before and after the stream. Where it cannot be
    /// read (a database format this reader does not know), the revision before the stream,
    /// with a warning: the database may then hold a few revisions more than recorded.
    async fn revision(&mut self, scanner: &RevisionScanner) -> i64 {
        let before = self.member.revision;
        let status = self.member.client.status();
        let after = match tokio::time::timeout(std::time::Duration::from_secs(5), status).await {
            Ok(Ok(s)) => s.header().map_or(i64::MAX, |h| h.revision()),
            _ => i64::MAX,
        };
        match scanner.revision() {
            Ok(r) if (before..=after).contains(&r) => r,
            Ok(r) => {
                tracing::warn!(
                    endpoint = self.member.endpoint,
                    read = r,
                    before,
                    after,
                    "the revision read from the etcd snapshot lies outside what etcd answered \
                     around it; recording the revision before the snapshot"
                );
                before
            }
            Err(e) => {
                tracing::warn!(
                    endpoint = self.member.endpoint,
                    before,
                    "{e}; recording the revision before the snapshot, which the database may \
                     exceed by the writes made while it was streamed"
                );
                before
            }
        }
    }
}

impl Source for FullSnapshot {
    type Error = EtcdError;

    fn source_id(&self) -> String {
        format!("etcd:{}", self.cluster_id())
    }

    fn purpose(&self) -> &'static str {
        "etcd snapshot"
    }

    async fn write(&mut self, writer: &Writer<'_>) -> Result<Written, EtcdError> {
        let progress = writer.progress();
        progress.add_total(u64::try_from(self.member.db_size).unwrap_or(0), 1);
        let endpoint = self.member.endpoint.clone();
        let fail = |message: String| EtcdError::Snapshot {
            endpoint: endpoint.clone(),
            message,
        };
        let mut upload = writer.stream(ETCD_CHUNKS);
        let mut hasher = sha2::Sha256::new();
        let mut tail: Vec<u8> = Vec::with_capacity(64);
        let mut scanner = RevisionScanner::new();
        let streamed = async {
            let mut stream = self
                .member
                .client
                .snapshot()
                .await
                .map_err(|e| fail(e.to_string()))?;
            while let Some(resp) = stream.message().await.map_err(|e| fail(e.to_string()))? {
                let blob = resp.blob();
                scanner.feed(blob);
                // Everything but the final 32 bytes feeds the hash; those are the expected digest.
                tail.extend_from_slice(blob);
                if tail.len() > 32 {
                    let cut = tail.len() - 32;
                    hasher.update(&tail[..cut]);
                    tail.drain(..cut);
                }
                progress.add_done(blob.len() as u64, 0);
                if !upload.send(Bytes::copy_from_slice(blob)).await {
                    break; // the store failed; `finish` says why
                }
            }
            Ok::<(), EtcdError>(())
        }
        .await;
        let stored = upload.finish().await;
        streamed?;
        let stored = stored?;
        if tail.len() != 32 || hasher.finalize().as_slice() != tail.as_slice() {
            return Err(EtcdError::Integrity { endpoint });
        }
        let revision = self.revision(&scanner).await;
        let size = stored.size;
        progress.add_done(0, 1);
        Ok(Written {
            nodes: vec![stored.node(DB_PATH, writer.time())],
            details: SnapshotDetails::EtcdFull(EtcdFull {
                cluster_id: self.cluster_id(),
                member_id: format!("{:016x}", self.member.member_id),
                endpoint: endpoint.clone(),
                revision,
            }),
            paths: vec![endpoint],
            summary: Summary {
                files: 1,
                bytes: size,
                files_read: 1,
                ..Summary::default()
            },
        })
    }
}

/// Takes a full snapshot of the etcd cluster behind `endpoints` into `repo`, verifying etcd's
/// SHA-256 trailer; the snapshot becomes visible only if the check passes.
pub async fn snapshot_etcd(
    repo: &Repository,
    endpoints: &EtcdEndpoints,
    tags: BTreeMap<String, String>,
    progress: Arc<Progress>,
) -> Result<Snapshot, EtcdError> {
    let mut source = FullSnapshot::connect(endpoints).await?;
    repo.backup(
        &mut source,
        &BackupOptions {
            tags,
            host: None,
            progress,
        },
    )
    .await
}
