//! CSI fault campaign against the shared test Ceph: the driver killed (SIGKILL) at a seeded
//! random moment of every mutating controller, group-controller and node RPC. After each kill
//! the test retries as external-provisioner, external-snapshotter and kubelet do, then lists
//! the pool with the `rbd` and `rados` CLIs (and the node's mounts, loop devices, rbd-fuse
//! processes and watchers) and compares it with what the successful calls made: no orphaned
//! image, snapshot, group, trash entry, RADOS record or mapping, and no call made twice.
//! `csi_osd_pause` pauses the OSDs instead.
//!
//! `LIFEBOAT_CSI_FAULT_SEED` replays a campaign (the seed is printed);
//! `LIFEBOAT_CSI_FAULT_ROUNDS` sets the kills per RPC (4 by default, as CI runs it);
//! `LIFEBOAT_CSI_FAULT_ONLY` runs only the campaigns whose killed RPC contains it
//! (`LIFEBOAT_CSI_FAULT_ONLY="CreateVolume from a snapshot"`, `node`).

#[macro_use]
mod csi_fault_support;

use std::collections::HashMap;
use std::future::Future;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use csi_fault_support::*;
use lifeboat_csi::proto::*;
use lifeboat_tests::csi::{Clients, DriverOptions, RbdEnv};
use lifeboat_tests::faults::SeededRng;

/// Every campaign below at once, one per killed RPC (the node's in one), each on its own pool
/// and driver: most of their time is spent waiting for a killed driver's watch on an image
/// to lapse (30 s), so they overlap instead of queueing behind the test harness's threads.
/// The campaigns call the rbd CLI and librbd directly (blocking), so the runtime has almost
/// a worker thread per campaign, keeping kill moments close to the drawn ones. Every failing
/// campaign is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn csi_rpcs_killed_at_random_moments() -> Result<()> {
    let only = std::env::var("LIFEBOAT_CSI_FAULT_ONLY").unwrap_or_default();
    let wanted = |kill: &str| kill.contains(only.as_str());
    let mut campaigns = Vec::new();
    for kill in ["CreateSnapshot", "DeleteSnapshot"]
        .into_iter()
        .filter(|k| wanted(k))
    {
        campaigns.push((kill, tokio::spawn(snapshot_rpcs(kill))));
    }
    for kill in [
        "CreateVolume from a snapshot",
        "ControllerExpandVolume",
        "DeleteVolume",
    ]
    .into_iter()
    .filter(|k| wanted(k))
    {
        campaigns.push((kill, tokio::spawn(restore_expand_and_delete_rpcs(kill))));
    }
    for kill in [
        "CreateVolumeGroupSnapshot",
        "DeleteVolumeGroupSnapshot",
        "CreateVolume from a group member",
    ]
    .into_iter()
    .filter(|k| wanted(k))
    {
        campaigns.push((kill, tokio::spawn(group_rpcs(kill))));
    }
    if wanted("node RPCs") {
        campaigns.push(("node RPCs", tokio::spawn(node_rpcs())));
    }
    ensure!(
        !campaigns.is_empty(),
        "LIFEBOAT_CSI_FAULT_ONLY={only:?} names no campaign"
    );
    let mut failed = Vec::new();
    for (name, campaign) in campaigns {
        if let Err(e) = campaign.await.context(name)? {
            failed.push(format!("{name}: {e:?}"));
        }
    }
    ensure!(failed.is_empty(), "{}", failed.join("\n\n"));
    Ok(())
}

/// A pool name part for the RPC a campaign kills (`CreateVolume from a snapshot` →
/// `createvolume-from-a-snapshot`).
fn short(kill: &str) -> String {
    kill.to_lowercase().replace(' ', "-")
}

