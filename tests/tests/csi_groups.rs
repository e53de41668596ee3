//! Volume group snapshots through the CSI GroupController against the shared test Ceph:
//! several written volumes snapshotted at one instant, each member restored with CreateVolume
//! and compared byte for byte, idempotency by name, the errors csi-sanity checks, what members
//! forbid (deleting their volume or themselves alone), and a driver killed mid-create.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use lifeboat_csi::proto::volume_content_source::{SnapshotSource, Type as Src};
use lifeboat_csi::proto::*;
use lifeboat_tests::csi::{DriverOptions, RbdEnv, code, rbd_ls};
use tonic::Code;

const MIB: i64 = 1 << 20;

async fn env(prefix: &str) -> Result<RbdEnv> {
    let opts = DriverOptions {
        mode: "controller",
        ..Default::default()
    };
    let mut e = RbdEnv::start(env!("CARGO_BIN_EXE_csi-driver"), prefix, opts, |_| {}).await?;
    e.params.remove("imageFeatures");
    Ok(e)
}

/// A 16 MiB volume, restored from snapshot `source` when given.
fn volume_req(e: &RbdEnv, name: &str, source: Option<&str>) -> CreateVolumeRequest {
    CreateVolumeRequest {
        volume_content_source: source.map(|s| VolumeContentSource {
            r#type: Some(Src::Snapshot(SnapshotSource {
                snapshot_id: s.into(),
            })),
        }),
        ..e.create_req(name, 16 * MIB)
    }
}

fn group_req(e: &RbdEnv, name: &str, ids: &[String]) -> CreateVolumeGroupSnapshotRequest {
    CreateVolumeGroupSnapshotRequest {
        name: name.into(),
        source_volume_ids: ids.to_vec(),
        secrets: e.secrets.clone(),
        parameters: HashMap::new(),
    }
}

/// Data at three offsets of a volume, distinct per volume and per round.
fn pattern(volume: usize, round: u8) -> Vec<u8> {
    (0..(MIB as usize))
        .map(|i| ((i * 31 + volume * 7) as u8) ^ round)
        .collect()
}

fn write(pool: &str, image: &str, data: &[u8]) -> Result<()> {
    let cluster = lifeboat_tests::ceph()?.connect()?;
    let p = cluster.pool(pool)?;
    let mut img = p.open(image, None)?;
    for at in [0u64, 5, 13] {
        img.write_at(at * MIB as u64, data)?;
    }
    img.flush()?;
    Ok(())
}

fn read(pool: &str, image: &str) -> Result<Vec<u8>> {
    let cluster = lifeboat_tests::ceph()?.connect()?;
    let p = cluster.pool(pool)?;
    let img = p.open_read_only(image, None)?;
    let mut out = Vec::new();
    for at in [0u64, 5, 13] {
        let mut buf = vec![0u8; MIB as usize];
        img.read_at(at * MIB as u64, &mut buf)?;
        out.extend(buf);
    }
    Ok(out)
}

fn rbd_groups(pool: &str) -> Result<String> {
    let out = lifeboat_tests::ceph()?
        .rbd_cmd()
        .args(["group", "ls", pool])
        .output()?;
    ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test]
