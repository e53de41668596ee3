//! drctl as operators use it: a local repository, real files, exit codes scripts rely on.
#![allow(clippy::unwrap_used)] // a test that cannot set up should panic loudly

use std::path::Path;

use assert_cmd::Command;
use lifeboat_tests::process::succeeded;

/// The drctl under test: this build's, or `LIFEBOAT_DRCTL` (an older build, to see a test fail).
fn drctl_bin() -> std::path::PathBuf {
    std::env::var_os("LIFEBOAT_DRCTL")
        .map(Into::into)
        .unwrap_or_else(|| assert_cmd::cargo::cargo_bin("drctl"))
}

fn drctl(dir: &Path) -> Command {
    let mut c = Command::new(drctl_bin());
    c.env("DRCTL_REPO", dir.join("repo"))
        .env("DRCTL_IDENTITY", dir.join("me.age"))
        .env_remove("DRCTL_PASSPHRASE_FILE")
        .arg("--quiet");
    c
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
    let id = succeeded(
        drctl(d)
            .args(["repo", "init", "--recipient", &public])
            .output()
            .unwrap(),
    );
    assert_eq!(id.trim().len(), 32, "repo id: {id}");

    let snap = succeeded(
        drctl(d)
            .args(["backup", "files", "--tag", "env=test"])
            .arg(d.join("data"))
            .output()
            .unwrap(),
    );
    let snap = snap.trim().to_string();
    assert_eq!(snap.len(), 64, "snapshot id: {snap}");

    let listed = succeeded(drctl(d).args(["snapshots", "-o", "json"]).output().unwrap());
    let v: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(v[0]["id"], snap.as_str());
    assert_eq!(v[0]["tags"]["env"], "test");
    let table = succeeded(drctl(d).args(["snapshots"]).output().unwrap());
    assert!(table.starts_with("ID") && table.contains(&snap[..8]), "{table}");
    let yaml = succeeded(drctl(d).args(["snapshots", "-o", "yaml"]).output().unwrap());
    assert!(yaml.contains(&format!("id: {snap}")), "{yaml}");

    let target = d.join("out");
    succeeded(
        drctl(d)
            .args(["restore", "files", &snap[..10], "--target"])
            .arg(&target)
            .args(["--include", "**/sub"])
            .output()
            .unwrap(),
    );
    let restored = target.join(d.join("data").strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read(restored.join("sub/b.bin")).unwrap(),
        vec![7u8; 100_000]
    );
    assert!(
        !restored.join("a.txt").exists(),
        "--include restored more than asked"
    );

    let check = succeeded(drctl(d).args(["repo", "check", "--read-data"]).output().unwrap());
    assert!(check.contains("no errors found"), "{check}");
    succeeded(
        drctl(d)
            .args(["backup", "files"])
            .arg(d.join("data"))
            .output()
            .unwrap(),
    );
    let dry = succeeded(
        drctl(d)
            .args(["forget", "--keep-last", "1", "--dry-run"])
            .output()
            .unwrap(),
    );
    assert!(dry.contains("remove") && dry.contains("dry run"), "{dry}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&succeeded(
            drctl(d).args(["snapshots", "-o", "json"]).output().unwrap()
        ))
        .unwrap()
        .as_array()
        .unwrap()
        .len(),
        2
    );
    succeeded(drctl(d).args(["forget", "--keep-last", "1"]).output().unwrap());
    succeeded(drctl(d).args(["repo", "prune"]).output().unwrap());
    let unlocked = drctl(d).args(["repo", "unlock"]).output().unwrap();
    assert!(String::from_utf8_lossy(&unlocked.stderr).contains("removed 0 lock"));
    let stats = succeeded(drctl(d).args(["repo", "stats", "-o", "json"]).output().unwrap());
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

    succeeded(
        drctl(d)
            .args(["repo", "init", "--recipient", &public])
            .output()
            .unwrap(),
    );
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

#[test]
fn init_creates_a_missing_directory_and_refuses_a_foreign_one() {
    let (dir, public) = setup();
    let d = dir.path();
    // A directory that does not exist yet, several levels deep, is created (as restic does).
    let fresh = d.join("new/nested/repo");
    succeeded(
        drctl(d)
            .args(["repo", "init", "--recipient", &public])
            .env("DRCTL_REPO", &fresh)
            .output()
            .unwrap(),
    );
    assert!(fresh.join("config").is_file());
    // A directory holding something else is refused, and nothing is written into it.
    let foreign = d.join("foreign");
    std::fs::create_dir_all(foreign.join("photos")).unwrap();
    std::fs::write(foreign.join("photos/cat.jpg"), b"not a repository").unwrap();
    let out = drctl(d)
        .args(["repo", "init", "--recipient", &public])
        .env("DRCTL_REPO", &foreign)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not empty") && err.contains("photos/cat.jpg"),
        "{err}"
    );
    let mut left: Vec<_> = walk(&foreign);
    left.sort();
    assert_eq!(left, vec![foreign.join("photos"), foreign.join("photos/cat.jpg")]);
}

