//! Restoring etcd to a point after its full snapshot: the full snapshot is restored into a
//! private etcd on loopback, the chain's deltas are replayed into it revision by revision up
//! to the chosen point, and that etcd's own snapshot becomes the output database.
//!
//! Needs the `etcd` and `etcdctl` binaries (3.4+) on `PATH` of the machine that restores.
//! Replayed changes get new revision numbers in the rebuilt database (as with any
//! etcd-level replay); the data at the chosen point is what is restored.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use etcd_client::{Client, Txn, TxnOp};
use lifeboat_backup::snapshot::Snapshot;
use lifeboat_backup::{Repository, Sink, SnapshotReader};

use crate::chain::{RestorePlan, chain, plan_restore};
use crate::delta::DeltaEvent;
use crate::output::DbOutput;
use crate::restore::{DatabaseFile, db_node, restore_etcd};
use crate::{DELTA_PATH, EtcdError};

/// Where to restore to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestorePoint {
    /// Exactly the chosen snapshot (a full one, or a delta with everything before it).
    Snapshot,
    /// The newest delta of the chosen snapshot's chain.
    Latest,
    /// A revision between the full snapshot and the newest delta.
    Revision(i64),
}

/// What a restore produced.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EtcdRestoreSummary {
    /// The source revision the database reflects.
    pub revision: i64,
    /// Deltas replayed on top of the full snapshot.
    pub deltas: usize,
    /// Changes (revisions) replayed.
    pub revisions_replayed: usize,
    /// Size of the database written.
    pub bytes: u64,
}

/// Restores etcd as of `point` (relative to `snapshot`'s chain) into `output`: the plan comes
/// from [`plan_restore`]; the full snapshot is restored as stored when no delta is needed,
/// otherwise into a private etcd that replays the deltas, all under one lock. Refuses to
/// replace an existing `output` unless `force`.
pub async fn restore_etcd_at(
    repo: &Repository,
    snapshot: &Snapshot,
    point: RestorePoint,
    output: &Path,
    force: bool,
) -> Result<EtcdRestoreSummary, EtcdError> {
    DatabaseFile::check_output(output, force)?;
    let all = repo.snapshots().await?;
    let (base, deltas) = chain(&all, snapshot)?;
    let plan = plan_restore(snapshot, &base, &deltas, point)?;
    if plan.deltas.is_empty() {
        let bytes = restore_etcd(repo, &base, output, force).await?;
        return Ok(EtcdRestoreSummary {
            revision: plan.full_revision,
            deltas: 0,
            revisions_replayed: 0,
            bytes,
        });
    }
    let needed: Vec<Snapshot> = deltas
        .into_iter()
        .filter(|d| d.id.is_some_and(|id| plan.deltas.contains(&id)))
        .collect();
    let sink = Replay {
        plan,
        deltas: needed,
        output,
    };
    repo.restore(&base, sink).await
}

/// The full snapshot restored into a private etcd, with the plan's deltas replayed on top.
struct Replay<'a> {
    plan: RestorePlan,
    deltas: Vec<Snapshot>,
    output: &'a Path,
}

