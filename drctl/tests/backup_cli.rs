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
    // So does a zero --keep-within, which once forgot every snapshot, the newest too.
    for zero in ["0s", "0h0m"] {
        let out = drctl(d).args(["forget", "--keep-within", zero]).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("--keep-within"));
    }
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

/// A lock held by a process that was killed (`kill -9`) on this host does not block what
/// comes next: it is removed as stale, with a warning naming its holder (host, pid, operation,
/// age) and why; locks it cannot judge (another host) block, naming the holder and the fix,
/// and stay through `repo unlock` unless `--remove-all` is given, with a warning.
#[test]
fn a_killed_holders_lock_is_removed_as_stale_and_others_need_unlock() {
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
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert!(
        err.contains("removed a stale lock")
            && err.contains(&format!(
                "pid {pid} on {}, shared lock for backup, taken",
                host.trim()
            ))
            && err.contains("is no longer running"),
        "{err}"
    );
    assert!(lock_files(d).is_empty(), "the stale lock is gone");

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
    assert!(text.contains("kept: pid 1 on elsewhere"), "{text}");
    assert!(err.contains("removed 0 lock(s), kept 1"), "{err}");
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

    // A prune's exclusive lock whose process died on this host is removed by forget, named.
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
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("removed a stale lock locks/abcdef0123456789abcdef01")
            && err.contains("exclusive lock for prune, taken 7m")
            && err.contains("no longer running"),
        "{err}"
    );
    assert!(lock_files(d).is_empty());

    // The same dead lock from another boot of a host of this name is not removed by itself
    // (another machine may share the name): it blocks, naming the holder and the fix.
    let mut other_boot = dead.clone();
    other_boot["boot_id"] = serde_json::json!("00000000-0000-0000-0000-000000000000");
    std::fs::create_dir_all(d.join("repo/locks")).unwrap();
    std::fs::write(
        d.join("repo/locks/abcdef0123456789abcdef02"),
        other_boot.to_string(),
    )
    .unwrap();
    let out = drctl(d).args(["repo", "prune"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("exclusive lock for prune, taken 7m") && err.contains("drctl repo unlock"),
        "{err}"
    );
    let out = drctl(d).args(["repo", "unlock"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("removed 1 lock(s)"));
    succeeded(drctl(d).args(["repo", "prune"]).output().unwrap());
}

/// Exit code, stdout and stderr of a finished command.
fn run(cmd: &mut Command) -> (Option<i32>, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A repository with one snapshot of `n` files of 10 MiB of random data (so several packs
/// and, past 4 packs, several index files); returns the snapshot id.
fn repo_with_random_files(d: &Path, public: &str, n: usize) -> String {
    succeeded(
        drctl(d)
            .args(["repo", "init", "--recipient", public])
            .output()
            .unwrap(),
    );
    let src = d.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut random = std::fs::File::open("/dev/urandom").unwrap();
    for i in 0..n {
        let mut buf = vec![0u8; 10 << 20];
        std::io::Read::read_exact(&mut random, &mut buf).unwrap();
        std::fs::write(src.join(format!("f{i}")), &buf).unwrap();
    }
    let id = succeeded(drctl(d).args(["backup", "files"]).arg(&src).output().unwrap());
    id.trim().to_string()
}

/// Stored objects under `repo/<dir>` (not the `<name>#<digits>` files they are written through).
fn objects(d: &Path, dir: &str) -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> = walk(&d.join("repo").join(dir))
        .into_iter()
        .filter(|p| p.is_file() && !p.to_string_lossy().contains('#'))
        .collect();
    found.sort();
    found
}

/// Restores `snap` into `d/<target>` and compares every file with `d/src`.
fn restores_exactly(d: &Path, snap: &str, target: &str) {
    let target = d.join(target);
    let (code, out, err) = run(drctl(d).args(["restore", "files", snap, "--target"]).arg(&target));
    assert_eq!(code, Some(0), "restore: {out}{err}");
    let src = d.join("src");
    let back = target.join(src.strip_prefix("/").unwrap());
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        assert!(
            std::fs::read(&p).unwrap() == std::fs::read(back.join(p.file_name().unwrap())).unwrap(),
            "{} differs after restore",
            p.display()
        );
    }
}

/// Defect 1: with an index file gone, `repo check` names `repo repair index`, `repo prune`
/// deletes nothing (the unindexed packs hold the snapshot's data), and `repo repair index`
/// rebuilds the index from the packs' trailers, after which restore and prune work.
#[test]
fn prune_never_deletes_packs_a_snapshot_needs_and_repair_index_rebuilds_the_index() {
    let (dir, public) = setup();
    let d = dir.path();
    let snap = repo_with_random_files(d, &public, 12);
    let index = objects(d, "index");
    assert!(index.len() >= 2, "{index:?}");
    let packs = objects(d, "data");
    let oldest = index
        .iter()
        .min_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap())
        .unwrap();
    std::fs::remove_file(oldest).unwrap();

    let (code, out, err) = run(drctl(d).args(["repo", "check"]));
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(out.contains("drctl repo repair index"), "{out}");
    for dry_run in [true, false] {
        let (code, out, err) = run(drctl(d)
            .args(["repo", "prune"])
            .args(dry_run.then_some("--dry-run")));
        assert_eq!(code, Some(1), "prune: {out}{err}");
        assert!(
            err.contains("prune refused, nothing was deleted") && err.contains("drctl repo repair index"),
            "{err}"
        );
        assert_eq!(objects(d, "data"), packs, "prune deleted packs");
    }

    let (code, out, err) = run(drctl(d).args(["repo", "repair", "index"]));
    assert_eq!(code, Some(0), "repair: {out}{err}");
    assert!(out.contains(&format!("{} packs indexed", packs.len())), "{out}");
    let check = succeeded(drctl(d).args(["repo", "check", "--read-data"]).output().unwrap());
    assert!(check.contains("no errors found"), "{check}");
    restores_exactly(d, &snap, "out1");
    let pruned = succeeded(drctl(d).args(["repo", "prune"]).output().unwrap());
    assert!(pruned.contains("0 deleted, 0 unindexed deleted"), "{pruned}");
    restores_exactly(d, &snap, "out2");
}