/// `call` killed at a random moment of `span` when `faulted` (see [`killed`]), else run
/// unfaulted with the CO's retries; its answer.
async fn maybe_killed<T, F, Fut>(
    faulted: bool,
    (e, tally, rng): (&mut RbdEnv, &mut Tally, &mut SeededRng),
    rpc: &'static str,
    span: Duration,
    call: F,
) -> Result<T>
where
    T: Send + 'static,
    F: Fn(Clients) -> Fut,
    Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>> + Send + 'static,
{
    if faulted {
        killed(e, tally, rpc, draw(rng, span), call).await
    } else {
        Ok(retry(e, rpc, rpc.starts_with("Delete"), &call).await?.0)
    }
}

/// Snapshots of a written volume taken, then deleted; `kill` (CreateSnapshot or
/// DeleteSnapshot) is killed, the other runs unfaulted. The pool holds exactly the snapshots
/// (and their name records) the calls made after each phase, and nothing at the end.
async fn snapshot_rpcs(kill: &'static str) -> Result<()> {
    let (seed, mut rng) = seed();
    let n = rounds();
    let mut e = env(&format!("csi-fault-{}", short(kill))).await?;
    let mut tally = Tally::default();
    let (src, _) = source(&e, 7).await?;
    let mut made = Made::default();
    made.volumes.insert("source".into(), vec![]);

    let snap_req = |e: &RbdEnv, name: &str| snapshot_req(e, &src.volume_id, name);
    let call = rpc!(controller.create_snapshot, snap_req(&e, "snap-0"));
    let (first, span) = timed(&mut e, "CreateSnapshot", call).await?;
    let mut snapshots = vec![first.snapshot.context("snapshot")?];
    for i in 1..=n {
        let req = snap_req(&e, &format!("snap-{i}"));
        let answer = maybe_killed(
            kill == "CreateSnapshot",
            (&mut e, &mut tally, &mut rng),
            "CreateSnapshot",
            span,
            rpc!(controller.create_snapshot, req),
        )
        .await?;
        let snap = answer.snapshot.context("snapshot")?;
        ensure!(
            snap.ready_to_use && snap.source_volume_id == src.volume_id,
            "{snap:?}"
        );
        snapshots.push(snap);
    }
    made.volumes
        .insert("source".into(), (0..=n).map(|i| format!("snap-{i}")).collect());
    made.check(&e.pool, "after CreateSnapshot")?;

    let delete_snap = |e: &RbdEnv, id: &str| DeleteSnapshotRequest {
        snapshot_id: id.into(),
        secrets: e.secrets.clone(),
    };
    let call = rpc!(
        controller.delete_snapshot,
        delete_snap(&e, &snapshots[0].snapshot_id)
    );
    let (_, span) = timed(&mut e, "DeleteSnapshot", call).await?;
    for snap in &snapshots[1..] {
        let req = delete_snap(&e, &snap.snapshot_id);
        maybe_killed(
            kill == "DeleteSnapshot",
            (&mut e, &mut tally, &mut rng),
            "DeleteSnapshot",
            span,
            rpc!(controller.delete_snapshot, req),
        )
        .await?;
    }
    made.volumes.insert("source".into(), vec![]);
    made.check(&e.pool, "after DeleteSnapshot")?;

    retry(
        &e,
        "DeleteVolume",
        true,
        &rpc!(controller.delete_volume, e.delete_req(&src.volume_id)),
    )
    .await?;
    Made::default().check(&e.pool, "at the end")?;
    tally.print(&format!("CSI {kill} killed"), seed);
    Ok(())
}