async fn group_snapshot_restores_each_volume_as_it_was() -> Result<()> {
    let e = env("csi-group").await?;
    let mut c = e.driver.clients().await?;
    let caps = c
        .group
        .group_controller_get_capabilities(GroupControllerGetCapabilitiesRequest {})
        .await?
        .into_inner();
    ensure!(caps.capabilities.len() == 1, "{caps:?}");

    let mut vols = Vec::new();
    for i in 0..3 {
        let v = c
            .controller
            .create_volume(volume_req(&e, &format!("member-{i}"), None))
            .await?
            .into_inner()
            .volume
            .context("v")?;
        write(&e.pool, &v.volume_context["imageName"], &pattern(i, 1))?;
        vols.push(v);
    }
    let ids: Vec<String> = vols.iter().map(|v| v.volume_id.clone()).collect();
    let group = c
        .group
        .create_volume_group_snapshot(group_req(&e, "nightly", &ids))
        .await
        .with_context(|| e.driver.log())?
        .into_inner()
        .group_snapshot
        .context("group")?;
    ensure!(group.ready_to_use && group.snapshots.len() == 3 && group.creation_time.is_some());
    ensure!(
        group
            .snapshots
            .iter()
            .all(|s| s.group_snapshot_id == group.group_snapshot_id && s.ready_to_use)
    );
    // Idempotent by name, in any order; the same name for other volumes is ALREADY_EXISTS.
    let mut reversed = ids.clone();
    reversed.reverse();
    let again = c
        .group
        .create_volume_group_snapshot(group_req(&e, "nightly", &reversed))
        .await?
        .into_inner()
        .group_snapshot
        .context("group")?;
    ensure!(again.group_snapshot_id == group.group_snapshot_id);
    let fewer = c
        .group
        .create_volume_group_snapshot(group_req(&e, "nightly", &ids[..2]))
        .await;
    ensure!(code(fewer) == Code::AlreadyExists);

    // After the snapshot every volume changes; restores show the data at the snapshot.
    for (i, v) in vols.iter().enumerate() {
        write(&e.pool, &v.volume_context["imageName"], &pattern(i, 2))?;
    }
    for (i, v) in vols.iter().enumerate() {
        let member = group
            .snapshots
            .iter()
            .find(|s| s.source_volume_id == v.volume_id)
            .context("member")?;
        let restored = c
            .controller
            .create_volume(volume_req(
                &e,
                &format!("restored-{i}"),
                Some(&member.snapshot_id),
            ))
            .await
            .with_context(|| e.driver.log())?
            .into_inner()
            .volume
            .context("restored")?;
        let want: Vec<u8> = (0..3).flat_map(|_| pattern(i, 1)).collect();
        ensure!(
            read(&e.pool, &restored.volume_context["imageName"])? == want,
            "member {i} restored other data"
        );
        c.controller
            .delete_volume(DeleteVolumeRequest {
                volume_id: restored.volume_id,
                secrets: e.secrets.clone(),
            })
            .await?;
    }

    // Members are listed, cannot be deleted alone, and keep their volumes.
    let listed = c
        .controller
        .list_snapshots(ListSnapshotsRequest {
            source_volume_id: ids[0].clone(),
            secrets: e.secrets.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    ensure!(
        listed
            .entries
            .iter()
            .filter_map(|e| e.snapshot.as_ref())
            .any(|s| s.group_snapshot_id == group.group_snapshot_id),
        "{listed:?}"
    );
    let alone = c
        .controller
        .delete_snapshot(DeleteSnapshotRequest {
            snapshot_id: group.snapshots[0].snapshot_id.clone(),
            secrets: e.secrets.clone(),
        })
        .await;
    ensure!(code(alone) == Code::FailedPrecondition);
    let pinned = c
        .controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: ids[0].clone(),
            secrets: e.secrets.clone(),
        })
        .await;
    ensure!(code(pinned) == Code::FailedPrecondition);

    // The volumes are free for another group snapshot meanwhile.
    let second = c
        .group
        .create_volume_group_snapshot(group_req(&e, "hourly", &ids[1..]))
        .await?
        .into_inner()
        .group_snapshot
        .context("second")?;
    ensure!(second.snapshots.len() == 2);

    // Get, with and without the member list; errors as csi-sanity checks them.
    let get = |id: &str, members: Vec<String>| GetVolumeGroupSnapshotRequest {
        group_snapshot_id: id.into(),
        snapshot_ids: members,
        secrets: e.secrets.clone(),
    };
    let got = c
        .group
        .get_volume_group_snapshot(get(&group.group_snapshot_id, vec![]))
        .await?
        .into_inner()
        .group_snapshot
        .context("got")?;
    ensure!(got.snapshots.len() == 3);
    let member_ids: Vec<String> = group.snapshots.iter().map(|s| s.snapshot_id.clone()).collect();
    c.group
        .get_volume_group_snapshot(get(&group.group_snapshot_id, member_ids.clone()))
        .await?;
    let wrong = c
        .group
        .get_volume_group_snapshot(get(&group.group_snapshot_id, member_ids[..1].to_vec()))
        .await;
    ensure!(code(wrong) == Code::InvalidArgument);
    ensure!(code(c.group.get_volume_group_snapshot(get("", vec![])).await) == Code::InvalidArgument);
    ensure!(
        code(
            c.group
                .get_volume_group_snapshot(get("not-a-group", vec![]))
                .await
        ) == Code::NotFound
    );
    let unknown = format!(
        "rbd-group:test:{}:csi-group-{}",
        e.pool,
        lifeboat_csi::ids::name_hash("never")
    );
    ensure!(code(c.group.get_volume_group_snapshot(get(&unknown, vec![])).await) == Code::NotFound);
    ensure!(
        code(
            c.group
                .create_volume_group_snapshot(group_req(&e, "", &ids))
                .await
        ) == Code::InvalidArgument
    );
    ensure!(
        code(
            c.group
                .create_volume_group_snapshot(group_req(&e, "empty", &[]))
                .await
        ) == Code::InvalidArgument
    );
    let del = |id: &str| DeleteVolumeGroupSnapshotRequest {
        group_snapshot_id: id.into(),
        snapshot_ids: vec![],
        secrets: e.secrets.clone(),
    };
    ensure!(code(c.group.delete_volume_group_snapshot(del("")).await) == Code::InvalidArgument);
    c.group.delete_volume_group_snapshot(del("not-a-group")).await?;
    c.group.delete_volume_group_snapshot(del(&unknown)).await?;

    // Deleting both group snapshots frees the volumes.
    for g in [&group.group_snapshot_id, &second.group_snapshot_id] {
        c.group.delete_volume_group_snapshot(del(g)).await?;
        c.group.delete_volume_group_snapshot(del(g)).await?;
        ensure!(code(c.group.get_volume_group_snapshot(get(g, vec![])).await) == Code::NotFound);
    }
    ensure!(
        rbd_groups(&e.pool)?.trim().is_empty(),
        "groups left: {}",
        rbd_groups(&e.pool)?
    );
    for id in &ids {
        c.controller
            .delete_volume(DeleteVolumeRequest {
                volume_id: id.clone(),
                secrets: e.secrets.clone(),
            })
            .await?;
    }
    ensure!(rbd_ls(lifeboat_tests::ceph()?, &e.pool)?.is_empty());
    Ok(())
}

