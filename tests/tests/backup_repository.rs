//! The backup engine end to end, on local disk and on Ceph RGW: round trips, incremental
//! backups, keys, damage, crashes, hostile snapshots and failing storage.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Result, ensure};
use lifeboat_backup::archiver::Writer;
use lifeboat_backup::crypto::{UserKey, UserRecipient};
use lifeboat_backup::index::Index;
use lifeboat_backup::maintenance::{check, forget, prune};
use lifeboat_backup::progress::Progress;
use lifeboat_backup::repository::{InitOptions, LockKind, LockTimings, RepoError, StoreFailure};
use lifeboat_backup::restore::{RestoreOptions, restore_files};
use lifeboat_backup::snapshot::{Node, NodeKind, Snapshot, SnapshotDetails, Summary};
use lifeboat_backup::sources::files::{FilesOptions, backup_files};
use lifeboat_backup::{BackupOptions, Repository, Source, Written};
use lifeboat_tests::repos::{Backend, TestRepo, make_identity};
use object_store::ObjectStoreExt;

fn progress() -> Arc<Progress> {
    Arc::new(Progress::default())
}

/// A small tree with the shapes that matter: random and compressible data, a file spanning
/// several chunks, an empty file, nesting, a symlink, odd permissions.
fn make_data(root: &Path) -> Result<()> {
    std::fs::create_dir_all(root.join("logs/old"))?;
    std::fs::create_dir_all(root.join("empty-dir"))?;
    let random: Vec<u8> = (0..3_000_000u32)
        .map(|i| blake3::hash(&i.to_le_bytes()).as_bytes()[0])
        .collect();
    std::fs::write(root.join("random.bin"), &random)?;
    let log: String = (0..60_000)
        .map(|i| format!("{{\"ts\":{i},\"level\":\"info\",\"msg\":\"GET /api/v1/pods\"}}\n"))
        .collect();
    std::fs::write(root.join("logs/app.log"), &log)?;
    std::fs::write(root.join("logs/old/empty.log"), b"")?;
    std::fs::write(root.join("secret.key"), b"0123456789")?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root.join("secret.key"), std::fs::Permissions::from_mode(0o600))?;
    std::os::unix::fs::symlink("logs/app.log", root.join("current.log"))?;
    Ok(())
}

/// Asserts two directory trees hold the same files, links and permissions.
fn assert_same_tree(a: &Path, b: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let list = |root: &Path| -> Result<BTreeMap<PathBuf, (u32, Vec<u8>)>> {
        let mut out = BTreeMap::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(p) = stack.pop() {
            let meta = std::fs::symlink_metadata(&p)?;
            let rel = p.strip_prefix(root)?.to_path_buf();
            let content = if meta.file_type().is_symlink() {
                std::fs::read_link(&p)?.to_string_lossy().as_bytes().to_vec()
            } else if meta.is_dir() {
                for e in std::fs::read_dir(&p)? {
                    stack.push(e?.path());
                }
                Vec::new()
            } else {
                std::fs::read(&p)?
            };
            out.insert(rel, (meta.mode(), content));
        }
        Ok(out)
    };
    let (la, lb) = (list(a)?, list(b)?);
    ensure!(
        la.keys().collect::<Vec<_>>() == lb.keys().collect::<Vec<_>>(),
        "trees differ: {:?} vs {:?}",
        la.keys(),
        lb.keys()
    );
    for (k, v) in &la {
        ensure!(lb.get(k) == Some(v), "{} differs", k.display());
    }
    Ok(())
}

async fn init(t: &TestRepo) -> Result<Repository> {
    Ok(Repository::init(&t.store(), &[t.user_recipient()], InitOptions::default()).await?)
}

async fn open(t: &TestRepo) -> Result<Repository> {
    Ok(Repository::open(&t.store(), &[t.user_key()]).await?)
}

async fn backup(repo: &Repository, path: &Path) -> Result<Snapshot> {
    Ok(backup_files(repo, &[path.to_path_buf()], &FilesOptions::default(), progress()).await?)
}

async fn restore(
    repo: &Repository,
    snap: &Snapshot,
    target: &Path,
) -> Result<lifeboat_backup::restore::RestoreReport> {
    Ok(restore_files(repo, snap, target, &RestoreOptions::default(), progress()).await?)
}

/// Where a backed-up absolute path lands under a restore target.
fn restored(target: &Path, original: &Path) -> PathBuf {
    target.join(original.strip_prefix("/").unwrap_or(original))
}