/// Volumes restored from a snapshot, the source expanded, the restored volumes deleted; `kill`
/// (CreateVolume from a snapshot, ControllerExpandVolume or DeleteVolume) is killed, the
/// others run unfaulted. Restored volumes hold the snapshot's data, the expanded one keeps its
/// own, and the pool holds exactly what the calls made after each phase and nothing at the end.
async fn restore_expand_and_delete_rpcs(kill: &'static str) -> Result<()> {
    let (seed, mut rng) = seed();
    let n = rounds();
    let mut e = env(&format!("csi-fault-{}", short(kill))).await?;
    let mut tally = Tally::default();
    let (src, data) = source(&e, 7).await?;
    let mut made = Made::default();
    made.volumes.insert("source".into(), vec![]);

    let snap_req = |e: &RbdEnv, name: &str| snapshot_req(e, &src.volume_id, name);
    let snapshot = e
        .driver
        .clients()
        .await?
        .controller
        .create_snapshot(snap_req(&e, "snap"))
        .await?
        .into_inner()
        .snapshot
        .context("snapshot")?;
    made.volumes.insert("source".into(), vec!["snap".into()]);
    let restore_req =
        |e: &RbdEnv, i: usize| from_snapshot(e, &format!("restored-{i}"), 16 * MIB, &snapshot.snapshot_id);
    let call = rpc!(controller.create_volume, restore_req(&e, 0));
    let (first, span) = timed(&mut e, "CreateVolume from a snapshot", call).await?;
    let mut restored = vec![first.volume.context("volume")?];
    for i in 1..=n {
        let req = restore_req(&e, i);
        let answer = maybe_killed(
            kill == "CreateVolume from a snapshot",
            (&mut e, &mut tally, &mut rng),
            "CreateVolume from a snapshot",
            span,
            rpc!(controller.create_volume, req),
        )
        .await?;
        restored.push(answer.volume.context("volume")?);
    }
    for (i, v) in restored.iter().enumerate() {
        ensure!(
            read_pattern(&e.pool, &v.volume_context["imageName"])? == data,
            "restored-{i} does not hold the snapshot's data"
        );
        made.volumes.insert(format!("restored-{i}"), vec![]);
    }
    made.check(&e.pool, "after CreateVolume from a snapshot")?;

    let expand_req = |e: &RbdEnv, mib: i64| ControllerExpandVolumeRequest {
        volume_id: src.volume_id.clone(),
        capacity_range: Some(CapacityRange {
            required_bytes: mib * MIB,
            limit_bytes: 0,
        }),
        secrets: e.secrets.clone(),
        ..Default::default()
    };
    let call = rpc!(controller.controller_expand_volume, expand_req(&e, 20));
    let (_, span) = timed(&mut e, "ControllerExpandVolume", call).await?;
    for i in 1..=n {
        let mib = 20 + 4 * i as i64;
        let req = expand_req(&e, mib);
        let answer = maybe_killed(
            kill == "ControllerExpandVolume",
            (&mut e, &mut tally, &mut rng),
            "ControllerExpandVolume",
            span,
            rpc!(controller.controller_expand_volume, req),
        )
        .await?;
        ensure!(answer.capacity_bytes >= mib * MIB, "{answer:?}");
    }
    ensure!(
        read_pattern(&e.pool, &src.volume_context["imageName"])? == data,
        "expanding lost data"
    );
    made.check(&e.pool, "after ControllerExpandVolume")?;

    e.driver
        .clients()
        .await?
        .controller
        .delete_snapshot(DeleteSnapshotRequest {
            snapshot_id: snapshot.snapshot_id.clone(),
            secrets: e.secrets.clone(),
        })
        .await?;
    made.volumes.insert("source".into(), vec![]);
    let call = rpc!(controller.delete_volume, e.delete_req(&restored[0].volume_id));
    let (_, span) = timed(&mut e, "DeleteVolume", call).await?;
    for v in &restored[1..] {
        let req = e.delete_req(&v.volume_id);
        maybe_killed(
            kill == "DeleteVolume",
            (&mut e, &mut tally, &mut rng),
            "DeleteVolume",
            span,
            rpc!(controller.delete_volume, req),
        )
        .await?;
    }
    made.volumes.retain(|v, _| !v.starts_with("restored-"));
    made.check(&e.pool, "after DeleteVolume")?;
    retry(
        &e,
        "DeleteVolume",
        true,
        &rpc!(controller.delete_volume, e.delete_req(&src.volume_id)),
    )
    .await?;
    Made::default().check(&e.pool, "at the end")?;
    tally.print(&format!("CSI {kill} killed"), seed);
    Ok(())
}

