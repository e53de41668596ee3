//! The CSI driver's RBD controller over gRPC against the shared test Ceph: every controller
//! RPC and its error codes, idempotency under concurrency, a crash mid-create, snapshots,
//! restores and clones with their data compared byte for byte.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use lifeboat_csi::proto::volume_content_source::{SnapshotSource, Type as Src, VolumeSource};
use lifeboat_csi::proto::*;
use lifeboat_tests::csi::{CsiDriver, DriverOptions, RbdEnv, block_cap, code, mount_cap};
use lifeboat_tests::process::KillOnDrop;
use tonic::Code;

const MIB: i64 = 1 << 20;

async fn env(prefix: &str) -> Result<RbdEnv> {
    let opts = DriverOptions {
        mode: "controller",
        ..Default::default()
    };
    Ok(RbdEnv::start(env!("CARGO_BIN_EXE_csi-driver"), prefix, opts, |_| {}).await?)
}

/// Creates, retrying ABORTED and UNAVAILABLE with backoff as a CO does (for up to 2 minutes:
/// a killed driver's watch on a half-made image lasts the OSD watch timeout, 30 s).
async fn create_retrying(
    c: &mut controller_client::ControllerClient<tonic::transport::Channel>,
    req: CreateVolumeRequest,
) -> Result<Volume> {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        match c.create_volume(req.clone()).await {
            Ok(r) => return r.into_inner().volume.context("no volume"),
            Err(s)
                if matches!(s.code(), Code::Aborted | Code::Unavailable)
                    && std::time::Instant::now() < deadline =>
            {
                let pause = if s.code() == Code::Aborted { 20 } else { 1000 };
                tokio::time::sleep(Duration::from_millis(pause)).await
            }
            Err(s) => anyhow::bail!("create {}: {s}", req.name),
        }
    }
}

#[tokio::test]
async fn identity_and_capabilities() -> Result<()> {
    let e = env("csi-ident").await?;
    let mut c = e.driver.clients().await?;
    let info = c
        .identity
        .get_plugin_info(GetPluginInfoRequest {})
        .await?
        .into_inner();
    ensure!(
        info.name == "csi.lifeboat.dev" && !info.vendor_version.is_empty(),
        "{info:?}"
    );
    let caps = c
        .identity
        .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
        .await?
        .into_inner();
    ensure!(caps.capabilities.len() == 4, "{caps:?}");
    let probe = c.identity.probe(ProbeRequest {}).await?.into_inner();
    ensure!(probe.ready == Some(true));
    let ctrl = c
        .controller
        .controller_get_capabilities(ControllerGetCapabilitiesRequest {})
        .await?
        .into_inner();
    ensure!(ctrl.capabilities.len() == 11, "{ctrl:?}");
    // Controller mode serves no Node service.
    ensure!(code(c.node.node_get_info(NodeGetInfoRequest {}).await) == Code::Unimplemented);

    // Probe really asks: a cluster whose monitors do not answer makes it fail.
    let dead = CsiDriver::start(
        env!("CARGO_BIN_EXE_csi-driver"),
        DriverOptions {
            config: serde_json::json!({"rbd": [{"clusterID": "dead", "monitors": ["127.0.0.1:1"]}]}),
            mode: "controller",
            ..Default::default()
        },
    )
    .await?;
    let mut id = dead.clients().await?.identity;
    ensure!(code(id.probe(ProbeRequest {}).await) == Code::FailedPrecondition);
    Ok(())
}

