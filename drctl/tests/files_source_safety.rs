//! `drctl backup files` holds in memory no more of a file than its size said when it was
//! opened plus a margin, and reads no more than 64 MiB past that size (a pseudo-file or a
//! growing file cannot make it allocate gigabytes, nor read forever); and it reads nothing
//! through a directory that was swapped for a symlink after the tree was listed. Both are
//! reported (a warning or a path not saved, exit 3).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod files_support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use files_support::*;
use lifeboat_tests::repos::Backend;

/// `drctl --quiet backup files -o json PATHS…` for `repo`, not yet started; `prefix` is a
/// shell line run first (`ulimit -v …`).
fn backup_command(repo: &Repo, prefix: &str, paths: &[&Path]) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("{prefix}\nexec \"$0\" \"$@\""))
        .arg(drctl_bin())
        .args(["--quiet", "backup", "files", "-o", "json"])
        .args(paths)
        .envs(repo.t.drctl_env())
        .env_remove("DRCTL_PASSPHRASE_FILE")
        .env("HOME", repo.t.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Waits for `child` to exit: its exit code, the manifest it printed, its stderr.
fn finish(child: Child) -> (Option<i32>, serde_json::Value, String) {
    let out = child.wait_with_output().unwrap();
    let manifest = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code(), manifest, stderr(&out))
}

