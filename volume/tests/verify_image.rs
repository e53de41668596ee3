//! `verify_image` against the harness's real Ceph: an image restored from a volume snapshot
//! matches it chunk for chunk; one changed byte in the data, or a resize, is found.
#![allow(clippy::unwrap_used)] // a test that cannot set up should panic loudly

use anyhow::Result;
use lifeboat_backup::Repository;
use lifeboat_backup::repository::InitOptions;
use lifeboat_tests::repos::{Backend, TestRepo};
use lifeboat_tests::volumes::{IMAGE_SIZE, make_image};
use lifeboat_volume::{RbdImageSink, VolumeBackupOptions, backup_volume, restore_volume, verify_image};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_image_matches_and_a_changed_byte_or_size_is_found() -> Result<()> {
    let ceph = lifeboat_tests::ceph()?;
    let t = TestRepo::new(Backend::Local)?;
    let repo = Repository::init(&t.store(), &[t.user_recipient()], InitOptions::default()).await?;
    let cluster = ceph.connect()?;
    let pool_name = ceph.new_pool("verify")?;
    let pool = cluster.pool(&pool_name)?;
    make_image(&pool, "source", 4);
    let taken = backup_volume(
        &repo,
        &cluster,
        &pool_name,
        "source",
        &VolumeBackupOptions::default(),
    )
    .await?;
    let sink = RbdImageSink {
        cluster: cluster.clone(),
        pool: pool_name.clone(),
        image: "copy".to_string(),
        force: false,
        options: Default::default(),
        workers: 0,
        progress: Default::default(),
    };
    let written = restore_volume(&repo, &taken.snapshot, sink).await?;

    let check = verify_image(&repo, &taken.snapshot, &cluster, &pool_name, "copy").await?;
    assert!(check.ok(), "{check:?}");
    assert!(check.chunks > 0);
    assert_eq!(check.bytes, written.written, "every written byte is read back");

    // One byte of the data changed: its chunk, and only it, differs.
    let at = (5 << 20) + 4096;
    {
        let mut img = pool.open("copy", None)?;
        let mut byte = [0u8; 1];
        img.read_at(at, &mut byte)?;
        img.write_at(at, &[byte[0] ^ 0xff])?;
        img.flush()?;
    }
    let check = verify_image(&repo, &taken.snapshot, &cluster, &pool_name, "copy").await?;
    assert!(!check.ok());
    assert_eq!(check.mismatched, 1, "{check:?}");
    assert!(check.mismatches[0] <= at, "{check:?}");

    // A copy of another size is not the volume, whatever its bytes.
    pool.open("copy", None)?.resize(IMAGE_SIZE * 2, false)?;
    let check = verify_image(&repo, &taken.snapshot, &cluster, &pool_name, "copy").await?;
    assert_eq!(check.size, Some((IMAGE_SIZE * 2, IMAGE_SIZE)), "{check:?}");
    Ok(())
}