#[tokio::test]
async fn create_delete_expand_validate_and_their_errors() -> Result<()> {
    let e = env("csi-crud").await?;
    let mut c = e.driver.clients().await?.controller;

    let v = c
        .create_volume(e.create_req("pvc-a", 10 * MIB))
        .await?
        .into_inner()
        .volume
        .context("volume")?;
    ensure!(
        v.capacity_bytes == 10 * MIB && v.volume_id.starts_with("rbd:test:"),
        "{v:?}"
    );
    ensure!(v.volume_context["imageName"].starts_with("csi-vol-"));
    // Same name, same request: the same volume.
    let again = c
        .create_volume(e.create_req("pvc-a", 10 * MIB))
        .await?
        .into_inner()
        .volume
        .context("v")?;
    ensure!(again.volume_id == v.volume_id);
    // Same name, incompatible capacity.
    ensure!(code(c.create_volume(e.create_req("pvc-a", 20 * MIB)).await) == Code::AlreadyExists);
    // Same name, other parameters.
    let mut other = e.create_req("pvc-a", 10 * MIB);
    other
        .parameters
        .insert("imageFeatures".into(), "layering,exclusive-lock".into());
    ensure!(code(c.create_volume(other).await) == Code::AlreadyExists);
    // Malformed requests.
    ensure!(code(c.create_volume(e.create_req("", MIB)).await) == Code::InvalidArgument);
    let mut no_caps = e.create_req("pvc-x", MIB);
    no_caps.volume_capabilities.clear();
    ensure!(code(c.create_volume(no_caps).await) == Code::InvalidArgument);
    let mut bad_range = e.create_req("pvc-x", 10 * MIB);
    bad_range.capacity_range = Some(CapacityRange {
        required_bytes: 10 * MIB,
        limit_bytes: MIB,
    });
    ensure!(code(c.create_volume(bad_range).await) == Code::OutOfRange);
    let mut no_secret = e.create_req("pvc-x", MIB);
    no_secret.secrets.clear();
    ensure!(code(c.create_volume(no_secret).await) == Code::InvalidArgument);
    let mut no_pool = e.create_req("pvc-x", MIB);
    no_pool.parameters.remove("pool");
    ensure!(code(c.create_volume(no_pool).await) == Code::InvalidArgument);
    let mut bad_key = e.create_req("pvc-x", MIB);
    bad_key.secrets.insert(
        "userKey".into(),
        "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE9".into(),
    );
    let status = c.create_volume(bad_key).await.expect_err("a wrong key must fail");
    ensure!(
        !status.message().contains("QUFB"),
        "the key leaked into an error: {status:?}"
    );

    // ValidateVolumeCapabilities.
    let ok = c
        .validate_volume_capabilities(ValidateVolumeCapabilitiesRequest {
            volume_id: v.volume_id.clone(),
            volume_capabilities: vec![mount_cap("ext4"), block_cap()],
            secrets: e.secrets.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    ensure!(ok.confirmed.is_some(), "{ok:?}");
    let missing = c
        .validate_volume_capabilities(ValidateVolumeCapabilitiesRequest {
            volume_id: "rbd:test:nopool:csi-vol-0".into(),
            volume_capabilities: vec![mount_cap("ext4")],
            secrets: e.secrets.clone(),
            ..Default::default()
        })
        .await;
    ensure!(code(missing) == Code::NotFound);
    let no_caps = c
        .validate_volume_capabilities(ValidateVolumeCapabilitiesRequest {
            volume_id: v.volume_id.clone(),
            ..Default::default()
        })
        .await;
    ensure!(code(no_caps) == Code::InvalidArgument);

    // ControllerGetVolume (no secrets: the driver's own read-only user).
    let got = c
        .controller_get_volume(ControllerGetVolumeRequest {
            volume_id: v.volume_id.clone(),
        })
        .await?
        .into_inner();
    ensure!(got.volume.as_ref().map(|v| v.capacity_bytes) == Some(10 * MIB));
    ensure!(
        got.status
            .and_then(|s| s.volume_condition)
            .is_some_and(|c| !c.abnormal)
    );
    ensure!(
        code(
            c.controller_get_volume(ControllerGetVolumeRequest {
                volume_id: "junk".into()
            })
            .await
        ) == Code::NotFound
    );

    // Expansion.
    let grown = c
        .controller_expand_volume(ControllerExpandVolumeRequest {
            volume_id: v.volume_id.clone(),
            capacity_range: Some(CapacityRange {
                required_bytes: 32 * MIB,
                limit_bytes: 0,
            }),
            secrets: e.secrets.clone(),
            volume_capability: Some(mount_cap("ext4")),
        })
        .await?
        .into_inner();
    ensure!(grown.capacity_bytes == 32 * MIB && grown.node_expansion_required);
    let missing = c
        .controller_expand_volume(ControllerExpandVolumeRequest {
            volume_id: "rbd:test:x:csi-vol-none".into(),
            capacity_range: Some(CapacityRange {
                required_bytes: MIB,
                limit_bytes: 0,
            }),
            secrets: e.secrets.clone(),
            volume_capability: None,
        })
        .await;
    ensure!(code(missing) == Code::NotFound);

    // GetCapacity from the pool's stats.
    let capacity = c
        .get_capacity(GetCapacityRequest {
            parameters: e.params.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    ensure!(capacity.available_capacity > 0, "{capacity:?}");

    // Delete: idempotent, and unknown ids are fine.
    c.delete_volume(e.delete_req(&v.volume_id)).await?;
    c.delete_volume(e.delete_req(&v.volume_id)).await?;
    c.delete_volume(e.delete_req("not-one-of-ours")).await?;
    ensure!(code(c.delete_volume(e.delete_req("")).await) == Code::InvalidArgument);
    ensure!(
        code(
            c.controller_get_volume(ControllerGetVolumeRequest {
                volume_id: v.volume_id
            })
            .await
        ) == Code::NotFound
    );
    ensure!(e.images()?.is_empty(), "left behind: {:?}", e.images()?);
    Ok(())
}

#[tokio::test]
async fn fifty_concurrent_creates_with_ten_duplicate_names() -> Result<()> {
    let e = env("csi-conc").await?;
    let clients = e.driver.clients().await?;
    let names: Vec<String> = (0..50)
        .map(|i| format!("pvc-{}", if i < 10 { i } else { i - 10 }))
        .collect();
    // 50 requests, names pvc-0..pvc-39: pvc-0..pvc-9 are each asked for twice.
    let mut tasks = Vec::new();
    for n in names {
        let mut c = clients.controller.clone();
        let req = e.create_req(&n, 4 * MIB);
        tasks.push(tokio::spawn(async move {
            create_retrying(&mut c, req).await.map(|v| (n, v.volume_id))
        }));
    }
    let mut by_name: HashMap<String, HashSet<String>> = HashMap::new();
    for t in tasks {
        let (n, id) = t.await??;
        by_name.entry(n).or_default().insert(id);
    }
    ensure!(by_name.len() == 40, "{} names", by_name.len());
    ensure!(
        by_name.values().all(|ids| ids.len() == 1),
        "a name got two volumes: {by_name:?}"
    );
    let images = e.images()?;
    ensure!(
        images.len() == 40,
        "rbd ls shows {} images: {images:?}",
        images.len()
    );
    // ListVolumes pages through exactly those, and refuses a forged token.
    let mut c = clients.controller.clone();
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_volumes(ListVolumesRequest {
                max_entries: 7,
                starting_token: token.clone(),
            })
            .await?
            .into_inner();
        ensure!(page.entries.len() <= 7);
        seen.extend(
            page.entries
                .into_iter()
                .filter_map(|e| e.volume)
                .map(|v| v.volume_id),
        );
        if page.next_token.is_empty() {
            break;
        }
        token = page.next_token;
    }
    let expected: HashSet<String> = by_name.values().flatten().cloned().collect();
    ensure!(seen.len() == 40 && seen.iter().cloned().collect::<HashSet<_>>() == expected);
    let forged = c
        .list_volumes(ListVolumesRequest {
            max_entries: 1,
            starting_token: "not-a-token".into(),
        })
        .await;
    ensure!(code(forged) == Code::Aborted);
    for id in expected {
        c.delete_volume(e.delete_req(&id)).await?;
    }
    ensure!(e.images()?.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_driver_killed_mid_create_leaves_no_orphans_after_the_retry() -> Result<()> {
    let mut e = env("csi-crash").await?;
    let ceph = lifeboat_tests::ceph()?;
    // A source with data, so clones have work to do (snapshot, clone, flatten, cleanup).
    let src = {
        let mut c = e.driver.clients().await?.controller;
        c.create_volume(e.create_req("crash-src", 64 * MIB))
            .await?
            .into_inner()
            .volume
            .context("v")?
    };
    {
        let cluster = ceph.connect()?;
        let pool = cluster.pool(&e.pool)?;
        let mut img = pool.open(&src.volume_context["imageName"], None)?;
        let data = vec![0xabu8; 4 * MIB as usize];
        for i in 0..8 {
            img.write_at(i * 8 * MIB as u64, &data)?;
        }
        img.flush()?;
    }
    for (round, delay_ms) in [2u64, 10, 30, 60, 120, 250].into_iter().enumerate() {
        let name = format!("crash-{round}");
        let mut req = e.create_req(&name, 64 * MIB);
        if round % 2 == 1 {
            req.volume_content_source = Some(VolumeContentSource {
                r#type: Some(Src::Volume(VolumeSource {
                    volume_id: src.volume_id.clone(),
                })),
            });
        }
        let mut c = e.driver.clients().await?.controller;
        let pending = tokio::spawn({
            let req = req.clone();
            async move { c.create_volume(req).await }
        });
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        e.driver.kill();
        let _ = pending.await;
        e.driver.restart().await?;
        let mut c = e.driver.clients().await?.controller;
        let v = create_retrying(&mut c, req.clone()).await.with_context(|| {
            format!(
                "retry after a kill at {delay_ms} ms; driver log:\n{}",
                e.driver.log()
            )
        })?;
        let again = create_retrying(&mut c, req).await?;
        ensure!(v.volume_id == again.volume_id && v.capacity_bytes == 64 * MIB);
    }
    let images = e.images()?;
    ensure!(
        images.len() == 7,
        "expected the source and 6 volumes, rbd ls shows {images:?}"
    );
    let snaps = ceph
        .rbd_cmd()
        .args([
            "snap",
            "ls",
            &format!("{}/{}", e.pool, src.volume_context["imageName"]),
        ])
        .output()?;
    ensure!(
        !String::from_utf8_lossy(&snaps.stdout).contains("csi-tmp-"),
        "temporary clone snapshots left: {}",
        String::from_utf8_lossy(&snaps.stdout)
    );
    Ok(())
}

#[tokio::test]
async fn snapshot_restore_and_clone_keep_the_data() -> Result<()> {
    let e = env("csi-snap").await?;
    let ceph = lifeboat_tests::ceph()?;
    let mut c = e.driver.clients().await?.controller;
    let v = c
        .create_volume(e.create_req("snap-src", 16 * MIB))
        .await?
        .into_inner()
        .volume
        .context("v")?;
    let cluster = ceph.connect()?;
    let pool = cluster.pool(&e.pool)?;
    let pattern: Vec<u8> = (0..(2 * MIB as usize)).map(|i| (i * 7 % 251) as u8).collect();
    {
        let mut img = pool.open(&v.volume_context["imageName"], None)?;
        img.write_at(3 * MIB as u64, &pattern)?;
        img.flush()?;
    }
    let read = |image: &str| -> Result<Vec<u8>> {
        let img = pool.open_read_only(image, None)?;
        let mut buf = vec![0u8; pattern.len()];
        img.read_at(3 * MIB as u64, &mut buf)?;
        Ok(buf)
    };
    let snap_req = CreateSnapshotRequest {
        source_volume_id: v.volume_id.clone(),
        name: "snap-1".into(),
        secrets: e.secrets.clone(),
        parameters: HashMap::new(),
    };
    let snap = c
        .create_snapshot(snap_req.clone())
        .await?
        .into_inner()
        .snapshot
        .context("snapshot")?;
    ensure!(snap.ready_to_use && snap.size_bytes == 16 * MIB && snap.creation_time.is_some());
    let again = c
        .create_snapshot(snap_req)
        .await?
        .into_inner()
        .snapshot
        .context("snapshot")?;
    ensure!(again.snapshot_id == snap.snapshot_id);
    // The same snapshot name asked of another volume is a conflict, not a second snapshot;
    // once the first is deleted the name is free for the other volume.
    let other = c
        .create_volume(e.create_req("snap-other", 16 * MIB))
        .await?
        .into_inner()
        .volume
        .context("other")?;
    let reuse = CreateSnapshotRequest {
        source_volume_id: other.volume_id.clone(),
        name: "snap-1".into(),
        secrets: e.secrets.clone(),
        parameters: HashMap::new(),
    };
    ensure!(code(c.create_snapshot(reuse.clone()).await) == Code::AlreadyExists);
    let scratch = c
        .create_snapshot(CreateSnapshotRequest {
            name: "snap-scratch".into(),
            ..reuse.clone()
        })
        .await?
        .into_inner()
        .snapshot
        .context("scratch")?;
    c.delete_snapshot(DeleteSnapshotRequest {
        snapshot_id: scratch.snapshot_id.clone(),
        secrets: e.secrets.clone(),
    })
    .await?;
    let reused = c
        .create_snapshot(CreateSnapshotRequest {
            name: "snap-scratch".into(),
            source_volume_id: v.volume_id.clone(),
            ..reuse
        })
        .await?
        .into_inner()
        .snapshot
        .context("reused")?;
    ensure!(reused.source_volume_id == v.volume_id);
    c.delete_snapshot(DeleteSnapshotRequest {
        snapshot_id: reused.snapshot_id,
        secrets: e.secrets.clone(),
    })
    .await?;
    c.delete_volume(e.delete_req(&other.volume_id)).await?;
    // Overwrite the source after the snapshot: the restore must show the old data.
    {
        let mut img = pool.open(&v.volume_context["imageName"], None)?;
        img.write_at(3 * MIB as u64, &vec![0u8; pattern.len()])?;
        img.flush()?;
    }
    for mode in ["flatten", "cow"] {
        let mut req = e.create_req(&format!("restored-{mode}"), 16 * MIB);
        req.parameters.insert("cloneMode".into(), mode.into());
        req.volume_content_source = Some(VolumeContentSource {
            r#type: Some(Src::Snapshot(SnapshotSource {
                snapshot_id: snap.snapshot_id.clone(),
            })),
        });
        let restored = c.create_volume(req).await?.into_inner().volume.context("v")?;
        ensure!(restored.content_source.is_some());
        ensure!(
            read(&restored.volume_context["imageName"])? == pattern,
            "{mode} restore differs"
        );
        if mode == "cow" {
            // The COW clone pins the snapshot.
            let pinned = c
                .delete_snapshot(DeleteSnapshotRequest {
                    snapshot_id: snap.snapshot_id.clone(),
                    secrets: e.secrets.clone(),
                })
                .await;
            ensure!(code(pinned) == Code::FailedPrecondition);
        }
        c.delete_volume(e.delete_req(&restored.volume_id)).await?;
    }
    // Restoring into less space than the snapshot holds.
    let mut small = e.create_req("restored-small", MIB);
    small.capacity_range = Some(CapacityRange {
        required_bytes: MIB,
        limit_bytes: MIB,
    });
    small.volume_content_source = Some(VolumeContentSource {
        r#type: Some(Src::Snapshot(SnapshotSource {
            snapshot_id: snap.snapshot_id.clone(),
        })),
    });
    ensure!(code(c.create_volume(small).await) == Code::OutOfRange);
    // From a snapshot that does not exist.
    let mut missing = e.create_req("restored-missing", 16 * MIB);
    missing.volume_content_source = Some(VolumeContentSource {
        r#type: Some(Src::Snapshot(SnapshotSource {
            snapshot_id: format!("{}:csi-snap-nothing", v.volume_id),
        })),
    });
    ensure!(code(c.create_volume(missing).await) == Code::NotFound);

    // A clone of the (now zeroed) volume: equal to the source as it is now.
    {
        let mut img = pool.open(&v.volume_context["imageName"], None)?;
        img.write_at(3 * MIB as u64, &pattern[..MIB as usize])?;
        img.flush()?;
    }
    let mut clone_req = e.create_req("clone-1", 16 * MIB);
    clone_req.volume_content_source = Some(VolumeContentSource {
        r#type: Some(Src::Volume(VolumeSource {
            volume_id: v.volume_id.clone(),
        })),
    });
    let clone = c
        .create_volume(clone_req)
        .await?
        .into_inner()
        .volume
        .context("v")?;
    ensure!(read(&clone.volume_context["imageName"])? == read(&v.volume_context["imageName"])?);

    // ListSnapshots: by id, by source, all, and a bad token.
    let list = |req: ListSnapshotsRequest| {
        let mut c = c.clone();
        async move { c.list_snapshots(req).await.map(|r| r.into_inner()) }
    };
    let by_id = list(ListSnapshotsRequest {
        snapshot_id: snap.snapshot_id.clone(),
        secrets: e.secrets.clone(),
        ..Default::default()
    })
    .await?;
    ensure!(by_id.entries.len() == 1);
    let by_source = list(ListSnapshotsRequest {
        source_volume_id: v.volume_id.clone(),
        secrets: e.secrets.clone(),
        ..Default::default()
    })
    .await?;
    ensure!(by_source.entries.len() == 1);
    let all = list(ListSnapshotsRequest::default()).await?;
    ensure!(all.entries.len() == 1, "{all:?}");
    let none = list(ListSnapshotsRequest {
        snapshot_id: "rbd:test:x:y:z".into(),
        secrets: e.secrets.clone(),
        ..Default::default()
    })
    .await?;
    ensure!(none.entries.is_empty());
    ensure!(
        code(
            list(ListSnapshotsRequest {
                starting_token: "zz".into(),
                ..Default::default()
            })
            .await
        ) == Code::Aborted
    );

    // A volume with a snapshot cannot be deleted; after the snapshot goes, it can.
    ensure!(code(c.delete_volume(e.delete_req(&v.volume_id)).await) == Code::FailedPrecondition);
    let del = DeleteSnapshotRequest {
        snapshot_id: snap.snapshot_id.clone(),
        secrets: e.secrets.clone(),
    };
    c.delete_snapshot(del.clone()).await?;
    c.delete_snapshot(del).await?;
    c.delete_volume(e.delete_req(&v.volume_id)).await?;
    c.delete_volume(e.delete_req(&clone.volume_id)).await?;
    ensure!(e.images()?.is_empty(), "left: {:?}", e.images()?);
    Ok(())
}

