//! `drctl volume` against the harness's real Ceph 16: an ext4 volume backed up in full, changed,
//! backed up incrementally (only changed segments read), every snapshot restored into a new
//! image and compared byte for byte with the device it came from, and `e2fsck`ed; a missing
//! base snapshot forces a full read; `kill -9` mid-backup leaves no snapshot and, after the
//! next run, no stray RBD snapshot; prune keeps volume chunks; check --read-data is clean.
#![allow(clippy::unwrap_used)] // a test that cannot set up should panic loudly

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use lifeboat_rbd::{ImageOptions, Pool, features};
use lifeboat_tests::volumes::{read_image, seeded_bytes as random};

const BLOCK: usize = 64 * 1024;

struct Env {
    dir: tempfile::TempDir,
    identity: PathBuf,
    pool: String,
}

impl Env {
    fn new(prefix: &str) -> Self {
        let ceph = lifeboat_tests::ceph().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (identity, public) = lifeboat_tests::repos::make_identity(dir.path(), "me").unwrap();
        std::fs::create_dir(dir.path().join("repo")).unwrap();
        let env = Self {
            pool: ceph.new_pool(prefix).unwrap(),
            dir,
            identity,
        };
        let out = env.drctl(&["repo", "init", "--recipient", &public]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        env
    }

    fn command(&self) -> Command {
        let ceph = lifeboat_tests::ceph().unwrap();
        let mut c = Command::new(assert_cmd::cargo::cargo_bin("drctl"));
        c.env("DRCTL_REPO", self.dir.path().join("repo"))
            .env("DRCTL_IDENTITY", &self.identity)
            .env("CEPH_CONF", ceph.conf())
            .env("CEPH_ID", "admin")
            .arg("--quiet");
        c
    }

    fn drctl(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    /// Backs up `image`; returns (snapshot id, its manifest as `drctl snapshots -o json` lists it, stderr).
    fn backup(&self, image: &str) -> (String, serde_json::Value, String) {
        let out = self.drctl(&["volume", "backup", "--pool", &self.pool, "--image", image]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
        assert_eq!(id.len(), 64, "{id}");
        (id.clone(), self.snapshot(&id).expect("listed"), stderr)
    }

    fn snapshots(&self) -> Vec<serde_json::Value> {
        let out = self.drctl(&["snapshots", "-o", "json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap()
    }

    fn snapshot(&self, id: &str) -> Option<serde_json::Value> {
        self.snapshots().into_iter().find(|s| s["id"] == id)
    }

    fn restore(&self, id: &str, image: &str) -> Output {
        self.drctl(&["volume", "restore", id, "--pool", &self.pool, "--image", image])
    }

    fn open_pool(&self) -> Pool {
        lifeboat_tests::ceph()
            .unwrap()
            .connect()
            .unwrap()
            .pool(&self.pool)
            .unwrap()
    }
}

fn image_options() -> ImageOptions {
    ImageOptions {
        features: Some(features::parse("layering,exclusive-lock,object-map,fast-diff,deep-flatten").unwrap()),
        ..Default::default()
    }
}

/// Writes `data` into the image, skipping all-zero blocks (the image stays sparse), and only
/// blocks that differ from `before` when given.
fn write_image(pool: &Pool, image: &str, data: &[u8], before: Option<&[u8]>) {
    let mut img = pool.open(image, None).unwrap();
    for (i, block) in data.chunks(BLOCK).enumerate() {
        let old = before.map(|b| &b[i * BLOCK..i * BLOCK + block.len()]);
        let changed = match old {
            Some(old) => old != block,
            None => block.iter().any(|b| *b != 0),
        };
        if changed {
            img.write_at((i * BLOCK) as u64, block).unwrap();
        }
    }
    img.flush().unwrap();
}

fn allocated(pool: &Pool, image: &str) -> u64 {
    let img = pool.open_read_only(image, None).unwrap();
    img.changed_extents(None)
        .unwrap()
        .iter()
        .filter(|e| e.exists)
        .map(|e| e.length)
        .sum()
}

fn lifeboat_snapshots(pool: &Pool, image: &str) -> Vec<String> {
    let img = pool.open_read_only(image, None).unwrap();
    img.snapshots()
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .filter(|n| n.starts_with("lifeboat."))
        .collect()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An ext4 filesystem image of `size_mib`, made from a directory of mixed files.
fn make_ext4(dir: &Path, size_mib: u64) -> Vec<u8> {
    let src = dir.join("fs-src");
    std::fs::create_dir_all(src.join("logs")).unwrap();
    for i in 0..40u64 {
        std::fs::write(src.join(format!("random{i}.bin")), random(i, 1 << 20)).unwrap();
    }
    for i in 0..50u64 {
        std::fs::write(
            src.join("logs").join(format!("{i}.log")),
            format!("line {i}\n").repeat(200 + i as usize),
        )
        .unwrap();
    }
    std::fs::write(src.join("zeros.bin"), vec![0u8; 2 << 20]).unwrap();
    let img = dir.join("fs.raw");
    run(Command::new("mkfs.ext4")
        .args([
            "-q",
            "-F",
            "-b",
            "4096",
            "-E",
            "lazy_itable_init=0,lazy_journal_init=0",
            "-d",
        ])
        .arg(&src)
        .arg(&img)
        .arg(format!("{size_mib}M")));
    std::fs::read(&img).unwrap()
}

/// Changes the filesystem in `raw` with debugfs (one file replaced, one added, one removed).
fn change_ext4(dir: &Path, raw: &[u8]) -> Vec<u8> {
    let img = dir.join("fs-changed.raw");
    std::fs::write(&img, raw).unwrap();
    let new = dir.join("new.bin");
    std::fs::write(&new, random(99, 512 * 1024)).unwrap();
    for req in [
        "rm random3.bin",
        &format!("write {} random3.bin", new.display()),
        &format!("write {} added.bin", new.display()),
        "rm logs/7.log",
    ] {
        run(Command::new("debugfs").arg("-w").arg("-R").arg(req).arg(&img));
    }
    std::fs::read(&img).unwrap()
}

/// `e2fsck -fn` of a device's bytes: the filesystem inside is consistent.
fn fsck(dir: &Path, data: &[u8], name: &str) {
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    run(Command::new("e2fsck").args(["-f", "-n"]).arg(&path));
    std::fs::remove_file(&path).unwrap();
}

fn meta<'a>(s: &'a serde_json::Value, key: &str) -> &'a str {
    s["meta"][key]
        .as_str()
        .unwrap_or_else(|| panic!("no meta.{key} in {s}"))
}

#[test]
fn changed_block_incrementals_restore_every_snapshot_exactly() {
    let env = Env::new("vol");
    let pool = env.open_pool();
    let size_mib = 128u64;
    pool.create_image("data", size_mib << 20, &image_options())
        .unwrap();
    let v1 = make_ext4(env.dir.path(), size_mib);
    write_image(&pool, "data", &v1, None);

    let (full_id, full, stderr) = env.backup("data");
    assert_eq!(meta(&full, "read"), "full", "{full}");
    assert!(stderr.contains("no earlier backup"), "{stderr}");
    let full_read: u64 = meta(&full, "read_bytes").parse().unwrap();
    // Only segments holding allocated extents are read, never the whole device's holes.
    assert!(full_read < (size_mib << 20), "{full}");
    assert_eq!(lifeboat_snapshots(&pool, "data").len(), 1);

    let v2 = change_ext4(env.dir.path(), &v1);
    write_image(&pool, "data", &v2, Some(&v1));
    let changed = v1
        .chunks(BLOCK)
        .zip(v2.chunks(BLOCK))
        .filter(|(a, b)| a != b)
        .count()
        * BLOCK;
    let (incr_id, incr, _) = env.backup("data");
    assert_eq!(meta(&incr, "read"), "incremental", "{incr}");
    assert_eq!(incr["parent"], full_id.as_str());
    let incr_read: u64 = meta(&incr, "read_bytes").parse().unwrap();
    assert!(
        incr_read * 2 < full_read,
        "incremental read {incr_read} of full {full_read}: {incr}"
    );
    let new_bytes = incr["summary"]["new_bytes"].as_u64().unwrap();
    assert!(
        new_bytes < changed as u64 + (4 << 20),
        "stored {new_bytes} new bytes for {changed} changed: {incr}"
    );
    // Exactly one base snapshot per image.
    let bases = lifeboat_snapshots(&pool, "data");
    assert_eq!(bases, vec![meta(&incr, "rbd_snapshot").to_string()]);

    // Prune must keep every chunk a volume node lists.
    let out = env.drctl(&["repo", "prune"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Each snapshot restores the whole volume on its own, holes unwritten.
    for (id, want, name) in [(&full_id, &v1, "r-full"), (&incr_id, &v2, "r-incr")] {
        let out = env.restore(id, name);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let got = read_image(&pool, name);
        assert!(
            got == *want,
            "restored {name} differs from the device it was backed up from"
        );
        fsck(env.dir.path(), &got, name);
        assert!(
            allocated(&pool, name) <= allocated(&pool, "data"),
            "restore wrote holes: {} > {}",
            allocated(&pool, name),
            allocated(&pool, "data")
        );
    }
    // A restore never overwrites an existing image unless told.
    let out = env.restore(&incr_id, "r-full");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("already exists") && stderr.contains("--force"),
        "{stderr}"
    );
    assert!(
        read_image(&pool, "r-full") == v1,
        "the refused restore changed the image"
    );
    let out = env.drctl(&[
        "volume", "restore", &incr_id, "--pool", &env.pool, "--image", "r-full", "--force",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(read_image(&pool, "r-full") == v2);
    let out = env.drctl(&["repo", "check", "--read-data"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A missing base snapshot means a full read, never a wrong incremental.
    run(lifeboat_tests::ceph().unwrap().rbd_cmd().args([
        "snap",
        "rm",
        &format!("{}/data@{}", env.pool, bases[0]),
    ]));
    let mut v3 = v2.clone();
    v3[40 << 20..(40 << 20) + 4096].copy_from_slice(&random(7, 4096));
    write_image(&pool, "data", &v3, Some(&v2));
    let (again_id, again, stderr) = env.backup("data");
    assert_eq!(meta(&again, "read"), "full", "{again}");
    assert!(stderr.contains("is gone"), "{stderr}");
    assert_eq!(lifeboat_snapshots(&pool, "data").len(), 1);
    let out = env.restore(&again_id, "r-again");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(read_image(&pool, "r-again") == v3);
}

#[test]
fn kill_9_mid_backup_leaves_no_snapshot_and_no_stray_rbd_snapshot() {
    let env = Env::new("vol-kill");
    let pool = env.open_pool();
    let size = 192usize << 20;
    pool.create_image("busy", size as u64, &image_options()).unwrap();
    let data = random(5, size);
    write_image(&pool, "busy", &data, None);

    let mut child = env
        .command()
        .args([
            "volume",
            "backup",
            "--pool",
            &env.pool,
            "--image",
            "busy",
            "--workers",
            "1",
        ])
        .spawn()
        .unwrap();
    // Wait until the backup has made its RBD snapshot and is reading, then kill it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while lifeboat_snapshots(&pool, "busy").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the backup never snapshotted the image"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup ended before it could be killed"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(env.snapshots().is_empty(), "a killed backup left a snapshot");
    assert_eq!(
        lifeboat_snapshots(&pool, "busy").len(),
        1,
        "the killed backup's RBD snapshot"
    );

    let (id, snap, _) = env.backup("busy");
    assert_eq!(meta(&snap, "read"), "full");
    assert_eq!(
        lifeboat_snapshots(&pool, "busy"),
        vec![meta(&snap, "rbd_snapshot").to_string()],
        "stray RBD snapshots after the next run"
    );
    let out = env.drctl(&["repo", "check", "--read-data"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let out = env.restore(&id, "busy-restored");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(read_image(&pool, "busy-restored") == data);
}

/// An abort (librados/librbd end the process with `abort()` on an uncaught C++ exception)
/// prints the aborting thread and a backtrace before the process ends by SIGABRT. drctl is
/// aborted from outside while it waits on a monitor that never answers.
#[test]
fn an_abort_prints_the_thread_and_a_backtrace() {
    let env = Env::new("vol-abort");
    let conf = lifeboat_tests::unreachable_conf(env.dir.path(), 120).unwrap();
    let mut c = env.command();
    c.env("CEPH_CONF", &conf)
        .args(["volume", "backup", "--pool", &env.pool, "--image", "none"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let child = c.spawn().unwrap();
    // The repository is opened, then the connect waits on the silent monitor.
    std::thread::sleep(std::time::Duration::from_secs(3));
    run(Command::new("kill").args(["-ABRT", &child.id().to_string()]));
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "{}: {stderr}",
        out.status
    );
    assert!(stderr.contains("drctl aborted (SIGABRT) in thread "), "{stderr}");
    assert!(
        stderr.contains("please report it with this backtrace"),
        "{stderr}"
    );
    // Frames, with drctl's own symbols resolved on whichever thread took the signal.
    assert!(
        stderr.contains("  0: ") && stderr.contains("abort::on_abort"),
        "{stderr}"
    );
}