fn walk(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(root).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

/// Published lock objects (not the `<name>#<digits>` files they are written through).
fn lock_files(d: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(d.join("repo/locks"))
        .map(|r| {
            r.map(|e| e.unwrap().path())
                .filter(|p| !p.to_string_lossy().contains('#'))
                .collect()
        })
        .unwrap_or_default()
}

/// A lock held by a process that was killed (`kill -9`) is named, with its age and the fix,
/// by what it blocks, and `repo unlock` removes it; locks it cannot judge (another host) stay
/// unless `--remove-all` is given, with a warning.
#[test]
fn a_killed_holders_lock_is_named_and_repo_unlock_removes_it() {
    let (dir, public) = setup();
    let d = dir.path();
    succeeded(
        drctl(d)
            .args(["repo", "init", "--recipient", &public])
            .output()
            .unwrap(),
    );
    let mut big = vec![0u8; 96 << 20];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut big).unwrap();
    std::fs::write(d.join("data/big.bin"), &big).unwrap();

    // A backup, killed once it holds its lock.
    let mut child = std::process::Command::new(drctl_bin())
        .args(["--quiet", "backup", "files"])
        .arg(d.join("data"))
        .env("DRCTL_REPO", d.join("repo"))
        .env("DRCTL_IDENTITY", d.join("me.age"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while lock_files(d).is_empty() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup ended before it could be killed"
        );
        assert!(started.elapsed().as_secs() < 60, "no lock appeared");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let pid = child.id();

    let out = drctl(d).args(["repo", "prune"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert!(
        err.contains(&format!(
            "locked by pid {pid} on {}, shared lock for backup, taken",
            host.trim()
        )),
        "{err}"
    );
    assert!(
        err.contains("is no longer running") && err.contains("drctl repo unlock"),
        "{err}"
    );

    // A live-looking lock from another host, which this host cannot judge.
    let now = chrono::Utc::now();
    let foreign = serde_json::json!({"kind": "shared", "purpose": "backup", "hostname": "elsewhere",
        "pid": 1, "created": now, "expires": now + chrono::Duration::minutes(30)});
    std::fs::create_dir_all(d.join("repo/locks")).unwrap();
    std::fs::write(d.join("repo/locks/0123456789abcdef01234567"), foreign.to_string()).unwrap();

    let out = drctl(d).args(["repo", "unlock"]).output().unwrap();
    let (text, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{err}");
    assert!(
        text.contains(&format!("removed: pid {pid} on")) && text.contains("no longer running"),
        "{text}"
    );
    assert!(text.contains("kept: pid 1 on elsewhere"), "{text}");
    assert!(err.contains("removed 1 lock(s), kept 1"), "{err}");
    assert_eq!(lock_files(d).len(), 1);

    // Prune is still refused, naming the other host's lock and how to remove it.
    let out = drctl(d).args(["repo", "prune"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pid 1 on elsewhere") && err.contains("--remove-all"),
        "{err}"
    );
    let out = drctl(d)
        .args(["repo", "unlock", "--remove-all"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: --remove-all") && err.contains("removed 1 lock(s)"),
        "{err}"
    );
    assert!(lock_files(d).is_empty());
    succeeded(drctl(d).args(["repo", "prune"]).output().unwrap());

    // A prune's exclusive lock whose process died on this host blocks forget, with the fix.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    let dead = serde_json::json!({"kind": "exclusive", "purpose": "prune", "hostname": host.trim(),
        "pid": gone.id(), "created": now - chrono::Duration::minutes(7),
        "expires": now + chrono::Duration::minutes(23),
        "boot_id": std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap().trim(),
        "pid_namespace": std::fs::read_link("/proc/self/ns/pid").unwrap().display().to_string()});
    std::fs::create_dir_all(d.join("repo/locks")).unwrap();
    std::fs::write(d.join("repo/locks/abcdef0123456789abcdef01"), dead.to_string()).unwrap();
    let out = drctl(d).args(["forget", "--keep-last", "1"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("exclusive lock for prune, taken 7m") && err.contains("drctl repo unlock"),
        "{err}"
    );
    let out = drctl(d).args(["repo", "unlock"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("removed 1 lock(s)"));
    succeeded(drctl(d).args(["forget", "--keep-last", "1"]).output().unwrap());
}
