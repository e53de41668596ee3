//! The CSI driver's Node service on a real RBD image: stage (map through rbd-fuse and a
//! loop device, format, mount), publish (bind, read-only), write and read a file, stats,
//! online expansion, raw block, unpublish/unstage, and the error paths.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, ensure};
use lifeboat_csi::proto::*;
use lifeboat_tests::csi::{CsiDriver, DriverOptions, block_cap, code, mount_cap, rbd_setup};
use tonic::Code;

const MIB: i64 = 1 << 20;

fn df_bytes(path: &Path) -> Result<u64> {
    let out = std::process::Command::new("stat")
        .args(["-f", "-c", "%b %S"])
        .arg(path)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let n: Vec<u64> = text.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    Ok(n[0] * n[1])
}

async fn setup(prefix: &str) -> Result<(CsiDriver, HashMap<String, String>, HashMap<String, String>)> {
    let ceph = lifeboat_tests::ceph()?;
    let pool = ceph.new_pool(prefix)?;
    let key_file = tempfile::tempdir()?.keep().join("admin.key");
    let (config, params, secrets) = rbd_setup(ceph, &pool, &key_file)?;
    let driver = CsiDriver::start(
        env!("CARGO_BIN_EXE_csi-driver"),
        DriverOptions {
            config,
            mode: "all",
            mapper: "fuse",
            ..Default::default()
        },
    )
    .await?;
    Ok((driver, params, secrets))
}

