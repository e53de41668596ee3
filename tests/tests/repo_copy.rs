//! `repo copy` across real stores: local disk, Ceph RGW (S3) and Azurite (Azure Blob), in every
//! direction; restoring from the copy; damage in the source; S3 Object Lock on RGW.
//!
//! ```sh
//! cargo test -p lifeboat-tests --test repo_copy
//! ```
//! (Kill-and-resume runs the real `drctl` and lives in `drctl/tests/copy_cli.rs`.)

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use futures::StreamExt;
use lifeboat_backup::Repository;
use lifeboat_backup::blob::BlobKind;
use lifeboat_backup::copy::{self, CopyError, CopyOptions, Selection};
use lifeboat_backup::maintenance::{check, object_lock, prune};
use lifeboat_backup::pack::pack_key;
use lifeboat_backup::progress::Progress;
use lifeboat_backup::repository::{InitOptions, RepoError};
use lifeboat_backup::restore::{RestoreOptions, restore_files};
use lifeboat_backup::snapshot::{Snapshot, snapshot_key};
use lifeboat_backup::sources::files::backup_files;
use lifeboat_backup::store::{LockMode, LockSettings};
use lifeboat_tests::repos::{Backend, TestRepo};
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;

fn progress() -> Arc<Progress> {
    Arc::new(Progress::default())
}

/// A few MiB over several packs: incompressible files (so packs fill) and a log.
fn make_data(root: &Path, seed: u32, files: u32) -> Result<()> {
    std::fs::create_dir_all(root.join("sub"))?;
    for f in 0..files {
        let bytes: Vec<u8> = (0..(3 << 20) / 32)
            .flat_map(|i: u32| *blake3::hash(&[seed, f, i].map(u32::to_le_bytes).concat()).as_bytes())
            .collect();
        std::fs::write(root.join(format!("sub/random-{f}.bin")), bytes)?;
    }
    let log: String = (0..20_000)
        .map(|i| format!("{{\"seed\":{seed},\"line\":{i},\"msg\":\"GET /api/v1/pods\"}}\n"))
        .collect();
    std::fs::write(root.join("app.log"), log)?;
    Ok(())
}

async fn init(t: &TestRepo) -> Result<Repository> {
    Ok(Repository::init(&t.store(), &[t.user_recipient()], InitOptions::default()).await?)
}

async fn backup(repo: &Repository, dir: &Path) -> Result<Snapshot> {
    Ok(backup_files(repo, &[dir.to_path_buf()], &Default::default(), progress()).await?)
}

/// Opens the copy at `dst` with the source's user key (the same keys open a replica).
async fn open_copy(src: &TestRepo, dst: &TestRepo) -> Result<Repository> {
    Ok(Repository::open(&dst.store(), &[src.user_key()]).await?)
}

/// Restores `snapshot` of `repo` and compares it with `original`, file by file.
async fn assert_restores(repo: &Repository, snapshot: &str, original: &Path, scratch: &Path) -> Result<()> {
    let snap = repo.find_snapshot(snapshot).await?;
    let target = scratch.join(format!(
        "restore-{}",
        snap.id.map(|i| i.short()).unwrap_or_default()
    ));
    let report = restore_files(repo, &snap, &target, &RestoreOptions::default(), progress()).await?;
    ensure!(report.errors.is_empty(), "restore errors: {:?}", report.errors);
    let restored = target.join(original.strip_prefix("/").unwrap_or(original));
    let out = std::process::Command::new("diff")
        .arg("-r")
        .arg(original)
        .arg(&restored)
        .output()?;
    ensure!(
        out.status.success(),
        "restore from {} differs: {}",
        repo.url(),
        String::from_utf8_lossy(&out.stdout)
    );
    Ok(())
}

async fn assert_checks(repo: &Repository) -> Result<()> {
    let report = check::check(repo, true, progress()).await?;
    ensure!(
        report.ok(),
        "check --read-data at {} failed: {report:?}",
        repo.url()
    );
    ensure!(report.unindexed_packs == 0, "unindexed packs left: {report:?}");
    Ok(())
}