/// A volume some client has open is not deleted: DeleteVolume answers FAILED_PRECONDITION
/// naming the watcher (so an operator can find the node or client), and succeeds once the
/// client closes the image. A client holding the exclusive lock without giving it up (as
/// `rbd-nbd --exclusive` or a VM with exclusive access does; here Ceph's own Python binding
/// in another process) is named as the lock's holder too.
#[tokio::test]
async fn a_volume_open_in_a_client_is_refused_naming_its_watcher() -> Result<()> {
    let mut e = env("csi-busy").await?;
    e.params
        .insert("imageFeatures".into(), "layering,exclusive-lock".into());
    let mut c = e.driver.clients().await?.controller;
    let v = c
        .create_volume(e.create_req("pvc-busy", 4 * MIB))
        .await?
        .into_inner()
        .volume
        .context("volume")?;
    let image_name = &v.volume_context["imageName"];
    let ceph = lifeboat_tests::ceph()?;
    let cluster = ceph.connect()?;
    let pool = cluster.pool(&e.pool)?;
    let image = pool.open(image_name, None)?;
    let own = image.watchers()?;
    ensure!(own.len() == 1, "a read-write open holds one watch: {own:?}");
    let refused = c.delete_volume(e.delete_req(&v.volume_id)).await;
    let status = refused.err().context("deleted while open")?;
    ensure!(status.code() == Code::FailedPrecondition, "{status:?}");
    for expected in [format!("watched by {}", own[0]), "lock held by none".to_string()] {
        ensure!(
            status.message().contains(&expected),
            "{} lacks {expected}",
            status.message()
        );
    }
    drop(image);

    // Another process takes the exclusive lock and keeps it until its stdin closes.
    let script = format!(
        "import rados, rbd, sys\n\
         c = rados.Rados(conffile={conf:?}); c.connect()\n\
         img = rbd.Image(c.open_ioctx({pool:?}), {image_name:?})\n\
         img.lock_acquire(rbd.RBD_LOCK_MODE_EXCLUSIVE)\n\
         print('locked', flush=True)\n\
         sys.stdin.read()\n\
         img.close(); c.shutdown()\n",
        conf = ceph.conf().display().to_string(),
        pool = e.pool,
    );
    let mut holder = KillOnDrop(
        std::process::Command::new("/usr/bin/python3")
            .args(["-c", &script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .context("/usr/bin/python3 with Ceph's rados and rbd modules (python3-rbd)")?,
    );
    let mut said = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.0.stdout.take().context("stdout")?),
        &mut said,
    )?;
    ensure!(said.trim() == "locked", "the lock holder said {said:?}");
    let watchers = pool.open_read_only(image_name, None)?.watchers()?;
    ensure!(watchers.len() == 1, "one watch, the lock holder's: {watchers:?}");
    let watcher = &watchers[0];
    let refused = c.delete_volume(e.delete_req(&v.volume_id)).await;
    let status = refused.err().context("deleted while exclusively locked")?;
    ensure!(status.code() == Code::FailedPrecondition, "{status:?}");
    let message = status.message();
    for expected in [format!("watched by {watcher}"), format!("lock held by {watcher}")] {
        ensure!(message.contains(&expected), "{message} lacks {expected}");
    }
    drop(holder.0.stdin.take());
    ensure!(holder.0.wait()?.success(), "the lock holder failed");
    c.delete_volume(e.delete_req(&v.volume_id)).await?;
    ensure!(e.images()?.is_empty(), "left: {:?}", e.images()?);
    Ok(())
}