/// Waits until process `pid` holds open a regular file `wanted` accepts (the backup has
/// listed the whole tree, which comes first, and a reader has opened that file; a directory
/// the walk has open does not count); the fd's number, or None if it exits first.
fn wait_until_reading(pid: u32, wanted: impl Fn(&Path) -> bool) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path())
                .is_ok_and(|t| wanted(&t) && std::fs::metadata(&t).is_ok_and(|m| m.is_file()))
            {
                return Some(fd.file_name().to_string_lossy().into_owned());
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

/// Waits until process `pid` has read from its fd `fd` (its offset has moved, so the
/// `fstat` that follows the open has been made); false if it exits or closes it first.
fn wait_until_read_from(pid: u32, fd: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let Ok(info) = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")) else {
            return false;
        };
        let pos = info
            .lines()
            .find_map(|l| l.strip_prefix("pos:"))
            .and_then(|p| p.trim().parse::<u64>().ok());
        if pos.is_some_and(|p| p > 0) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

/// A shell line that keeps what follows on one CPU, so the backup reads with one thread
/// (`available_parallelism` follows the affinity): files are read in path order, one at a
/// time, on any machine.
const ONE_CPU: &str = "taskset -p -c 0 $$ >/dev/null";

/// `len` bytes that do not compress or repeat.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn warnings(manifest: &serde_json::Value) -> Vec<String> {
    manifest["summary"]["warnings"]
        .as_array()
        .map(|w| w.iter().filter_map(|s| s.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

fn skipped(manifest: &serde_json::Value) -> Vec<(String, String)> {
    manifest["summary"]["skipped"]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|e| {
                    (
                        e["path"].as_str().unwrap_or_default().to_string(),
                        e["error"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// How far past its size a file is read (the backup's `PAST_SIZE_LIMIT`).
const PAST_SIZE_LIMIT: u64 = 64 << 20;

/// `/proc/self/pagemap` says 0 bytes and holds ~256 GB (8 bytes per page of the address
/// space); `/proc/self/status` says 0 bytes and holds a page. With 2 GB of address space
/// drctl backs both up: status whole, as restic would; pagemap's first 64 MiB, with a
/// warning that says so (exit 3). Before, it read pagemap to its end into memory: "read
/// failed: out of memory", not saved.
#[test]
fn pseudo_files_are_read_to_their_end_but_no_further_than_64_mib_past_their_size() {
    let repo = Repo::new(Backend::Local);
    let started = Instant::now();
    let child = backup_command(
        &repo,
        // Threads' stacks and malloc arenas count against the limit: as few as on a 2-CPU
        // machine, however many this one has.
        &format!("ulimit -v 2000000\n{ONE_CPU}\nexport MALLOC_ARENA_MAX=2"),
        &[Path::new("/proc/self/pagemap"), Path::new("/proc/self/status")],
    )
    .spawn()
    .unwrap();
    let (code, manifest, err) = finish(child);
    assert_eq!(code, Some(3), "{err}");
    assert!(
        skipped(&manifest).is_empty(),
        "not saved: {:?}",
        skipped(&manifest)
    );
    let warnings = warnings(&manifest);
    assert!(
        warnings.iter().any(|w| w.starts_with("/proc/self/pagemap")
            && w.contains(&format!("only its first {PAST_SIZE_LIMIT} bytes are saved"))),
        "{warnings:?}"
    );
    assert!(
        !warnings.iter().any(|w| w.starts_with("/proc/self/status")),
        "{warnings:?}"
    );
    assert_eq!(manifest["summary"]["files"], 2, "{manifest}");
    let bytes = manifest["summary"]["bytes"].as_u64().unwrap();
    assert!(
        bytes > PAST_SIZE_LIMIT && bytes < PAST_SIZE_LIMIT + (1 << 20),
        "{manifest}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}

/// A 48 MiB file that another thread starts appending 256 MiB to, as fast as it can, as soon
/// as the backup opens it: its first 48 + 64 MiB are saved, exactly, with a warning that
/// says so (exit 3). Before, the backup chased the writer to its end.
#[test]
fn a_file_growing_while_read_is_cut_64_mib_past_its_size_and_reported() {
    const SIZE: usize = 48 << 20;
    const MAX_GROWTH: usize = 256 << 20;
    let repo = Repo::new(Backend::Local);
    let data = repo.path("growing");
    std::fs::create_dir(&data).unwrap();
    let log = data.join("log");
    let original = noise(SIZE, 7);
    std::fs::write(&log, &original).unwrap();

    let child = backup_command(&repo, "", &[&data]).spawn().unwrap();
    let fd = wait_until_reading(child.id(), |p| p == log);
    let fd = fd.unwrap_or_else(|| panic!("the backup never opened {}", log.display()));
    // Past the fstat that follows the open: its size is SIZE.
    assert!(
        wait_until_read_from(child.id(), &fd),
        "the backup never read {}",
        log.display()
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (log, stop) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
            let block = noise(1 << 20, 11);
            let mut grown = 0;
            while grown < MAX_GROWTH && !stop.load(std::sync::atomic::Ordering::Relaxed) {
                f.write_all(&block).unwrap();
                grown += block.len();
            }
            grown
        })
    };
    let (code, manifest, err) = finish(child);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let grown = writer.join().unwrap();
    assert!(grown > 0, "nothing was appended while the backup ran");
    assert_eq!(code, Some(3), "{err}");
    let warnings = warnings(&manifest);
    let name = log.display().to_string();
    let saved = SIZE as u64 + PAST_SIZE_LIMIT;
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with(&name) && w.contains(&format!("only its first {saved} bytes"))),
        "{warnings:?}"
    );
    assert_eq!(manifest["summary"]["bytes"], saved, "{manifest}");

    let target = repo.path("target");
    let (code, out) = repo.restore(As::Me, &snapshot_id(&manifest), &target, &[]);
    assert_eq!(code, Some(0), "restore: {out}");
    let back = std::fs::read(restored(&target, &log)).unwrap();
    let now = std::fs::read(&log).unwrap();
    assert!(
        back[..] == now[..saved as usize] && back[..SIZE] == original[..],
        "restored {} bytes, not the first {saved}",
        back.len()
    );
}

/// The tester's repro, made reliable: `bs/a` holds 40 MB the readers are busy with when
/// `bs/z` (listed as a directory holding `zz`) becomes a symlink to a directory whose `zz`
/// says TOPSECRET. `bs/z/zz` is not saved, named with why (exit 3), and nothing restored
/// holds the secret. Before, the reader followed the link: TOPSECRET under bs/z/zz, exit 0.
#[test]
fn a_directory_swapped_for_a_symlink_after_the_listing_is_not_followed() {
    let repo = Repo::new(Backend::Local);
    let top = repo.path("swap");
    let bs = top.join("bs");
    std::fs::create_dir_all(bs.join("a")).unwrap();
    std::fs::create_dir_all(bs.join("z")).unwrap();
    std::fs::create_dir_all(top.join("secret")).unwrap();
    for i in 1..=8 {
        std::fs::write(bs.join(format!("a/f{i}")), noise(5_000_000, i)).unwrap();
    }
    std::fs::write(bs.join("z/zz"), b"z\n").unwrap();
    std::fs::write(top.join("secret/zz"), b"TOPSECRET\n").unwrap();

    // One reader: bs/z/zz, the last job, is opened only once bs/a's 40 MB are read.
    let child = backup_command(&repo, ONE_CPU, &[&bs]).spawn().unwrap();
    let a = bs.join("a");
    assert!(
        wait_until_reading(child.id(), |p| p.parent() == Some(&a)).is_some(),
        "the backup never read bs/a"
    );
    std::fs::rename(bs.join("z"), bs.join("z.old")).unwrap();
    std::os::unix::fs::symlink(top.join("secret"), bs.join("z")).unwrap();
    let (code, manifest, err) = finish(child);

    let zz = bs.join("z/zz").display().to_string();
    let skipped = skipped(&manifest);
    assert!(
        skipped
            .iter()
            .any(|(path, why)| *path == zz && why.contains("replaced by a symlink")),
        "{zz} not reported: {skipped:?}\n{err}"
    );
    assert_eq!(code, Some(3), "{err}");

    let target = repo.path("target");
    let (code, out) = repo.restore(As::Me, &snapshot_id(&manifest), &target, &[]);
    assert_eq!(code, Some(0), "restore: {out}");
    let back = restored(&target, &bs);
    assert!(!back.join("z/zz").exists(), "bs/z/zz was saved");
    for file in files_under(&target) {
        let content = std::fs::read(&file).unwrap();
        assert!(
            !content.windows(9).any(|w| w == b"TOPSECRET"),
            "{} holds the secret",
            file.display()
        );
    }
}

/// Every regular file under `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                out.push(e.path());
            }
        }
    }
    out
}
