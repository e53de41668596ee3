//! Surviving the worst: a backup killed with SIGKILL, and recovering data with nothing but the
//! stock `age` and `zstd` tools, following docs/FORMAT.md.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use lifeboat_backup::Repository;
use lifeboat_backup::maintenance::check;
use lifeboat_backup::progress::Progress;
use lifeboat_backup::repository::InitOptions;
use lifeboat_backup::sources::files::{FilesOptions, backup_files};
use lifeboat_tests::repos::{Backend, TestRepo};

fn random_file(path: &Path, len: usize) -> Result<()> {
    let mut buf = vec![0u8; len];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    std::fs::write(path, buf)?;
    Ok(())
}

/// Runs inside a child process started by the `*_backup_killed_with_sigkill_*` tests.
#[test]
#[ignore = "child half of the *_backup_killed_with_sigkill_* tests"]
fn child_backup() -> Result<()> {
    let (Ok(url), Ok(identity), Ok(data), Ok(options)) = (
        std::env::var("LIFEBOAT_CHILD_REPO"),
        std::env::var("LIFEBOAT_CHILD_IDENTITY"),
        std::env::var("LIFEBOAT_CHILD_DATA"),
        std::env::var("LIFEBOAT_CHILD_S3"),
    ) else {
        return Ok(());
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let (endpoint, region, access, secret) = match options.split('|').collect::<Vec<_>>()[..] {
            [e, r, a, s] => (e.to_string(), r.to_string(), a.to_string(), s.to_string()),
            _ => Default::default(),
        };
        let opts = lifeboat_backup::store::StoreOptions {
            s3_endpoint: (!endpoint.is_empty()).then_some(endpoint),
            s3_region: (!region.is_empty()).then_some(region),
            access_key_id: (!access.is_empty()).then_some(access),
            secret_access_key: (!secret.is_empty()).then(|| lifeboat_backup::store::Secret::new(secret)),
            ..Default::default()
        };
        let store = lifeboat_backup::store::Store::open(&url, &opts)?;
        let key = lifeboat_backup::crypto::UserKey::identity_file(Path::new(&identity))?;
        let repo = Repository::open(&store, &[key]).await?;
        backup_files(
            &repo,
            &[data.into()],
            &FilesOptions::default(),
            Arc::new(Progress::default()),
        )
        .await?;
        Ok(())
    })
}

async fn count(t: &TestRepo, prefix: &str) -> Result<usize> {
    use futures::TryStreamExt;
    let keys: Vec<_> = t
        .store()
        .object_store()
        .list(Some(&prefix.into()))
        .try_collect()
        .await?;
    Ok(keys.len())
}