async fn round_trip_and_incremental(backend: Backend) -> Result<()> {
    let t = TestRepo::new(backend)?;
    let data = t.path("data");
    make_data(&data)?;
    init(&t).await?;
    let repo = open(&t).await?;

    // Every file is read the first time, the empty one too (a size of 0 is not trusted:
    // /proc files say 0 and have content).
    let first = backup(&repo, &data).await?;
    ensure!(
        first.summary.files == 4 && first.summary.files_read == 4,
        "{:?}",
        first.summary
    );
    let out = t.path("out1");
    let report = restore(&repo, &first, &out).await?;
    ensure!(report.errors.is_empty(), "{:?}", report.errors);
    assert_same_tree(&data, &restored(&out, &data))?;

    // Change one file: only it is read again, and only its changed chunk is new.
    let mut log = std::fs::read(data.join("logs/app.log"))?;
    log.extend_from_slice(b"{\"ts\":-1,\"msg\":\"appended\"}\n");
    std::fs::write(data.join("logs/app.log"), &log)?;
    let second = backup(&repo, &data).await?;
    ensure!(second.parent == first.id, "parent not recorded");
    ensure!(
        second.summary.files_read == 1,
        "read {} files again",
        second.summary.files_read
    );
    // At most that file's chunks and the new tree listing are new.
    ensure!(
        second.summary.new_bytes <= log.len() as u64 + 64 * 1024,
        "{:?}",
        second.summary
    );
    ensure!(
        second.summary.stored_bytes < first.summary.stored_bytes / 4,
        "{:?}",
        second.summary
    );
    let out = t.path("out2");
    restore(&repo, &second, &out).await?;
    assert_same_tree(&data, &restored(&out, &data))?;

    // The first snapshot still restores as it was.
    let snaps = repo.snapshots().await?;
    ensure!(snaps.len() == 2);
    let report = check::check(&repo, true, progress()).await?;
    ensure!(report.ok(), "{report:?}");
    Ok(())
}

#[tokio::test]
async fn local_round_trip_and_incremental() -> Result<()> {
    round_trip_and_incremental(Backend::Local).await
}

#[tokio::test]
async fn rgw_round_trip_and_incremental() -> Result<()> {
    round_trip_and_incremental(Backend::Rgw).await
}

#[tokio::test]
async fn identical_data_is_stored_once() -> Result<()> {
    let t = TestRepo::new(Backend::Local)?;
    make_data(&t.path("a"))?;
    make_data(&t.path("b"))?;
    let repo = init(&t).await?;
    let a = backup(&repo, &t.path("a")).await?;
    let b = backup(&repo, &t.path("b")).await?;
    ensure!(a.summary.new_bytes > 3_000_000);
    // Only the second tree listing (its paths differ) is new.
    ensure!(
        b.summary.new_bytes < 16 * 1024,
        "second copy added {} bytes",
        b.summary.new_bytes
    );
    Ok(())
}

async fn wrong_key(backend: Backend) -> Result<()> {
    let t = TestRepo::new(backend)?;
    init(&t).await?;
    let before = t.store().object_store().list(None).count_items().await;
    let (other, _) = make_identity(t.dir.path(), "stranger")?;
    let err = Repository::open(&t.store(), &[UserKey::identity_file(&other)?])
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("opened with a stranger's key"))?;
    let text = err.to_string();
    ensure!(matches!(err, RepoError::WrongKey { .. }), "{text}");
    ensure!(text.contains(&t.url) && text.contains("stranger.age"), "{text}");
    let err = Repository::open(&t.store(), &[]).await.err();
    ensure!(matches!(err, Some(RepoError::NoKeyGiven { .. })), "{err:?}");
    let after = t.store().object_store().list(None).count_items().await;
    ensure!(before == after, "a failed open wrote objects");
    // A second init refuses and writes nothing.
    let again = Repository::init(&t.store(), &[t.user_recipient()], InitOptions::default()).await;
    ensure!(matches!(again, Err(RepoError::AlreadyExists { .. })));
    ensure!(t.store().object_store().list(None).count_items().await == after);
    Ok(())
}

trait CountItems {
    async fn count_items(self) -> usize;
}

impl<S: futures::Stream + Unpin> CountItems for S {
    async fn count_items(self) -> usize {
        use futures::StreamExt;
        self.count().await
    }
}

#[tokio::test]
async fn local_wrong_key_is_named_and_writes_nothing() -> Result<()> {
    wrong_key(Backend::Local).await
}

#[tokio::test]
async fn rgw_wrong_key_is_named_and_writes_nothing() -> Result<()> {
    wrong_key(Backend::Rgw).await
}

#[tokio::test]
async fn keys_can_be_added_and_removed_without_rewriting_data() -> Result<()> {
    let t = TestRepo::new(Backend::Local)?;
    make_data(&t.path("data"))?;
    let repo = init(&t).await?;
    backup(&repo, &t.path("data")).await?;
    let data_before: Vec<_> = repo.list("data/").await?;
    let pass = t.path("pass.txt");
    std::fs::write(&pass, "correct horse battery staple\n")?;
    let id2 = repo.add_key(&UserRecipient::passphrase_file(&pass)?).await?;
    let by_pass = Repository::open(&t.store(), &[UserKey::passphrase_file(&pass)?]).await?;
    ensure!(by_pass.key_id() == id2);
    ensure!(by_pass.snapshots().await?.len() == 1);
    let keys = by_pass.list_keys().await?;
    ensure!(keys.len() == 2, "{keys:?}");
    // The key in use is not removed without --force (its holder may have no other).
    let own = repo.remove_key(repo.key_id(), false).await;
    ensure!(
        matches!(own, Err(lifeboat_backup::RepoError::KeyInUse { .. })),
        "{own:?}"
    );
    ensure!(open(&t).await.is_ok(), "the refused removal removed the key");
    by_pass.remove_key(repo.key_id(), false).await?;
    ensure!(
        open(&t).await.is_err(),
        "the removed key still opens the repository"
    );
    let last = by_pass
        .remove_key(&id2, true)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    ensure!(last.contains("only key"), "{last}");
    ensure!(by_pass.list("data/").await? == data_before, "data was rewritten");
    Ok(())
}