/// One source per store kind, each copied to the two others; every copy restores the same
/// files, and a second copy after an incremental backup sends only the new packs.
#[tokio::test]
async fn copies_between_every_pair_of_store_kinds_and_restores_identical_data() -> Result<()> {
    let kinds = [Backend::Local, Backend::Rgw, Backend::Azurite];
    for from in kinds {
        let src = TestRepo::new(from)?;
        let data = src.path("data");
        make_data(&data, 1, 3)?;
        let repo = init(&src).await?;
        let first = backup(&repo, &data).await?;
        for to in kinds.into_iter().filter(|k| *k != from) {
            let dst = TestRepo::new(to)?;
            let report = copy::copy(&repo, &dst.store(), &CopyOptions::default(), progress())
                .await
                .with_context(|| format!("copy {from:?} → {to:?}"))?;
            ensure!(report.ok() && report.created, "{from:?} → {to:?}: {report:?}");
            ensure!(report.snapshots_copied == [first.id.context("id")?]);
            let copied = open_copy(&src, &dst).await?;
            ensure!(
                copied.config().id == repo.config().id,
                "the copy is the same repository"
            );
            assert_checks(&copied).await?;
            assert_restores(&copied, "latest", &data, src.dir.path()).await?;

            // Incremental: a new file, a second backup, a second copy.
            let extra = data.join("sub/new.bin");
            std::fs::write(&extra, format!("{from:?} to {to:?}\n").repeat(50_000))?;
            let second = backup(&repo, &data).await?;
            let again = copy::copy(&repo, &dst.store(), &CopyOptions::default(), progress()).await?;
            ensure!(again.ok() && !again.created);
            ensure!(again.snapshots_copied == [second.id.context("id")?], "{again:?}");
            ensure!(again.snapshots_present == 1);
            ensure!(
                again.bytes_copied <= second.summary.stored_bytes,
                "second copy sent {} bytes, the backup stored only {}",
                again.bytes_copied,
                second.summary.stored_bytes
            );
            assert_checks(&copied).await?;
            assert_restores(&copied, "latest", &data, src.dir.path()).await?;
            // Nothing left to do: a third copy writes nothing.
            let idle = copy::copy(&repo, &dst.store(), &CopyOptions::default(), progress()).await?;
            ensure!(
                idle.packs_copied == 0 && idle.snapshots_copied.is_empty() && idle.index_files_written == 0
            );
            std::fs::remove_file(&extra)?;
            // Forget the second snapshot at the source so the next destination starts alike.
            repo.forget_snapshots(&[second.id.context("id")?]).await?;
        }
    }
    Ok(())
}

#[tokio::test]
async fn copies_only_the_selected_snapshots_and_refuses_another_repository() -> Result<()> {
    let src = TestRepo::new(Backend::Local)?;
    let (a, b) = (src.path("a"), src.path("b"));
    make_data(&a, 2, 1)?;
    make_data(&b, 3, 1)?;
    let repo = init(&src).await?;
    let snap_a = backup(&repo, &a).await?;
    let _ = backup(&repo, &b).await?;
    let dst = TestRepo::new(Backend::Local)?;
    let id = snap_a.id.context("id")?;
    let options = CopyOptions {
        selection: Selection::Snapshots(vec![id.to_hex()[..10].to_string()]),
        ..CopyOptions::default()
    };
    // A dry run plans and writes nothing.
    let prepared = copy::prepare(&repo, &dst.store(), &options).await?;
    ensure!(prepared.plan.create_repository && prepared.plan.snapshots.len() == 1);
    prepared.release().await;
    ensure!(
        std::fs::read_dir(Path::new(&dst.url))?.next().is_none(),
        "a dry run wrote something"
    );

    let report = copy::copy(&repo, &dst.store(), &options, progress()).await?;
    ensure!(report.snapshots_copied == [id]);
    let copied = open_copy(&src, &dst).await?;
    ensure!(copied.snapshots().await?.len() == 1);
    assert_checks(&copied).await?;
    // The index at the destination covers exactly the packs stored there.
    let stored = copied.list("data/").await?.len();
    ensure!(copied.indexed().await?.index().packs().len() == stored);

    // A destination holding another repository is refused, and nothing is written there.
    let other = TestRepo::new(Backend::Local)?;
    init(&other).await?;
    let before = other.store().object_store().list(None).count().await;
    let err = copy::copy(&repo, &other.store(), &CopyOptions::default(), progress())
        .await
        .expect_err("copy into another repository");
    ensure!(matches!(err, CopyError::DifferentRepository { .. }), "{err}");
    ensure!(err.to_string().contains("different repository"), "{err}");
    ensure!(other.store().object_store().list(None).count().await == before);
    // So is an unknown snapshot id, naming it.
    let options = CopyOptions {
        selection: Selection::Snapshots(vec!["ffffffff".into()]),
        ..CopyOptions::default()
    };
    let err = copy::copy(&repo, &dst.store(), &options, progress())
        .await
        .expect_err("unknown snapshot");
    ensure!(err.to_string().contains("ffffffff"), "{err}");
    // So is a non-repository directory with files in it.
    let junk = TestRepo::new(Backend::Local)?;
    std::fs::create_dir_all(Path::new(&junk.url).join("data/00"))?;
    std::fs::write(Path::new(&junk.url).join("data/00/zz"), b"not ours")?;
    let err = copy::copy(&repo, &junk.store(), &CopyOptions::default(), progress())
        .await
        .expect_err("copy into a directory that is not a repository");
    ensure!(matches!(err, CopyError::NotEmpty { .. }), "{err}");
    // And a directory of someone's files, or a bucket prefix another tool writes: refused,
    // naming what is there, and nothing is written next to them.
    let home = TestRepo::new(Backend::Local)?;
    std::fs::create_dir_all(Path::new(&home.url).join("photos"))?;
    std::fs::write(Path::new(&home.url).join("photos/cat.jpg"), b"meow")?;
    std::fs::write(Path::new(&home.url).join("notes.txt"), b"keep me")?;
    let bucket = TestRepo::new(Backend::Rgw)?;
    bucket
        .store()
        .object_store()
        .put(&ObjectPath::from("other-tool/state.json"), b"{}".to_vec().into())
        .await?;
    for (foreign, what) in [(&home, "notes.txt"), (&bucket, "other-tool/")] {
        let before = foreign.store().object_store().list(None).count().await;
        let err = copy::copy(&repo, &foreign.store(), &CopyOptions::default(), progress())
            .await
            .expect_err("copy next to foreign objects");
        ensure!(matches!(err, CopyError::NotEmpty { .. }), "{err}");
        ensure!(
            err.to_string().contains(what) || err.to_string().contains("photos/"),
            "{err}"
        );
        ensure!(foreign.store().object_store().list(None).count().await == before);
    }
    Ok(())
}

