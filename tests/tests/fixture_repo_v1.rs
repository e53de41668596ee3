//! A repository written by the drctl of commit eec907e, before typed snapshot metadata
//! (`tests/fixtures/repo-v1`): today's code reads every manifest into its typed kind, writes
//! it back to exactly what that drctl listed, and restores files, etcd (full and through the
//! delta chain) and Kubernetes objects from it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use kube::api::Api;
use lifeboat_backup::Repository;
use lifeboat_backup::crypto::UserKey;
use lifeboat_backup::progress::Progress;
use lifeboat_backup::restore::{RestoreOptions, restore_files};
use lifeboat_backup::snapshot::{EtcdDelta, EtcdFull, KubernetesObjects, Snapshot, SnapshotDetails};
use lifeboat_backup::store::{Store, StoreOptions};
use lifeboat_controller::kube_objects::{RestoreOptions as ObjectsRestoreOptions, restore_objects};
use lifeboat_etcd::{RestorePoint, restore_etcd_at};
use lifeboat_tests::Etcd;
use lifeboat_tests::kube::TestCluster;

const FILES_1: &str = "780b39deb155545ee5a990af6931e4a9af30d0b38e194affc7fb38ddcd1d07eb";
const FILES_2: &str = "8614d88f82cc8a2dae3dac20cc96275d1e94d233873580e8ae5c294c29ba01d1";
const ETCD_FULL: &str = "0560319572954cd148efdfb623b00b35266ad24e8eca8e334e7fa412acc0ffc4";
const ETCD_DELTA_1: &str = "943f41d2";
const ETCD_DELTA_2: &str = "487da9dd";
const KUBERNETES: &str = "2af9fae8";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/repo-v1")
}

/// A copy of the fixture repository (locks are written into it, the original stays byte for
/// byte) and the repository opened with its identity.
async fn open_copy() -> Result<(tempfile::TempDir, Repository)> {
    let dir = tempfile::Builder::new()
        .prefix("lifeboat-fixture-v1-")
        .tempdir()?;
    copy_dir(&fixture().join("repo"), &dir.path().join("repo"))?;
    let store = Store::open(
        &dir.path().join("repo").display().to_string(),
        &StoreOptions::default(),
    )?;
    let key = UserKey::identity_file(&fixture().join("identity.txt"))?;
    let repo = Repository::open(&store, &[key]).await?;
    Ok((dir, repo))
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

fn find<'a>(all: &'a [Snapshot], prefix: &str) -> Result<&'a Snapshot> {
    all.iter()
        .find(|s| s.id.is_some_and(|id| id.to_hex().starts_with(prefix)))
        .with_context(|| format!("snapshot {prefix} is not in the fixture"))
}

#[tokio::test]
async fn every_manifest_reads_into_its_kind_and_writes_back_as_the_old_drctl_listed_it() -> Result<()> {
    let (_dir, repo) = open_copy().await?;
    let all = repo.snapshots().await?;
    let listed: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("snapshots.json"))?)?;
    ensure!(
        all.len() == listed.len(),
        "read {} snapshots, the old drctl listed {}",
        all.len(),
        listed.len()
    );
    for old in &listed {
        let id = old["id"].as_str().context("id")?;
        let snap = find(&all, id)?;
        let mut written = serde_json::to_value(snap)?;
        written
            .as_object_mut()
            .context("a manifest is an object")?
            .insert("id".into(), id.into());
        ensure!(
            &written == old,
            "snapshot {id} writes back as\n{written:#}\nnot\n{old:#}"
        );
    }

    ensure!(matches!(find(&all, FILES_1)?.details, SnapshotDetails::Files(_)));
    let files_2 = find(&all, FILES_2)?;
    ensure!(
        matches!(files_2.details, SnapshotDetails::Files(_))
            && files_2.parent.map(|p| p.to_hex()) == Some(FILES_1.into())
    );
    let full = find(&all, ETCD_FULL)?;
    let SnapshotDetails::EtcdFull(EtcdFull {
        cluster_id,
        member_id,
        revision,
        ..
    }) = &full.details
    else {
        anyhow::bail!("{ETCD_FULL} is {:?}", full.details)
    };
    ensure!(cluster_id == "9e190fc32020ecde" && member_id == "47bbb608f36b1024" && *revision == 3);
    for (prefix, first, last, parent) in [
        (ETCD_DELTA_1, 4, 5, ETCD_FULL),
        (ETCD_DELTA_2, 6, 7, ETCD_DELTA_1),
    ] {
        let delta = find(&all, prefix)?;
        let SnapshotDetails::EtcdDelta(EtcdDelta {
            base,
            first_revision,
            last_revision,
            events,
            ..
        }) = &delta.details
        else {
            anyhow::bail!("{prefix} is {:?}", delta.details)
        };
        ensure!(base.to_hex() == ETCD_FULL && (*first_revision, *last_revision, *events) == (first, last, 2));
        ensure!(
            delta.parent.is_some_and(|p| p.to_hex().starts_with(parent)),
            "{prefix}'s parent"
        );
    }
    let objects = find(&all, KUBERNETES)?;
    ensure!(
        objects.details
            == SnapshotDetails::Kubernetes(KubernetesObjects {
                cluster_id: "a9bf878f-585d-48da-98a3-76fb10da4461".into(),
                backup: "fixture".into(),
                items: 4,
            }),
        "{:?}",
        objects.details
    );
    Ok(())
}