/// Defect 5: a truncated index file makes check exit 3 naming the fix (not 1), prune refuses
/// naming it, a backup names it and goes on, and `repo repair index` replaces it.
#[test]
fn a_damaged_index_file_is_named_and_repair_index_replaces_it() {
    let (dir, public) = setup();
    let d = dir.path();
    let snap = repo_with_random_files(d, &public, 2);
    for f in objects(d, "index") {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&f)
            .unwrap()
            .set_len(500)
            .unwrap();
    }
    let (code, out, err) = run(drctl(d).args(["repo", "check"]));
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(
        out.contains("is damaged") && out.contains("drctl repo repair index"),
        "{out}"
    );
    // Prune needs every index file, so it refuses; a backup reads what the other index files
    // list, names the damaged one, and stores anew what only it listed.
    let (code, out, err) = run(drctl(d).args(["repo", "prune", "--dry-run"]));
    assert_eq!(code, Some(1), "prune: {out}{err}");
    assert!(err.contains("drctl repo repair index"), "prune: {err}");
    std::fs::write(d.join("extra.txt"), "one more file").unwrap();
    let (code, out, err) = run(drctl(d).args(["backup", "files"]).arg(d.join("extra.txt")));
    assert_eq!(code, Some(0), "backup: {out}{err}");
    assert!(
        err.contains("index file index/") && err.contains("is damaged"),
        "backup: {err}"
    );
    let (code, out, err) = run(drctl(d).args(["repo", "repair", "index"]));
    assert_eq!(code, Some(0), "repair: {out}{err}");
    assert!(out.contains("damaged index file index/"), "{out}");
    let check = succeeded(drctl(d).args(["repo", "check", "--read-data"]).output().unwrap());
    assert!(check.contains("no errors found"), "{check}");
    restores_exactly(d, &snap, "out");
}

/// Sends `signal` (`-INT`, `-TERM`) to `child` once a lock file appears, and returns its exit
/// code.
fn interrupt_once_locked(d: &Path, mut child: std::process::Child, signal: &str) -> Option<i32> {
    let started = std::time::Instant::now();
    while lock_files(d).is_empty() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "it ended before it could be interrupted"
        );
        assert!(started.elapsed().as_secs() < 60, "no lock appeared");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let sent = std::process::Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    child.wait().unwrap().code()
}

/// Ctrl-C (SIGINT) and SIGTERM (what Kubernetes sends a pod) stop a backup and a restore with
/// the shells' codes 130 and 143, releasing their locks (a prune on another host is then not
/// blocked until the lock expires), and the repository checks clean.
#[test]
fn sigint_and_sigterm_release_the_lock() {
    let (dir, public) = setup();
    let d = dir.path();
    let snap = repo_with_random_files(d, &public, 12);
    std::fs::write(d.join("src/more"), vec![7u8; 64 << 20]).unwrap();
    let spawn = |args: &[&str]| {
        std::process::Command::new(drctl_bin())
            .args(args)
            .env("DRCTL_REPO", d.join("repo"))
            .env("DRCTL_IDENTITY", d.join("me.age"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let src = d.join("src").display().to_string();
    let backup = spawn(&["--quiet", "backup", "files", "--force", &src]);
    assert_eq!(interrupt_once_locked(d, backup, "-INT"), Some(130));
    assert!(lock_files(d).is_empty(), "SIGINT left {:?}", lock_files(d));
    let target = d.join("out").display().to_string();
    let restore = spawn(&["--quiet", "restore", "files", &snap, "--target", &target]);
    assert_eq!(interrupt_once_locked(d, restore, "-TERM"), Some(143));
    assert!(lock_files(d).is_empty(), "SIGTERM left {:?}", lock_files(d));
    let check = succeeded(drctl(d).args(["repo", "check"]).output().unwrap());
    assert!(check.contains("no errors found"), "{check}");
    std::fs::remove_file(d.join("src/more")).unwrap();
    restores_exactly(d, &snap, "out");
}

/// Temporary files an interrupted (killed) restore left in the directories it restores are
/// removed by the next restore into them, which says so; other names (a user's file that
/// only looks like one: no check digits), directories and what a leftover symlink points to
/// are left alone, and so is every file the snapshot itself holds, whatever its name (such
/// files were once deleted after being restored, exit 0).
#[test]
fn a_rerun_restore_removes_what_an_interrupted_one_left() {
    use lifeboat_backup::restore::temporary_name;
    let (dir, public) = setup();
    let d = dir.path();
    // The snapshot holds a file named as a restore's temporary, check digits and all.
    let kept = temporary_name(7);
    std::fs::create_dir_all(d.join("src")).unwrap();
    std::fs::write(d.join("src").join(&kept), "precious").unwrap();
    let snap = repo_with_random_files(d, &public, 1);
    restores_exactly(d, &snap, "out");
    let restored = d.join("out").join(d.join("src").strip_prefix("/").unwrap());
    let outside = d.join("outside.txt");
    std::fs::write(&outside, "not the restore's").unwrap();
    let (left, link) = (temporary_name(1), temporary_name(2));
    std::fs::write(restored.join(&left), "half a file").unwrap();
    std::os::unix::fs::symlink(&outside, restored.join(&link)).unwrap();
    std::fs::write(restored.join(".lifeboat-restore-keep"), "not a temporary name").unwrap();
    std::fs::write(
        restored.join(".lifeboat-restore-0123456789abcdef"),
        "a user's file",
    )
    .unwrap();
    std::fs::create_dir(restored.join(temporary_name(3))).unwrap();

    let (code, out, err) = run(drctl(d)
        .args(["restore", "files", &snap, "--target"])
        .arg(d.join("out")));
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("removed 2 temporary file(s)"), "{out}{err}");
    assert!(
        out.contains("left 1 file(s) named like an earlier release's restore temporaries"),
        "{out}{err}"
    );
    assert!(!restored.join(&left).exists());
    assert!(std::fs::symlink_metadata(restored.join(&link)).is_err());
    assert!(restored.join(".lifeboat-restore-keep").exists());
    assert!(restored.join(".lifeboat-restore-0123456789abcdef").exists());
    assert!(restored.join(temporary_name(3)).is_dir());
    assert_eq!(std::fs::read_to_string(restored.join(&kept)).unwrap(), "precious");
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "not the restore's");
    std::fs::remove_file(restored.join(".lifeboat-restore-keep")).unwrap();
    std::fs::remove_file(restored.join(".lifeboat-restore-0123456789abcdef")).unwrap();
    std::fs::remove_dir(restored.join(temporary_name(3))).unwrap();
    restores_exactly(d, &snap, "out");
}

/// A damaged index file does not stop the restore of a snapshot the other index files cover:
/// it is named in a warning and read around. The snapshot whose tree only it listed cannot be
/// listed (exit 1, naming the missing blob and `repo check`).
#[test]
fn a_damaged_index_file_does_not_block_snapshots_other_index_files_cover() {
    let (dir, public) = setup();
    let d = dir.path();
    let first = repo_with_random_files(d, &public, 1);
    let first_index = objects(d, "index");
    assert_eq!(first_index.len(), 1);
    std::fs::write(d.join("src/f0"), b"changed").unwrap();
    let second = succeeded(
        drctl(d)
            .args(["backup", "files"])
            .arg(d.join("src"))
            .output()
            .unwrap(),
    );
    let second = second.trim().to_string();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&first_index[0])
        .unwrap()
        .set_len(100)
        .unwrap();
    let name = first_index[0].file_name().unwrap().to_string_lossy().into_owned();

    let (code, out, err) = run(drctl(d)
        .args(["restore", "files", &second, "--target"])
        .arg(d.join("out")));
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        err.contains(&format!("index file index/{name}")) && err.contains("is damaged"),
        "{err}"
    );
    restores_exactly(d, &second, "out2");

    let (code, out, err) = run(drctl(d)
        .args(["restore", "files", &first, "--target"])
        .arg(d.join("out3")));
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.contains("is not in the index") && err.contains("drctl repo check"),
        "{err}"
    );
}