async fn damaged_packs(backend: Backend) -> Result<()> {
    let t = TestRepo::new(backend)?;
    let data = t.path("data");
    make_data(&data)?;
    // A second random file so the damage hits only part of the snapshot.
    let other: Vec<u8> = (0..2_000_000u32)
        .map(|i| blake3::hash(&(i ^ 0xabcdef).to_le_bytes()).as_bytes()[1])
        .collect();
    std::fs::write(data.join("other.bin"), &other)?;
    let repo = init(&t).await?;
    let snap = backup(&repo, &data).await?;

    // Find the pack holding random.bin's first chunk and delete it.
    let indexed = repo.indexed().await?;
    let index = indexed.index();
    let nodes = indexed.tree(&snap).await?;
    let victim = nodes
        .iter()
        .find(|n| n.path.ends_with("random.bin"))
        .ok_or_else(|| anyhow::anyhow!("no random.bin"))?;
    let pack = index
        .get(&victim.chunks[0])
        .ok_or_else(|| anyhow::anyhow!("chunk not indexed"))?
        .pack;
    let key = lifeboat_backup::pack::pack_key(&pack);
    repo.object_store().delete(&key.as_str().into()).await?;

    let report = check::check(&repo, false, progress()).await?;
    ensure!(!report.ok());
    ensure!(report.damaged_packs.contains_key(&key), "{report:?}");
    let sid = snap.id.map(|i| i.to_hex()).unwrap_or_default();
    let files = report.affected.get(&sid).cloned().unwrap_or_default();
    ensure!(files.iter().any(|f| f.contains("random.bin")), "{files:?}");

    restores_around(&repo, &snap, &pack, &t.path("out")).await
}

/// Restores `snap` while `pack` is damaged: every file with a blob in it is named in the
/// report and not left behind half-written; every other file restores intact.
async fn restores_around(
    repo: &Repository,
    snap: &Snapshot,
    pack: &lifeboat_backup::blob::PackId,
    out: &Path,
) -> Result<()> {
    let indexed = repo.indexed().await?;
    let index = indexed.index();
    let nodes = indexed.tree(snap).await?;
    let rep = restore(repo, snap, out).await?;
    let (affected, unaffected): (Vec<&Node>, Vec<&Node>) =
        nodes.iter().filter(|n| n.kind == NodeKind::File).partition(|n| {
            n.chunks
                .iter()
                .any(|c| index.get(c).is_some_and(|l| l.pack == *pack))
        });
    ensure!(!affected.is_empty() && !unaffected.is_empty());
    for n in affected {
        ensure!(
            rep.errors.iter().any(|e| e.contains(&n.path)),
            "{} not named: {:?}",
            n.path,
            rep.errors
        );
        ensure!(!out.join(&n.path).exists(), "{} left behind", n.path);
    }
    // Nor under its temporary name.
    let leftovers = lifeboat_tests::files::restore_leftovers(out);
    ensure!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    for n in unaffected {
        let original = Path::new("/").join(&n.path);
        ensure!(
            std::fs::read(out.join(&n.path))? == std::fs::read(&original)?,
            "{} not restored",
            n.path
        );
    }
    Ok(())
}

#[tokio::test]
async fn local_deleted_pack_is_named_and_the_rest_restores() -> Result<()> {
    damaged_packs(Backend::Local).await
}

#[tokio::test]
async fn rgw_deleted_pack_is_named_and_the_rest_restores() -> Result<()> {
    damaged_packs(Backend::Rgw).await
}

