//! Copy benchmark: `drctl repo copy` of a repository holding the 1 GiB benchmark set, from
//! Ceph RGW to Azurite and from RGW to local disk, against each store's raw rate measured in
//! the same run with no Lifeboat logic (parallel GETs of the same pack objects from RGW, PUTs
//! of the same sizes to the destination, and both piped: GET then PUT, same parallelism).
//! Then a second copy after a 1 % incremental backup (bytes sent vs bytes the backup added),
//! and a copy killed half way and resumed (packs sent again). Prints one table. Run it with
//! `scripts/bench-copy.sh` (it builds release binaries first).

use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use lifeboat_backup::store::{Secret, Store, StoreOptions};
use lifeboat_tests::bench::{BenchData, Measure, change_one_percent, drctl_bin, remove_bucket, timed_output};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

/// Packs in flight, for drctl (its default) and for the raw runs alike.
const PARALLEL: usize = 8;

struct Row {
    step: String,
    seconds: f64,
    bytes: u64,
    cpu: Option<f64>,
    rss: Option<f64>,
    note: String,
}

impl Row {
    fn rate(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.seconds.max(1e-3)
    }
}

/// The pack objects of the repository at `store`: (key, size).
async fn packs(store: &Arc<dyn ObjectStore>) -> Vec<(ObjectPath, u64)> {
    store
        .list(Some(&ObjectPath::from("data")))
        .map_ok(|m| (m.location, m.size))
        .try_collect()
        .await
        .expect("list packs")
}

/// Plain parallel GETs of `keys`, bytes discarded.
async fn raw_get(src: &Arc<dyn ObjectStore>, keys: &[(ObjectPath, u64)]) -> (f64, u64) {
    let t = Instant::now();
    let total: u64 = futures::stream::iter(keys.iter().cloned())
        .map(
            |(k, _)| async move { src.get(&k).await.expect("get").bytes().await.expect("body").len() as u64 },
        )
        .buffer_unordered(PARALLEL)
        .fold(0, |a, n| async move { a + n })
        .await;
    (t.elapsed().as_secs_f64(), total)
}

/// Plain parallel PUTs of objects of the same sizes (random bytes, made before the clock
/// starts) under `prefix`.
async fn raw_put(dst: &Arc<dyn ObjectStore>, keys: &[(ObjectPath, u64)], prefix: &str) -> (f64, u64) {
    let bodies: Vec<(ObjectPath, Bytes)> = keys
        .iter()
        .enumerate()
        .map(|(i, (_, size))| {
            let body: Vec<u8> = (0..*size)
                .map(|j| (j as u32 ^ i as u32).wrapping_mul(2_654_435_761) as u8)
                .collect();
            (ObjectPath::from(format!("{prefix}/{i}")), Bytes::from(body))
        })
        .collect();
    let t = Instant::now();
    let total: u64 = futures::stream::iter(bodies)
        .map(|(k, b)| async move {
            let n = b.len() as u64;
            dst.put(&k, PutPayload::from(b)).await.expect("put");
            n
        })
        .buffer_unordered(PARALLEL)
        .fold(0, |a, n| async move { a + n })
        .await;
    (t.elapsed().as_secs_f64(), total)
}

