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

use super::delta::{DELTA_PATH, DeltaEvent};
use super::output::DbOutput;
use super::restore_etcd;
use crate::read::BlobReader;
use crate::repository::{RepoError, Repository};
use crate::snapshot::Snapshot;

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

fn meta_rev(s: &Snapshot, key: &str) -> i64 {
    s.meta.get(key).and_then(|r| r.parse().ok()).unwrap_or(0)
}

fn invalid(msg: String) -> RepoError {
    RepoError::InvalidOptions(msg)
}

/// The full snapshot and the delta chain that continues it, in order, checked for gaps.
pub async fn chain(repo: &Repository, snapshot: &Snapshot) -> Result<(Snapshot, Vec<Snapshot>), RepoError> {
    let all = repo.snapshots().await?;
    let id = snapshot.id.map(|i| i.to_hex()).unwrap_or_default();
    let base_id = match snapshot.meta.get("type").map(String::as_str) {
        Some("full") => id.clone(),
        Some("delta") => snapshot.meta.get("base").cloned().unwrap_or_default(),
        _ => {
            return Err(invalid(format!(
                "snapshot {id} is not an etcd snapshot; list them with `drctl etcd snapshots`"
            )));
        }
    };
    let base = all
        .iter()
        .find(|s| s.id.is_some_and(|i| i.to_hex() == base_id))
        .cloned()
        .ok_or_else(|| RepoError::Corrupt {
            object: format!("etcd delta {id}"),
            message: format!("its full snapshot {base_id} is missing; restore needs it"),
        })?;
    let mut deltas: Vec<Snapshot> = all
        .into_iter()
        .filter(|s| s.meta.get("base") == Some(&base_id))
        .collect();
    deltas.sort_by_key(|s| meta_rev(s, "first_revision"));
    let mut previous = base.id;
    for d in &deltas {
        if d.parent != previous {
            return Err(RepoError::Corrupt {
                object: format!("etcd delta {}", d.id.map(|i| i.to_hex()).unwrap_or_default()),
                message:
                    "the delta chain has a gap before it (a delta is missing); restore to an earlier point"
                        .to_string(),
            });
        }
        previous = d.id;
    }
    Ok((base, deltas))
}