async fn corrupted_pack(backend: Backend) -> Result<()> {
    let t = TestRepo::new(backend)?;
    make_data(&t.path("data"))?;
    let repo = init(&t).await?;
    let snap = backup(&repo, &t.path("data")).await?;
    // A data pack: the structure check reads tree packs, so it would notice those anyway.
    let indexed = repo.indexed().await?;
    let index = indexed.index();
    let pack = index
        .packs()
        .iter()
        .find(|p| p.kind == lifeboat_backup::blob::BlobKind::Data)
        .ok_or_else(|| anyhow::anyhow!("no data packs"))?;
    let key = lifeboat_backup::pack::pack_key(&pack.id);
    let path: object_store::path::Path = key.as_str().into();
    let original = repo.object_store().get(&path).await?.bytes().await?;
    let mut bytes = original.to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    repo.object_store().put(&path, bytes.into()).await?;
    ensure!(
        check::check(&repo, false, progress()).await?.ok(),
        "structure check should not read data"
    );
    let report = check::check(&repo, true, progress()).await?;
    ensure!(report.damaged_packs.contains_key(&key), "{report:?}");
    ensure!(
        !report.affected.is_empty(),
        "no snapshot named as affected: {report:?}"
    );
    // A restore streams packs and writes blobs as they decrypt: files with a blob after the
    // damage, and those written before the damage was found, must all be undone.
    restores_around(&repo, &snap, &pack.id, &t.path("out-flipped")).await?;

    // Another valid pack of this repository under the damaged one's name: it decrypts, so
    // only the name check at the end of the stream catches it.
    let tree_pack = index
        .packs()
        .iter()
        .find(|p| p.kind == lifeboat_backup::blob::BlobKind::Tree)
        .ok_or_else(|| anyhow::anyhow!("no tree packs"))?;
    let tree_key = lifeboat_backup::pack::pack_key(&tree_pack.id);
    let swapped = repo
        .object_store()
        .get(&tree_key.as_str().into())
        .await?
        .bytes()
        .await?;
    repo.object_store().put(&path, swapped.into()).await?;
    restores_around(&repo, &snap, &pack.id, &t.path("out-swapped")).await?;
    repo.object_store().put(&path, original.into()).await?;
    restore(&repo, &snap, &t.path("out-mended")).await?;
    assert_same_tree(&restored(&t.path("out-mended"), &t.path("data")), &t.path("data"))
}

#[tokio::test]
async fn local_corrupted_pack_is_found_by_read_data() -> Result<()> {
    corrupted_pack(Backend::Local).await
}

#[tokio::test]
async fn rgw_corrupted_pack_is_found_by_read_data() -> Result<()> {
    corrupted_pack(Backend::Rgw).await
}

#[tokio::test]
async fn concurrent_backups_into_one_repository_are_safe() -> Result<()> {
    let t = TestRepo::new(Backend::Local)?;
    make_data(&t.path("a"))?;
    make_data(&t.path("b"))?;
    std::fs::write(t.path("b/extra.txt"), "only in b")?;
    init(&t).await?;
    let (ra, rb) = (open(&t).await?, open(&t).await?);
    let (pa, pb) = (t.path("a"), t.path("b"));
    let (sa, sb) = tokio::join!(backup(&ra, &pa), backup(&rb, &pb));
    let (sa, sb) = (sa?, sb?);
    let repo = open(&t).await?;
    ensure!(repo.snapshots().await?.len() == 2);
    ensure!(check::check(&repo, true, progress()).await?.ok());
    for (snap, dir, out) in [(&sa, "a", "out-a"), (&sb, "b", "out-b")] {
        let out = t.path(out);
        restore(&repo, snap, &out).await?;
        assert_same_tree(&t.path(dir), &restored(&out, &t.path(dir)))?;
    }
    Ok(())
}

async fn hostile_snapshot(repo: &Repository, nodes: Vec<Node>) -> Result<Snapshot> {
    Ok(lifeboat_tests::repos::write_snapshot(repo, nodes, None).await?)
}

#[tokio::test]
async fn restore_never_writes_outside_the_target() -> Result<()> {
    let t = TestRepo::new(Backend::Local)?;
    let repo = init(&t).await?;
    let outside = t.path("outside");
    std::fs::create_dir(&outside)?;
    let node = |path: &str, kind: NodeKind, target: Option<String>| Node {
        path: path.to_string(),
        kind,
        mode: 0o644,
        target,
        ..Node::default()
    };
    let snap = hostile_snapshot(
        &repo,
        vec![
            node("../escape", NodeKind::File, None),
            node(&format!("{}/abs", outside.display()), NodeKind::File, None),
            node("a/../../escape2", NodeKind::File, None),
            node("link", NodeKind::Symlink, Some(outside.display().to_string())),
            node("link/through-symlink", NodeKind::File, None),
            node("fine.txt", NodeKind::File, None),
        ],
    )
    .await?;
    let target = t.path("target");
    let report = restore(&repo, &snap, &target).await?;
    ensure!(
        std::fs::read_dir(&outside)?.count() == 0,
        "something was written outside the target"
    );
    ensure!(!t.path("escape").exists() && !t.path("escape2").exists());
    ensure!(target.join("fine.txt").exists());
    // Three unsafe paths, and the file under the symlink (the tree says `link` is no
    // directory).
    ensure!(
        report.errors.iter().filter(|e| e.contains("refused")).count() == 4,
        "{:?}",
        report.errors
    );
    Ok(())
}