/// Group snapshots of two written volumes, volumes restored from their members (a copy:
/// Pacific cannot clone from a group snapshot) holding their member's data, all deleted; the
/// pool holds exactly the groups, records and member snapshots of the live group snapshots
/// after each phase. `kill` is killed, the other RPCs run unfaulted.
async fn group_rpcs(kill: &'static str) -> Result<()> {
    let (seed, mut rng) = seed();
    let n = rounds();
    let mut e = env(&format!("csi-fault-{}", short(kill))).await?;
    let mut tally = Tally::default();
    let mut made = Made::default();
    let (mut ids, mut data) = (vec![], vec![]);
    for i in 0..2 {
        let name = format!("member-{i}");
        let v = e
            .driver
            .clients()
            .await?
            .controller
            .create_volume(e.create_req(&named(&e, &name), 16 * MIB))
            .await?
            .into_inner()
            .volume
            .context("volume")?;
        data.push(write_pattern(&e.pool, &v.volume_context["imageName"], i as u8)?);
        ids.push(v.volume_id);
        made.volumes.insert(name, vec![]);
    }
    let members: Vec<String> = made.volumes.keys().cloned().collect();
    let group_req = |e: &RbdEnv, name: &str| CreateVolumeGroupSnapshotRequest {
        name: named(e, name),
        source_volume_ids: ids.clone(),
        secrets: e.secrets.clone(),
        parameters: HashMap::new(),
    };
    let call = rpc!(group.create_volume_group_snapshot, group_req(&e, "group-0"));
    let (first, span) = timed(&mut e, "CreateVolumeGroupSnapshot", call).await?;
    let mut groups = vec![first.group_snapshot.context("group snapshot")?];
    for i in 1..=n {
        let req = group_req(&e, &format!("group-{i}"));
        let answer = maybe_killed(
            kill == "CreateVolumeGroupSnapshot",
            (&mut e, &mut tally, &mut rng),
            "CreateVolumeGroupSnapshot",
            span,
            rpc!(group.create_volume_group_snapshot, req),
        )
        .await?;
        groups.push(answer.group_snapshot.context("group snapshot")?);
    }
    for (i, g) in groups.iter().enumerate() {
        ensure!(g.ready_to_use && g.snapshots.len() == 2, "group-{i}: {g:?}");
        made.groups.insert(format!("group-{i}"), members.clone());
    }
    made.check(&e.pool, "after CreateVolumeGroupSnapshot")?;

    // Volume i is restored from group snapshot i's snapshot of member i % 2.
    let member_snapshot = |i: usize| -> Result<String> {
        Ok(groups[i]
            .snapshots
            .iter()
            .find(|s| s.source_volume_id == ids[i % 2])
            .context("member snapshot")?
            .snapshot_id
            .clone())
    };
    let restore_req = |e: &RbdEnv, i: usize| -> Result<CreateVolumeRequest> {
        Ok(from_snapshot(
            e,
            &format!("restored-{i}"),
            16 * MIB,
            &member_snapshot(i)?,
        ))
    };
    let call = rpc!(controller.create_volume, restore_req(&e, 0)?);
    let (first, span) = timed(&mut e, "CreateVolume from a group member", call).await?;
    let mut restored = vec![first.volume.context("volume")?];
    for i in 1..=n {
        let req = restore_req(&e, i)?;
        let answer = maybe_killed(
            kill == "CreateVolume from a group member",
            (&mut e, &mut tally, &mut rng),
            "CreateVolume from a group member",
            span,
            rpc!(controller.create_volume, req),
        )
        .await?;
        restored.push(answer.volume.context("volume")?);
    }
    for (i, v) in restored.iter().enumerate() {
        ensure!(
            read_pattern(&e.pool, &v.volume_context["imageName"])? == data[i % 2],
            "restored-{i} does not hold member-{}'s data",
            i % 2
        );
        made.volumes.insert(format!("restored-{i}"), vec![]);
    }
    made.check(&e.pool, "after CreateVolume from a group member")?;

    let delete_req = |e: &RbdEnv, g: &VolumeGroupSnapshot| DeleteVolumeGroupSnapshotRequest {
        group_snapshot_id: g.group_snapshot_id.clone(),
        snapshot_ids: g.snapshots.iter().map(|s| s.snapshot_id.clone()).collect(),
        secrets: e.secrets.clone(),
    };
    let call = rpc!(group.delete_volume_group_snapshot, delete_req(&e, &groups[0]));
    let (_, span) = timed(&mut e, "DeleteVolumeGroupSnapshot", call).await?;
    for g in &groups[1..] {
        let req = delete_req(&e, g);
        maybe_killed(
            kill == "DeleteVolumeGroupSnapshot",
            (&mut e, &mut tally, &mut rng),
            "DeleteVolumeGroupSnapshot",
            span,
            rpc!(group.delete_volume_group_snapshot, req),
        )
        .await?;
    }
    made.groups.clear();
    made.check(&e.pool, "after DeleteVolumeGroupSnapshot")?;

    for id in restored.iter().map(|v| &v.volume_id).chain(&ids) {
        retry(
            &e,
            "DeleteVolume",
            true,
            &rpc!(controller.delete_volume, e.delete_req(id)),
        )
        .await?;
    }
    Made::default().check(&e.pool, "at the end")?;
    tally.print(&format!("CSI {kill} killed"), seed);
    Ok(())
}

