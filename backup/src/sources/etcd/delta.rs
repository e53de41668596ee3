//! Delta snapshots: every change etcd makes after a full snapshot, captured by a watch and
//! stored every few seconds, so the recovery point is seconds old rather than hours.
//!
//! Each delta is an `etcd` snapshot with `meta.type = delta`, naming its full snapshot
//! (`meta.base`), the previous link of the chain (`parent`) and the revisions it covers. A gap
//! (the next revision was compacted away, or the chain cannot be continued) forces a new full
//! snapshot, and the outcome says so.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use chrono::Utc;
use etcd_client::{EventType, WatchOptions};
use tokio::sync::watch;

use super::ETCD_CHUNKS;
use super::connect::{EtcdEndpoints, EtcdError};
use super::snapshot::{SnapshotError, snapshot_etcd};
use crate::blob::SnapshotId;
use crate::progress::Progress;
use crate::repository::{LockKind, RepoError, Repository};
use crate::session::Session;
use crate::snapshot::{Node, Snapshot, Summary};

/// The tree path of a delta's event list.
pub const DELTA_PATH: &str = "etcd/delta.jsonl";

/// One change, as a JSON line: keys and values in base64.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeltaEvent {
    /// The revision that made the change.
    pub rev: i64,
    /// `true` for a put, `false` for a delete.
    pub put: bool,
    /// The key (base64).
    pub key: String,
    /// The new value (base64; empty for deletes).
    #[serde(default)]
    pub value: String,
}

impl DeltaEvent {
    /// The raw key.
    pub fn key_bytes(&self) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(&self.key)
            .unwrap_or_default()
    }

    /// The raw value.
    pub fn value_bytes(&self) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(&self.value)
            .unwrap_or_default()
    }
}

/// When to cut a delta and when to stop.
#[derive(Debug, Clone)]
pub struct DeltaOptions {
    /// Store a delta at least this often while changes arrive (the recovery point).
    pub interval: Duration,
    /// …or as soon as this many bytes of changes are buffered.
    pub max_bytes: usize,
    /// Stop after this many deltas (`None`: until `stop` fires).
    pub max_deltas: Option<usize>,
}

impl Default for DeltaOptions {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(10),
            max_bytes: 8 << 20,
            max_deltas: None,
        }
    }
}

/// How a delta stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeltaOutcome {
    /// Stopped on request (or after `max_deltas`); everything received was stored.
    Stopped {
        /// Deltas written in this run.
        deltas: usize,
        /// The last revision stored.
        last_revision: i64,
    },
    /// The chain could not continue (the next revision was compacted); a new full snapshot
    /// was taken to restart it.
    NewFull {
        /// etcd's compaction revision that caused the gap.
        compact_revision: i64,
        /// The new full snapshot.
        full: SnapshotId,
    },
}

/// The newest full snapshot of `cluster` and the newest link of its delta chain.
fn chain_head(snapshots: &[Snapshot], cluster: &str) -> Option<(Snapshot, Snapshot)> {
    let full = snapshots
        .iter()
        .filter(|s| s.kind == "etcd" && s.meta.get("type").map(String::as_str) == Some("full"))
        .rfind(|s| s.meta.get("cluster_id").map(String::as_str) == Some(cluster))?
        .clone();
    let base = full.id?.to_hex();
    let head = snapshots
        .iter()
        .filter(|s| s.meta.get("base") == Some(&base))
        .max_by_key(|s| s.meta.get("last_revision").and_then(|r| r.parse::<i64>().ok()))
        .cloned()
        .unwrap_or_else(|| full.clone());
    Some((full, head))
}