/// A data pack snapshot `snap` needs (each test's snapshots hold disjoint data, so the pack
/// belongs to that snapshot alone).
async fn a_data_pack(repo: &Repository, snap: &Snapshot) -> Result<String> {
    let indexed = repo.indexed().await?;
    let index = indexed.index();
    let chunks: Vec<_> = indexed
        .tree(snap)
        .await?
        .into_iter()
        .flat_map(|n| n.chunks)
        .collect();
    let pack = chunks
        .iter()
        .filter_map(|c| index.get(c))
        .find(|l| l.kind == BlobKind::Data)
        .context("a data pack")?
        .pack;
    Ok(pack_key(&pack))
}

#[tokio::test]
async fn a_pack_damaged_in_the_source_is_detected_while_streaming_and_not_copied() -> Result<()> {
    let src = TestRepo::new(Backend::Local)?;
    let (a, b) = (src.path("a"), src.path("b"));
    make_data(&a, 4, 2)?;
    make_data(&b, 5, 1)?;
    let repo = init(&src).await?;
    let snap_a = backup(&repo, &a).await?;
    let snap_b = backup(&repo, &b).await?;
    let damaged = a_data_pack(&repo, &snap_a).await?;
    let path = PathBuf::from(&src.url).join(&damaged);
    let mut bytes = std::fs::read(&path)?;
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&path, &bytes)?;

    for to in [Backend::Local, Backend::Rgw] {
        let dst = TestRepo::new(to)?;
        let report = copy::copy(&repo, &dst.store(), &CopyOptions::default(), progress()).await?;
        ensure!(!report.ok(), "{report:?}");
        ensure!(
            report
                .damaged
                .get(&damaged)
                .is_some_and(|why| why.contains("hash")),
            "the damaged pack is named: {report:?}"
        );
        let a_id = snap_a.id.context("id")?.to_hex();
        ensure!(report.skipped.contains_key(&a_id), "{report:?}");
        ensure!(report.snapshots_copied == [snap_b.id.context("id")?]);
        // Not propagated: the destination never saw the pack, and everything there checks out.
        let copied = open_copy(&src, &dst).await?;
        let head = copied
            .object_store()
            .head(&ObjectPath::from(damaged.as_str()))
            .await;
        ensure!(
            matches!(head, Err(object_store::Error::NotFound { .. })),
            "{head:?}"
        );
        assert_checks(&copied).await?;
        assert_restores(&copied, &snap_b.id.context("id")?.to_hex(), &b, src.dir.path()).await?;
        ensure!(
            copied.find_snapshot(&a_id).await.is_err(),
            "the damaged snapshot is not there"
        );
    }
    Ok(())
}

