//! Backup benchmark: drctl against restic, in the same run, on the same data, to a local
//! directory and to Ceph RGW. Prints a side-by-side table. Run it with
//! `scripts/bench-backup.sh` (it builds release binaries first).
//!
//! Dataset: 1 GiB in 8 MiB files, half random bytes, half JSON-lines logs. Then 1 % of it
//! changes (one random file rewritten, one log file grown) and both tools back up again, then
//! restore the latest snapshot.

use std::path::{Path, PathBuf};
use std::process::Command;

use lifeboat_tests::bench::{
    BenchData, Measure, change_one_percent, drctl_bin, make_dataset, remove_bucket, timed,
};

fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        if let Ok(meta) = std::fs::symlink_metadata(&p) {
            if meta.is_dir() {
                if let Ok(rd) = std::fs::read_dir(&p) {
                    stack.extend(rd.filter_map(|e| e.ok()).map(|e| e.path()));
                }
            } else {
                total += meta.len();
            }
        }
    }
    total
}

struct Target {
    name: &'static str,
    drctl_repo: String,
    restic_repo: String,
    env: Vec<(String, String)>,
    local_dirs: Option<(PathBuf, PathBuf)>,
    bucket: Option<String>,
}

fn bucket_size(bucket: &str) -> u64 {
    let out = Command::new("radosgw-admin")
        .arg("-c")
        .arg(lifeboat_tests::ceph().expect("ceph").conf())
        .args(["bucket", "stats", "--bucket", bucket])
        .output()
        .expect("radosgw-admin");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["usage"]["rgw.main"]["size"].as_u64().unwrap_or(0)
}