/// Streams deltas after the newest full snapshot of the cluster (taking one first if there is
/// none), resuming after the newest stored delta, until `stop` becomes true or `max_deltas`.
pub async fn stream_deltas(
    repo: &Repository,
    endpoints: &EtcdEndpoints,
    options: &DeltaOptions,
    mut stop: watch::Receiver<bool>,
    progress: Arc<Progress>,
) -> Result<DeltaOutcome, SnapshotError> {
    let mut member = endpoints.healthy_member().await?;
    let cluster = format!("{:016x}", member.cluster_id);
    let (full, mut head) = match chain_head(&repo.snapshots().await?, &cluster) {
        Some(found) => found,
        None => {
            let full = snapshot_etcd(repo, endpoints, BTreeMap::new(), progress.clone()).await?;
            (full.clone(), full)
        }
    };
    let rev_of = |s: &Snapshot, k: &str| s.meta.get(k).and_then(|r| r.parse::<i64>().ok()).unwrap_or(0);
    let mut last = rev_of(&head, "last_revision").max(rev_of(&head, "revision"));
    let base = full.id.map(|i| i.to_hex()).unwrap_or_default();

    let fail = |e: etcd_client::Error| EtcdError::Snapshot {
        endpoint: member.endpoint.clone(),
        message: format!("watch: {e}"),
    };
    let opts = WatchOptions::new()
        .with_all_keys()
        .with_start_revision(last + 1)
        .with_progress_notify();
    let mut stream = member.client.watch(vec![0u8], Some(opts)).await.map_err(fail)?;
    let mut batch: Vec<DeltaEvent> = Vec::new();
    let mut batch_bytes = 0usize;
    let mut deltas = 0usize;
    let mut ticker = tokio::time::interval(options.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let flush_now = tokio::select! {
            msg = stream.message() => {
                let Some(resp) = msg.map_err(fail)? else {
                    return Err(EtcdError::Snapshot { endpoint: member.endpoint.clone(), message: "watch stream ended".into() }.into());
                };
                if resp.canceled() {
                    if resp.compact_revision() > 0 {
                        // The revisions we need are gone: restart the chain with a full snapshot.
                        let full = snapshot_etcd(repo, endpoints, BTreeMap::new(), progress.clone()).await?;
                        return Ok(DeltaOutcome::NewFull {
                            compact_revision: resp.compact_revision(),
                            full: full.id.unwrap_or(SnapshotId::random()),
                        });
                    }
                    return Err(EtcdError::Snapshot { endpoint: member.endpoint.clone(), message: format!("watch canceled: {}", resp.cancel_reason()) }.into());
                }
                for ev in resp.events() {
                    let Some(kv) = ev.kv() else { continue };
                    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
                    let put = ev.event_type() == EventType::Put;
                    batch_bytes += kv.key().len() + kv.value().len();
                    batch.push(DeltaEvent { rev: kv.mod_revision(), put, key: b64(kv.key()), value: if put { b64(kv.value()) } else { String::new() } });
                }
                batch_bytes >= options.max_bytes
            }
            _ = ticker.tick() => true,
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    if !batch.is_empty() {
                        head = write_delta(repo, &head, &base, &cluster, std::mem::take(&mut batch)).await?;
                        deltas += 1;
                        last = rev_of(&head, "last_revision");
                    }
                    return Ok(DeltaOutcome::Stopped { deltas, last_revision: last });
                }
                false
            }
        };
        if flush_now && !batch.is_empty() {
            head = write_delta(repo, &head, &base, &cluster, std::mem::take(&mut batch)).await?;
            batch_bytes = 0;
            deltas += 1;
            last = rev_of(&head, "last_revision");
            progress.add_done(0, 1);
            if options.max_deltas.is_some_and(|m| deltas >= m) {
                return Ok(DeltaOutcome::Stopped {
                    deltas,
                    last_revision: last,
                });
            }
        }
    }
}

async fn write_delta(
    repo: &Repository,
    parent: &Snapshot,
    base: &str,
    cluster: &str,
    events: Vec<DeltaEvent>,
) -> Result<Snapshot, SnapshotError> {
    let started = Instant::now();
    let time = Utc::now();
    let first = events.first().map_or(0, |e| e.rev);
    let last = events.last().map_or(0, |e| e.rev);
    let mut listing = Vec::new();
    for e in &events {
        serde_json::to_writer(&mut listing, e).map_err(|e| RepoError::Task(e.to_string()))?;
        listing.push(b'\n');
    }
    repo.while_locked(LockKind::Shared, "etcd delta", async {
        let session = Session::start(repo, Arc::new(repo.load_index().await?));
        let size = listing.len() as u64;
        let (written, session) = tokio::task::spawn_blocking(move || {
            let written = session
                .write_stream(&listing[..], ETCD_CHUNKS)
                .and_then(|(chunks, _)| {
                    let node = Node::stream(DELTA_PATH, size, chunks, time);
                    session.write_tree(&[node])
                });
            (written, session)
        })
        .await
        .map_err(|e| RepoError::Task(e.to_string()))?;
        let tree = written?;
        let stats = session.finish().await?;
        let mut snap = Snapshot {
            id: None,
            time,
            hostname: crate::repository::hostname(),
            kind: "etcd".to_string(),
            source: format!("etcd:{cluster}"),
            paths: parent.paths.clone(),
            tags: BTreeMap::new(),
            meta: BTreeMap::from([
                ("type".to_string(), "delta".to_string()),
                ("cluster_id".to_string(), cluster.to_string()),
                ("base".to_string(), base.to_string()),
                ("first_revision".to_string(), first.to_string()),
                ("last_revision".to_string(), last.to_string()),
                ("revision".to_string(), last.to_string()),
                ("events".to_string(), events.len().to_string()),
            ]),
            parent: parent.id,
            tree,
            summary: Summary {
                files: 1,
                bytes: size,
                new_bytes: stats.new_bytes,
                stored_bytes: stats.stored_bytes,
                new_blobs: stats.new_blobs,
                duration_ms: started.elapsed().as_millis() as u64,
                ..Summary::default()
            },
        };
        snap.id = Some(repo.save_snapshot(&snap).await?);
        Ok::<_, SnapshotError>(snap)
    })
    .await
}