/// Defect 6: a lost data pack is named by check with the fix; prune refuses; after `repo
/// repair index` drops it, the next backup (not --force) stores the lost blobs again, which
/// heals the old snapshot too (same blobs).
#[test]
fn a_lost_pack_is_named_and_the_next_backup_after_repair_stores_its_blobs_again() {
    let (dir, public) = setup();
    let d = dir.path();
    let old = repo_with_random_files(d, &public, 3);
    let packs = objects(d, "data");
    let (code, out, err) = run(drctl(d).args(["repo", "stats", "-o", "json"]));
    assert_eq!(code, Some(0), "{err}");
    let stats: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(packs.len() >= 2, "{stats}");
    // The largest pack holds file data.
    let lost = packs
        .iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    std::fs::remove_file(lost).unwrap();
    let lost_name = lost.file_name().unwrap().to_string_lossy().into_owned();

    let (code, out, err) = run(drctl(d).args(["repo", "check"]));
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(
        out.contains(&format!(
            "damaged pack data/{}/{lost_name}: missing",
            &lost_name[..2]
        )) && out.contains("drctl repo repair index"),
        "{out}"
    );
    let (code, out, err) = run(drctl(d).args(["repo", "prune"]));
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.contains("missing from storage") && err.contains("repair index"),
        "{err}"
    );

    let (code, out, err) = run(drctl(d).args(["repo", "repair", "index"]));
    assert_eq!(code, Some(3), "repair: {out}{err}");
    assert!(
        out.contains(&lost_name) && out.contains("dropped from the index"),
        "{out}"
    );
    // Until the lost blobs are stored again (or the damaged snapshot forgotten), prune still
    // refuses: a snapshot whose data is gone cannot say what it needs.
    let (code, out, err) = run(drctl(d).args(["repo", "prune"]));
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.contains("no pack holds") && err.contains("drctl repo check"),
        "{err}"
    );

    let (code, out, err) = run(drctl(d)
        .args(["backup", "files", "-o", "json"])
        .arg(d.join("src")));
    assert_eq!(code, Some(0), "{err}");
    let manifest: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        manifest["summary"]["new_bytes"].as_u64().unwrap() > 0,
        "{manifest}"
    );
    let snap = manifest["id"].as_str().unwrap().to_string();
    restores_exactly(d, &snap, "out");
    let check = succeeded(drctl(d).args(["repo", "check", "--read-data"]).output().unwrap());
    assert!(check.contains("no errors found"), "{check}");
    restores_exactly(d, &old, "out-old");
    succeeded(drctl(d).args(["repo", "prune"]).output().unwrap());
    restores_exactly(d, &snap, "out2");
}

fn init(d: &Path, public: &str) {
    succeeded(
        drctl(d)
            .args(["repo", "init", "--recipient", public])
            .output()
            .unwrap(),
    );
}

/// `backup files -o json` run in `cwd`: the manifest printed.
fn backup_json(d: &Path, cwd: &Path, args: &[&std::ffi::OsStr]) -> serde_json::Value {
    let (code, out, err) = run(drctl(d)
        .current_dir(cwd)
        .args(["backup", "files", "-o", "json"])
        .args(args));
    assert_eq!(code, Some(0), "backup {args:?}: {err}");
    serde_json::from_str(&out).unwrap()
}