/// Copies into an RGW bucket created with object lock: every object is retained, `check`
/// says so, `forget` and `prune` leave retained objects alone and say so; stores without the
/// feature are refused with the reason.
#[tokio::test]
async fn object_lock_on_rgw_keeps_copies_from_early_deletion_and_prune_plans_around_it() -> Result<()> {
    let src = TestRepo::new(Backend::Local)?;
    let (a, b) = (src.path("a"), src.path("b"));
    make_data(&a, 6, 1)?;
    make_data(&b, 7, 1)?;
    let repo = init(&src).await?;
    let snap_a = backup(&repo, &a).await?;
    let snap_b = backup(&repo, &b).await?;
    let locked = LockSettings {
        mode: LockMode::Governance,
        days: 1,
    };
    let options = CopyOptions {
        object_lock: Some(locked),
        ..CopyOptions::default()
    };

    // Where the store cannot lock, the copy refuses and says why.
    for (backend, why) in [
        (Backend::Rgw, "not enabled"),
        (Backend::Azurite, "Azure Blob"),
        (Backend::Local, "local disk"),
    ] {
        let plain = TestRepo::new(backend)?;
        let err = copy::copy(&repo, &plain.store(), &options, progress())
            .await
            .expect_err("lock on a store without it");
        ensure!(matches!(err, CopyError::LockUnavailable { .. }), "{err}");
        ensure!(err.to_string().contains(why), "{backend:?}: {err}");
    }

    let dst = TestRepo::new(Backend::RgwObjectLock)?;
    let report = copy::copy(&repo, &dst.store(), &options, progress()).await?;
    ensure!(report.ok() && report.snapshots_copied.len() == 2, "{report:?}");
    let retention = report.retention.context("retention")?;
    ensure!(retention.until > chrono::Utc::now() + chrono::Duration::hours(23));
    let copied = open_copy(&src, &dst).await?;
    let state = object_lock::report(&copied).await?;
    ensure!(state.support.enabled(), "{state:?}");
    ensure!(
        state.locked == state.objects && state.unlocked.is_empty(),
        "{state:?}"
    );
    let lock = copied.object_lock().context("lock client")?;
    let r = lock
        .retention(&snapshot_key(&snap_a.id.context("id")?))
        .await?
        .context("the snapshot is retained")?;
    ensure!(r.mode == LockMode::Governance && r.until >= retention.until - chrono::Duration::seconds(1));

    // forget refuses a retained snapshot, naming it and the date.
    let err = copied
        .forget_snapshots(&[snap_b.id.context("id")?])
        .await
        .expect_err("deleting a locked snapshot");
    ensure!(matches!(err, RepoError::Retained { .. }), "{err}");
    ensure!(err.to_string().contains("locked"), "{err}");

    // Someone hides snapshot b behind a delete marker (a plain S3 DELETE on a versioned
    // bucket): its packs are now unreferenced but retained. Prune keeps them and says so.
    let b_key = snapshot_key(&snap_b.id.context("id")?);
    copied
        .object_store()
        .delete(&ObjectPath::from(b_key.as_str()))
        .await?;
    let b_pack = a_data_pack(&repo, &snap_b).await?;
    let plan = prune::prune(&copied, true).await?;
    ensure!(plan.delete.is_empty() && plan.repack.is_empty(), "{plan:?}");
    ensure!(
        plan.held.contains_key(&b_pack),
        "prune holds the retained pack: {plan:?}"
    );
    ensure!(
        plan.held.keys().any(|k| k.starts_with("index/")),
        "and the retained index files"
    );
    let applied = prune::prune(&copied, false).await?;
    ensure!(applied.held.contains_key(&b_pack));
    ensure!(
        copied
            .object_store()
            .head(&ObjectPath::from(b_pack.as_str()))
            .await
            .is_ok(),
        "still stored"
    );
    assert_checks(&copied).await?;
    assert_restores(&copied, &snap_a.id.context("id")?.to_hex(), &a, src.dir.path()).await?;

    // A second copy (the source gained a snapshot) extends the retention of what it reuses.
    std::fs::write(a.join("more.txt"), "more\n".repeat(1000))?;
    let _ = backup(&repo, &a).await?;
    let later = LockSettings {
        mode: LockMode::Governance,
        days: 2,
    };
    let again = copy::copy(
        &repo,
        &dst.store(),
        &CopyOptions {
            object_lock: Some(later),
            selection: Selection::Snapshots(vec!["latest".into()]),
            ..CopyOptions::default()
        },
        progress(),
    )
    .await?;
    ensure!(again.ok() && again.retention_extended > 0, "{again:?}");
    let reused = lock
        .retention(&a_data_pack(&repo, &snap_a).await?)
        .await?
        .context("retained")?;
    ensure!(
        reused.until > chrono::Utc::now() + chrono::Duration::hours(47),
        "{reused:?}"
    );
    Ok(())
}