/// The driver killed at three moments of CreateVolumeGroupSnapshot: each retry finishes the
/// group snapshot, no RBD group is left, and every member volume is deleted in the end. A
/// killed driver's watch on a member image lasts until the OSDs drop it
/// (`osd_client_watch_timeout`, 30 s), so DeleteVolume is refused meanwhile, naming the
/// watcher, and the test retries as external-provisioner does.
#[tokio::test]
async fn a_driver_killed_mid_group_snapshot_finishes_on_retry() -> Result<()> {
    let mut e = env("csi-group-crash").await?;
    let mut ids = Vec::new();
    {
        let mut c = e.driver.clients().await?.controller;
        for i in 0..3 {
            let v = c
                .create_volume(volume_req(&e, &format!("crash-member-{i}"), None))
                .await?
                .into_inner()
                .volume
                .context("v")?;
            write(&e.pool, &v.volume_context["imageName"], &pattern(i, 1))?;
            ids.push(v.volume_id);
        }
    }
    let mut groups = Vec::new();
    for (round, delay_ms) in [5u64, 40, 150].into_iter().enumerate() {
        let req = group_req(&e, &format!("crash-{round}"), &ids);
        let mut g = e.driver.clients().await?.group;
        let pending = tokio::spawn({
            let req = req.clone();
            async move { g.create_volume_group_snapshot(req).await }
        });
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        e.driver.kill();
        let _ = pending.await;
        e.driver.restart().await?;
        let mut g = e.driver.clients().await?.group;
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        let group = loop {
            match g.create_volume_group_snapshot(req.clone()).await {
                Ok(r) => break r.into_inner().group_snapshot.context("group")?,
                Err(s)
                    if matches!(s.code(), Code::Aborted | Code::Unavailable)
                        && std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(500)).await
                }
                Err(s) => anyhow::bail!("retry after a kill at {delay_ms} ms: {s}\n{}", e.driver.log()),
            }
        };
        ensure!(group.snapshots.len() == 3, "{group:?}");
        groups.push(group.group_snapshot_id);
    }
    let mut g = e.driver.clients().await?.group;
    for id in groups {
        g.delete_volume_group_snapshot(DeleteVolumeGroupSnapshotRequest {
            group_snapshot_id: id,
            snapshot_ids: vec![],
            secrets: e.secrets.clone(),
        })
        .await?;
    }
    ensure!(
        rbd_groups(&e.pool)?.trim().is_empty(),
        "groups left: {}",
        rbd_groups(&e.pool)?
    );
    let mut c = e.driver.clients().await?.controller;
    for id in ids {
        // FAILED_PRECONDITION ("in use") is retried with backoff, as external-provisioner
        // does, while the killed driver's watch lapses (30 s after its last ping; longer on a
        // loaded machine). Anything else, or busy for 90 s, fails.
        let mut waited = Duration::ZERO;
        loop {
            let deleted = c
                .delete_volume(DeleteVolumeRequest {
                    volume_id: id.clone(),
                    secrets: e.secrets.clone(),
                })
                .await;
            match deleted {
                Ok(_) => break,
                Err(s) if s.code() == Code::FailedPrecondition && waited < Duration::from_secs(90) => {
                    eprintln!("DeleteVolume refused after {waited:?}, retrying: {}", s.message());
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    waited += Duration::from_secs(1);
                }
                Err(s) => return Err(anyhow::anyhow!(s)).with_context(|| e.driver.log()),
            }
        }
    }
    Ok(())
}