/// Defect 2: source paths are normalised lexically (absolute, no `.`, `..`, `//` or trailing
/// `/`), so `./data/`, `data//sub/..` and `data` are one source (one retention group, one
/// parent chain), `data/..` backs up the directory above, and check passes.
#[test]
fn source_paths_are_normalised() {
    let (dir, public) = setup();
    let d = dir.path();
    init(d, &public);
    let data = d.join("data").display().to_string();
    let first = backup_json(d, d, &["./data/".as_ref()]);
    assert_eq!(first["paths"], serde_json::json!([data]), "{first}");
    assert_eq!(first["source"], format!("files:{data}"));
    let second = backup_json(d, d, &["data//sub/../".as_ref()]);
    assert_eq!(second["paths"], serde_json::json!([data]), "{second}");
    assert_eq!(
        second["parent"], first["id"],
        "a trailing slash started a new group"
    );
    assert_eq!(second["summary"]["files_read"], 0, "{second}");
    let above = backup_json(d, &d.join("data/sub"), &["../..".as_ref()]);
    assert_eq!(
        above["paths"],
        serde_json::json!([d.display().to_string()]),
        "{above}"
    );
    let check = succeeded(drctl(d).args(["repo", "check"]).output().unwrap());
    assert!(check.contains("no errors found"), "{check}");
    let target = d.join("out");
    let (code, out, err) = run(drctl(d)
        .args(["restore", "files", above["id"].as_str().unwrap(), "--target"])
        .arg(&target)
        .args(["--include", "**/data/a.txt"]));
    assert_eq!(code, Some(0), "{out}{err}");
    let back = target.join(d.join("data/a.txt").strip_prefix("/").unwrap());
    assert_eq!(std::fs::read_to_string(back).unwrap(), "hello\n".repeat(1000));
}