async fn killed_backup(backend: Backend) -> Result<()> {
    use object_store::ObjectStoreExt;
    let t = TestRepo::new(backend)?;
    let data = t.path("data");
    std::fs::create_dir(&data)?;
    for i in 0..24 {
        random_file(&data.join(format!("f{i:02}.bin")), 5 << 20)?;
    }
    Repository::init(&t.store(), &[t.user_recipient()], InitOptions::default()).await?;
    let s3 = format!(
        "{}|{}|{}|{}",
        t.options.s3_endpoint.clone().unwrap_or_default(),
        t.options.s3_region.clone().unwrap_or_default(),
        t.options.access_key_id.clone().unwrap_or_default(),
        t.options
            .secret_access_key
            .as_ref()
            .map(|s| s.expose().to_string())
            .unwrap_or_default(),
    );
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--ignored", "--exact", "child_backup"])
        .env("LIFEBOAT_CHILD_REPO", &t.url)
        .env("LIFEBOAT_CHILD_IDENTITY", &t.identity)
        .env("LIFEBOAT_CHILD_DATA", &data)
        .env("LIFEBOAT_CHILD_S3", s3)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    // Kill it once some packs are indexed but the backup is not finished.
    let started = Instant::now();
    while count(&t, "index").await? == 0 {
        if let Some(status) = child.try_wait()? {
            bail!("the backup finished ({status}) before it could be killed; make the data larger");
        }
        ensure!(
            started.elapsed() < Duration::from_secs(300),
            "no index file appeared"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill()?;
    child.wait()?;

    let repo = Repository::open(&t.store(), &[t.user_key()]).await?;
    ensure!(
        repo.snapshots().await?.is_empty(),
        "a partial snapshot is visible"
    );
    let report = check::check(&repo, true, Arc::new(Progress::default())).await?;
    ensure!(report.ok(), "{report:?}");
    ensure!(repo.indexed().await?.index().blob_count() > 0);

    // The dead process's lock would expire in 30 minutes; clear it as an operator would after
    // confirming the holder is gone.
    for (key, _) in repo.list("locks/").await? {
        repo.object_store().delete(&key.as_str().into()).await?;
    }
    let snap = backup_files(
        &repo,
        std::slice::from_ref(&data),
        &FilesOptions::default(),
        Arc::new(Progress::default()),
    )
    .await?;
    let total = 24 * (5u64 << 20);
    ensure!(
        snap.summary.new_bytes < total,
        "nothing uploaded before the kill was reused: {:?}",
        snap.summary
    );
    ensure!(
        check::check(&repo, true, Arc::new(Progress::default()))
            .await?
            .ok()
    );
    Ok(())
}

#[tokio::test]
async fn local_backup_killed_with_sigkill_leaves_a_valid_repository() -> Result<()> {
    killed_backup(Backend::Local).await
}

#[tokio::test]
async fn rgw_backup_killed_with_sigkill_leaves_a_valid_repository() -> Result<()> {
    killed_backup(Backend::Rgw).await
}

fn age_decrypt(identity: &Path, file: &Path) -> Result<Vec<u8>> {
    let out = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(identity)
        .arg(file)
        .output()?;
    ensure!(
        out.status.success(),
        "age -d {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out.stdout)
}

fn zstd_decompress(data: &[u8]) -> Result<Vec<u8>> {
    let mut child = Command::new("zstd")
        .args(["-d", "-c", "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let input = data.to_vec();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &input));
    let out = child.wait_with_output()?;
    writer.join().map_err(|_| anyhow::anyhow!("writer panicked"))??;
    ensure!(
        out.status.success(),
        "zstd -d failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out.stdout)
}

#[tokio::test]
async fn data_is_recoverable_with_stock_age_and_zstd() -> Result<()> {
    let t = TestRepo::new(Backend::Local)?;
    let data = t.path("data");
    std::fs::create_dir(&data)?;
    random_file(&data.join("blob.bin"), 3 << 20)?;
    let text: String = (0..50_000)
        .map(|i| format!("line {i}: the quick brown fox\n"))
        .collect();
    std::fs::write(data.join("notes.txt"), &text)?;
    let repo = Repository::init(&t.store(), &[t.user_recipient()], InitOptions::default()).await?;
    let snap = backup_files(
        &repo,
        std::slice::from_ref(&data),
        &FilesOptions::default(),
        Arc::new(Progress::default()),
    )
    .await?;
    let root = Path::new(&t.url);

    // 1. The repository key, unwrapped with the user's identity.
    let key_file = std::fs::read_dir(root.join("keys"))?
        .next()
        .context("no key")??
        .path();
    let repo_key = t.path("repo-key.txt");
    std::fs::write(&repo_key, age_decrypt(&t.identity, &key_file)?)?;

    // 2. The snapshot manifest and every index file: age, then zstd, then JSON.
    let sid = snap.id.context("snapshot id")?.to_hex();
    let manifest: serde_json::Value = serde_json::from_slice(&zstd_decompress(&age_decrypt(
        &repo_key,
        &root.join("snapshots").join(&sid),
    )?)?)?;
    let mut where_is: HashMap<String, (String, usize, usize)> = HashMap::new();
    for entry in std::fs::read_dir(root.join("index"))? {
        let index: serde_json::Value =
            serde_json::from_slice(&zstd_decompress(&age_decrypt(&repo_key, &entry?.path())?)?)?;
        for pack in index["packs"].as_array().context("packs")? {
            let pack_id = pack["id"].as_str().context("pack id")?.to_string();
            for blob in pack["blobs"].as_array().context("blobs")? {
                where_is.insert(
                    blob["id"].as_str().context("blob id")?.to_string(),
                    (
                        pack_id.clone(),
                        blob["offset"].as_u64().context("offset")? as usize,
                        blob["length"].as_u64().context("length")? as usize,
                    ),
                );
            }
        }
    }
    // 3. A blob: decrypt its pack with age, cut out its frame (what `dd` would do), zstd -d.
    let mut packs: HashMap<String, Vec<u8>> = HashMap::new();
    let mut blob = |id: &str| -> Result<Vec<u8>> {
        let (pack, offset, length) = where_is.get(id).context("blob not in any index")?.clone();
        if !packs.contains_key(&pack) {
            let path = root.join("data").join(&pack[..2]).join(&pack);
            packs.insert(pack.clone(), age_decrypt(&repo_key, &path)?);
        }
        zstd_decompress(&packs[&pack][offset..offset + length])
    };
    let mut listing = Vec::new();
    for id in manifest["tree"].as_array().context("tree")? {
        listing.extend(blob(id.as_str().context("tree id")?)?);
    }
    // 4. The tree is JSON lines; each file lists its chunks in order.
    let mut recovered = 0;
    for line in listing.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let node: serde_json::Value = serde_json::from_slice(line)?;
        if node["type"] != "file" {
            continue;
        }
        let mut content = Vec::new();
        for chunk in node["chunks"].as_array().context("chunks")? {
            content.extend(blob(chunk.as_str().context("chunk id")?)?);
        }
        let original = Path::new("/").join(node["path"].as_str().context("path")?);
        ensure!(
            content == std::fs::read(&original)?,
            "{} differs",
            original.display()
        );
        recovered += 1;
    }
    ensure!(recovered == 2, "recovered {recovered} files");
    Ok(())
}

/// docs/FORMAT.md, made runnable as `tests/recovery/recover.py` (Python's standard library,
/// `age`, `zstd`, and `b3sum` to verify names and ids), recovers a snapshot of everything a
/// files backup records — set-id bits, owners, times, names and a symlink target that are not
/// UTF-8, hard links, a sparse file, extended attributes and ACLs — exactly.
#[tokio::test]
async fn stock_tools_recover_a_snapshot_exactly_following_format_md() -> Result<()> {
    use lifeboat_tests::files::{assert_same_tree, make_exact_dataset, restored};
    let t = TestRepo::new(Backend::Local)?;
    let src = tempfile::tempdir()?;
    let data = src.path().join("data");
    make_exact_dataset(&data);
    let repo = Repository::init(&t.store(), &[t.user_recipient()], InitOptions::default()).await?;
    // Two snapshots, so picking the latest by time matters; the dataset changes in between.
    for second in [false, true] {
        if second {
            std::fs::write(data.join("empty"), b"no longer empty\n")?;
            lifeboat_tests::files::set_mtime(&data.join("empty"), 1_700_000_000, 5);
            lifeboat_tests::files::set_mtime(&data, 1_700_000_001, 0);
        }
        backup_files(
            &repo,
            std::slice::from_ref(&data),
            &FilesOptions::default(),
            Arc::new(Progress::default()),
        )
        .await?;
    }
    // Several key files, ours not the first in name order: the recipe must try each. Key
    // names are random (docs/FORMAT.md), so the other key is renamed to sort first.
    let pass = t.path("other-pass.txt");
    std::fs::write(&pass, "someone else's passphrase\n")?;
    let other = lifeboat_backup::crypto::UserRecipient::passphrase_file(&pass)?;
    let other_id = repo.add_key(&other).await?;
    let first = "0".repeat(16);
    ensure!(repo.key_id() != first, "our key id is {first}: rerun");
    let keys = Path::new(&t.url).join("keys");
    std::fs::rename(keys.join(&other_id), keys.join(&first))?;
    ensure!(
        Command::new("b3sum").arg("--version").output().is_ok(),
        "b3sum is missing: scripts/install-deps.sh installs it"
    );

    let out = t.path("recovered");
    std::fs::create_dir(&out)?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("recovery/recover.py");
    let run = Command::new("python3")
        .arg(&script)
        .arg(&t.url)
        .arg(&t.identity)
        .arg(&out)
        .output()?;
    ensure!(
        run.status.success(),
        "recover.py: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_same_tree(&data, &restored(&out, &data));
    Ok(())
}