async fn failing_store(backend: Backend) -> Result<()> {
    let t = TestRepo::new(backend)?;
    make_data(&t.path("data"))?;
    init(&t).await?;
    let faulty: Arc<dyn object_store::ObjectStore> = Arc::new(lifeboat_tests::faults::FailingStore::new(
        t.store().object_store().clone(),
        "data/",
        0,
    ));
    let repo = Repository::open_with(faulty, &t.url, &[t.user_key()]).await?;
    let err = backup(&repo, &t.path("data"))
        .await
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default();
    ensure!(
        err.contains("data/") && err.contains("503"),
        "error does not name the object and cause: {err}"
    );
    let faulty: Arc<dyn object_store::ObjectStore> = Arc::new(lifeboat_tests::faults::FailingStore::new(
        t.store().object_store().clone(),
        "data/",
        0,
    ));
    let repo = Repository::open_with(faulty, &t.url, &[t.user_key()]).await?;
    let err = backup_files(&repo, &[t.path("data")], &FilesOptions::default(), progress())
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("the backup succeeded on a failing store"))?;
    ensure!(
        err.is_retryable() && err.store_failure() == Some(StoreFailure::Transient),
        "a 503 that outlasted the retries is not classed as transient: {err:?}"
    );
    let repo = open(&t).await?;
    ensure!(repo.snapshots().await?.is_empty(), "a snapshot became visible");
    ensure!(check::check(&repo, false, progress()).await?.ok());
    // And the next backup on a healthy store works.
    backup(&repo, &t.path("data")).await?;
    Ok(())
}

#[tokio::test]
async fn local_store_failure_names_the_object_and_leaves_no_snapshot() -> Result<()> {
    failing_store(Backend::Local).await
}

#[tokio::test]
async fn rgw_store_failure_names_the_object_and_leaves_no_snapshot() -> Result<()> {
    failing_store(Backend::Rgw).await
}

#[tokio::test]
async fn forget_and_prune_reclaim_space_and_keep_what_is_kept() -> Result<()> {
    let t = TestRepo::new(Backend::Local)?;
    let data = t.path("data");
    make_data(&data)?;
    let repo = init(&t).await?;
    backup(&repo, &data).await?;
    for round in 0..2u32 {
        let fresh: Vec<u8> = (0..1_500_000u32)
            .map(|i| blake3::hash(&(i + 1000 * round).to_be_bytes()).as_bytes()[2])
            .collect();
        std::fs::write(data.join("random.bin"), &fresh)?;
        backup(&repo, &data).await?;
    }
    let stored_before: u64 = repo.list("data/").await?.iter().map(|(_, s)| s).sum();
    let snaps = repo.snapshots().await?;
    ensure!(snaps.len() == 3);
    let policy = forget::RetentionPolicy {
        keep_last: 1,
        ..Default::default()
    };
    let dry = forget::forget(&repo, &policy, Default::default(), true)
        .await?
        .groups;
    ensure!(dry[0].remove.len() == 2 && dry[0].keep.len() == 1);
    ensure!(repo.snapshots().await?.len() == 3, "a dry run forgot snapshots");
    let plan = forget::forget(&repo, &policy, Default::default(), false)
        .await?
        .groups;
    ensure!(plan == dry, "{plan:?} is not what the dry run said: {dry:?}");
    ensure!(repo.snapshots().await?.len() == 1);
    ensure!(repo.list("locks/").await?.is_empty(), "forget left its lock");
    let dry = prune::prune(&repo, true).await?;
    ensure!(
        repo.list("data/").await?.iter().map(|(_, s)| s).sum::<u64>() == stored_before,
        "dry run changed data"
    );
    ensure!(!dry.delete.is_empty() || !dry.repack.is_empty(), "{dry:?}");
    prune::prune(&repo, false).await?;
    let stored_after: u64 = repo.list("data/").await?.iter().map(|(_, s)| s).sum();
    ensure!(
        stored_after < stored_before * 2 / 3,
        "{stored_before} -> {stored_after}"
    );
    ensure!(check::check(&repo, true, progress()).await?.ok());
    let latest = repo.find_snapshot("latest").await?;
    let out = t.path("out");
    restore(&repo, &latest, &out).await?;
    assert_same_tree(&data, &restored(&out, &data))?;
    Ok(())
}

#[tokio::test]
async fn prune_waits_for_no_one_and_backups_wait_for_prune() -> Result<()> {
    let t = TestRepo::new(Backend::Local)?;
    make_data(&t.path("data"))?;
    let repo = init(&t).await?;
    let shared = repo.lock(LockKind::Shared, "backup").await?;
    let err = prune::prune(&repo, false)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    ensure!(err.contains("locked") && err.contains("backup"), "{err}");
    shared.release().await?;
    let exclusive = repo.lock(LockKind::Exclusive, "prune").await?;
    let err = backup(&repo, &t.path("data"))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    ensure!(
        err.contains("locked by pid") && err.contains("exclusive lock for prune, taken"),
        "{err}"
    );
    ensure!(
        err.contains("Wait for it to finish") && err.contains("lapses at"),
        "{err}"
    );
    // A crashed holder: its lock stays until it expires. (Dropping the guard would be a
    // cancelled operation, whose lock is removed in the background; forgetting it leaves the
    // lock object as a killed process does, and its refresher asleep until the test ends.)
    std::mem::forget(exclusive);
    // An expired lock no longer blocks anyone.
    let locks = repo.list("locks/").await?;
    ensure!(locks.len() == 1);
    let stale = serde_json::json!({"kind":"exclusive","purpose":"prune","hostname":"gone","pid":1,
        "created":"2020-01-01T00:00:00Z","expires":"2020-01-01T00:30:00Z"});
    let path = Path::new(&t.url).join(&locks[0].0);
    std::fs::write(path, stale.to_string())?;
    backup(&repo, &t.path("data")).await?;
    Ok(())
}