/// Defect 3: `latest` is the newest files snapshot (of --host, with --path when given),
/// never a snapshot of another host or path; no match is an error naming what was sought.
#[test]
fn restore_latest_is_the_newest_matching_files_snapshot() {
    let (dir, public) = setup();
    let d = dir.path();
    init(d, &public);
    std::fs::create_dir_all(d.join("other")).unwrap();
    std::fs::write(d.join("other/o.txt"), "other\n").unwrap();
    let a = backup_json(
        d,
        d,
        &["--host".as_ref(), "node-a".as_ref(), d.join("data").as_os_str()],
    );
    let b = backup_json(
        d,
        d,
        &["--host".as_ref(), "node-b".as_ref(), d.join("other").as_os_str()],
    );
    assert_eq!(b["hostname"], "node-b");
    let restore = |target: &str, extra: &[&str]| {
        let t = d.join(target);
        let (code, out, err) = run(drctl(d)
            .args(["restore", "files", "latest", "--target"])
            .arg(&t)
            .args(extra));
        (code, format!("{out}{err}"), t)
    };
    // Plain latest: b. With --host node-a, or --path data: a.
    let (code, out, t) = restore("t1", &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        t.join(d.join("other/o.txt").strip_prefix("/").unwrap()).exists(),
        "{out}"
    );
    let data = d.join("data").display().to_string();
    for extra in [
        &["--host", "node-a"][..],
        &["--path", &data],
        &["--path", &format!("{data}/")],
    ] {
        let (code, out, t) = restore(&format!("t{}", extra[1].len()), extra);
        assert_eq!(code, Some(0), "{extra:?}: {out}");
        assert!(
            t.join(d.join("data/a.txt").strip_prefix("/").unwrap()).exists(),
            "{extra:?} did not restore snapshot {}: {out}",
            a["id"]
        );
    }
    let (code, out, _) = restore("t9", &["--host", "node-c"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("no files snapshot of host node-c"), "{out}");
}

/// [`drctl`] as a std `Command`, whose stdout can be any file.
fn std_drctl(d: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(drctl_bin());
    c.env("DRCTL_REPO", d.join("repo"))
        .env("DRCTL_IDENTITY", d.join("me.age"))
        .env_remove("DRCTL_PASSPHRASE_FILE")
        .arg("--quiet");
    c
}

/// Defect 10: a reader that goes away (`| head`) ends drctl quietly; a full disk on stdout
/// is an error naming standard output. Never a panic.
#[test]
fn a_closed_or_full_stdout_is_not_a_panic() {
    let (dir, public) = setup();
    let d = dir.path();
    init(d, &public);
    for _ in 0..3 {
        succeeded(
            drctl(d)
                .args(["backup", "files"])
                .arg(d.join("data"))
                .output()
                .unwrap(),
        );
    }
    let commands: [&[&str]; 4] = [
        &["snapshots", "-o", "json"],
        &["forget", "--keep-last", "1", "--dry-run", "-o", "json"],
        &["repo", "check", "-o", "yaml"],
        &["completion", "bash"],
    ];
    for args in commands {
        // The reader is gone before drctl writes.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = std_drctl(d).args(args).stdout(writer).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");

        let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
        let out = std_drctl(d).args(args).stdout(full).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("write to standard output") && err.contains("No space left on device"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// Defect 11: `--host` fixes the host name (CronJob pods get a new one each run), so the
/// parent is found; `forget --group-by paths` applies retention across host names.
#[test]
fn a_fixed_host_keeps_parents_and_group_by_ignores_host_names() {
    let (dir, public) = setup();
    let d = dir.path();
    init(d, &public);
    let data = d.join("data");
    let first = backup_json(d, d, &["--host".as_ref(), "cron".as_ref(), data.as_os_str()]);
    let second = backup_json(d, d, &["--host".as_ref(), "cron".as_ref(), data.as_os_str()]);
    assert_eq!(second["parent"], first["id"]);
    assert_eq!(second["summary"]["files_read"], 0);
    backup_json(d, d, &["--host".as_ref(), "pod-x1".as_ref(), data.as_os_str()]);
    backup_json(d, d, &["--host".as_ref(), "pod-x2".as_ref(), data.as_os_str()]);
    let by_host = succeeded(
        drctl(d)
            .args(["forget", "--keep-last", "1", "--dry-run"])
            .output()
            .unwrap(),
    );
    // By host: only cron's older snapshot goes; each pod's one snapshot is its group's last.
    assert_eq!(by_host.matches("remove ").count(), 1, "{by_host}");
    succeeded(
        drctl(d)
            .args(["forget", "--keep-last", "1", "--group-by", "paths"])
            .output()
            .unwrap(),
    );
    let left: serde_json::Value = serde_json::from_str(&succeeded(
        drctl(d).args(["snapshots", "-o", "json"]).output().unwrap(),
    ))
    .unwrap();
    assert_eq!(left.as_array().unwrap().len(), 1, "{left}");
    assert_eq!(left[0]["hostname"], "pod-x2");
    let (code, _, err) = run(drctl(d).args(["forget", "--keep-last", "1", "--group-by", "color"]));
    assert_eq!(code, Some(2), "{err}");
}

/// Defect 12: two directories whose names differ only in bytes that are not UTF-8 are two
/// sources (two retention groups), not one.
#[test]
fn sources_that_differ_in_non_utf8_bytes_are_separate_groups() {
    use std::os::unix::ffi::OsStrExt;
    let (dir, public) = setup();
    let d = dir.path();
    init(d, &public);
    let e9 = d.join(std::ffi::OsStr::from_bytes(b"caf\xe9"));
    let e8 = d.join(std::ffi::OsStr::from_bytes(b"caf\xe8"));
    for p in [&e9, &e8] {
        std::fs::create_dir(p).unwrap();
        std::fs::write(p.join("x"), p.as_os_str().as_bytes()).unwrap();
    }
    let a = backup_json(d, d, &[e9.as_os_str()]);
    let b = backup_json(d, d, &[e8.as_os_str()]);
    assert_ne!(a["source"], b["source"]);
    assert_ne!(a["paths"], b["paths"]);
    let again = backup_json(d, d, &[e9.as_os_str()]);
    assert_eq!(again["parent"], a["id"]);
    succeeded(drctl(d).args(["forget", "--keep-last", "1"]).output().unwrap());
    let left: serde_json::Value = serde_json::from_str(&succeeded(
        drctl(d).args(["snapshots", "-o", "json"]).output().unwrap(),
    ))
    .unwrap();
    let ids: Vec<&str> = left
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{left}");
    assert!(
        ids.contains(&b["id"].as_str().unwrap()),
        "caf\\xe8's only snapshot was forgotten"
    );
}

/// Defects 14 and 29: an --include that matches nothing is named and the restore exits 3; an
/// invalid glob, a missing key and forget without a --keep-* option are usage errors: exit 2.
#[test]
fn unmatched_includes_are_named_and_usage_errors_exit_2() {
    let (dir, public) = setup();
    let d = dir.path();
    init(d, &public);
    let snap = succeeded(
        drctl(d)
            .args(["backup", "files"])
            .arg(d.join("data"))
            .output()
            .unwrap(),
    );
    let snap = snap.trim();
    let data = d.join("data").display().to_string();
    let (code, out, err) = run(drctl(d)
        .args(["restore", "files", snap, "--target"])
        .arg(d.join("t"))
        .args(["--include", "plain", "--include", &format!("{data}/sub")]));
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(out.contains("include pattern \"plain\" matches nothing"), "{out}");
    assert!(!out.contains("sub\" matches nothing"), "{out}");
    assert!(d.join("t").join(&data[1..]).join("sub/b.bin").exists());

    let (code, _, err) = run(drctl(d)
        .args(["restore", "files", snap, "--target"])
        .arg(d.join("t2"))
        .args(["--include", "data/[a"]));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("\"data/[a\" is not a valid glob"), "{err}");
    let (code, _, err) = run(drctl(d).args(["forget"]));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--keep"), "{err}");
    let (code, _, err) = run(drctl(d).args(["snapshots"]).env_remove("DRCTL_IDENTITY"));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--identity"), "{err}");
}

/// Defect 4 (part): a stray file among the key files or the snapshots (an interrupted rsync's
/// temporary, a README) does not lock everyone out of the repository.
#[test]
fn stray_files_in_keys_and_snapshots_do_not_block_the_repository() {
    let (dir, public) = setup();
    let d = dir.path();
    init(d, &public);
    let snap = succeeded(
        drctl(d)
            .args(["backup", "files"])
            .arg(d.join("data"))
            .output()
            .unwrap(),
    );
    std::fs::write(d.join("repo/keys/README"), "hi\n").unwrap();
    std::fs::write(d.join("repo/snapshots/README"), "hi\n").unwrap();
    let listed = succeeded(drctl(d).args(["snapshots", "-o", "json"]).output().unwrap());
    assert!(listed.contains(snap.trim()), "{listed}");
    succeeded(
        drctl(d)
            .args(["backup", "files"])
            .arg(d.join("data"))
            .output()
            .unwrap(),
    );
    let (code, out, err) = run(drctl(d)
        .args(["restore", "files", snap.trim(), "--target"])
        .arg(d.join("t")));
    assert_eq!(code, Some(0), "{out}{err}");
    succeeded(drctl(d).args(["forget", "--keep-last", "1"]).output().unwrap());
    succeeded(drctl(d).args(["repo", "prune"]).output().unwrap());
}

/// New-user pass (d): warnings written to a pipe or a file carry no ANSI colour codes (they
/// did: `\x1b[33m WARN\x1b[0m` in every CronJob log).
#[test]
fn warnings_on_a_pipe_are_plain_text() {
    let (dir, public) = setup();
    let d = dir.path();
    init(d, &public);
    std::fs::create_dir_all(d.join("repo/snapshots")).unwrap();
    std::fs::write(d.join("repo/snapshots/README"), "hi\n").unwrap();
    let (code, _, err) = run(drctl(d).args(["snapshots"]));
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("snapshots/README"), "no warning: {err}");
    assert!(!err.contains('\x1b'), "colour codes on a pipe: {err:?}");

    // On a terminal (util-linux `script` gives one) colours stay, unless NO_COLOR is set.
    let on_a_terminal = |no_color: bool| {
        let mut c = std::process::Command::new("script");
        c.args(["-qec"])
            .arg(format!("{} --quiet snapshots > /dev/null", drctl_bin().display()))
            .arg("/dev/null")
            .env("DRCTL_REPO", d.join("repo"))
            .env("DRCTL_IDENTITY", d.join("me.age"));
        if no_color {
            c.env("NO_COLOR", "1");
        } else {
            c.env_remove("NO_COLOR");
        }
        c.output()
    };
    match on_a_terminal(false) {
        Ok(out) if out.status.success() => {
            let tty = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                tty.contains("snapshots/README") && tty.contains('\x1b'),
                "{tty:?}"
            );
            let plain = String::from_utf8_lossy(&on_a_terminal(true).unwrap().stdout).into_owned();
            assert!(
                plain.contains("snapshots/README") && !plain.contains('\x1b'),
                "NO_COLOR: {plain:?}"
            );
        }
        other => eprintln!("skipped the terminal half: `script` did not run: {other:?}"),
    }
}

/// New-user pass (i): `--help` (and `--version`) to a full disk is exit 1 with a message, as
/// every other command's output is; and a restore's totals count only the files it put in
/// place, not one that was written and then could not be renamed into place.
#[test]
fn help_to_a_full_disk_fails_and_restore_totals_count_only_restored_files() {
    let (dir, public) = setup();
    let d = dir.path();
    for args in [
        &["--help"][..],
        &["--version"][..],
        &["restore", "files", "--help"][..],
    ] {
        let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
        let out = std::process::Command::new(drctl_bin())
            .args(args)
            .stdout(full)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("write to standard output"), "{args:?}: {err}");
    }
    let help = succeeded(
        std::process::Command::new(drctl_bin())
            .arg("--help")
            .output()
            .unwrap(),
    );
    assert!(help.contains("Usage"), "{help}");
    let (code, _, err) = run(Command::new(drctl_bin()).arg("--no-such-flag"));
    assert_eq!(code, Some(2), "{err}");

    init(d, &public);
    let snap = succeeded(
        drctl(d)
            .args(["backup", "files"])
            .arg(d.join("data"))
            .output()
            .unwrap(),
    );
    let target = d.join("out");
    // A non-empty directory where the snapshot has the file sub/b.bin (100 000 bytes): it is
    // written to a temporary name, then cannot replace the directory.
    let in_the_way = target.join(d.join("data/sub/b.bin").strip_prefix("/").unwrap());
    std::fs::create_dir_all(in_the_way.join("keep")).unwrap();
    let (code, out, err) = run(drctl(d)
        .args(["restore", "files", snap.trim(), "-o", "json", "--target"])
        .arg(&target));
    assert_eq!(code, Some(3), "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["files"], 1, "{report}");
    assert_eq!(report["bytes"], 6000, "only a.txt was restored: {report}");
    assert!(in_the_way.join("keep").is_dir());
}

/// New-user pass (e, f): files that are not Lifeboat's in `keys/`, `data/` and `index/` (a
/// README, an rsync temporary) are skipped with a warning naming them, never listed as keys,
/// never called data loss, never deleted, never fatal; `repo check` lists them (exit 3).
#[test]
fn stray_files_in_keys_data_and_index_are_skipped_never_deleted_and_checked() {
    let (dir, public) = setup();
    let d = dir.path();
    init(d, &public);
    let snap = succeeded(
        drctl(d)
            .args(["backup", "files"])
            .arg(d.join("data"))
            .output()
            .unwrap(),
    );
    let pack_dir = objects(d, "data")[0].parent().unwrap().to_path_buf();
    let strays = [
        d.join("repo/keys/README"),
        d.join("repo/data/README"),
        pack_dir.join(".xyz.AbC123"),
        d.join("repo/index/README"),
        d.join("repo/locks/README"),
    ];
    std::fs::create_dir_all(d.join("repo/locks")).unwrap();
    for s in &strays {
        std::fs::write(s, "not Lifeboat's\n").unwrap();
    }

    let (code, out, err) = run(drctl(d).args(["repo", "key", "list", "-o", "json"]));
    assert_eq!(code, Some(0), "{err}");
    let keys: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(keys.as_array().unwrap().len(), 1, "{keys}");
    assert!(err.contains("keys/README") && err.contains("skipped"), "{err}");

    let (code, out, err) = run(drctl(d).args(["repo", "check"]));
    assert_eq!(code, Some(3), "{out}{err}");
    for s in &strays {
        let key = s.strip_prefix(d.join("repo")).unwrap().display().to_string();
        assert!(
            out.contains(&format!("stray object {key}: not Lifeboat's")),
            "{key}: {out}"
        );
    }
    assert!(!out.contains("damaged pack"), "{out}");

    let (code, out, err) = run(drctl(d).args(["repo", "repair", "index"]));
    assert_eq!(code, Some(0), "repair calls a stray file data loss: {out}{err}");
    assert!(err.contains("data/README"), "{err}");
    succeeded(
        drctl(d)
            .args(["backup", "files"])
            .arg(d.join("data"))
            .output()
            .unwrap(),
    );
    let (code, out, err) = run(drctl(d)
        .args(["restore", "files", snap.trim(), "--target"])
        .arg(d.join("t")));
    assert_eq!(code, Some(0), "{out}{err}");
    succeeded(drctl(d).args(["forget", "--keep-last", "1"]).output().unwrap());
    let (code, out, err) = run(drctl(d).args(["repo", "prune"]));
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("0 unindexed deleted"), "{out}");
    let (code, out, err) = run(drctl(d).args(["repo", "unlock", "--remove-all"]));
    assert_eq!(code, Some(0), "{out}{err}");
    for s in &strays {
        assert_eq!(
            std::fs::read_to_string(s).unwrap(),
            "not Lifeboat's\n",
            "{} was touched",
            s.display()
        );
    }
}

