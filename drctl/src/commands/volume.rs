//! `drctl volume …`

use std::sync::Arc;

use anyhow::{Context, Result};
use lifeboat_backup::progress::Progress;
use lifeboat_backup::snapshot::SnapshotDetails;
use lifeboat_rbd::Cluster;
use lifeboat_volume::{RbdImageSink, VolumeBackupOptions, backup_volume, restore_volume};

use crate::cli::{CephArgs, GlobalArgs, VolumeCommand};
use crate::open;
use crate::output::{self, bytes};
use crate::progress::Bar;

pub async fn run(cmd: VolumeCommand, g: &GlobalArgs) -> Result<u8> {
    match cmd {
        VolumeCommand::Backup {
            repo,
            repo_key,
            ceph,
            pool,
            image,
            full,
            workers,
            tags,
        } => {
            let tags = crate::cli::pairs_to_map("--tag", &tags)?;
            let r = open::repository(&repo, &repo_key).await?;
            let cluster = connect(&ceph).await?;
            let progress = Arc::new(Progress::default());
            let bar = Bar::start(&progress, &format!("volume {pool}/{image}"), g.quiet);
            let done = backup_volume(
                &r,
                &cluster,
                &pool,
                &image,
                &VolumeBackupOptions {
                    tags,
                    progress,
                    workers,
                    force_full: full,
                    at: None,
                },
            )
            .await?;
            drop(bar);
            let snap = &done.snapshot;
            let s = &snap.summary;
            if let SnapshotDetails::Volume(v) = &snap.details {
                note!(
                    "volume {pool}/{image} ({}): {} read ({}), {} of data, {} new, {} stored in {:.1}s",
                    bytes(v.size),
                    v.read,
                    bytes(v.read_bytes),
                    bytes(s.bytes),
                    bytes(s.new_bytes),
                    bytes(s.stored_bytes),
                    s.duration_ms as f64 / 1000.0
                );
            }
            if let Some(why) = &done.full_reason {
                note!("full read: {why}");
            }
            for w in &done.warnings {
                note!("warning: {w}");
            }
            let id = snap.id.map(|i| i.to_hex()).unwrap_or_default();
            output::print(g.format, snap, |_| format!("{id}\n"))?;
            Ok(0)
        }
        VolumeCommand::Restore {
            repo,
            repo_key,
            ceph,
            snapshot,
            pool,
            image,
            force,
            workers,
        } => {
            let r = open::repository(&repo, &repo_key).await?;
            let snap = r.find_snapshot(&snapshot).await?;
            let cluster = connect(&ceph).await?;
            let progress = Arc::new(Progress::default());
            let bar = Bar::start(&progress, &format!("restore {pool}/{image}"), g.quiet);
            let sink = RbdImageSink {
                cluster,
                pool: pool.clone(),
                image: image.clone(),
                force,
                options: Default::default(),
                workers,
                progress,
            };
            let done = restore_volume(&r, &snap, sink).await?;
            drop(bar);
            note!(
                "restored {} into {pool}/{image}: {} image, {} written in {} extents (holes left unallocated)",
                snap.id.map(|i| i.short()).unwrap_or_default(),
                bytes(done.size),
                bytes(done.written),
                done.extents
            );
            output::print(
                g.format,
                &serde_json::json!({"pool": pool, "image": image, "size": done.size, "written": done.written, "extents": done.extents}),
                |_| format!("{pool}/{image}\n"),
            )?;
            Ok(0)
        }
    }
}

/// Connects with the `rbd` CLI's files; the key never leaves the keyring.
async fn connect(ceph: &CephArgs) -> Result<Cluster> {
    let (id, conf) = (ceph.ceph_id.clone(), ceph.ceph_conf.clone());
    tokio::task::spawn_blocking(move || Cluster::connect(&id, &conf))
        .await?
        .with_context(|| "connect to Ceph (check --ceph-conf and --ceph-id; the keyring ceph.conf names must hold the user's key)")
}
