//! Streaming deltas: a watch from the revision after the chain's newest link, cut into a
//! delta every few seconds (the recovery point) or every few MiB. A gap (the next revision
//! was compacted away) restarts the chain from a new full snapshot.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{EventType, WatchOptions};
use lifeboat_backup::blob::SnapshotId;
use lifeboat_backup::progress::Progress;
use lifeboat_backup::snapshot::Snapshot;
use lifeboat_backup::{BackupOptions, Repository};
use tokio::sync::watch as signal;

use crate::connect::EtcdEndpoints;
use crate::delta::{DeltaBatch, DeltaEvent};
use crate::select::chain_head;
use crate::{EtcdError, snapshot_etcd};

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

/// The revision a snapshot of a chain ends at.
fn last_revision(s: &Snapshot) -> i64 {
    match &s.details {
        lifeboat_backup::snapshot::SnapshotDetails::EtcdFull(f) => f.revision,
        lifeboat_backup::snapshot::SnapshotDetails::EtcdDelta(d) => d.last_revision,
        _ => 0,
    }
}

/// Streams deltas after the newest full snapshot of the cluster (taking one first if there is
/// none), resuming after the newest stored delta, until `stop` becomes true or `max_deltas`.
/// Each delta is one [`Repository::backup`] of a [`DeltaBatch`].
pub async fn stream_deltas(
    repo: &Repository,
    endpoints: &EtcdEndpoints,
    options: &DeltaOptions,
    mut stop: signal::Receiver<bool>,
    progress: Arc<Progress>,
) -> Result<DeltaOutcome, EtcdError> {
    let mut member = endpoints.healthy_member().await?;
    let cluster = format!("{:016x}", member.cluster_id);
    let (full, mut head) = match chain_head(&repo.snapshots().await?, &cluster) {
        Some(found) => found,
        None => {
            let full = snapshot_etcd(repo, endpoints, BTreeMap::new(), progress.clone()).await?;
            (full.clone(), full)
        }
    };
    let mut last = last_revision(&head);

    let endpoint = member.endpoint.clone();
    let fail = |e: etcd_client::Error| EtcdError::Snapshot {
        endpoint: endpoint.clone(),
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
    // One delta: a backup of the batch, continuing the chain from `head`.
    let write = |head: Snapshot, events: Vec<DeltaEvent>| {
        let mut source = DeltaBatch {
            parent: head,
            base: full.clone(),
            cluster_id: cluster.clone(),
            events,
        };
        async move {
            let options = BackupOptions {
                tags: BTreeMap::new(),
                host: None,
                progress: Arc::new(Progress::default()),
            };
            repo.backup(&mut source, &options).await
        }
    };
    loop {
        let flush_now = tokio::select! {
            msg = stream.message() => {
                let Some(resp) = msg.map_err(fail)? else {
                    return Err(EtcdError::Snapshot { endpoint: endpoint.clone(), message: "watch stream ended".into() });
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
                    return Err(EtcdError::Snapshot { endpoint: endpoint.clone(), message: format!("watch canceled: {}", resp.cancel_reason()) });
                }
                for ev in resp.events() {
                    let Some(kv) = ev.kv() else { continue };
                    let put = ev.event_type() == EventType::Put;
                    batch_bytes += kv.key().len() + kv.value().len();
                    batch.push(DeltaEvent::new(kv.mod_revision(), put, kv.key(), kv.value()));
                }
                batch_bytes >= options.max_bytes
            }
            _ = ticker.tick() => true,
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    if !batch.is_empty() {
                        head = write(head, std::mem::take(&mut batch)).await?;
                        deltas += 1;
                        last = last_revision(&head);
                    }
                    return Ok(DeltaOutcome::Stopped { deltas, last_revision: last });
                }
                false
            }
        };
        if flush_now && !batch.is_empty() {
            head = write(head, std::mem::take(&mut batch)).await?;
            batch_bytes = 0;
            deltas += 1;
            last = last_revision(&head);
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

/// Streams deltas until `stop` fires, restarting the chain from a new full snapshot whenever
/// etcd compacted revisions the chain still needed; `on_restart` hears of each restart (a
/// front end reports it). Returns how the last stream ended ([`DeltaOutcome::Stopped`]).
pub async fn watch(
    repo: &Repository,
    endpoints: &EtcdEndpoints,
    options: &DeltaOptions,
    stop: signal::Receiver<bool>,
    progress: Arc<Progress>,
    mut on_restart: impl FnMut(i64, SnapshotId),
) -> Result<DeltaOutcome, EtcdError> {
    loop {
        match stream_deltas(repo, endpoints, options, stop.clone(), progress.clone()).await? {
            DeltaOutcome::NewFull {
                compact_revision,
                full,
            } => on_restart(compact_revision, full),
            stopped => return Ok(stopped),
        }
    }
}