/// Flips one byte in the middle of `path`, keeping its size.
fn flip_a_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
}

/// New-user pass (4, rest): a validly named snapshot object that does not decrypt is skipped
/// with a warning by every listing, named by `repo check` (exit 3) with the fix, refused by
/// prune (which must know every snapshot's blobs), and removed by `forget ID`.
#[test]
fn an_unreadable_snapshot_is_skipped_named_and_forgotten_by_id() {
    let (dir, public) = setup();
    let d = dir.path();
    init(d, &public);
    let good = succeeded(
        drctl(d)
            .args(["backup", "files"])
            .arg(d.join("data"))
            .output()
            .unwrap(),
    );
    let good = good.trim().to_string();
    let bad = succeeded(
        drctl(d)
            .args(["backup", "files"])
            .arg(d.join("data/sub"))
            .output()
            .unwrap(),
    );
    let bad = bad.trim().to_string();
    flip_a_byte(&d.join("repo/snapshots").join(&bad));

    let (code, out, err) = run(drctl(d).args(["snapshots", "-o", "json"]));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(&good) && !out.contains(&bad), "{out}");
    assert!(err.contains(&format!("snapshots/{bad}")), "{err}");

    let (code, out, err) = run(drctl(d).args(["repo", "check"]));
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(
        out.contains(&format!("damaged snapshot snapshots/{bad}")) && out.contains("drctl forget"),
        "{out}"
    );
    let (code, out, err) = run(drctl(d).args(["repo", "prune"]));
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.contains(&bad) && err.contains("drctl forget") && err.contains("nothing was deleted"),
        "{err}"
    );
    let (code, out, err) = run(drctl(d).args(["forget", "--keep-last", "1", "--dry-run"]));
    assert_eq!(code, Some(0), "{out}{err}");

    let (code, out, err) = run(drctl(d).args(["forget", "--dry-run", &bad[..12]]));
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("dry run") && out.contains(&bad), "{out}");
    assert!(
        d.join("repo/snapshots").join(&bad).exists(),
        "--dry-run removed it"
    );
    let (code, out, err) = run(drctl(d).args(["forget", "--keep-last", "1", &bad]));
    assert_eq!(code, Some(2), "ids and a policy together: {out}{err}");
    let (code, out, err) = run(drctl(d).args(["forget", "nosuchid"]));
    assert_eq!(code, Some(1), "{out}{err}");
    let (code, out, err) = run(drctl(d).args(["forget", &bad]));
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(!d.join("repo/snapshots").join(&bad).exists());

    let check = succeeded(drctl(d).args(["repo", "check"]).output().unwrap());
    assert!(check.contains("no errors found"), "{check}");
    succeeded(drctl(d).args(["repo", "prune"]).output().unwrap());
    let (code, out, err) = run(drctl(d)
        .args(["restore", "files", &good, "--target"])
        .arg(d.join("t")));
    assert_eq!(code, Some(0), "{out}{err}");
}