/// What a node holds for one staged volume, from the mount table, `losetup`, the process
/// list and `rbd status`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NodeHolds {
    /// Mounts on the staging path (more than one: stacked by a repeated mount).
    staging_mounts: usize,
    /// Mounts on the publish target, and whether the top one is read-only.
    target_mounts: usize,
    target_read_only: bool,
    /// Loop devices backed by the image's rbd-fuse file.
    loops: usize,
    /// rbd-fuse processes serving the image.
    fuse_processes: usize,
    /// Clients watching the image (each mapping holds one).
    watchers: usize,
}

fn node_holds(
    pool: &str,
    image: &str,
    staging: &std::path::Path,
    target: &std::path::Path,
) -> Result<NodeHolds> {
    use lifeboat_csi::node::exec::mounts_at;
    let target_at = mounts_at(target)?;
    let loops: serde_json::Value = serde_json::from_str(&{
        let mut c = Command::new("losetup");
        c.args(["--list", "--json", "-O", "NAME,BACK-FILE"]);
        let out = cli(c, "losetup --list")?;
        if out.trim().is_empty() {
            r#"{"loopdevices": []}"#.to_string()
        } else {
            out
        }
    })?;
    let suffix = format!("/{image}");
    let loops = loops["loopdevices"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter(|d| {
                    d["back-file"]
                        .as_str()
                        .is_some_and(|f| f.trim_end_matches(" (deleted)").ends_with(&suffix))
                })
                .count()
        })
        .unwrap_or(0);
    let mut fuse_processes = 0;
    for entry in std::fs::read_dir("/proc")? {
        let cmdline = std::fs::read(entry?.path().join("cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.first().is_some_and(|a| a.ends_with(b"rbd-fuse")) && args.contains(&image.as_bytes()) {
            fuse_processes += 1;
        }
    }
    let mut status = lifeboat_tests::ceph()?.rbd_cmd();
    status.args(["status", &format!("{pool}/{image}"), "--format", "json"]);
    let status: serde_json::Value = serde_json::from_str(&cli(status, "rbd status")?)?;
    Ok(NodeHolds {
        staging_mounts: mounts_at(staging)?.len(),
        target_mounts: target_at.len(),
        target_read_only: target_at.last().is_some_and(|m| m.read_only),
        loops,
        fuse_processes,
        watchers: status["watchers"].as_array().map_or(0, Vec::len),
    })
}

