//! `drctl etcd …`

use std::sync::Arc;

use anyhow::{Result, bail};
use lifeboat_backup::progress::Progress;
use lifeboat_backup::sources::etcd::{EtcdEndpoints, EtcdTlsFiles, restore_etcd, snapshot_etcd};

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
        } => {
            let tls = match (cacert, cert, key) {
                (Some(ca), cert, key) => Some(EtcdTlsFiles { ca, cert, key }),
                (None, None, None) => None,
                (None, _, _) => bail!("--cert and --key need --cacert to verify the etcd server"),
            };
            let r = open::repository(&repo, &repo_key).await?;
            let progress = Arc::new(Progress::default());
            let bar = Bar::start(&progress, "etcd snapshot", g.quiet);
            let snap = snapshot_etcd(
                &r,
                &EtcdEndpoints { urls: endpoints, tls },
                tags.into_iter().collect(),
                progress,
            )
            .await?;
            drop(bar);
            let s = &snap.summary;
            eprintln!(
                "etcd snapshot of {} at revision {}: {}, {} new, {} stored in {:.1}s",
                snap.meta.get("endpoint").map_or("?", String::as_str),
                snap.meta.get("revision").map_or("?", String::as_str),
                bytes(s.bytes),
                bytes(s.new_bytes),
                bytes(s.stored_bytes),
                s.duration_ms as f64 / 1000.0
            );
            let id = snap.id.map(|i| i.to_hex()).unwrap_or_default();
            output::print(g.format, &snap, |_| format!("{id}\n"))?;
            Ok(0)
        }
        EtcdCommand::Snapshots { repo, repo_key } => {
            let r = open::repository(&repo, &repo_key).await?;
            let snaps: Vec<_> = r
                .snapshots()
                .await?
                .into_iter()
                .filter(|s| s.kind == "etcd")
                .collect();
            let rows: Vec<serde_json::Value> = snaps
                .iter()
                .map(|s| {
                    let mut v = serde_json::to_value(s).unwrap_or_default();
                    v["id"] = serde_json::Value::String(s.id.map(|i| i.to_hex()).unwrap_or_default());
                    v
                })
                .collect();
            output::print(g.format, &rows, |_| {
                let cells: Vec<Vec<String>> = snaps
                    .iter()
                    .map(|s| {
                        let meta = |k: &str| s.meta.get(k).cloned().unwrap_or_default();
                        vec![
                            s.id.map(|i| i.short()).unwrap_or_default(),
                            s.time.format("%Y-%m-%d %H:%M:%S").to_string(),
                            meta("type"),
                            meta("cluster_id"),
                            meta("revision"),
                            bytes(s.summary.bytes),
                            meta("endpoint"),
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
            output: out,
            force,
        } => {
            let r = open::repository(&repo, &repo_key).await?;
            let snap = if snapshot == "latest" {
                r.snapshots()
                    .await?
                    .into_iter()
                    .rfind(|s| s.kind == "etcd")
                    .ok_or_else(|| anyhow::anyhow!("no etcd snapshot in {}", r.url()))?
            } else {
                r.find_snapshot(&snapshot).await?
            };
            let size = restore_etcd(&r, &snap, &out, force).await?;
            eprintln!(
                "wrote {} ({}, revision {}); restore it with `etcdutl snapshot restore {}` on each member",
                out.display(),
                bytes(size),
                snap.meta.get("revision").map_or("?", String::as_str),
                out.display()
            );
            Ok(0)
        }
    }
}
