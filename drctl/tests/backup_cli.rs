//! drctl as operators use it: a local repository, real files, exit codes scripts rely on.
#![allow(clippy::unwrap_used)] // a test that cannot set up should panic loudly

use std::path::Path;
use std::process::Output;

use assert_cmd::Command;

fn drctl(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("drctl").unwrap();
    c.env("DRCTL_REPO", dir.join("repo"))
        .env("DRCTL_IDENTITY", dir.join("me.age"))
        .env_remove("DRCTL_PASSPHRASE_FILE")
        .arg("--quiet");
    c
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn setup() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let keygen = std::process::Command::new("age-keygen")
        .arg("-o")
        .arg(dir.path().join("me.age"))
        .output()
        .unwrap();
    assert!(keygen.status.success());
    let text = std::fs::read_to_string(dir.path().join("me.age")).unwrap();
    let public = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap()
        .to_string();
    std::fs::create_dir(dir.path().join("repo")).unwrap();
    std::fs::create_dir_all(dir.path().join("data/sub")).unwrap();
    std::fs::write(dir.path().join("data/a.txt"), "hello\n".repeat(1000)).unwrap();
    std::fs::write(dir.path().join("data/sub/b.bin"), vec![7u8; 100_000]).unwrap();
    (dir, public)
}

#[test]
fn init_backup_list_restore_check_forget() {
    let (dir, public) = setup();
    let d = dir.path();
    let id = ok(drctl(d)
        .args(["repo", "init", "--recipient", &public])
        .output()
        .unwrap());
    assert_eq!(id.trim().len(), 32, "repo id: {id}");

    let snap = ok(drctl(d)
        .args(["backup", "files", "--tag", "env=test"])
        .arg(d.join("data"))
        .output()
        .unwrap());
    let snap = snap.trim().to_string();
    assert_eq!(snap.len(), 64, "snapshot id: {snap}");

    let listed = ok(drctl(d).args(["snapshots", "-o", "json"]).output().unwrap());
    let v: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(v[0]["id"], snap.as_str());
    assert_eq!(v[0]["tags"]["env"], "test");
    let table = ok(drctl(d).args(["snapshots"]).output().unwrap());
    assert!(table.starts_with("ID") && table.contains(&snap[..8]), "{table}");
    let yaml = ok(drctl(d).args(["snapshots", "-o", "yaml"]).output().unwrap());
    assert!(yaml.contains(&format!("id: {snap}")), "{yaml}");

    let target = d.join("out");
    ok(drctl(d)
        .args(["restore", "files", &snap[..10], "--target"])
        .arg(&target)
        .args(["--include", "**/sub"])
        .output()
        .unwrap());
    let restored = target.join(d.join("data").strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read(restored.join("sub/b.bin")).unwrap(),
        vec![7u8; 100_000]
    );
    assert!(
        !restored.join("a.txt").exists(),
        "--include restored more than asked"
    );

    let check = ok(drctl(d).args(["repo", "check", "--read-data"]).output().unwrap());
    assert!(check.contains("no errors found"), "{check}");
    ok(drctl(d)
        .args(["backup", "files"])
        .arg(d.join("data"))
        .output()
        .unwrap());
    let dry = ok(drctl(d)
        .args(["forget", "--keep-last", "1", "--dry-run"])
        .output()
        .unwrap());
    assert!(dry.contains("remove") && dry.contains("dry run"), "{dry}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&ok(drctl(d)
            .args(["snapshots", "-o", "json"])
            .output()
            .unwrap()))
        .unwrap()
        .as_array()
        .unwrap()
        .len(),
        2
    );
    ok(drctl(d).args(["forget", "--keep-last", "1"]).output().unwrap());
    ok(drctl(d).args(["repo", "prune"]).output().unwrap());
    let unlocked = drctl(d).args(["repo", "unlock"]).output().unwrap();
    assert!(String::from_utf8_lossy(&unlocked.stderr).contains("removed 0 lock"));
    let stats = ok(drctl(d).args(["repo", "stats", "-o", "json"]).output().unwrap());
    let s: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(s["snapshots"], 1);
}

#[test]
fn bad_input_gets_clear_errors_and_exit_codes() {
    let (dir, public) = setup();
    let d = dir.path();
    // Not a repository yet.
    let out = drctl(d).args(["snapshots"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a Lifeboat repository") && err.contains("drctl repo init"),
        "{err}"
    );

    ok(drctl(d)
        .args(["repo", "init", "--recipient", &public])
        .output()
        .unwrap());
    // A second init refuses.
    let out = drctl(d)
        .args(["repo", "init", "--recipient", &public])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds a repository"));
    // A bad recipient is named.
    let out = drctl(d)
        .args(["repo", "init", "--recipient", "age1nonsense"])
        .env("DRCTL_REPO", d.join("other"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("age1nonsense"));
    // The wrong identity names the repository and the file tried, and nothing secret.
    let keygen = std::process::Command::new("age-keygen")
        .arg("-o")
        .arg(d.join("other.age"))
        .output()
        .unwrap();
    assert!(keygen.status.success());
    let out = drctl(d)
        .args(["snapshots"])
        .env("DRCTL_IDENTITY", d.join("other.age"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("other.age") && err.contains("repo"), "{err}");
    assert!(!err.contains("AGE-SECRET-KEY"), "a secret leaked: {err}");
    // An unknown snapshot.
    let out = drctl(d)
        .args(["restore", "files", "deadbeef", "--target"])
        .arg(d.join("x"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("no snapshot deadbeef"));
    // forget without a policy refuses.
    let out = drctl(d).args(["forget"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--keep"));
    // A missing path to back up is named.
    let out = drctl(d)
        .args(["backup", "files"])
        .arg(d.join("nope"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
}