/// Polls [`node_holds`] for up to 20 s until it is `want` (rbd-fuse exits and the OSDs drop
/// its watch a moment after the unmount returns).
async fn expect_node(
    e: &RbdEnv,
    when: &str,
    image: &str,
    staging: &std::path::Path,
    target: &std::path::Path,
    want: NodeHolds,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = node_holds(&e.pool, image, staging, target)?;
        if got == want {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{when}: the node holds {got:?}, want {want:?}\ndriver log:\n{}",
                e.driver.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// NodeStageVolume, NodePublishVolume (read-write and read-only), NodeExpandVolume,
/// NodeUnpublishVolume and NodeUnstageVolume on an xfs RBD volume (rbd-fuse and a loop device;
/// xfs, because online ext4 growth needs CAP_SYS_RESOURCE, which CI containers lack),
/// each killed at random moments: after each retry the node holds exactly one staging mount,
/// one loop device and one rbd-fuse client while staged, the target is mounted once and
/// read-only when asked, a file written through one publish is read back through the next,
/// and after unstage nothing is left: no mount, loop device, rbd-fuse process or watcher —
/// so DeleteVolume succeeds at once.
async fn node_rpcs() -> Result<()> {
    let (seed, mut rng) = seed();
    let n = rounds();
    let opts = DriverOptions {
        mode: "all",
        mapper: "fuse",
        ..Default::default()
    };
    let mut e = RbdEnv::start(env!("CARGO_BIN_EXE_csi-driver"), "csi-fault-node", opts, |_| {}).await?;
    let mut tally = Tally::default();
    let vol = e
        .driver
        .clients()
        .await?
        .controller
        .create_volume(e.create_req(&named(&e, "node"), 320 * MIB))
        .await?
        .into_inner()
        .volume
        .context("volume")?;
    let image = vol.volume_context["imageName"].clone();
    // Under the driver's directory, so that a failed round's mounts and loop device are undone
    // when the driver is dropped (left behind, they hang every `losetup` on this machine once
    // the shared Ceph is restarted).
    let work = e.driver.dir.path().join("node");
    let staging = work.join("staging");
    let target = work.join("pods/pod/volume");
    std::fs::create_dir_all(&staging)?;
    let stage = NodeStageVolumeRequest {
        volume_id: vol.volume_id.clone(),
        staging_target_path: staging.to_string_lossy().into(),
        volume_capability: Some(lifeboat_tests::csi::mount_cap("xfs")),
        secrets: e.secrets.clone(),
        volume_context: vol.volume_context.clone(),
        ..Default::default()
    };
    let publish = |readonly: bool| NodePublishVolumeRequest {
        volume_id: vol.volume_id.clone(),
        staging_target_path: staging.to_string_lossy().into(),
        target_path: target.to_string_lossy().into(),
        volume_capability: Some(lifeboat_tests::csi::mount_cap("xfs")),
        readonly,
        volume_context: vol.volume_context.clone(),
        ..Default::default()
    };
    let unpublish = NodeUnpublishVolumeRequest {
        volume_id: vol.volume_id.clone(),
        target_path: target.to_string_lossy().into(),
    };
    let unstage = NodeUnstageVolumeRequest {
        volume_id: vol.volume_id.clone(),
        staging_target_path: staging.to_string_lossy().into(),
    };
    let staged = |published: bool, read_only: bool| NodeHolds {
        staging_mounts: 1,
        target_mounts: usize::from(published),
        target_read_only: read_only,
        loops: 1,
        fuse_processes: 1,
        watchers: 1,
    };
    let nothing = NodeHolds {
        staging_mounts: 0,
        target_mounts: 0,
        target_read_only: false,
        loops: 0,
        fuse_processes: 0,
        watchers: 0,
    };
    let note = target.join("note.txt");
    let mut spans: HashMap<&'static str, Duration> = HashMap::new();
    let mut written: Option<String> = None;
    // Rounds 0 and 1 run unfaulted, and round 1 is timed (round 0 formats the volume, which
    // later stages do not); rounds 2..n+2 kill each RPC at a random moment of 1.2× its time.
    for round in 0..n + 2 {
        macro_rules! step {
            ($rpc:literal, $client:ident . $method:ident, $req:expr) => {{
                let call = rpc!($client.$method, $req);
                if round < 2 {
                    let (answer, span) = timed(&mut e, $rpc, call).await?;
                    spans.insert($rpc, span);
                    answer
                } else {
                    let delay = draw(&mut rng, spans[$rpc]);
                    killed(&mut e, &mut tally, $rpc, delay, call).await?
                }
            }};
        }
        let when = |rpc: &str| format!("round {round}, after {rpc}");
        step!("NodeStageVolume", node.node_stage_volume, stage.clone());
        expect_node(
            &e,
            &when("NodeStageVolume"),
            &image,
            &staging,
            &target,
            staged(false, false),
        )
        .await?;

        let read_only = round % 2 == 1;
        step!("NodePublishVolume", node.node_publish_volume, publish(read_only));
        expect_node(
            &e,
            &when("NodePublishVolume"),
            &image,
            &staging,
            &target,
            staged(true, read_only),
        )
        .await?;
        if let Some(text) = &written {
            ensure!(
                std::fs::read_to_string(&note)? == *text,
                "round {round}: the file written through the last publish reads differently"
            );
        }
        if read_only {
            ensure!(
                std::fs::write(&note, "x").is_err(),
                "round {round}: a read-only publish accepted a write"
            );
        } else {
            let text = format!("written in round {round}\n");
            std::fs::write(&note, &text)?;
            written = Some(text);
        }

        let bytes = (320 + 16 * (round as i64 + 1)) * MIB;
        e.driver
            .clients()
            .await?
            .controller
            .controller_expand_volume(ControllerExpandVolumeRequest {
                volume_id: vol.volume_id.clone(),
                capacity_range: Some(CapacityRange {
                    required_bytes: bytes,
                    limit_bytes: 0,
                }),
                secrets: e.secrets.clone(),
                ..Default::default()
            })
            .await?;
        let expand = NodeExpandVolumeRequest {
            volume_id: vol.volume_id.clone(),
            volume_path: target.to_string_lossy().into(),
            capacity_range: Some(CapacityRange {
                required_bytes: bytes,
                limit_bytes: 0,
            }),
            staging_target_path: staging.to_string_lossy().into(),
            ..Default::default()
        };
        let grown = step!("NodeExpandVolume", node.node_expand_volume, expand);
        ensure!(grown.capacity_bytes >= bytes, "round {round}: {grown:?}");
        expect_node(
            &e,
            &when("NodeExpandVolume"),
            &image,
            &staging,
            &target,
            staged(true, read_only),
        )
        .await?;

        step!(
            "NodeUnpublishVolume",
            node.node_unpublish_volume,
            unpublish.clone()
        );
        expect_node(
            &e,
            &when("NodeUnpublishVolume"),
            &image,
            &staging,
            &target,
            staged(false, false),
        )
        .await?;
        step!("NodeUnstageVolume", node.node_unstage_volume, unstage.clone());
        expect_node(
            &e,
            &when("NodeUnstageVolume"),
            &image,
            &staging,
            &target,
            nothing.clone(),
        )
        .await?;
    }
    // Nothing maps the image any more, so it is deleted at once.
    e.driver
        .clients()
        .await?
        .controller
        .delete_volume(e.delete_req(&vol.volume_id))
        .await
        .with_context(|| e.driver.log())?;
    Made::default().check(&e.pool, "at the end")?;
    tally.print("CSI node RPCs killed", seed);
    Ok(())
}