/// The directory under `root` that holds `name`.
fn dir_holding(root: &Path, name: &str) -> Result<PathBuf> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if dir.join(name).symlink_metadata().is_ok() {
            return Ok(dir);
        }
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                stack.push(e.path());
            }
        }
    }
    anyhow::bail!("no {name} under {}", root.display())
}

/// The 300,000 bytes make.sh wrote to `sub/numbers.bin`.
fn numbers() -> Vec<u8> {
    let mut seq: u64 = 12345;
    let mut out = Vec::with_capacity(300_004);
    while out.len() < 300_000 {
        seq = seq
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        out.extend_from_slice(&((seq >> 33) as u32).to_le_bytes());
    }
    out.truncate(300_000);
    out
}

#[tokio::test]
async fn both_file_snapshots_restore_byte_for_byte() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let (dir, repo) = open_copy().await?;
    let all = repo.snapshots().await?;
    for (id, hello) in [
        (FILES_1, "hello from format 1\n"),
        (FILES_2, "hello from format 1\nchanged\n"),
    ] {
        let target = dir.path().join(format!("restore-{id}"));
        let report = restore_files(
            &repo,
            find(&all, id)?,
            &target,
            &RestoreOptions::default(),
            Arc::new(Progress::default()),
        )
        .await?;
        ensure!(report.errors.is_empty(), "{:?}", report.errors);
        let data = dir_holding(&target, "hello.txt")?;
        ensure!(
            std::fs::read_to_string(data.join("hello.txt"))? == hello,
            "{id}: hello.txt"
        );
        ensure!(std::fs::read(data.join("empty"))?.is_empty(), "{id}: empty");
        ensure!(
            std::fs::read_link(data.join("link"))? == Path::new("hello.txt"),
            "{id}: link"
        );
        let bin = data.join("sub/numbers.bin");
        ensure!(std::fs::read(&bin)? == numbers(), "{id}: numbers.bin");
        let mode = std::fs::metadata(&bin)?.permissions().mode() & 0o7777;
        ensure!(mode == 0o640, "{id}: numbers.bin has mode {mode:o}");
    }
    Ok(())
}

type State = BTreeMap<String, Vec<u8>>;

async fn db_holds(db: &Path, expected: &[(&str, &[u8])]) -> Result<()> {
    let member = Etcd::from_snapshot(db)?;
    let mut c = etcd_client::Client::connect([member.endpoint()], None).await?;
    let got = c
        .get("/fixture/", Some(etcd_client::GetOptions::new().with_prefix()))
        .await?;
    let actual: State = got
        .kvs()
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(kv.key()).into_owned(),
                kv.value().to_vec(),
            )
        })
        .collect();
    let expected: State = expected
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_vec()))
        .collect();
    ensure!(
        actual == expected,
        "{} holds {actual:?}, expected {expected:?}",
        db.display()
    );
    Ok(())
}

#[tokio::test]
async fn etcd_restores_the_full_snapshot_and_replays_the_old_deltas() -> Result<()> {
    let (dir, repo) = open_copy().await?;
    let all = repo.snapshots().await?;
    let full = find(&all, ETCD_FULL)?;

    let db = dir.path().join("full.db");
    let summary = restore_etcd_at(&repo, full, RestorePoint::Snapshot, &db, false).await?;
    ensure!(summary.revision == 3 && summary.deltas == 0, "{summary:?}");
    db_holds(&db, &[("/fixture/a", b"one"), ("/fixture/b", b"two")]).await?;

    let db = dir.path().join("rev5.db");
    let summary = restore_etcd_at(&repo, full, RestorePoint::Revision(5), &db, false).await?;
    ensure!(summary.revision == 5 && summary.deltas == 1, "{summary:?}");
    db_holds(
        &db,
        &[
            ("/fixture/a", b"uno"),
            ("/fixture/b", b"two"),
            ("/fixture/c", b"three"),
        ],
    )
    .await?;

    let db = dir.path().join("latest.db");
    let summary = restore_etcd_at(&repo, full, RestorePoint::Latest, &db, false).await?;
    ensure!(summary.revision == 7 && summary.deltas == 2, "{summary:?}");
    db_holds(
        &db,
        &[
            ("/fixture/a", b"uno"),
            ("/fixture/bin", b"\x00\xffbinary"),
            ("/fixture/c", b"three"),
        ],
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn kubernetes_objects_restore_into_a_cluster() -> Result<()> {
    let (_dir, repo) = open_copy().await?;
    let all = repo.snapshots().await?;
    let cluster = TestCluster::start().await?;
    let client = cluster.client();
    let outcome = restore_objects(
        &client,
        &repo,
        find(&all, KUBERNETES)?,
        &ObjectsRestoreOptions::default(),
        Arc::new(Progress::default()),
    )
    .await?;
    ensure!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    ensure!(outcome.summary.created == 4, "{:?}", outcome.summary);

    let configmaps: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), "fixture");
    let settings = configmaps.get("settings").await?;
    let data = settings.data.unwrap_or_default();
    ensure!(
        data.get("color").map(String::as_str) == Some("blue")
            && data.get("size").map(String::as_str) == Some("3"),
        "settings holds {data:?}"
    );
    ensure!(configmaps.get("empty").await?.data.unwrap_or_default().is_empty());
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), "fixture");
    let token = secrets.get("token").await?.data.unwrap_or_default();
    ensure!(
        token.get("token").map(|v| v.0.as_slice()) == Some(b"s3cr3t".as_slice()),
        "the Secret's token did not survive"
    );
    Ok(())
}
