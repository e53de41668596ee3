//! etcd snapshot benchmark: `etcdctl snapshot save` against `drctl etcd snapshot` into a local
//! repository and into Ceph RGW, on the same etcd in the same run, then the size of a second
//! snapshot after 1 % of the keys changed. Run it with `scripts/bench-etcd.sh`.

use std::process::Command;

use etcd_client::{Client, Txn, TxnOp};
use lifeboat_tests::Etcd;
use lifeboat_tests::bench::timed;
use lifeboat_tests::repos::make_identity;

const KEYS: u32 = 100_000;

fn value(i: u32, generation: u32) -> Vec<u8> {
    (0..32u32)
        .flat_map(|n| {
            *blake3::hash(&[i.to_le_bytes(), generation.to_le_bytes(), n.to_le_bytes()].concat()).as_bytes()
        })
        .collect()
}

async fn fill(c: &mut Client, every: u32, generation: u32) {
    let mut ops = Vec::new();
    for i in (0..KEYS).filter(|i| i % every == 0) {
        ops.push(TxnOp::put(
            format!("/registry/configmaps/ns-{}/cm-{i:06}", i % 250),
            value(i, generation),
            None,
        ));
        if ops.len() == 100 {
            c.txn(Txn::new().and_then(std::mem::take(&mut ops)))
                .await
                .expect("txn");
        }
    }
    if !ops.is_empty() {
        c.txn(Txn::new().and_then(ops)).await.expect("txn");
    }
}

fn stored_bytes(out: &std::process::Output) -> u64 {
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["summary"]["stored_bytes"].as_u64().unwrap_or(0)
}

fn main() {
    let drctl = std::env::var("DRCTL_BIN").unwrap_or_else(|_| "target/release/drctl".to_string());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let etcd = Etcd::start().expect("start etcd");
    let work = tempfile::Builder::new()
        .prefix("lifeboat-bench-etcd-")
        .tempdir()
        .expect("tempdir");
    eprintln!("filling etcd with {KEYS} keys of 1 KiB");
    let mut client = rt
        .block_on(Client::connect([etcd.endpoint()], None))
        .expect("connect");
    rt.block_on(fill(&mut client, 1, 0));
    let (identity, recipient) = make_identity(work.path(), "bench").expect("identity");

    let ceph = lifeboat_tests::ceph().expect("Ceph");
    let rgw = ceph.rgw();
    let bucket = rgw.new_bucket("bench-etcd").expect("bucket");
    let targets = [
        ("local", work.path().join("repo").display().to_string(), vec![]),
        (
            "rgw",
            format!("s3://{bucket}/etcd"),
            vec![
                ("AWS_ACCESS_KEY_ID".to_string(), rgw.access_key.clone()),
                ("AWS_SECRET_ACCESS_KEY".to_string(), rgw.secret_key.clone()),
                ("AWS_REGION".to_string(), rgw.region.clone()),
                ("DRCTL_S3_ENDPOINT".to_string(), rgw.endpoint.clone()),
            ],
        ),
    ];
    std::fs::create_dir(work.path().join("repo")).expect("mkdir");

    let snapshot_file = work.path().join("etcdctl.db");
    let mut save = Command::new("etcdctl");
    save.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", etcd.endpoint()))
        .args(["snapshot", "save"])
        .arg(&snapshot_file);
    let anchor = timed(save, &[]);
    let db_mib = std::fs::metadata(&snapshot_file).map(|m| m.len()).unwrap_or(0) as f64 / (1 << 20) as f64;

    println!("etcd database: {db_mib:.1} MiB ({KEYS} keys)");
    println!(
        "{:<36} {:>8} {:>8} {:>8} {:>9}",
        "step", "wall s", "cpu s", "RSS MiB", "vs etcdctl"
    );
    println!(
        "{:<36} {:>8.2} {:>8.2} {:>8.0} {:>9}",
        "etcdctl snapshot save (local file)", anchor.wall, anchor.cpu, anchor.rss_mib, "1.00x"
    );
    let mut firsts = Vec::new();
    for (name, repo, extra) in &targets {
        let mut env = extra.clone();
        env.push(("DRCTL_REPO".into(), repo.clone()));
        env.push(("DRCTL_IDENTITY".into(), identity.display().to_string()));
        let init = Command::new(&drctl)
            .args(["repo", "init", "--recipient", &recipient])
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("init");
        assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
        let mut snap = Command::new(&drctl);
        snap.args(["--quiet", "etcd", "snapshot", "--endpoints", &etcd.endpoint()]);
        let m = timed(snap, &env);
        println!(
            "{:<36} {:>8.2} {:>8.2} {:>8.0} {:>8.2}x",
            format!("drctl etcd snapshot ({name} repo)"),
            m.wall,
            m.cpu,
            m.rss_mib,
            m.wall / anchor.wall
        );
        firsts.push(env);
    }
    // 1 % of the keys change; the second snapshot should add little.
    rt.block_on(fill(&mut client, 100, 1));
    for env in &firsts {
        let out = Command::new(&drctl)
            .args(["--quiet", "-o", "json", "etcd", "snapshots"])
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("list");
        let first: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let first_stored = first[0]["summary"]["stored_bytes"].as_u64().unwrap_or(1);
        let out = Command::new(&drctl)
            .args([
                "--quiet",
                "-o",
                "json",
                "etcd",
                "snapshot",
                "--endpoints",
                &etcd.endpoint(),
            ])
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("second snapshot");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let second = stored_bytes(&out);
        let repo = &env.iter().find(|(k, _)| k == "DRCTL_REPO").expect("repo").1;
        println!(
            "second snapshot after 1% of keys changed ({}): stored {:.1} MiB = {:.1}% of the first ({:.1} MiB)",
            if repo.starts_with("s3://") { "rgw" } else { "local" },
            second as f64 / (1 << 20) as f64,
            100.0 * second as f64 / first_stored as f64,
            first_stored as f64 / (1 << 20) as f64
        );
    }
}