#[tokio::test]
async fn stage_publish_write_read_expand_unpublish_unstage() -> Result<()> {
    let (driver, params, secrets) = setup("csi-node").await?;
    let mut c = driver.clients().await?;
    let info = c.node.node_get_info(NodeGetInfoRequest {}).await?.into_inner();
    ensure!(info.node_id == "test-node");
    ensure!(
        info.accessible_topology
            .is_some_and(|t| t.segments["topology.csi.lifeboat.dev/zone"] == "test")
    );
    let ncaps = c
        .node
        .node_get_capabilities(NodeGetCapabilitiesRequest {})
        .await?
        .into_inner();
    ensure!(ncaps.capabilities.len() == 5);

    let vol = c
        .controller
        .create_volume(CreateVolumeRequest {
            name: "node-vol".into(),
            capacity_range: Some(CapacityRange {
                required_bytes: 64 * MIB,
                limit_bytes: 0,
            }),
            volume_capabilities: vec![mount_cap("ext4")],
            parameters: params.clone(),
            secrets: secrets.clone(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .volume
        .context("volume")?;
    let work = tempfile::tempdir()?;
    let staging = work.path().join("staging");
    let target = work.path().join("pods/pod-a/volume");
    let ro_target = work.path().join("pods/pod-b/volume");
    std::fs::create_dir_all(&staging)?;
    let stage = NodeStageVolumeRequest {
        volume_id: vol.volume_id.clone(),
        staging_target_path: staging.to_string_lossy().into(),
        volume_capability: Some(mount_cap("ext4")),
        secrets: secrets.clone(),
        volume_context: vol.volume_context.clone(),
        ..Default::default()
    };
    // Error paths first.
    let mut bad = stage.clone();
    bad.staging_target_path.clear();
    ensure!(code(c.node.node_stage_volume(bad).await) == Code::InvalidArgument);
    let mut bad = stage.clone();
    bad.volume_capability = None;
    ensure!(code(c.node.node_stage_volume(bad).await) == Code::InvalidArgument);
    let publish = NodePublishVolumeRequest {
        volume_id: vol.volume_id.clone(),
        staging_target_path: staging.to_string_lossy().into(),
        target_path: target.to_string_lossy().into(),
        volume_capability: Some(mount_cap("ext4")),
        readonly: false,
        volume_context: vol.volume_context.clone(),
        ..Default::default()
    };
    ensure!(code(c.node.node_publish_volume(publish.clone()).await) == Code::FailedPrecondition);

    c.node
        .node_stage_volume(stage.clone())
        .await
        .with_context(|| driver.log())?;
    c.node.node_stage_volume(stage.clone()).await?; // idempotent
    c.node.node_publish_volume(publish.clone()).await?;
    c.node.node_publish_volume(publish.clone()).await?;
    let mut ro = publish.clone();
    ro.target_path = ro_target.to_string_lossy().into();
    ro.readonly = true;
    c.node.node_publish_volume(ro.clone()).await?;

    std::fs::write(target.join("hello.txt"), b"written through the pod's mount")?;
    ensure!(std::fs::read(ro_target.join("hello.txt"))? == b"written through the pod's mount");
    ensure!(
        std::fs::write(ro_target.join("nope.txt"), b"x").is_err(),
        "read-only publish was writable"
    );

    let stats = c
        .node
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: vol.volume_id.clone(),
            volume_path: target.to_string_lossy().into(),
            staging_target_path: staging.to_string_lossy().into(),
        })
        .await?
        .into_inner();
    ensure!(
        stats.usage.len() == 2 && stats.usage.iter().all(|u| u.total > 0),
        "{stats:?}"
    );
    ensure!(stats.volume_condition.is_some_and(|c| !c.abnormal));
    let missing = c
        .node
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: vol.volume_id.clone(),
            volume_path: work.path().join("nowhere").to_string_lossy().into(),
            staging_target_path: String::new(),
        })
        .await;
    ensure!(code(missing) == Code::NotFound);

    // Tear down, twice each.
    for t in [&target, &ro_target] {
        let req = NodeUnpublishVolumeRequest {
            volume_id: vol.volume_id.clone(),
            target_path: t.to_string_lossy().into(),
        };
        c.node.node_unpublish_volume(req.clone()).await?;
        c.node.node_unpublish_volume(req).await?;
        ensure!(!t.exists());
    }
    let unstage = NodeUnstageVolumeRequest {
        volume_id: vol.volume_id.clone(),
        staging_target_path: staging.to_string_lossy().into(),
    };
    c.node.node_unstage_volume(unstage.clone()).await?;
    c.node.node_unstage_volume(unstage.clone()).await?;

    // Offline expansion (ext4 grows while unstaged: online ext4 resize needs CAP_SYS_RESOURCE,
    // which these CI containers lack; the xfs test below grows online).
    c.controller
        .controller_expand_volume(ControllerExpandVolumeRequest {
            volume_id: vol.volume_id.clone(),
            capacity_range: Some(CapacityRange {
                required_bytes: 128 * MIB,
                limit_bytes: 0,
            }),
            secrets: secrets.clone(),
            volume_capability: Some(mount_cap("ext4")),
        })
        .await?;
    // Staged again (no reformat): the file is still there, and the filesystem has grown.
    c.node
        .node_stage_volume(stage.clone())
        .await
        .with_context(|| driver.log())?;
    ensure!(std::fs::read(staging.join("hello.txt"))? == b"written through the pod's mount");
    let size = df_bytes(&staging)?;
    ensure!(size > 100 * MIB as u64, "filesystem did not grow: {size} bytes");
    c.node.node_unstage_volume(unstage).await?;
    c.controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: vol.volume_id,
            secrets,
        })
        .await?;
    Ok(())
}

