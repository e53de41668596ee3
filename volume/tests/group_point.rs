//! One recovery point for several RBD images (an RBD group snapshot) against the harness's
//! real Ceph 16: a consistent cut of three images written in order while they are backed up,
//! an incremental from a point, an image in another group backed up on its own, an image a
//! killed backup left in its group joining the next point, and no RBD snapshot or group left
//! behind by a finished or a failed backup.
#![allow(clippy::unwrap_used)] // a test that cannot set up should panic loudly

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use lifeboat_backup::Repository;
use lifeboat_backup::repository::InitOptions;
use lifeboat_backup::snapshot::{Snapshot, SnapshotDetails};
use lifeboat_rbd::{Cluster, Pool, SnapshotNamespace};
use lifeboat_tests::repos::{Backend, TestRepo};
use lifeboat_tests::volumes::{make_image, read_image, seeded_bytes};
use lifeboat_volume::{
    GROUP_SNAPSHOT_TAG, GroupPoint, RbdImageSink, VolumeBackup, VolumeBackupOptions, backup_volume,
    restore_volume, snapshot_together,
};

/// Where the writer puts its counter in every image.
const COUNTER_AT: u64 = 3 << 20;

struct Env {
    _repo_dir: TestRepo,
    repo: Repository,
    cluster: Cluster,
    pool: String,
}

impl Env {
    async fn new(prefix: &str) -> Result<Self> {
        let ceph = lifeboat_tests::ceph()?;
        let t = TestRepo::new(Backend::Local)?;
        let repo = Repository::init(&t.store(), &[t.user_recipient()], InitOptions::default()).await?;
        Ok(Self {
            _repo_dir: t,
            repo,
            cluster: ceph.connect()?,
            pool: ceph.new_pool(prefix)?,
        })
    }

    fn pool(&self) -> Pool {
        self.cluster.pool(&self.pool).unwrap()
    }

    fn specs(&self, images: &[&str]) -> Vec<(String, String)> {
        images
            .iter()
            .map(|i| (self.pool.clone(), i.to_string()))
            .collect()
    }

    async fn together(&self, images: &[&str]) -> Result<GroupPoint> {
        Ok(snapshot_together(&self.repo, &self.cluster, &self.specs(images)).await?)
    }

    async fn backup(&self, image: &str, point: Option<&GroupPoint>) -> Result<VolumeBackup> {
        let options = VolumeBackupOptions {
            at: point.and_then(|p| p.at(&self.pool, image)),
            ..Default::default()
        };
        Ok(backup_volume(&self.repo, &self.cluster, &self.pool, image, &options).await?)
    }

    /// Backs up `images` at one point; returns their backups.
    async fn backup_together(&self, images: &[&str]) -> Result<Vec<VolumeBackup>> {
        let point = self.together(images).await?;
        ensure!(point.warnings().is_empty(), "{:?}", point.warnings());
        let mut done = Vec::new();
        for image in images {
            done.push(self.backup(image, Some(&point)).await);
        }
        let left = point.release().await;
        ensure!(left.is_empty(), "{left:?}");
        done.into_iter().collect()
    }

    async fn restore(&self, snapshot: &Snapshot, image: &str) -> Result<Vec<u8>> {
        let sink = RbdImageSink {
            cluster: self.cluster.clone(),
            pool: self.pool.clone(),
            image: image.to_string(),
            force: false,
            options: Default::default(),
            workers: 0,
            progress: Default::default(),
        };
        restore_volume(&self.repo, snapshot, sink).await?;
        Ok(read_image(&self.pool(), image))
    }

    /// Every snapshot of `image` as (name, namespace).
    fn snapshots(&self, image: &str) -> Vec<(String, SnapshotNamespace)> {
        let pool = self.pool();
        let img = pool.open_read_only(image, None).unwrap();
        img.snapshots()
            .unwrap()
            .into_iter()
            .map(|s| (s.name, img.snapshot_namespace(s.id).unwrap()))
            .collect()
    }

    /// Fails unless the pool has no RBD group and each image only one user snapshot (its base).
    fn assert_clean(&self, images: &[&str]) -> Result<()> {
        let out = lifeboat_tests::ceph()?
            .rbd_cmd()
            .args(["group", "ls", &self.pool])
            .output()?;
        ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let groups = String::from_utf8_lossy(&out.stdout).into_owned();
        ensure!(groups.trim().is_empty(), "groups left: {groups}");
        for image in images {
            let snaps = self.snapshots(image);
            ensure!(
                snaps.len() == 1 && snaps[0].1 == SnapshotNamespace::User,
                "{image}: {snaps:?}"
            );
            ensure!(self.pool().open(image, None)?.group()?.is_none());
        }
        Ok(())
    }
}