#[tokio::test]
async fn index_is_small_in_memory() -> Result<()> {
    let t = TestRepo::new(Backend::Local)?;
    make_data(&t.path("data"))?;
    let repo = init(&t).await?;
    backup(&repo, &t.path("data")).await?;
    let indexed = repo.indexed().await?;
    let index: &Index = indexed.index();
    ensure!(index.memory_bytes() <= index.blob_count() * 48 + index.packs().len() * 64);
    Ok(())
}

#[tokio::test]
async fn files_larger_than_memory_buffers_stream_through_the_chunker() -> Result<()> {
    use std::io::Read;
    let t = TestRepo::new(Backend::Local)?;
    let data = t.path("data");
    std::fs::create_dir(&data)?;
    let mut big = vec![0u8; 40 << 20];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut big)?;
    std::fs::write(data.join("big.bin"), &big)?;
    let repo = init(&t).await?;
    let snap = backup(&repo, &data).await?;
    ensure!(snap.summary.new_blobs > 20, "{:?}", snap.summary);
    let out = t.path("out");
    restore(&repo, &snap, &out).await?;
    ensure!(std::fs::read(restored(&out, &data).join("big.bin"))? == big);
    Ok(())
}

#[tokio::test]
async fn rgw_throttling_is_retried_then_reported_with_the_object_key() -> Result<()> {
    use lifeboat_tests::fault_proxy::{Dialect, Fault, FaultConfig, FaultProxy};
    let t = TestRepo::new(Backend::Rgw)?;
    make_data(&t.path("data"))?;
    init(&t).await?;
    let upstream = t.options.s3_endpoint.clone().unwrap_or_default();
    // 503 Slow Down to PUTs only, `limit` of them.
    let throttle = |limit| FaultConfig {
        kinds: vec![Fault::Throttle],
        methods: Some(vec!["PUT".to_string()]),
        limit,
        ..FaultConfig::new(1, Dialect::S3, 1.0)
    };

    // A few 503s: retried with backoff, and the backup succeeds.
    let proxy = FaultProxy::in_front_of(&upstream, throttle(Some(3))).await?;
    let mut options = t.options.clone();
    options.s3_endpoint = Some(proxy.endpoint());
    // One request per connection, so the proxy sees every PUT.
    options.idle_connections_per_host = Some(0);
    let store = lifeboat_backup::store::Store::open(&t.url, &options)?;
    let repo = Repository::open(&store, &[t.user_key()]).await?;
    backup(&repo, &t.path("data")).await?;
    let refused = proxy.tally().injected_of(Fault::Throttle);
    ensure!(refused == 3, "the proxy refused {refused} PUTs, not 3");
    drop(proxy);

    // Endless 503s: a clear error naming an object and the store's answer, and no snapshot.
    let proxy = FaultProxy::in_front_of(&upstream, throttle(None)).await?;
    options.s3_endpoint = Some(proxy.endpoint());
    options.max_retries = 2;
    let store = lifeboat_backup::store::Store::open(&t.url, &options)?;
    let repo = Repository::open(&store, &[t.user_key()]).await?;
    std::fs::write(t.path("data/new.txt"), "new data that must be uploaded")?;
    let err = backup(&repo, &t.path("data"))
        .await
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default();
    ensure!(
        err.contains("503") || err.contains("SlowDown"),
        "store's answer missing: {err}"
    );
    ensure!(
        err.contains("locks/") || err.contains("data/") || err.contains("index/"),
        "object key missing: {err}"
    );
    ensure!(
        open(&t).await?.snapshots().await?.len() == 1,
        "a partial snapshot became visible"
    );
    Ok(())
}

/// A source that takes its time, so a lock can be lost while it writes.
struct Slow(std::time::Duration);

impl Source for Slow {
    type Error = RepoError;

    fn source_id(&self) -> String {
        "files:/slow".to_string()
    }

    fn purpose(&self) -> &'static str {
        "backup"
    }

    async fn write(&mut self, _writer: &Writer<'_>) -> Result<Written, RepoError> {
        tokio::time::sleep(self.0).await;
        Ok(Written {
            nodes: vec![],
            details: SnapshotDetails::Files(Default::default()),
            paths: vec![],
            summary: Summary::default(),
        })
    }
}

