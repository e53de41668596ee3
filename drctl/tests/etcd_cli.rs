//! `drctl etcd` against a real etcd with mutual TLS, as an operator would run it.
#![allow(clippy::unwrap_used)] // a test that cannot set up should panic loudly

use assert_cmd::Command;
use lifeboat_tests::Etcd;

#[test]
fn snapshot_list_and_restore_with_mutual_tls() {
    let etcd = Etcd::start_tls().unwrap();
    let tls = etcd.tls().unwrap().clone();
    let put = etcd
        .etcdctl()
        .args(["put", "/registry/ns/default", "payload"])
        .output()
        .unwrap();
    assert!(put.status.success());
    let dir = tempfile::tempdir().unwrap();
    let (identity, public) = lifeboat_tests::repos::make_identity(dir.path(), "me").unwrap();
    std::fs::create_dir(dir.path().join("repo")).unwrap();
    let drctl = || {
        let mut c = Command::cargo_bin("drctl").unwrap();
        c.env("DRCTL_REPO", dir.path().join("repo"))
            .env("DRCTL_IDENTITY", &identity)
            .arg("--quiet");
        c
    };
    assert!(
        drctl()
            .args(["repo", "init", "--recipient", &public])
            .output()
            .unwrap()
            .status
            .success()
    );

    let out = drctl()
        .args([
            "etcd",
            "snapshot",
            "--endpoints",
            &format!("https://127.0.0.1:1,{}", etcd.endpoint()),
        ])
        .arg("--cacert")
        .arg(&tls.ca)
        .arg("--cert")
        .arg(&tls.cert)
        .arg("--key")
        .arg(&tls.key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(id.len(), 64);

    let listed = drctl()
        .args(["etcd", "snapshots", "-o", "json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(v[0]["id"], id.as_str());
    assert_eq!(v[0]["meta"]["endpoint"], etcd.endpoint().as_str());

    // `-o json` prints the snapshot with its id, as the listing does.
    let json = drctl()
        .args(["etcd", "snapshot", "-o", "json", "--endpoints", &etcd.endpoint()])
        .arg("--cacert")
        .arg(&tls.ca)
        .arg("--cert")
        .arg(&tls.cert)
        .arg("--key")
        .arg(&tls.key)
        .output()
        .unwrap();
    assert!(json.status.success(), "{}", String::from_utf8_lossy(&json.stderr));
    let shown: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(shown["id"].as_str().map(str::len), Some(64), "{shown}");
    assert_eq!(shown["meta"]["type"], "full", "{shown}");

    let db = dir.path().join("restored.db");
    let out = drctl()
        .args(["etcd", "restore", "latest", "--output"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "status", "-w", "json"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(status.status.success(), "etcdctl rejected the restored db");

    // The file exists now: a second restore refuses without --force.
    let again = drctl()
        .args(["etcd", "restore", &id[..12], "--output"])
        .arg(&db)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
}

#[test]
fn watch_stores_deltas_until_sigterm_and_restore_replays_them() {
    let etcd = Etcd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (identity, public) = lifeboat_tests::repos::make_identity(dir.path(), "me").unwrap();
    std::fs::create_dir(dir.path().join("repo")).unwrap();
    let drctl = || {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("drctl"));
        c.env("DRCTL_REPO", dir.path().join("repo"))
            .env("DRCTL_IDENTITY", &identity)
            .arg("--quiet");
        c
    };
    assert!(
        drctl()
            .args(["repo", "init", "--recipient", &public])
            .output()
            .unwrap()
            .status
            .success()
    );
    let mut watcher = drctl()
        .args([
            "etcd",
            "snapshot",
            "--watch",
            "--interval",
            "1",
            "--endpoints",
            &etcd.endpoint(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    for i in 0..20 {
        let put = etcd
            .etcdctl()
            .args(["put", &format!("/registry/k{i}"), "v"])
            .output()
            .unwrap();
        assert!(put.status.success());
    }
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let term = std::process::Command::new("kill")
        .args(["-TERM", &watcher.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    assert!(
        watcher.wait().unwrap().success(),
        "drctl did not exit cleanly on SIGTERM"
    );

    let listed = drctl()
        .args(["etcd", "snapshots", "-o", "json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let kinds: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["meta"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"full"));
    assert!(kinds.contains(&"delta"), "no delta stored: {kinds:?}");

    let db = dir.path().join("latest.db");
    let out = drctl()
        .args(["etcd", "restore", "latest", "--latest", "--output"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "status", "-w", "json"])
        .arg(&db)
        .output()
        .unwrap();
    let s: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(s["totalKey"].as_u64().unwrap() >= 20, "replayed database: {s}");
}