fn volume(b: &VolumeBackup) -> &lifeboat_backup::snapshot::VolumeImage {
    match &b.snapshot.details {
        SnapshotDetails::Volume(v) => v,
        other => panic!("not a volume snapshot: {other:?}"),
    }
}

fn counter(bytes: &[u8]) -> u64 {
    let at = COUNTER_AT as usize;
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// Writes 1, 2, 3, … to A, then B, then C (each write flushed) until stopped.
fn writer(cluster: Cluster, pool: String, stop: Arc<AtomicBool>, last: Arc<AtomicU64>) -> Result<()> {
    let p = cluster.pool(&pool)?;
    let mut images = ["a", "b", "c"]
        .iter()
        .map(|i| p.open(i, None))
        .collect::<Result<Vec<_>, _>>()?;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let mut block = vec![0u8; 4096];
        block[..8].copy_from_slice(&n.to_le_bytes());
        for img in &mut images {
            img.write_at(COUNTER_AT, &block)?;
            img.flush()?;
        }
        last.store(n, Ordering::Relaxed);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_point_is_one_consistent_cut() -> Result<()> {
    let env = Env::new("group-cut").await?;
    let images = ["a", "b", "c"];
    for (i, name) in images.iter().enumerate() {
        make_image(&env.pool(), name, 40 + i as u64);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let last = Arc::new(AtomicU64::new(0));
    let handle = std::thread::spawn({
        let (cluster, pool, stop, last) = (env.cluster.clone(), env.pool.clone(), stop.clone(), last.clone());
        move || writer(cluster, pool, stop, last)
    });
    let mut rounds = Vec::new();
    for round in 0..4 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        ensure!(!handle.is_finished(), "the writer stopped");
        let done = env.backup_together(&images).await?;
        let point = done[0].point.clone().context("no point")?;
        for b in &done {
            ensure!(b.point.as_ref() == Some(&point), "{:?}", b.point);
            ensure!(b.snapshot.tags.get(GROUP_SNAPSHOT_TAG) == Some(&point.name));
            let want = if round == 0 { "full" } else { "incremental" };
            ensure!(volume(b).read == want, "round {round}: {:?}", b.full_reason);
        }
        rounds.push(done);
    }
    stop.store(true, Ordering::Relaxed);
    handle.join().unwrap()?;
    ensure!(last.load(Ordering::Relaxed) > 10, "the writer barely wrote");
    env.assert_clean(&images)?;

    for (round, done) in rounds.iter().enumerate() {
        let mut counters = Vec::new();
        for (b, name) in done.iter().zip(images) {
            let restored = env.restore(&b.snapshot, &format!("{name}-r{round}")).await?;
            counters.push(counter(&restored));
        }
        let (a, b, c) = (counters[0], counters[1], counters[2]);
        println!("round {round}: a={a} b={b} c={c}");
        ensure!(a > 0, "round {round}: nothing written before the point");
        ensure!(
            a >= b && b >= c && c + 1 >= a,
            "round {round}: not one cut: a={a} b={b} c={c}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn incremental_after_a_group_point() -> Result<()> {
    let env = Env::new("group-incr").await?;
    let images = ["x", "y"];
    for (i, name) in images.iter().enumerate() {
        make_image(&env.pool(), name, 50 + i as u64);
    }
    let first = env.backup_together(&images).await?;
    ensure!(first.iter().all(|b| volume(b).read == "full"));
    {
        let pool = env.pool();
        let mut img = pool.open("x", None)?;
        img.write_at(9 << 20, &seeded_bytes(77, 100 * 1024))?;
        img.flush()?;
    }
    let second = env.backup_together(&images).await?;
    for (b, name) in second.iter().zip(images) {
        let v = volume(b);
        ensure!(v.read == "incremental", "{name}: {:?}", b.full_reason);
        let expected = read_image(&env.pool(), name);
        ensure!(
            env.restore(&b.snapshot, &format!("{name}-r")).await? == expected,
            "{name} differs"
        );
    }
    // Only x changed, in one segment: y read nothing, x one 4 MiB segment.
    ensure!(
        volume(&second[1]).read_bytes == 0,
        "{}",
        volume(&second[1]).read_bytes
    );
    ensure!(
        volume(&second[0]).read_bytes <= 8 << 20,
        "{}",
        volume(&second[0]).read_bytes
    );
    // A per-image backup after the point diffs from the point's pre-base too.
    let third = env.backup("x", None).await?;
    ensure!(volume(&third).read == "incremental", "{:?}", third.full_reason);
    ensure!(third.point.is_none() && !third.snapshot.tags.contains_key(GROUP_SNAPSHOT_TAG));
    env.assert_clean(&images)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn image_in_another_group_is_backed_up_alone() -> Result<()> {
    let env = Env::new("group-busy").await?;
    let images = ["p", "q", "r"];
    for (i, name) in images.iter().enumerate() {
        make_image(&env.pool(), name, 60 + i as u64);
    }
    let pool = env.pool();
    pool.create_group("theirs")?;
    pool.add_group_image("theirs", &pool, "q")?;

    let point = env.together(&images).await?;
    ensure!(point.at(&env.pool, "q").is_none());
    ensure!(point.at(&env.pool, "p").is_some() && point.at(&env.pool, "r").is_some());
    let warnings = point.warnings().join("\n");
    ensure!(
        warnings.contains(&format!("{}/q not in the group snapshot", env.pool))
            && warnings.contains("theirs"),
        "{warnings}"
    );
    let mut done = Vec::new();
    for image in images {
        done.push(env.backup(image, Some(&point)).await?);
    }
    ensure!(point.release().await.is_empty());
    ensure!(done[1].point.is_none() && done[0].point.is_some() && done[0].point == done[2].point);
    for (b, name) in done.iter().zip(images) {
        let expected = read_image(&pool, name);
        ensure!(
            env.restore(&b.snapshot, &format!("{name}-r")).await? == expected,
            "{name} differs"
        );
    }
    // Their group is as it was.
    ensure!(pool.open("q", None)?.group()? == Some((pool.id(), "theirs".to_string())));
    pool.remove_group_image("theirs", &pool, "q")?;
    pool.remove_group("theirs")?;
    env.assert_clean(&images)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_point_backup_leaves_nothing_behind() -> Result<()> {
    let env = Env::new("group-fail").await?;
    let images = ["m", "n"];
    for (i, name) in images.iter().enumerate() {
        make_image(&env.pool(), name, 70 + i as u64);
    }
    env.backup_together(&images).await?;
    let before: Vec<_> = images.iter().map(|i| env.snapshots(i)).collect();

    // The point released before m is read: its member snapshot is gone, the backup fails.
    let point = env.together(&images).await?;
    let at_m = point.at(&env.pool, "m");
    let at_n = point.at(&env.pool, "n");
    ensure!(point.release().await.is_empty());
    let options = VolumeBackupOptions {
        at: at_m,
        ..Default::default()
    };
    let failed = backup_volume(&env.repo, &env.cluster, &env.pool, "m", &options).await;
    ensure!(failed.is_err(), "a backup at a released point succeeded");
    ensure!(env.snapshots("m") == before[0], "{:?}", env.snapshots("m"));
    // A point given for another image is refused before anything is read.
    let options = VolumeBackupOptions {
        at: at_n.clone(),
        ..Default::default()
    };
    let wrong = backup_volume(&env.repo, &env.cluster, &env.pool, "m", &options)
        .await
        .err()
        .context("a point of n accepted for m")?;
    ensure!(wrong.to_string().contains("not of this image"), "{wrong}");
    // n's unused pre-base is a stray its next backup removes; m's next backup is still an
    // incremental from the base the failure kept.
    ensure!(env.snapshots("n").len() == 2, "{:?}", env.snapshots("n"));
    for image in images {
        let b = env.backup(image, None).await?;
        ensure!(volume(&b).read == "incremental", "{image}: {:?}", b.full_reason);
    }
    env.assert_clean(&images)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_image_left_in_a_killed_backups_group_joins_the_next_point() -> Result<()> {
    let env = Env::new("group-left").await?;
    let images = ["s", "t"];
    for (i, name) in images.iter().enumerate() {
        make_image(&env.pool(), name, 80 + i as u64);
    }
    // What a backup of this repository killed between its group snapshot and taking the
    // images out of the group leaves.
    let id = &env.repo.config().id;
    let old = format!("lifeboat.{}.20000101T000000.000000Z", &id[..12]);
    let pool = env.pool();
    pool.create_group(&old)?;
    pool.add_group_image(&old, &pool, "s")?;
    pool.create_group_snapshot(&old, &old)?;

    let done = env.backup_together(&images).await?;
    ensure!(done[0].point.is_some() && done[0].point == done[1].point);
    ensure!(pool.group_images(&old)?.is_empty(), "s is still in {old}");
    // The old group snapshot is left for the operator (see docs/volumes.md).
    ensure!(pool.group_snapshots(&old)?.len() == 1);
    pool.remove_group_snapshot(&old, &old)?;
    pool.remove_group(&old)?;
    env.assert_clean(&images)?;
    Ok(())
}
