//! `drctl repo copy` killed with SIGKILL at random moments and run again: after every kill the
//! destination passes `repo check --read-data` (so no snapshot is visible before its data),
//! the next run sends only what the destination does not store yet, and the last run leaves a
//! replica that restores the same files.
//!
//! ```sh
//! cargo test -p drctl --test copy_cli               # COPY_KILL_SEED=N repeats a run
//! ```
#![allow(clippy::unwrap_used)] // a test that cannot set up should panic loudly

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use lifeboat_tests::faults::SeededRng;
use lifeboat_tests::process::succeeded;
use lifeboat_tests::repos::{Backend, TestRepo};
use serde_json::Value;

fn drctl(env: &[(String, String)]) -> Command {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("drctl"));
    c.env_remove("DRCTL_PASSPHRASE_FILE")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .arg("--quiet");
    c
}

fn json(out: Output) -> Value {
    serde_json::from_str(&succeeded(out)).unwrap()
}

fn write_random(path: &Path, seed: u64, bytes: usize) {
    let mut rng = SeededRng(seed | 1);
    let data: Vec<u8> = (0..bytes / 8)
        .flat_map(|_| rng.next_u64().to_le_bytes())
        .collect();
    std::fs::write(path, data).unwrap();
}

#[test]
fn copy_killed_at_random_moments_resumes_and_no_snapshot_is_visible_before_its_data() {
    let seed = SeededRng::seed_from_env("COPY_KILL_SEED");
    eprintln!("kill delays seeded with COPY_KILL_SEED={seed}");
    let mut rng = SeededRng(seed | 1);

    let src = TestRepo::new(Backend::Local).unwrap();
    let dst = TestRepo::new(Backend::Rgw).unwrap();
    let src_env = src.drctl_env();
    let data = src.path("data");
    std::fs::create_dir_all(&data).unwrap();
    succeeded(
        drctl(&src_env)
            .args(["repo", "init", "--recipient", &src.recipient])
            .output()
            .unwrap(),
    );
    // Snapshots each adding incompressible data (a pack or more each): three now, and one
    // more before every round, as continuous replication sees them.
    let backup = |i: u64, mib: usize| {
        write_random(&data.join(format!("part-{i}.bin")), seed ^ (i + 1), mib << 20);
        succeeded(
            drctl(&src_env)
                .args(["backup", "files"])
                .arg(&data)
                .output()
                .unwrap(),
        );
    };
    for i in 0..3u64 {
        backup(i, 8);
    }
    let source_packs = || {
        let stats = json(
            drctl(&src_env)
                .args(["repo", "stats", "-o", "json"])
                .output()
                .unwrap(),
        );
        stats["packs"].as_u64().unwrap()
    };

    let (to_args, to_env) = dst.copy_destination();
    let copy_env: Vec<(String, String)> = src_env.iter().cloned().chain(to_env).collect();
    // The destination, opened with the source's key.
    let mut dst_env = dst.drctl_env();
    for (k, v) in dst_env.iter_mut() {
        if k == "DRCTL_IDENTITY" {
            *v = src.identity.display().to_string();
        }
    }
    let copy = |extra: &[&str]| {
        let mut c = drctl(&copy_env);
        c.args(["repo", "copy"]).args(&to_args).args(extra);
        c
    };

    let (mut before_config, mut mid_copy, mut finished) = (0, 0, 0);
    let mut visible_counts = Vec::new();
    let rounds = 12;
    for round in 0..rounds {
        backup(3 + round, 8);
        let source_packs = source_packs();
        // A round's copy sends 8 MiB at 6 MiB/s (plus the backlog of earlier rounds).
        let delay = Duration::from_millis(rng.next_u64() % 1600);
        let started = Instant::now();
        let mut child = copy(&["--bandwidth", "6MiB"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let done_before_kill = child.try_wait().unwrap().is_some();
        child.kill().unwrap(); // SIGKILL: no cleanup of any kind
        child.wait().unwrap();
        eprintln!(
            "round {round}: killed after {:?}{}",
            started.elapsed(),
            if done_before_kill {
                " (it had already finished)"
            } else {
                ""
            }
        );

        // The destination is either no repository yet, or a consistent one.
        let checked = drctl(&dst_env)
            .args(["repo", "check", "--read-data", "-o", "json"])
            .output()
            .unwrap();
        if !checked.status.success() {
            let stderr = String::from_utf8_lossy(&checked.stderr);
            assert!(
                stderr.contains("not a Lifeboat repository"),
                "round {round}: check at the destination failed:\n{}\n{stderr}",
                String::from_utf8_lossy(&checked.stdout)
            );
            before_config += 1;
            continue;
        }
        let report: Value = serde_json::from_slice(&checked.stdout).unwrap();
        let visible = report["snapshots"].as_u64().unwrap();
        visible_counts.push(visible);
        if done_before_kill {
            finished += 1;
        } else {
            mid_copy += 1;
        }
        // Resuming sends exactly what is not stored there: what was in flight at the kill
        // was never published, and stored packs are only indexed.
        let stored = report["packs"].as_u64().unwrap() + report["unindexed_packs"].as_u64().unwrap();
        let plan = json(copy(&["--dry-run", "-o", "json"]).output().unwrap());
        let transfer = plan["transfer"].as_array().unwrap().len() as u64;
        let index_only = plan["indexOnly"].as_array().unwrap().len() as u64;
        assert_eq!(
            transfer,
            source_packs - stored,
            "round {round}: the resumed copy would send {transfer} packs; {stored} of {source_packs} are stored"
        );
        assert_eq!(index_only, report["unindexed_packs"].as_u64().unwrap());
    }
    eprintln!(
        "kills: {before_config} before the destination had a config, {mid_copy} mid-copy, \
         {finished} after the copy had finished; snapshots visible after each: {visible_counts:?}"
    );
    assert!(before_config + mid_copy + finished >= 10);

    // The last run completes the replica.
    let report = json(copy(&["-o", "json"]).output().unwrap());
    assert!(report["damaged"].as_object().unwrap().is_empty(), "{report}");
    let checked = json(
        drctl(&dst_env)
            .args(["repo", "check", "--read-data", "-o", "json"])
            .output()
            .unwrap(),
    );
    assert_eq!(checked["snapshots"], 3 + rounds, "{checked}");
    assert_eq!(checked["unindexed_packs"], 0, "{checked}");
    let target = src.path("restored");
    succeeded(
        drctl(&dst_env)
            .args(["restore", "files", "latest", "--target"])
            .arg(&target)
            .output()
            .unwrap(),
    );
    let restored = target.join(data.strip_prefix("/").unwrap());
    let diff = Command::new("diff")
        .arg("-r")
        .arg(&data)
        .arg(&restored)
        .output()
        .unwrap();
    assert!(diff.status.success(), "{}", String::from_utf8_lossy(&diff.stdout));

    // `backup list --repo` works with no cluster at all (no kubeconfig anywhere).
    let listed = drctl(&dst_env)
        .env("KUBECONFIG", "/nonexistent")
        .args(["backup", "list"])
        .output()
        .unwrap();
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
}

#[test]
fn copy_rejects_bad_input_with_the_fix() {
    let src = TestRepo::new(Backend::Local).unwrap();
    let env = src.drctl_env();
    succeeded(
        drctl(&env)
            .args(["repo", "init", "--recipient", &src.recipient])
            .output()
            .unwrap(),
    );
    let to = src.path("replica");
    let run = |args: &[&str]| {
        let out = drctl(&env)
            .args(["repo", "copy", "--to"])
            .arg(&to)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, err) = run(&["--bandwidth", "fast"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("50MiB"), "{err}");
    let (code, err) = run(&["--lock-mode", "governance"]);
    assert_eq!(code, Some(2), "--lock-mode without --lock-days: {err}");
    let (code, err) = run(&["--lock-mode", "governance", "--lock-days", "7"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("object lock") && err.contains("local disk"), "{err}");
    let (code, err) = run(&["--snapshots", "abcdef"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no snapshot abcdef"), "{err}");
    let out = drctl(&env)
        .args(["repo", "copy", "--to", &src.url])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("the source itself"));
    let written = std::fs::read_dir(&to).map(|d| d.count()).unwrap_or(0);
    assert_eq!(written, 0, "failed copies wrote nothing");
}