/// Restores etcd as of `point` (relative to `snapshot`'s chain) into `output`.
pub async fn restore_etcd_at(
    repo: &Repository,
    snapshot: &Snapshot,
    point: RestorePoint,
    output: &Path,
    force: bool,
) -> Result<EtcdRestoreSummary, RepoError> {
    if output.exists() && !force {
        return Err(invalid(format!(
            "{} already exists; pass --force to replace it",
            output.display()
        )));
    }
    let (base, deltas) = chain(repo, snapshot).await?;
    let base_rev = meta_rev(&base, "revision");
    let latest = deltas.last().map_or(base_rev, |d| meta_rev(d, "last_revision"));
    let target = match point {
        RestorePoint::Snapshot if snapshot.meta.get("type").map(String::as_str) == Some("delta") => {
            meta_rev(snapshot, "last_revision")
        }
        RestorePoint::Snapshot => base_rev,
        RestorePoint::Latest => latest,
        RestorePoint::Revision(r) if r < base_rev => {
            return Err(invalid(format!(
                "revision {r} is before this chain's full snapshot (revision {base_rev}); pick an older full snapshot"
            )));
        }
        RestorePoint::Revision(r) if r > latest => {
            return Err(invalid(format!(
                "revision {r} is after the newest delta (revision {latest}); the latest point is {latest}"
            )));
        }
        RestorePoint::Revision(r) => r,
    };
    let needed: Vec<&Snapshot> = deltas
        .iter()
        .filter(|d| meta_rev(d, "first_revision") <= target)
        .collect();
    if needed.is_empty() {
        let bytes = restore_etcd(repo, &base, output, force).await?;
        return Ok(EtcdRestoreSummary {
            revision: base_rev,
            deltas: 0,
            revisions_replayed: 0,
            bytes,
        });
    }

    let work = tempfile::Builder::new()
        .prefix("lifeboat-etcd-replay-")
        .tempdir()
        .map_err(|e| RepoError::io(Path::new("/tmp"), e))?;
    let base_db = work.path().join("base.db");
    restore_etcd(repo, &base, &base_db, true).await?;
    let mut etcd = ReplayEtcd::start(work.path(), &base_db).await?;
    let mut client = etcd.client().await?;

    let index = repo.load_index().await?;
    let reader = BlobReader::new(repo, &index);
    let mut replayed = 0usize;
    for delta in &needed {
        let nodes = reader.read_tree(&delta.tree).await?;
        let node = nodes
            .iter()
            .find(|n| n.path == DELTA_PATH)
            .ok_or_else(|| RepoError::Corrupt {
                object: format!("etcd delta {}", delta.id.map(|i| i.to_hex()).unwrap_or_default()),
                message: format!("has no {DELTA_PATH}"),
            })?;
        let listing = reader.read_stream(&node.chunks).await?;
        let events: Vec<DeltaEvent> = listing
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(serde_json::from_slice)
            .collect::<Result<_, _>>()
            .map_err(|e| RepoError::Corrupt {
                object: "etcd delta".to_string(),
                message: e.to_string(),
            })?;
        // One transaction per source revision keeps multi-key transactions atomic.
        for group in events.chunk_by(|a, b| a.rev == b.rev) {
            let rev = group[0].rev;
            if rev <= base_rev {
                continue;
            }
            if rev > target {
                break;
            }
            let ops: Vec<TxnOp> = group
                .iter()
                .map(|e| {
                    if e.put {
                        TxnOp::put(e.key_bytes(), e.value_bytes(), None)
                    } else {
                        TxnOp::delete(e.key_bytes(), None)
                    }
                })
                .collect();
            client.txn(Txn::new().and_then(ops)).await.map_err(|e| {
                RepoError::Task(format!("replaying revision {rev} into the private etcd: {e}"))
            })?;
            replayed += 1;
        }
    }

    let mut stream = client
        .snapshot()
        .await
        .map_err(|e| RepoError::Task(format!("snapshot of the rebuilt etcd: {e}")))?;
    // Streamed to a temporary file beside the output: memory stays small however large the
    // database.
    let mut db = DbOutput::new(output)?;
    while let Some(chunk) = stream
        .message()
        .await
        .map_err(|e| RepoError::Task(e.to_string()))?
    {
        db.append(chunk.blob())?;
    }
    etcd.stop().await;
    let bytes = db.publish("the rebuilt etcd database".to_string()).await?;
    Ok(EtcdRestoreSummary {
        revision: target,
        deltas: needed.len(),
        revisions_replayed: replayed,
        bytes,
    })
}

/// A private single-member etcd on loopback, killed when dropped.
struct ReplayEtcd {
    child: tokio::process::Child,
    client_url: String,
}

fn free_port() -> Result<u16, RepoError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| RepoError::Task(format!("no free loopback port: {e}")))
}

impl ReplayEtcd {
    async fn start(dir: &Path, db: &Path) -> Result<Self, RepoError> {
        let peer = format!("http://127.0.0.1:{}", free_port()?);
        let client_url = format!("http://127.0.0.1:{}", free_port()?);
        let data = dir.join("data");
        let missing = |tool: &str, e: std::io::Error| {
            RepoError::Task(format!(
                "cannot run {tool} ({e}); restoring to a point after a full snapshot needs the etcd and etcdctl binaries on PATH"
            ))
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
            return Err(RepoError::Task(format!(
                "etcdctl snapshot restore: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
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

    async fn client(&mut self) -> Result<Client, RepoError> {
        let started = Instant::now();
        loop {
            if let Ok(mut c) = Client::connect([self.client_url.as_str()], None).await
                && c.status().await.is_ok()
            {
                return Ok(c);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(RepoError::Task(format!(
                    "the private etcd for replay exited ({status})"
                )));
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err(RepoError::Task(
                    "the private etcd for replay did not start within 30 s".to_string(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }
}
