//! Reading a restored NFS directory back against its snapshot, and removing a restore's
//! directory, against the harness's real nfs-ganesha: a restored copy matches entry for entry
//! and chunk for chunk; a byte changed in a file is found in its chunk; a directory missing
//! the snapshot's entries names them; a removal touches only a directory whose completion
//! mark names the snapshot asked for, takes the directory and the mark, and is done again
//! harmlessly.
#![allow(clippy::unwrap_used)] // a test that cannot set up should panic loudly

use anyhow::{Result, ensure};
use lifeboat_backup::Repository;
use lifeboat_backup::progress::Progress;
use lifeboat_backup::repository::InitOptions;
use lifeboat_tests::repos::{Backend, TestRepo};
use lifeboat_volume::nfs::{
    NfsBackupOptions, NfsLocation, RestoredRemoval, backup_nfs, remove_restored_dir, restore_nfs, verify_dir,
    write_restore_mark,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_directory_is_read_back_and_removed_only_when_marked() -> Result<()> {
    let nfs = lifeboat_tests::nfs()?;
    let dir = nfs.new_dir("nfsverify")?;
    let original = dir.local.join("original");
    std::fs::create_dir_all(original.join("sub"))?;
    let big = lifeboat_tests::volumes::seeded_bytes(11, 3 * 1024 * 1024 + 777);
    std::fs::write(original.join("orders.db"), &big)?;
    std::fs::write(original.join("sub").join("small"), b"small file")?;
    std::fs::write(original.join("empty"), b"")?;
    std::os::unix::fs::symlink("sub/small", original.join("link"))?;
    let t = TestRepo::new(Backend::Local)?;
    let repo = Repository::init(&t.store(), &[t.user_recipient()], InitOptions::default()).await?;
    let at = |p: &str| NfsLocation::new(&dir.server, &dir.share, &format!("{}/{p}", dir.name)).unwrap();
    let snap = backup_nfs(&repo, &at("original"), &NfsBackupOptions::default()).await?;
    let id = snap.id.unwrap().to_string();

    // A restored copy holds the snapshot: every entry, every chunk.
    let copy = at("copy");
    let report = restore_nfs(&repo, &snap, &copy, std::sync::Arc::new(Progress::default())).await?;
    ensure!(report.errors.is_empty(), "{:?}", report.errors);
    let check = verify_dir(&repo, &snap, &copy).await?;
    ensure!(check.ok(), "{check:?}");
    ensure!(
        (check.entries, check.files, check.bytes) == (5, 3, big.len() as u64 + 10),
        "{check:?}"
    );

    // A byte changed (through NFS, as a workload would) is found in its chunk.
    let path = format!("{}/copy/orders.db", dir.name);
    lifeboat_tests::write_over_nfs(&dir.server, &dir.share, &path, 2 * 1024 * 1024, b"!").await?;
    let check = verify_dir(&repo, &snap, &copy).await?;
    ensure!(!check.ok() && check.mismatched == 1, "{check:?}");
    ensure!(
        check.mismatches[0].starts_with("orders.db: differs in the chunk at byte "),
        "{check:?}"
    );

    // An empty directory lacks every entry, and says which.
    std::fs::create_dir(dir.local.join("empty-dir"))?;
    let check = verify_dir(&repo, &snap, &at("empty-dir")).await?;
    ensure!(check.mismatched == 5, "{check:?}");
    ensure!(
        check.mismatches.contains(&"orders.db: missing".to_string()),
        "{check:?}"
    );
    ensure!(
        check
            .mismatches
            .contains(&"sub/small: its directory is missing or not a directory".to_string()),
        "{check:?}"
    );

    // Removal: never without the mark, never with another snapshot's mark.
    ensure!(remove_restored_dir(&copy, &id).await? == RestoredRemoval::Unmarked);
    write_restore_mark(&copy, "another-snapshot").await?;
    ensure!(
        remove_restored_dir(&copy, &id).await?
            == RestoredRemoval::OtherRestore("another-snapshot".to_string())
    );
    ensure!(dir.local.join("copy/sub/small").exists(), "nothing was removed");
    write_restore_mark(&copy, &id).await?;
    ensure!(remove_restored_dir(&copy, &id).await? == RestoredRemoval::Removed);
    ensure!(!dir.local.join("copy").exists(), "the directory is removed");
    ensure!(
        !dir.local.join(".copy.lifeboat-restored-from").exists(),
        "and its mark"
    );
    ensure!(remove_restored_dir(&copy, &id).await? == RestoredRemoval::Absent);
    ensure!(original.join("orders.db").exists(), "the original is untouched");
    ensure!(
        std::fs::read_link(original.join("link"))?.to_str() == Some("sub/small"),
        "the symlink was removed as a link, never followed"
    );
    Ok(())
}