/// New-user pass (b): a pack corrupted in place (same size) is named by `check --read-data`,
/// whose advice, followed, ends in a healthy repository: the repair drops the pack's entries,
/// the next backup stores its blobs again, prune removes the damaged pack.
#[test]
fn following_checks_advice_heals_a_pack_corrupted_in_place() {
    let (dir, public) = setup();
    let d = dir.path();
    let old = repo_with_random_files(d, &public, 3);
    let packs = objects(d, "data");
    let bad = packs
        .iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap()
        .clone();
    let bad_name = bad.file_name().unwrap().to_string_lossy().into_owned();
    flip_a_byte(&bad);

    let (code, out, err) = run(drctl(d).args(["repo", "check", "--read-data"]));
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(
        out.contains(&format!("damaged pack data/{}/{bad_name}", &bad_name[..2])),
        "{out}"
    );
    let fix = "drctl repo repair index --read-all-packs";
    assert!(out.contains(fix), "{out}");

    let (code, out, err) = run(drctl(d).args(["repo", "repair", "index", "--read-all-packs"]));
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(out.contains(&bad_name) && out.contains("not indexed"), "{out}");
    let (code, out, err) = run(drctl(d)
        .args(["backup", "files", "-o", "json"])
        .arg(d.join("src")));
    assert_eq!(code, Some(0), "{err}");
    let manifest: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        manifest["summary"]["new_bytes"].as_u64().unwrap() > 0,
        "the damaged pack's blobs were not stored again: {manifest}"
    );
    let snap = manifest["id"].as_str().unwrap().to_string();
    restores_exactly(d, &snap, "out");
    restores_exactly(d, &old, "out-old");
    let pruned = succeeded(drctl(d).args(["repo", "prune"]).output().unwrap());
    assert!(pruned.contains("1 unindexed deleted"), "{pruned}");
    assert!(!bad.exists());
    let check = succeeded(drctl(d).args(["repo", "check", "--read-data"]).output().unwrap());
    assert!(
        check.contains("no errors found") && !check.contains("no index lists"),
        "{check}"
    );
}

/// New-user pass (g, h): `--host` / `--path` with an explicit snapshot id are refused (they
/// were silently ignored); `--include dir/` means the directory and everything below it.
#[test]
fn restore_refuses_filters_with_an_id_and_a_trailing_slash_includes_the_directory() {
    let (dir, public) = setup();
    let d = dir.path();
    init(d, &public);
    let snap = succeeded(
        drctl(d)
            .args(["backup", "files"])
            .arg(d.join("data"))
            .output()
            .unwrap(),
    );
    let snap = snap.trim();
    for filter in [&["--host", "elsewhere"][..], &["--path", "/nowhere"][..]] {
        let (code, out, err) = run(drctl(d)
            .args(["restore", "files", snap, "--target"])
            .arg(d.join("t0"))
            .args(filter));
        assert_eq!(code, Some(2), "{filter:?}: {out}{err}");
        assert!(err.contains("`latest`") && err.contains(filter[0]), "{err}");
        assert!(!d.join("t0").exists(), "restored despite the refusal");
    }
    let sub = format!("{}/", d.join("data/sub").display());
    let target = d.join("t1");
    let (code, out, err) = run(drctl(d)
        .args(["restore", "files", snap, "--target"])
        .arg(&target)
        .args(["--include", &sub]));
    assert_eq!(code, Some(0), "{out}{err}");
    let restored = target.join(d.join("data").strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read(restored.join("sub/b.bin")).unwrap(),
        vec![7u8; 100_000]
    );
    assert!(!restored.join("a.txt").exists());
}