/// GET from `src`, PUT to `dst` under `prefix`: the raw pipe a copy is measured against.
async fn raw_pipe(
    src: &Arc<dyn ObjectStore>,
    dst: &Arc<dyn ObjectStore>,
    keys: &[(ObjectPath, u64)],
    prefix: &str,
) -> (f64, u64) {
    let t = Instant::now();
    let total: u64 = futures::stream::iter(keys.iter().cloned())
        .map(|(k, _)| async move {
            let body = src.get(&k).await.expect("get").bytes().await.expect("body");
            let n = body.len() as u64;
            dst.put(&ObjectPath::from(format!("{prefix}/{k}")), PutPayload::from(body))
                .await
                .expect("put");
            n
        })
        .buffer_unordered(PARALLEL)
        .fold(0, |a, n| async move { a + n })
        .await;
    (t.elapsed().as_secs_f64(), total)
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn main() {
    let drctl = drctl_bin();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let BenchData {
        work,
        data,
        identity,
        recipient,
    } = BenchData::generate("lifeboat-bench-copy-");

    let ceph = lifeboat_tests::ceph().expect("start Ceph");
    let rgw = ceph.rgw();
    let bucket = rgw.new_bucket("bench-copy").expect("bucket");
    let azurite = lifeboat_tests::azurite().expect("start Azurite");
    let container = azurite.new_container("bench-copy").expect("container");
    let source_url = format!("s3://{bucket}/repo");
    let env: Vec<(String, String)> = vec![
        ("AWS_ACCESS_KEY_ID".into(), rgw.access_key.clone()),
        ("AWS_SECRET_ACCESS_KEY".into(), rgw.secret_key.clone()),
        ("AWS_REGION".into(), rgw.region.clone()),
        ("DRCTL_S3_ENDPOINT".into(), rgw.endpoint.clone()),
        ("DRCTL_REPO".into(), source_url.clone()),
        ("DRCTL_IDENTITY".into(), identity.display().to_string()),
        (
            "DRCTL_TO_AZURE_STORAGE_ACCOUNT_NAME".into(),
            lifeboat_tests::services::azurite::ACCOUNT.into(),
        ),
        (
            "DRCTL_TO_AZURE_STORAGE_ACCOUNT_KEY".into(),
            lifeboat_tests::services::azurite::KEY.into(),
        ),
    ];
    let run = |args: &[&str]| -> String {
        let out = Command::new(&drctl)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("run drctl");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    run(&["repo", "init", "--recipient", &recipient]);
    eprintln!("backing up the dataset into {source_url}");
    run(&["backup", "files", "--quiet", data.to_str().expect("utf-8 path")]);

    let s3 = StoreOptions {
        s3_endpoint: Some(rgw.endpoint.clone()),
        s3_region: Some(rgw.region.clone()),
        access_key_id: Some(rgw.access_key.clone()),
        secret_access_key: Some(Secret::new(rgw.secret_key.clone())),
        ..StoreOptions::default()
    };
    let az = StoreOptions {
        azure_endpoint: Some(azurite.endpoint()),
        azure_account: Some(lifeboat_tests::services::azurite::ACCOUNT.into()),
        azure_access_key: Some(Secret::new(lifeboat_tests::services::azurite::KEY)),
        ..StoreOptions::default()
    };
    let open = |url: &str, o: &StoreOptions| Store::open(url, o).expect("open store").object_store().clone();
    let source = open(&source_url, &s3);
    let keys = runtime.block_on(packs(&source));
    let total: u64 = keys.iter().map(|(_, s)| s).sum();
    eprintln!("{} packs, {:.0} MB", keys.len(), total as f64 / 1e6);

    let local_root = work.path().join("local");
    std::fs::create_dir_all(local_root.join("raw")).expect("mkdir");
    let targets = [
        (
            "azurite",
            format!("az://{container}/copy"),
            format!("az://{container}/raw"),
            az.clone(),
        ),
        (
            "local",
            local_root.join("copy").display().to_string(),
            local_root.join("raw").display().to_string(),
            StoreOptions::default(),
        ),
    ];
    let mut rows: Vec<Row> = Vec::new();
    let (secs, bytes) = runtime.block_on(raw_get(&source, &keys));
    rows.push(Row {
        step: format!("raw GET rgw ({PARALLEL} parallel)"),
        seconds: secs,
        bytes,
        cpu: None,
        rss: None,
        note: String::new(),
    });
    for (name, copy_url, raw_url, options) in &targets {
        let raw = open(raw_url, options);
        let (secs, bytes) = runtime.block_on(raw_put(&raw, &keys, "put"));
        rows.push(Row {
            step: format!("raw PUT {name}"),
            seconds: secs,
            bytes,
            cpu: None,
            rss: None,
            note: String::new(),
        });
        let (pipe_secs, pipe_bytes) = runtime.block_on(raw_pipe(&source, &raw, &keys, "pipe"));
        let pipe_rate = pipe_bytes as f64 / 1e6 / pipe_secs;
        rows.push(Row {
            step: format!("raw pipe rgw→{name}"),
            seconds: pipe_secs,
            bytes: pipe_bytes,
            cpu: None,
            rss: None,
            note: "anchor".into(),
        });
        let mut cmd = Command::new(&drctl);
        cmd.args(["repo", "copy", "--quiet", "-o", "json", "--to", copy_url]);
        if *name == "azurite" {
            cmd.args(["--to-azure-endpoint", &azurite.endpoint()]);
        }
        let (m, out): (Measure, String) = timed_output(cmd, &env);
        let report = json(&out);
        let sent = report["bytesCopied"].as_u64().unwrap_or(0);
        let row = Row {
            step: format!("drctl repo copy rgw→{name}"),
            seconds: m.wall,
            bytes: sent,
            cpu: Some(m.cpu),
            rss: Some(m.rss_mib),
            note: String::new(),
        };
        let ratio = row.rate() / pipe_rate;
        rows.push(Row {
            note: format!("{:.0} % of raw pipe", ratio * 100.0),
            ..row
        });
    }

    // A 1 % incremental backup, then a second copy to each destination.
    change_one_percent(&data);
    let before: std::collections::HashMap<String, u64> =
        keys.iter().map(|(k, s)| (k.to_string(), *s)).collect();
    run(&["backup", "files", "--quiet", data.to_str().expect("utf-8 path")]);
    let after = runtime.block_on(packs(&source));
    let new_bytes: u64 = after
        .iter()
        .filter(|(k, _)| !before.contains_key(&k.to_string()))
        .map(|(_, s)| s)
        .sum();
    for (name, copy_url, _, _) in &targets {
        let mut cmd = Command::new(&drctl);
        cmd.args(["repo", "copy", "--quiet", "-o", "json", "--to", copy_url]);
        if *name == "azurite" {
            cmd.args(["--to-azure-endpoint", &azurite.endpoint()]);
        }
        let (m, out) = timed_output(cmd, &env);
        let sent = json(&out)["bytesCopied"].as_u64().unwrap_or(0);
        rows.push(Row {
            step: format!("incremental copy rgw→{name}"),
            seconds: m.wall,
            bytes: sent,
            cpu: Some(m.cpu),
            rss: Some(m.rss_mib),
            note: format!(
                "backup added {:.1} MB; sent {:.0} %",
                new_bytes as f64 / 1e6,
                sent as f64 * 100.0 / new_bytes.max(1) as f64
            ),
        });
    }

    // Killed half way, then resumed: which packs are sent twice?
    let resume_dir = work.path().join("resume");
    std::fs::create_dir_all(&resume_dir).expect("mkdir");
    let full = rows
        .iter()
        .find(|r| r.step == "drctl repo copy rgw→local")
        .map_or(10.0, |r| r.seconds);
    let mut child = Command::new(&drctl)
        .args(["repo", "copy", "--quiet", "--to"])
        .arg(&resume_dir)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .spawn()
        .expect("spawn copy");
    std::thread::sleep(std::time::Duration::from_secs_f64(full / 2.0));
    child.kill().expect("kill");
    child.wait().expect("wait");
    let stored_at_kill = std::fs::read_dir(resume_dir.join("data"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| std::fs::read_dir(e.path()).ok())
                .map(|d| {
                    d.filter_map(Result::ok)
                        .filter(|e| !e.file_name().to_string_lossy().contains('#'))
                        .count()
                })
                .sum::<usize>()
        })
        .unwrap_or(0);
    let mut cmd = Command::new(&drctl);
    cmd.args(["repo", "copy", "--quiet", "-o", "json", "--to"])
        .arg(&resume_dir);
    let (m, out) = timed_output(cmd, &env);
    let report = json(&out);
    let resent = report["packsCopied"].as_u64().unwrap_or(0) as usize;
    let indexed = report["packsIndexed"].as_u64().unwrap_or(0);
    let all = after.len();
    rows.push(Row {
        step: "resume after kill rgw→local".into(),
        seconds: m.wall,
        bytes: report["bytesCopied"].as_u64().unwrap_or(0),
        cpu: Some(m.cpu),
        rss: Some(m.rss_mib),
        note: format!(
            "{stored_at_kill} of {all} packs stored at the kill ({indexed} unindexed); resumed run sent {resent} = {} not stored; sent twice: {}",
            all - stored_at_kill,
            (stored_at_kill + resent).saturating_sub(all)
        ),
    });
    remove_bucket(&bucket);

    println!(
        "{:<34} {:>8} {:>9} {:>8} {:>7} {:>8}  note",
        "step", "seconds", "MB", "MB/s", "cpu s", "RSS MiB"
    );
    for r in &rows {
        println!(
            "{:<34} {:>8.2} {:>9.1} {:>8.1} {:>7} {:>8}  {}",
            r.step,
            r.seconds,
            r.bytes as f64 / 1e6,
            r.rate(),
            r.cpu.map_or("-".to_string(), |c| format!("{c:.2}")),
            r.rss.map_or("-".to_string(), |c| format!("{c:.0}")),
            r.note
        );
    }
}