#[tokio::test]
async fn a_backup_whose_lock_cannot_be_refreshed_stops_before_the_lock_lapses() -> Result<()> {
    let t = TestRepo::new(Backend::Local)?;
    init(&t).await?;
    // The lock is written once, then every refresh fails.
    let faulty: Arc<dyn object_store::ObjectStore> = Arc::new(lifeboat_tests::faults::FailingStore::new(
        t.store().object_store().clone(),
        "locks/",
        1,
    ));
    let timings = LockTimings {
        ttl: std::time::Duration::from_secs(3),
        refresh: std::time::Duration::from_millis(500),
        retry: std::time::Duration::from_millis(200),
    };
    let repo = Repository::open_with(faulty, &t.url, &[t.user_key()])
        .await?
        .with_lock_timings(timings);
    let started = std::time::Instant::now();
    let err = repo
        .backup(
            &mut Slow(std::time::Duration::from_secs(30)),
            &BackupOptions::default(),
        )
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("the backup finished without its lock"))?;
    let took = started.elapsed();
    ensure!(matches!(err, RepoError::LockLost { .. }), "{err}");
    ensure!(err.to_string().contains("503"), "the cause is not named: {err}");
    // Given up once the next retry would come within `refresh` of the lapse (3 s).
    ensure!(
        took >= std::time::Duration::from_millis(2000) && took < std::time::Duration::from_secs(3),
        "stopped after {took:?}"
    );
    let repo = open(&t).await?;
    ensure!(repo.snapshots().await?.is_empty(), "a snapshot became visible");
    ensure!(repo.list("locks/").await?.is_empty(), "the lock was left behind");
    Ok(())
}

#[tokio::test]
async fn forget_releases_its_lock_when_a_delete_fails() -> Result<()> {
    let t = TestRepo::new(Backend::Local)?;
    let data = t.path("data");
    make_data(&data)?;
    let repo = init(&t).await?;
    backup(&repo, &data).await?;
    backup(&repo, &data).await?;
    let faulty: Arc<dyn object_store::ObjectStore> = Arc::new(
        lifeboat_tests::faults::FailingStore::failing_deletes(t.store().object_store().clone(), "snapshots/"),
    );
    let repo = Repository::open_with(faulty, &t.url, &[t.user_key()]).await?;
    let policy = forget::RetentionPolicy {
        keep_last: 1,
        ..Default::default()
    };
    let err = forget::forget(&repo, &policy, Default::default(), false)
        .await
        .err();
    ensure!(
        matches!(&err, Some(forget::ForgetError::Repo(RepoError::Store { .. }))),
        "{err:?}"
    );
    ensure!(
        repo.list("locks/").await?.is_empty(),
        "the failed forget left its lock to lapse"
    );
    ensure!(repo.snapshots().await?.len() == 2);
    Ok(())
}

/// A backup whose work is done is not reported failed because its lock could not be
/// removed afterwards: the snapshot is written, the result is the snapshot, and the lock left
/// behind is the only trace (it lapses, or `repo unlock` removes it once this process ends).
#[tokio::test]
async fn a_lock_that_cannot_be_removed_does_not_fail_a_finished_backup() -> Result<()> {
    let t = TestRepo::new(Backend::Local)?;
    let data = t.path("data");
    make_data(&data)?;
    init(&t).await?;
    let faulty: Arc<dyn object_store::ObjectStore> = Arc::new(
        lifeboat_tests::faults::FailingStore::failing_deletes(t.store().object_store().clone(), "locks/"),
    );
    let repo = Repository::open_with(faulty, &t.url, &[t.user_key()]).await?;
    let snapshot = backup(&repo, &data).await?;
    let repo = open(&t).await?;
    let stored = repo.snapshots().await?;
    ensure!(
        stored.len() == 1 && stored[0].id == snapshot.id,
        "the backup's snapshot is the one stored: {stored:?}"
    );
    ensure!(
        repo.list("locks/").await?.len() == 1,
        "the lock that could not be removed is still there"
    );
    Ok(())
}

/// Defect 3: `latest` for a files restore is the newest *files* snapshot, even when an etcd
/// snapshot is newer; an etcd snapshot named by id is refused with the command that restores
/// it (by drctl), not restored as an empty tree.
#[tokio::test]
async fn latest_of_a_kind_skips_newer_snapshots_of_other_kinds() -> Result<()> {
    use lifeboat_backup::repository::SnapshotFilter;
    let t = TestRepo::new(Backend::Local)?;
    make_data(&t.path("data"))?;
    let repo = init(&t).await?;
    let files = backup(&repo, &t.path("data")).await?;
    let etcd = Snapshot {
        id: None,
        time: files.time + chrono::Duration::seconds(1),
        details: SnapshotDetails::EtcdFull(lifeboat_backup::snapshot::EtcdFull {
            cluster_id: "0000000000000001".into(),
            member_id: "0000000000000002".into(),
            endpoint: "http://127.0.0.1:2379".into(),
            revision: 5,
        }),
        source: "etcd:cluster".into(),
        paths: vec![],
        tree: files.tree.clone(),
        ..files.clone()
    };
    let etcd_id = repo.save_snapshot(&etcd).await?;
    let filter = SnapshotFilter {
        kind: "files".into(),
        ..SnapshotFilter::default()
    };
    ensure!(repo.find_snapshot("latest").await?.id == Some(etcd_id));
    let latest = repo.find_snapshot_matching("latest", &filter).await?;
    ensure!(latest.id == files.id, "latest picked {:?}", latest.id);
    let err = repo
        .find_snapshot_matching(&etcd_id.to_hex(), &filter)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    // The library names the kinds; drctl adds the command that restores it (drctl/src/hint.rs).
    ensure!(err.contains("is of kind etcd, not files"), "{err}");
    let other_host = SnapshotFilter {
        host: Some("elsewhere".into()),
        ..filter
    };
    let err = repo
        .find_snapshot_matching("latest", &other_host)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    ensure!(err.contains("no files snapshot of host elsewhere"), "{err}");
    Ok(())
}