/// New-user pass (23): the key that opened the repository is not removed without --force,
/// and the last key never.
#[test]
fn the_key_in_use_needs_force_and_the_last_key_stays() {
    let (dir, public) = setup();
    let d = dir.path();
    init(d, &public);
    let pass = d.join("pass.txt");
    std::fs::write(&pass, "correct horse battery staple\n").unwrap();
    let second = succeeded(
        drctl(d)
            .args(["repo", "key", "add", "--new-passphrase-file"])
            .arg(&pass)
            .output()
            .unwrap(),
    );
    let list = succeeded(
        drctl(d)
            .args(["repo", "key", "list", "-o", "json"])
            .output()
            .unwrap(),
    );
    let keys: serde_json::Value = serde_json::from_str(&list).unwrap();
    let mine = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["current"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, out, err) = run(drctl(d).args(["repo", "key", "remove", &mine]));
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("--force") && err.contains(&mine), "{err}");
    assert_eq!(objects(d, "keys").len(), 2, "the refused removal removed a key");
    succeeded(
        drctl(d)
            .args(["repo", "key", "remove", "--force", &mine])
            .output()
            .unwrap(),
    );
    let by_pass = || {
        let mut c = drctl(d);
        c.env_remove("DRCTL_IDENTITY").env("DRCTL_PASSPHRASE_FILE", &pass);
        c
    };
    let (code, out, err) = run(by_pass().args(["repo", "key", "remove", "--force", second.trim()]));
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("only key"), "{err}");
    succeeded(by_pass().args(["snapshots"]).output().unwrap());
}

/// `date -u` `offset` from now, RFC 3339 (the tests have no date library).
fn rfc3339(offset: &str) -> String {
    succeeded(
        std::process::Command::new("date")
            .args(["-u", "-d", offset, "+%Y-%m-%dT%H:%M:%SZ"])
            .output()
            .unwrap(),
    )
    .trim()
    .to_string()
}

/// New-user pass (20, 21): `repo check` takes a shared lock (an exclusive one held elsewhere
/// stops it, naming the holder), `--no-lock` skips it; an unreadable lock file is named in a
/// warning and `repo unlock` removes it.
#[test]
fn check_takes_a_lock_and_unreadable_locks_are_named() {
    let (dir, public) = setup();
    let d = dir.path();
    init(d, &public);
    succeeded(
        drctl(d)
            .args(["backup", "files"])
            .arg(d.join("data"))
            .output()
            .unwrap(),
    );
    let held = d.join("repo/locks/0123456789abcdef01234567");
    std::fs::create_dir_all(d.join("repo/locks")).unwrap();
    std::fs::write(
        &held,
        format!(
            r#"{{"kind":"exclusive","purpose":"prune","hostname":"elsewhere","pid":4242,"created":"{}","expires":"{}"}}"#,
            rfc3339("now"),
            rfc3339("+1 hour")
        ),
    )
    .unwrap();
    let (code, out, err) = run(drctl(d).args(["repo", "check"]));
    assert_eq!(code, Some(1), "check ran beside an exclusive lock: {out}{err}");
    assert!(err.contains("elsewhere") && err.contains("prune"), "{err}");
    let (code, out, err) = run(drctl(d).args(["repo", "check", "--no-lock"]));
    assert_eq!(code, Some(0), "{out}{err}");
    std::fs::remove_file(&held).unwrap();

    let garbage = d.join("repo/locks/76543210fedcba9876543210");
    std::fs::write(&garbage, "{ half a lock").unwrap();
    let (code, out, err) = run(drctl(d).args(["repo", "check"]));
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        err.contains("locks/76543210fedcba9876543210") && err.contains("unlocking the repository removes it"),
        "{err}"
    );
    let (code, out, err) = run(drctl(d).args(["repo", "unlock"]));
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(!garbage.exists(), "{out}{err}");
}

/// Unmounts a bind mount when dropped (a failing test must not leave it behind).
struct BindMount(std::path::PathBuf);

impl Drop for BindMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// New-user pass (8): a read-only repository (a read-only bind mount: as root, file modes
/// do not stop writes) can be listed, checked and restored from with `--no-lock`; without
/// it, the lock that cannot be written is the error.
#[test]
fn a_read_only_repository_is_read_with_no_lock() {
    let (dir, public) = setup();
    let d = dir.path();
    init(d, &public);
    let snap = succeeded(
        drctl(d)
            .args(["backup", "files"])
            .arg(d.join("data"))
            .output()
            .unwrap(),
    );
    let ro = d.join("ro");
    std::fs::create_dir(&ro).unwrap();
    let bound = std::process::Command::new("mount")
        .arg("--bind")
        .arg(d.join("repo"))
        .arg(&ro)
        .output()
        .unwrap();
    if !bound.status.success() {
        eprintln!(
            "skipped: cannot bind-mount (needs root): {}",
            String::from_utf8_lossy(&bound.stderr)
        );
        return;
    }
    let _mount = BindMount(ro.clone());
    let remounted = std::process::Command::new("mount")
        .args(["-o", "remount,bind,ro"])
        .arg(&ro)
        .output()
        .unwrap();
    if !remounted.status.success() {
        eprintln!(
            "skipped: cannot make the bind mount read-only: {}",
            String::from_utf8_lossy(&remounted.stderr)
        );
        return;
    }
    let ro_drctl = || {
        let mut c = drctl(d);
        c.env("DRCTL_REPO", &ro);
        c
    };
    let (code, out, err) = run(ro_drctl()
        .args(["restore", "files", snap.trim(), "--target"])
        .arg(d.join("t0")));
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("locks/") && err.contains("--no-lock"), "{err}");
    for args in [
        &["snapshots", "--no-lock"][..],
        &["snapshots"][..],
        &["repo", "check", "--no-lock", "--read-data"][..],
    ] {
        let (code, out, err) = run(ro_drctl().args(args));
        assert_eq!(code, Some(0), "{args:?}: {out}{err}");
    }
    let target = d.join("t1");
    let (code, out, err) = run(ro_drctl()
        .args(["restore", "files", snap.trim(), "--no-lock", "--target"])
        .arg(&target));
    assert_eq!(code, Some(0), "{out}{err}");
    let restored = target.join(d.join("data").strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read(restored.join("sub/b.bin")).unwrap(),
        vec![7u8; 100_000]
    );
}
