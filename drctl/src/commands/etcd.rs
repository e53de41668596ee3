//! `drctl etcd …`

use std::sync::Arc;

use anyhow::{Result, bail};
use lifeboat_backup::progress::Progress;
use lifeboat_backup::snapshot::{Snapshot, SnapshotDetails};
use lifeboat_etcd::{
    DeltaOptions, DeltaOutcome, EtcdEndpoints, EtcdTlsFiles, RestorePoint, etcd_snapshots, find_snapshot,
    restore_etcd_at, snapshot_etcd, watch,
};

use crate::cli::{EtcdCommand, GlobalArgs};
use crate::open;
use crate::output::{self, bytes, table};
use crate::progress::Bar;

pub async fn run(cmd: EtcdCommand, g: &GlobalArgs) -> Result<u8> {
    match cmd {
        EtcdCommand::Snapshot {
            repo,
            repo_key,
            endpoints,
            cacert,
            cert,
            key,
            tags,
            watch,
            interval,
            max_delta_mib,
        } => {
            let tls = match (cacert, cert, key) {
                (Some(ca), cert, key) => Some(EtcdTlsFiles { ca, cert, key }),
                (None, None, None) => None,
                (None, _, _) => bail!("--cert and --key need --cacert to verify the etcd server"),
            };
            let tags = crate::cli::pairs_to_map("--tag", &tags)?;
            let r = open::repository(&repo, &repo_key).await?;
            let progress = Arc::new(Progress::default());
            let bar = Bar::start(&progress, "etcd snapshot", g.quiet);
            let endpoints = EtcdEndpoints { urls: endpoints, tls };
            let snap = snapshot_etcd(&r, &endpoints, tags, progress).await?;
            drop(bar);
            let s = &snap.summary;
            let (endpoint, revision) = match &snap.details {
                SnapshotDetails::EtcdFull(f) => (f.endpoint.as_str(), f.revision.to_string()),
                _ => ("?", "?".to_string()),
            };
            note!(
                "etcd snapshot of {} at revision {}: {}, {} new, {} stored in {:.1}s",
                endpoint,
                revision,
                bytes(s.bytes),
                bytes(s.new_bytes),
                bytes(s.stored_bytes),
                s.duration_ms as f64 / 1000.0
            );
            let id = snap.id.map(|i| i.to_hex()).unwrap_or_default();
            output::print(g.format, &with_id(&snap), |_| format!("{id}\n"))?;
            if watch {
                return watch_deltas(&r, &endpoints, interval, max_delta_mib).await;
            }
            Ok(0)
        }
        EtcdCommand::Snapshots { repo, repo_key } => {
            let r = open::repository(&repo, &repo_key).await?;
            let snaps = etcd_snapshots(&r).await?;
            let rows: Vec<serde_json::Value> = snaps.iter().map(with_id).collect();
            output::print(g.format, &rows, |_| {
                let cells: Vec<Vec<String>> = snaps
                    .iter()
                    .map(|s| {
                        let (kind, cluster, revision, member) = match &s.details {
                            SnapshotDetails::EtcdFull(f) => {
                                ("full", f.cluster_id.clone(), f.revision, f.endpoint.clone())
                            }
                            SnapshotDetails::EtcdDelta(d) => {
                                ("delta", d.cluster_id.clone(), d.last_revision, String::new())
                            }
                            _ => ("?", String::new(), 0, String::new()),
                        };
                        vec![
                            s.id.map(|i| i.short()).unwrap_or_default(),
                            s.time.format("%Y-%m-%d %H:%M:%S").to_string(),
                            kind.to_string(),
                            cluster,
                            revision.to_string(),
                            bytes(s.summary.bytes),
                            member,
                        ]
                    })
                    .collect();
                table(
                    &["ID", "TIME", "TYPE", "CLUSTER", "REVISION", "SIZE", "MEMBER"],
                    &cells,
                )
            })?;
            Ok(0)
        }
        EtcdCommand::Restore {
            repo,
            repo_key,
            snapshot,
            to_revision,
            latest,
            output: out,
            force,
        } => {
            let r = open::repository(&repo, &repo_key).await?;
            let snap = find_snapshot(&r, &snapshot).await?;
            let point = match (to_revision, latest) {
                (Some(r), _) => RestorePoint::Revision(r),
                (None, true) => RestorePoint::Latest,
                (None, false) => RestorePoint::Snapshot,
            };
            let summary = restore_etcd_at(&r, &snap, point, &out, force).await?;
            note!(
                "wrote {} ({}, source revision {}, {} deltas replayed); restore it with `etcdctl snapshot restore {}` on each member (docs/etcd-recovery.md)",
                out.display(),
                bytes(summary.bytes),
                summary.revision,
                summary.deltas,
                out.display()
            );
            Ok(0)
        }
    }
}

/// Streams deltas until Ctrl-C or SIGTERM, then stores what was buffered and exits.
async fn watch_deltas(
    r: &lifeboat_backup::Repository,
    endpoints: &EtcdEndpoints,
    interval: u64,
    max_delta_mib: usize,
) -> Result<u8> {
    let options = DeltaOptions {
        interval: std::time::Duration::from_secs(interval.max(1)),
        max_bytes: max_delta_mib.max(1) << 20,
        max_deltas: None,
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    crate::COMMAND_HANDLES_SIGNALS.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let terminated = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminated => {}
        }
        let _ = stop.send(true);
    });
    note!("watching etcd; a delta is stored every {interval}s while changes arrive (Ctrl-C stops)");
    let restarted = |compact_revision: i64, full: lifeboat_backup::blob::SnapshotId| {
        note!(
            "etcd compacted revision {compact_revision} before the chain caught up: took a new full snapshot {} and continue from it",
            full.short()
        );
    };
    let outcome = watch(
        r,
        endpoints,
        &options,
        stopped,
        Arc::new(Progress::default()),
        restarted,
    )
    .await?;
    if let DeltaOutcome::Stopped {
        deltas,
        last_revision,
    } = outcome
    {
        note!("stopped: {deltas} deltas stored, up to revision {last_revision}");
    }
    Ok(0)
}

/// A snapshot as `-o json|yaml` shows it: its stored form, with its id.
fn with_id(snap: &Snapshot) -> serde_json::Value {
    let mut v = serde_json::to_value(snap).unwrap_or_default();
    v["id"] = serde_json::Value::String(snap.id.map(|i| i.to_hex()).unwrap_or_default());
    v
}