#[tokio::test]
async fn raw_block_volume_is_published_as_a_device() -> Result<()> {
    let (driver, params, secrets) = setup("csi-block").await?;
    let mut c = driver.clients().await?;
    let vol = c
        .controller
        .create_volume(CreateVolumeRequest {
            name: "block-vol".into(),
            capacity_range: Some(CapacityRange {
                required_bytes: 16 * MIB,
                limit_bytes: 0,
            }),
            volume_capabilities: vec![block_cap()],
            parameters: params,
            secrets: secrets.clone(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .volume
        .context("volume")?;
    let work = tempfile::tempdir()?;
    let staging = work.path().join("staging");
    std::fs::create_dir_all(&staging)?;
    let target = work.path().join("pod/dev");
    c.node
        .node_stage_volume(NodeStageVolumeRequest {
            volume_id: vol.volume_id.clone(),
            staging_target_path: staging.to_string_lossy().into(),
            volume_capability: Some(block_cap()),
            secrets: secrets.clone(),
            ..Default::default()
        })
        .await
        .with_context(|| driver.log())?;
    c.node
        .node_publish_volume(NodePublishVolumeRequest {
            volume_id: vol.volume_id.clone(),
            staging_target_path: staging.to_string_lossy().into(),
            target_path: target.to_string_lossy().into(),
            volume_capability: Some(block_cap()),
            ..Default::default()
        })
        .await?;
    // Write through the published device, read back through librbd.
    let data: Vec<u8> = (0..4096).map(|i| (i % 199) as u8).collect();
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&target)?;
        f.seek(SeekFrom::Start(MIB as u64))?;
        f.write_all(&data)?;
        f.sync_all()?;
    }
    let stats = c
        .node
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: vol.volume_id.clone(),
            volume_path: target.to_string_lossy().into(),
            staging_target_path: staging.to_string_lossy().into(),
        })
        .await?
        .into_inner();
    ensure!(
        stats.usage.first().is_some_and(|u| u.total == 16 * MIB),
        "{stats:?}"
    );
    c.node
        .node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: vol.volume_id.clone(),
            target_path: target.to_string_lossy().into(),
        })
        .await?;
    c.node
        .node_unstage_volume(NodeUnstageVolumeRequest {
            volume_id: vol.volume_id.clone(),
            staging_target_path: staging.to_string_lossy().into(),
        })
        .await?;
    let ceph = lifeboat_tests::ceph()?;
    let cluster = ceph.connect()?;
    let pool = cluster.pool(&vol.volume_context["pool"])?;
    let img = pool.open_read_only(&vol.volume_context["imageName"], None)?;
    let mut back = vec![0u8; data.len()];
    img.read_at(MIB as u64, &mut back)?;
    ensure!(
        back == data,
        "data written through the block device is not in the image"
    );
    drop(img);
    c.controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: vol.volume_id,
            secrets,
        })
        .await?;
    Ok(())
}

#[tokio::test]
async fn xfs_grows_online() -> Result<()> {
    let (driver, mut params, secrets) = setup("csi-xfs").await?;
    params.insert("csi.storage.k8s.io/fstype".into(), "xfs".into());
    let mut c = driver.clients().await?;
    let vol = c
        .controller
        .create_volume(CreateVolumeRequest {
            name: "xfs-vol".into(),
            capacity_range: Some(CapacityRange {
                required_bytes: 320 * MIB,
                limit_bytes: 0,
            }),
            volume_capabilities: vec![mount_cap("xfs")],
            parameters: params,
            secrets: secrets.clone(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .volume
        .context("volume")?;
    let work = tempfile::tempdir()?;
    let staging = work.path().join("staging");
    std::fs::create_dir_all(&staging)?;
    c.node
        .node_stage_volume(NodeStageVolumeRequest {
            volume_id: vol.volume_id.clone(),
            staging_target_path: staging.to_string_lossy().into(),
            volume_capability: Some(mount_cap("xfs")),
            secrets: secrets.clone(),
            volume_context: vol.volume_context.clone(),
            ..Default::default()
        })
        .await
        .with_context(|| driver.log())?;
    std::fs::write(staging.join("keep"), b"data")?;
    let before = df_bytes(&staging)?;
    c.controller
        .controller_expand_volume(ControllerExpandVolumeRequest {
            volume_id: vol.volume_id.clone(),
            capacity_range: Some(CapacityRange {
                required_bytes: 640 * MIB,
                limit_bytes: 0,
            }),
            secrets: secrets.clone(),
            volume_capability: Some(mount_cap("xfs")),
        })
        .await?;
    let grown = c
        .node
        .node_expand_volume(NodeExpandVolumeRequest {
            volume_id: vol.volume_id.clone(),
            volume_path: staging.to_string_lossy().into(),
            staging_target_path: staging.to_string_lossy().into(),
            volume_capability: Some(mount_cap("xfs")),
            ..Default::default()
        })
        .await
        .with_context(|| driver.log())?
        .into_inner();
    let after = df_bytes(&staging)?;
    ensure!(grown.capacity_bytes == 640 * MIB, "{grown:?}");
    ensure!(
        after > before + 200 * MIB as u64,
        "xfs did not grow: {before} -> {after}"
    );
    ensure!(std::fs::read(staging.join("keep"))? == b"data");
    c.node
        .node_unstage_volume(NodeUnstageVolumeRequest {
            volume_id: vol.volume_id.clone(),
            staging_target_path: staging.to_string_lossy().into(),
        })
        .await?;
    c.controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: vol.volume_id,
            secrets,
        })
        .await?;
    Ok(())
}