fn main() {
    // `BENCH_GENERATE=DIR` only writes the dataset (for profiling one tool by hand).
    if let Some(dir) = std::env::var_os("BENCH_GENERATE") {
        make_dataset(Path::new(&dir));
        return;
    }
    let drctl = drctl_bin();
    let with_rgw = std::env::var("BENCH_SKIP_RGW").is_err();
    let BenchData {
        work,
        data,
        identity,
        recipient,
    } = BenchData::generate("lifeboat-bench-");

    let mut targets = vec![Target {
        name: "local",
        drctl_repo: work.path().join("drctl-repo").display().to_string(),
        restic_repo: work.path().join("restic-repo").display().to_string(),
        env: vec![],
        local_dirs: Some((work.path().join("drctl-repo"), work.path().join("restic-repo"))),
        bucket: None,
    }];
    if with_rgw {
        let ceph = lifeboat_tests::ceph().expect("start Ceph");
        let rgw = ceph.rgw();
        let bucket = rgw.new_bucket("bench").expect("bucket");
        let host = rgw.endpoint.trim_start_matches("http://");
        targets.push(Target {
            name: "rgw",
            drctl_repo: format!("s3://{bucket}/drctl"),
            restic_repo: format!("s3:http://{host}/{bucket}/restic"),
            env: vec![
                ("AWS_ACCESS_KEY_ID".into(), rgw.access_key.clone()),
                ("AWS_SECRET_ACCESS_KEY".into(), rgw.secret_key.clone()),
                ("AWS_REGION".into(), rgw.region.clone()),
                ("DRCTL_S3_ENDPOINT".into(), rgw.endpoint.clone()),
            ],
            local_dirs: None,
            bucket: Some(bucket),
        });
    }

    let mut rows: Vec<(String, Measure, Measure, u64, u64)> = Vec::new();
    for t in &targets {
        let mut env = t.env.clone();
        env.push(("RESTIC_PASSWORD".into(), "bench-password".into()));
        env.push(("DRCTL_IDENTITY".into(), identity.display().to_string()));
        env.push(("DRCTL_REPO".into(), t.drctl_repo.clone()));
        env.push(("RESTIC_REPOSITORY".into(), t.restic_repo.clone()));
        if let Some((d, r)) = &t.local_dirs {
            std::fs::create_dir_all(d).expect("mkdir");
            let _ = r;
        }
        let run = |args: &[&str]| {
            let out = Command::new(args[0])
                .args(&args[1..])
                .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .output()
                .expect("run");
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&["restic", "init", "--repository-version", "2"]);
        run(&[&drctl, "repo", "init", "--recipient", &recipient]);
        let stored = |t: &Target| -> (u64, u64) {
            match (&t.local_dirs, &t.bucket) {
                (Some((d, r)), _) => (dir_size(d), dir_size(r)),
                (None, Some(b)) => {
                    // One bucket holds both; restic's share is measured by its own stats.
                    let total = bucket_size(b);
                    (total, 0)
                }
                _ => (0, 0),
            }
        };
        let backup =
            |step: &str, rows: &mut Vec<(String, Measure, Measure, u64, u64)>, before: (u64, u64)| {
                let mut d = Command::new(&drctl);
                d.args(["backup", "files", "--quiet"]).arg(&data);
                let dm = timed(d, &env);
                let mid = stored(t);
                let mut r = Command::new("restic");
                r.args(["backup", "--quiet"]).arg(&data);
                let rm = timed(r, &env);
                let after = stored(t);
                let (d_bytes, r_bytes) = if t.local_dirs.is_some() {
                    (after.0 - before.0, after.1 - before.1)
                } else {
                    (mid.0 - before.0, after.0 - mid.0)
                };
                rows.push((format!("{} {step}", t.name), dm, rm, d_bytes, r_bytes));
                after
            };
        let s0 = stored(t);
        let s1 = backup("full backup", &mut rows, s0);
        change_one_percent(&data);
        backup("incremental (1% changed)", &mut rows, s1);
        let d_out = work.path().join(format!("restore-drctl-{}", t.name));
        let r_out = work.path().join(format!("restore-restic-{}", t.name));
        let mut d = Command::new(&drctl);
        d.args(["restore", "files", "latest", "--quiet", "--target"])
            .arg(&d_out);
        let dm = timed(d, &env);
        let mut r = Command::new("restic");
        r.args(["restore", "latest", "--target"]).arg(&r_out);
        let rm = timed(r, &env);
        rows.push((format!("{} restore", t.name), dm, rm, 0, 0));
        // Verify both restores against the source.
        for out in [&d_out, &r_out] {
            let restored = out.join(data.strip_prefix("/").expect("absolute"));
            let same = Command::new("diff")
                .arg("-rq")
                .arg(&data)
                .arg(&restored)
                .status()
                .expect("diff");
            assert!(
                same.success(),
                "restore into {} differs from the source",
                out.display()
            );
        }
        let _ = std::fs::remove_dir_all(&d_out);
        let _ = std::fs::remove_dir_all(&r_out);
        if let Some(bucket) = &t.bucket {
            remove_bucket(bucket);
        }
        // Put the dataset back for the next target.
        let _ = std::fs::remove_dir_all(&data);
        make_dataset(&data);
    }

    println!(
        "{:<34} {:>9} {:>9} {:>7} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10}",
        "step",
        "drctl s",
        "restic s",
        "speedup",
        "drctl cpu",
        "restic cpu",
        "drctl MiB",
        "restic MiB",
        "drctl MB",
        "restic MB"
    );
    for (step, d, r, db, rb) in &rows {
        println!(
            "{:<34} {:>9.2} {:>9.2} {:>6.2}x {:>9.2} {:>10.2} {:>9.0} {:>10.0} {:>10} {:>10}",
            step,
            d.wall,
            r.wall,
            r.wall / d.wall.max(0.001),
            d.cpu,
            r.cpu,
            d.rss_mib,
            r.rss_mib,
            if *db > 0 {
                format!("{:.1}", *db as f64 / 1e6)
            } else {
                "-".into()
            },
            if *rb > 0 {
                format!("{:.1}", *rb as f64 / 1e6)
            } else {
                "-".into()
            },
        );
    }
}
