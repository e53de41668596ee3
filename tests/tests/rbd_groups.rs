//! lifeboat-rbd's group binding against the shared test Ceph: groups, images joining and
//! leaving them, a group snapshot taken of several written images, its members found through
//! their snapshot namespace and read back by id, and removal — checked against the `rbd` CLI.

use anyhow::{Context, Result, ensure};
use lifeboat_rbd::{ImageOptions, SnapshotNamespace, features};

fn rbd(args: &[&str]) -> Result<String> {
    let out = lifeboat_tests::ceph()?.rbd_cmd().args(args).output()?;
    ensure!(
        out.status.success(),
        "rbd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn group_snapshots_capture_every_image_at_one_point() -> Result<()> {
    let ceph = lifeboat_tests::ceph()?;
    let pool_name = ceph.new_pool("rbd-groups")?;
    let cluster = ceph.connect()?;
    let pool = cluster.pool(&pool_name)?;
    let opts = ImageOptions {
        features: Some(
            features::parse("layering,exclusive-lock,object-map,fast-diff,deep-flatten")
                .map_err(anyhow::Error::msg)?,
        ),
        ..Default::default()
    };
    let images = ["img-a", "img-b", "img-c"];
    for (i, name) in images.iter().enumerate() {
        pool.create_image(name, 16 << 20, &opts)?;
        let mut img = pool.open(name, None)?;
        img.write_at(1 << 20, &vec![b'a' + i as u8; 64 * 1024])?;
        img.flush()?;
    }
    pool.create_group("g1")?;
    let dup = pool.create_group("g1").expect_err("second create");
    ensure!(dup.is_already_exists(), "{dup}");
    for name in &images {
        pool.add_group_image("g1", &pool, name)?;
    }
    ensure!(pool.open(images[0], None)?.group()? == Some((pool.id(), "g1".to_string())));
    let members = pool.group_images("g1")?;
    ensure!(
        members.len() == 3 && members.iter().all(|m| m.attached && m.pool_id == pool.id()),
        "{members:?}"
    );
    ensure!(
        rbd(&["group", "image", "list", &format!("{pool_name}/g1")])?
            .lines()
            .count()
            == 3
    );
    // An image in one group cannot join another.
    pool.create_group("g2")?;
    let busy = pool.add_group_image("g2", &pool, images[0]).expect_err("in g1");
    ensure!(busy.is_already_exists(), "{busy}");

    pool.create_group_snapshot("g1", "gs1")?;
    let snaps = pool.group_snapshots("g1")?;
    ensure!(
        snaps.len() == 1 && snaps[0].name == "gs1" && snaps[0].complete,
        "{snaps:?}"
    );
    // Overwrite after the snapshot; the members still hold the old bytes.
    for name in &images {
        let mut img = pool.open(name, None)?;
        img.write_at(1 << 20, &vec![0u8; 64 * 1024])?;
        img.flush()?;
    }
    for name in &images {
        pool.remove_group_image("g1", &pool, name)?;
    }
    ensure!(pool.group_images("g1")?.is_empty());
    ensure!(pool.open(images[0], None)?.group()?.is_none());
    for (i, name) in images.iter().enumerate() {
        let mut img = pool.open_read_only(name, None)?;
        let snaps = img.snapshots()?;
        let member = snaps
            .iter()
            .find(|s| {
                matches!(
                    img.snapshot_namespace(s.id),
                    Ok(SnapshotNamespace::Group { ref group, ref snapshot, pool_id })
                        if group == "g1" && snapshot == "gs1" && pool_id == pool.id()
                )
            })
            .with_context(|| format!("{name} has no member of gs1: {snaps:?}"))?
            .clone();
        ensure!(member.size == 16 << 20);
        img.set_snapshot_by_id(member.id)?;
        let mut buf = vec![0u8; 64 * 1024];
        img.read_at(1 << 20, &mut buf)?;
        ensure!(
            buf.iter().all(|b| *b == b'a' + i as u8),
            "{name} member holds other data"
        );
        let extents = img.changed_extents(None)?;
        ensure!(
            extents.iter().any(|e| e.exists && e.offset <= 1 << 20),
            "{extents:?}"
        );
    }
    ensure!(cluster.pool_name(pool.id())?.as_deref() == Some(pool_name.as_str()));
    // Member snapshots keep the images until the group snapshot goes.
    let kept = pool.remove_image(images[0]).expect_err("has a group snapshot");
    ensure!(kept.is_busy(), "{kept}");
    let missing = pool.remove_group_snapshot("g1", "nope").expect_err("absent");
    ensure!(missing.is_not_found(), "{missing}");
    pool.remove_group_snapshot("g1", "gs1")?;
    ensure!(pool.group_snapshots("g1")?.is_empty());
    pool.remove_group("g1")?;
    pool.remove_group("g2")?;
    // librbd answers success for a group that is already gone.
    pool.remove_group("g1")?;
    let left = rbd(&["group", "ls", &pool_name])?;
    ensure!(left.trim().is_empty(), "groups left: {left}");
    for name in &images {
        pool.remove_image(name)?;
    }
    ensure!(pool.open(images[0], None).err().is_some_and(|e| e.is_not_found()));
    pool.create_image("meta", 1 << 20, &ImageOptions::default())?;
    let mut img = pool.open("meta", None)?;
    img.set_metadata("conf_rbd_qos_iops_limit", "50")?;
    ensure!(img.metadata("conf_rbd_qos_iops_limit")?.as_deref() == Some("50"));
    img.remove_metadata("conf_rbd_qos_iops_limit")?;
    img.remove_metadata("conf_rbd_qos_iops_limit")?;
    ensure!(img.metadata("conf_rbd_qos_iops_limit")?.is_none());
    drop(img);
    drop(pool);
    let _ = ceph.delete_pool(&pool_name);
    Ok(())
}