/// Many small items, one blob each, as the Kubernetes objects source writes them; every
/// seventh has the content of the one before it (equal objects share a blob).
struct Items(usize);

impl Items {
    fn content(i: usize) -> Vec<u8> {
        let i = if i % 7 == 6 { i - 1 } else { i };
        format!("{{\"item\":{i},\"padding\":\"{}\"}}", "x".repeat(i % 300)).into_bytes()
    }

    fn path(i: usize) -> String {
        format!(
            "resources/configmaps/namespaces/ns-{:03}/item-{i:06}.json",
            i / 200
        )
    }
}

impl Source for Items {
    type Error = RepoError;

    fn source_id(&self) -> String {
        "items:test".to_string()
    }

    fn purpose(&self) -> &'static str {
        "backup"
    }

    async fn write(&mut self, writer: &Writer<'_>) -> Result<Written, RepoError> {
        let upload = writer.items();
        for i in 0..self.0 {
            if !upload.send(Self::path(i), Self::content(i)).await {
                break;
            }
        }
        let nodes = upload.finish().await?;
        Ok(Written {
            summary: Summary::of_tree(&nodes),
            nodes,
            details: SnapshotDetails::Files(Default::default()),
            paths: vec![],
        })
    }
}

/// Reads a snapshot the way the objects restore does: the tree a node at a time, the items
/// by pack. Returns the streamed paths, the whole tree's paths, and each item's content by
/// its number (a `None` for a blob that could not be read, with why).
struct ItemsSink;

type ItemsRead = (Vec<String>, Vec<String>, Vec<(usize, Result<Vec<u8>, String>)>);

impl lifeboat_backup::Sink for ItemsSink {
    type Output = ItemsRead;
    type Error = RepoError;

    fn purpose(&self) -> &'static str {
        "restore"
    }

    fn accepts(&self, _snapshot: &Snapshot) -> Result<(), RepoError> {
        Ok(())
    }

    async fn restore(self, reader: &lifeboat_backup::SnapshotReader<'_>) -> Result<ItemsRead, RepoError> {
        use futures::StreamExt;
        let mut streamed = Vec::new();
        reader.for_each_node(|n| streamed.push(n.path)).await?;
        let whole: Vec<String> = reader.nodes().await?.iter().map(|n| n.path.clone()).collect();
        let mut wanted: Vec<(usize, lifeboat_backup::blob::BlobId)> = reader
            .nodes()
            .await?
            .iter()
            .enumerate()
            .map(|(i, n)| (i, n.chunks[0]))
            .collect();
        // An item whose blob the repository never had.
        wanted.push((usize::MAX, lifeboat_backup::blob::BlobId::of(b"never stored")));
        let read = reader
            .read_items(wanted, 2)
            .map(|(i, r)| (i, r.map_err(|e| e.to_string())))
            .collect()
            .await;
        ensure_no_damage(reader)?;
        Ok((streamed, whole, read))
    }
}

fn ensure_no_damage(reader: &lifeboat_backup::SnapshotReader<'_>) -> Result<(), RepoError> {
    match reader.damaged_packs().first() {
        Some(why) => Err(RepoError::Task(format!("a pack failed its final check: {why}"))),
        None => Ok(()),
    }
}

#[tokio::test]
async fn a_long_tree_streams_node_by_node_and_items_come_back_whole_by_pack() -> Result<()> {
    let t = TestRepo::new(Backend::Local)?;
    let repo = init(&t).await?;
    let count = 30_000;
    let snap = repo.backup(&mut Items(count), &BackupOptions::default()).await?;
    ensure!(
        snap.tree.len() > 1,
        "the tree should span several chunks: {}",
        snap.tree.len()
    );
    let (streamed, whole, read) = repo.restore(&snap, ItemsSink).await?;
    ensure!(streamed.len() == count, "{} nodes streamed", streamed.len());
    ensure!(streamed == whole, "the streamed tree differs from the whole tree");
    ensure!(
        read.len() == count + 1,
        "{} of {} items came back",
        read.len(),
        count + 1
    );
    let mut seen = vec![false; count];
    for (i, content) in read {
        if i == usize::MAX {
            let why = content.err().unwrap_or_default();
            ensure!(
                why.contains("not in the index") || why.contains("missing"),
                "{why}"
            );
            continue;
        }
        let n: usize = whole[i]["resources/configmaps/namespaces/ns-000/item-".len()..][..6].parse()?;
        ensure!(!seen[i], "item {i} came back twice");
        seen[i] = true;
        ensure!(
            content.as_deref() == Ok(&Items::content(n)[..]),
            "item {n} differs: {content:?}"
        );
    }
    ensure!(seen.iter().all(|s| *s), "an item never came back");
    Ok(())
}