/// A cluster whose monitors do not answer holds up only its own calls: the driver once
/// connected to Ceph one cluster at a time, so a CreateVolume for a healthy cluster waited
/// out another's 30 s connect attempt.
#[tokio::test]
async fn a_cluster_that_does_not_answer_does_not_hold_up_another() -> Result<()> {
    let e = RbdEnv::start(
        env!("CARGO_BIN_EXE_csi-driver"),
        "csi-gates",
        DriverOptions {
            mode: "controller",
            ..Default::default()
        },
        |config| {
            let mut dead = config["rbd"][0].clone();
            dead["clusterID"] = "dead".into();
            dead["monitors"] = serde_json::json!(["127.0.0.1:1"]);
            if let Some(list) = config["rbd"].as_array_mut() {
                list.push(dead);
            }
        },
    )
    .await?;
    let clients = e.driver.clients().await?;
    let mut stuck = clients.controller.clone();
    let mut dead = e.create_req("pvc-dead", MIB);
    dead.parameters.insert("clusterID".into(), "dead".into());
    let hanging = tokio::spawn(async move { stuck.create_volume(dead).await });
    // Let the dead cluster's connect start first.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut c = clients.controller.clone();
    let v = c
        .create_volume(e.create_req("pvc-alive", MIB))
        .await?
        .into_inner()
        .volume
        .context("volume")?;
    ensure!(
        !hanging.is_finished(),
        "the dead cluster's create is still connecting when the healthy one is done"
    );
    let answer = hanging.await?.err().context("the dead cluster's create fails")?;
    ensure!(
        answer.code() == Code::Unavailable
            && answer.message().contains("127.0.0.1:1")
            && answer.message().contains("check the user and key"),
        "a cluster whose monitors do not answer is UNAVAILABLE, naming them and the other cause \
         of a timeout (a refused key): {answer:?}"
    );
    c.delete_volume(e.delete_req(&v.volume_id)).await?;
    Ok(())
}