impl Sink for Replay<'_> {
    type Output = EtcdRestoreSummary;
    type Error = EtcdError;

    fn purpose(&self) -> &'static str {
        "etcd restore"
    }

    fn accepts(&self, _base: &Snapshot) -> Result<(), EtcdError> {
        Ok(())
    }

    async fn restore(self, reader: &SnapshotReader<'_>) -> Result<EtcdRestoreSummary, EtcdError> {
        let work = tempfile::Builder::new()
            .prefix("lifeboat-etcd-replay-")
            .tempdir()
            .map_err(|e| EtcdError::io(Path::new("/tmp"), e))?;
        let base_db = work.path().join("base.db");
        {
            let id = reader.snapshot().id.map(|i| i.to_hex()).unwrap_or_default();
            let db = DbOutput::new(&base_db)?;
            reader.read_to(db_node(reader, &id).await?, db.file()).await?;
            db.publish(format!("the database of snapshot {id}")).await?;
        }
        let mut etcd = ReplayEtcd::start(work.path(), &base_db).await?;
        let mut client = etcd.client().await?;

        let repo = reader.repository();
        let mut replayed = 0usize;
        for delta in &self.deltas {
            let id = delta.id.map(|i| i.to_hex()).unwrap_or_default();
            let nodes = repo.tree(delta).await?;
            let node =
                nodes
                    .iter()
                    .find(|n| n.path == DELTA_PATH)
                    .ok_or_else(|| EtcdError::CorruptDelta {
                        delta: id.clone(),
                        problem: format!("has no {DELTA_PATH}"),
                    })?;
            let listing = repo.reader().read_stream(&node.chunks).await?;
            let events = DeltaEvent::parse_listing(&listing, &id)?;
            // One transaction per source revision keeps multi-key transactions atomic.
            for group in events.chunk_by(|a, b| a.rev == b.rev) {
                let rev = group[0].rev;
                if rev <= self.plan.full_revision {
                    continue;
                }
                if rev > self.plan.revision {
                    break;
                }
                let mut ops = Vec::with_capacity(group.len());
                for e in group {
                    // `parse_listing` decoded every key and value already.
                    let bad = |e: base64::DecodeError| EtcdError::CorruptDelta {
                        delta: id.clone(),
                        problem: e.to_string(),
                    };
                    let key = e.key_bytes().map_err(bad)?;
                    ops.push(if e.put {
                        TxnOp::put(key, e.value_bytes().map_err(bad)?, None)
                    } else {
                        TxnOp::delete(key, None)
                    });
                }
                client
                    .txn(Txn::new().and_then(ops))
                    .await
                    .map_err(|e| EtcdError::replay(format!("replay revision {rev}"), e))?;
                replayed += 1;
            }
        }

        let mut stream = client
            .snapshot()
            .await
            .map_err(|e| EtcdError::replay("snapshot of the rebuilt etcd", e))?;
        // Streamed to a temporary file beside the output: memory stays small however large the
        // database.
        let mut db = DbOutput::new(self.output)?;
        while let Some(chunk) = stream
            .message()
            .await
            .map_err(|e| EtcdError::replay("snapshot of the rebuilt etcd", e))?
        {
            db.append(chunk.blob())?;
        }
        etcd.stop().await;
        let bytes = db.publish("the rebuilt etcd database".to_string()).await?;
        Ok(EtcdRestoreSummary {
            revision: self.plan.revision,
            deltas: self.deltas.len(),
            revisions_replayed: replayed,
            bytes,
        })
    }
}

/// A private single-member etcd on loopback, killed when dropped.
struct ReplayEtcd {
    child: tokio::process::Child,
    client_url: String,
}

fn free_port() -> Result<u16, EtcdError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| EtcdError::replay("find a free loopback port", e))
}

impl ReplayEtcd {
    async fn start(dir: &Path, db: &Path) -> Result<Self, EtcdError> {
        let peer = format!("http://127.0.0.1:{}", free_port()?);
        let client_url = format!("http://127.0.0.1:{}", free_port()?);
        let data = dir.join("data");
        let missing = |tool: &'static str, e: std::io::Error| EtcdError::ToolMissing {
            tool,
            message: e.to_string(),
        };
        let out = tokio::process::Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg("snapshot")
            .arg("restore")
            .arg(db)
            .arg(format!("--data-dir={}", data.display()))
            .args([
                "--name=replay",
                &format!("--initial-cluster=replay={peer}"),
                &format!("--initial-advertise-peer-urls={peer}"),
            ])
            .output()
            .await
            .map_err(|e| missing("etcdctl", e))?;
        if !out.status.success() {
            return Err(EtcdError::replay(
                "etcdctl snapshot restore",
                String::from_utf8_lossy(&out.stderr).trim(),
            ));
        }
        let child = tokio::process::Command::new("etcd")
            .arg("--name=replay")
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=replay={peer}"))
            .arg("--log-level=error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| missing("etcd", e))?;
        Ok(Self { child, client_url })
    }

    async fn client(&mut self) -> Result<Client, EtcdError> {
        let started = Instant::now();
        loop {
            if let Ok(mut c) = Client::connect([self.client_url.as_str()], None).await
                && c.status().await.is_ok()
            {
                return Ok(c);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(EtcdError::replay("start", format!("etcd exited ({status})")));
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err(EtcdError::replay("start", "etcd did not answer within 30 s"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }
}
