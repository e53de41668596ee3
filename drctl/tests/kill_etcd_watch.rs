//! Crash campaign: `drctl etcd snapshot --watch` killed with SIGKILL (its whole process group)
//! at random moments, against the harness's real etcd 3.4 and a local-disk repository, while a
//! writer thread keeps putting and deleting keys. Every round starts a watcher, kills it after a
//! seeded random delay, then requires, with no manual step in between:
//!
//! - `drctl repo check --read-data` exits 0 (a lock the killed process left must not get in the
//!   way: its holder is gone from this host);
//! - whatever the killed run left is complete or ignored: when it stored anything, the newest
//!   recovery point (`drctl etcd restore latest --latest`, which then is the killed run's chain)
//!   restores and holds exactly the keys and values etcd had at the revision the repository
//!   records for it (live etcd read with `etcdctl get --rev`, the restored database started with
//!   the stock `etcdctl snapshot restore` + etcd, every key compared);
//! - a new watch run succeeds: it stores a full snapshot and, on SIGTERM, at least one delta,
//!   and exits 0; the latest recovery point then restores to exactly etcd's keys and values at
//!   its recorded revision (the newest delta's last revision), and `repo check` passes;
//! - nothing outside the repository changed (the watcher's working directory stays empty, a
//!   sibling directory of the repository is untouched).
//!
//! Delays: two clean runs are timed first (the faster counts) for the moment the full snapshot
//! is stored and the moment the first delta is. The first fifth of the rounds kill within the
//! first 15 ms (start-up: connecting, opening the repository); the next two fifths at stratified
//! fractions of the time to the full snapshot (up to 105 %: start-up and the initial snapshot,
//! a 3 MiB database streamed, checked and chunked); the rest during delta streaming, half of
//! them within the 60 ms before the first delta is stored (while it is written), half spread
//! from the full snapshot to a second after the first delta (idle watching, the next delta).
//! Restores are checked on two verifier threads, each against a copy of the repository taken
//! when the check was due, so the rounds need not wait for them. The tally line says how many
//! kills landed before the full snapshot was stored and how many after; the test fails on any
//! finding, listing them all (a full snapshot restored on its own must hold exactly etcd's
//! state at the revision it records: it once held a few later writes). A restore whose private replay
//! etcd exits at start (seen once in a dozen campaigns, beside the other verifier's etcd
//! starting) is tried once more on the same repository copy and counted in the tally. The
//! seed is printed; `LIFEBOAT_KILL_SEED` replays it (with the same salt mixing as
//! `kill_campaign`).
//!
//! ```sh
//! cargo test -p drctl --test kill_etcd_watch -- --nocapture                 # 20 kills
//! LIFEBOAT_KILL_SEED=1234 cargo test -p drctl --test kill_etcd_watch        # replay a printed seed
//! LIFEBOAT_KILL_ROUNDS=200 cargo test -p drctl --test kill_etcd_watch -- --nocapture   # longer run
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test that cannot set up should panic loudly

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use lifeboat_tests::Etcd;
use lifeboat_tests::faults::SeededRng;
use lifeboat_tests::files::fingerprint;
use rustix::process::{Pid, Signal, kill_process, kill_process_group};

/// `LIFEBOAT_KILL_ROUNDS` (kills per operation), 20 by default.
fn rounds() -> usize {
    std::env::var("LIFEBOAT_KILL_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

/// How long a watcher may take to store its full snapshot, or to stop on SIGTERM.
const DEADLINE: Duration = Duration::from_secs(60);

/// etcd's keys and values, base64 as `etcdctl -w json` prints them.
type State = BTreeMap<String, String>;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `etcdctl` (API v3) pointed at `endpoint` (plain HTTP).
fn etcdctl(endpoint: &str) -> Command {
    let mut c = Command::new("etcdctl");
    c.env("ETCDCTL_API", "3").arg(format!("--endpoints={endpoint}"));
    c
}

/// Every key and value of the etcd at `endpoint`, at `revision` (`None`: now).
fn state(endpoint: &str, revision: Option<i64>) -> Result<State, String> {
    let mut c = etcdctl(endpoint);
    c.args(["get", "", "--from-key", "-w", "json"]);
    if let Some(r) = revision {
        c.arg(format!("--rev={r}"));
    }
    let out = c.output().unwrap();
    if !out.status.success() {
        return Err(format!("etcdctl get (revision {revision:?}): {}", stderr(&out)));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    Ok(v["kvs"]
        .as_array()
        .map(|kvs| {
            kvs.iter()
                .map(|kv| {
                    (
                        kv["key"].as_str().unwrap_or_default().to_string(),
                        kv["value"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

/// What differs between two states, briefly (`None`: nothing).
fn state_difference(want: &State, got: &State) -> Option<String> {
    if want == got {
        return None;
    }
    let missing: Vec<&String> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    let changed: Vec<&String> = want
        .iter()
        .filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v))
        .map(|(k, _)| k)
        .collect();
    let few = |l: &[&String]| {
        l.iter()
            .take(4)
            .map(|k| String::from_utf8_lossy(&base64_decode(k)).into_owned())
            .collect::<Vec<_>>()
            .join(", ")
    };
    Some(format!(
        "{} keys expected, {} restored: {} missing [{}], {} extra [{}], {} with another value [{}]",
        want.len(),
        got.len(),
        missing.len(),
        few(&missing),
        extra.len(),
        few(&extra),
        changed.len(),
        few(&changed)
    ))
}

/// Standard base64 decoding (keys are printed in findings); undecodable input as is.
fn base64_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| *c != b'=') {
        let Some(v) = ALPHABET.iter().position(|a| *a == c) else {
            return s.as_bytes().to_vec();
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// Puts and deletes keys until stopped, about every 25 ms: the changes a watcher streams.
struct Writer {
    stop: Arc<AtomicBool>,
    writes: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(endpoint: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let writes = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let thread = std::thread::spawn({
            let (stop, writes, failures) = (stop.clone(), writes.clone(), failures.clone());
            move || {
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    let key = format!("/registry/configmaps/kill/k-{:03}", (i * 13) % 61);
                    let mut c = etcdctl(&endpoint);
                    if i % 7 == 6 {
                        c.args(["del", &key]);
                    } else {
                        let value = format!("write-{i}-{}", "x".repeat((i as usize * 37) % 900));
                        c.args(["put", &key, &value]);
                    }
                    let out = c.stdout(Stdio::null()).output().unwrap();
                    if out.status.success() {
                        writes.fetch_add(1, Ordering::SeqCst);
                    } else {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("write {i}: {}", stderr(&out)));
                    }
                    std::thread::sleep(Duration::from_millis(25));
                }
            }
        });
        Self {
            stop,
            writes,
            failures,
            thread: Some(thread),
        }
    }

    fn finish(&mut self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        (
            self.writes.load(Ordering::SeqCst),
            std::mem::take(&mut *self.failures.lock().unwrap()),
        )
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A restore check handed to a verifier thread: restore the newest recovery point of a copy of
/// the repository and compare it with etcd at the revision the copy records for it.
struct Job {
    when: String,
    copy: PathBuf,
}

/// The repository, the identity, the etcd, and where scratch files go.
struct Lab {
    dir: tempfile::TempDir,
    identity: PathBuf,
    endpoint: String,
    /// The watcher's working directory: nothing may appear in it.
    cwd: PathBuf,
    /// A sibling of the repository nothing may change.
    sibling: PathBuf,
    copies: u64,
}

impl Lab {
    fn new(etcd: &Etcd) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (identity, public) = lifeboat_tests::repos::make_identity(dir.path(), "me").unwrap();
        std::fs::create_dir(dir.path().join("repo")).unwrap();
        let cwd = dir.path().join("cwd");
        std::fs::create_dir(&cwd).unwrap();
        let sibling = dir.path().join("sibling");
        std::fs::create_dir_all(sibling.join("nested")).unwrap();
        std::fs::write(sibling.join("keep.txt"), "not part of any snapshot\n").unwrap();
        std::fs::write(sibling.join("nested/notes.bin"), vec![7u8; 50_000]).unwrap();
        let lab = Self {
            dir,
            identity,
            endpoint: etcd.endpoint(),
            cwd,
            sibling,
            copies: 0,
        };
        let out = lab
            .drctl(&lab.root())
            .args(["repo", "init", "--recipient", &public])
            .output()
            .unwrap();
        assert!(out.status.success(), "repo init: {}", stderr(&out));
        lab
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// drctl on the repository at `repo`.
    fn drctl(&self, repo: &Path) -> Command {
        drctl_on(repo, &self.identity)
    }

    /// The watcher, in its own process group, run from [`Lab::cwd`].
    fn watcher(&self) -> Command {
        let mut c = self.drctl(&self.root());
        c.args([
            "etcd",
            "snapshot",
            "--watch",
            "--interval",
            "1",
            "--endpoints",
            &self.endpoint,
        ])
        .current_dir(&self.cwd)
        .process_group(0);
        c
    }

    /// The snapshot objects stored (names in `snapshots/`; a local store writes them whole
    /// under a temporary name first).
    fn stored(&self) -> BTreeSet<String> {
        std::fs::read_dir(self.root().join("snapshots"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn outside(&self) -> Vec<lifeboat_tests::files::Fingerprint> {
        let s = &self.sibling;
        fingerprint(&[
            s.as_path(),
            &s.join("keep.txt"),
            &s.join("nested"),
            &s.join("nested/notes.bin"),
            &self.cwd,
        ])
    }

    /// `repo check` (`--read-data` with `read_data`), which must pass with no manual step.
    fn check(&self, problems: &mut Vec<String>, when: &str, read_data: bool) {
        let mut c = self.drctl(&self.root());
        c.args(["repo", "check"]);
        if read_data {
            c.arg("--read-data");
        }
        let out = c.output().unwrap();
        if !out.status.success() {
            problems.push(format!(
                "{when}: `drctl repo check{}` exited {:?}: {}{}",
                if read_data { " --read-data" } else { "" },
                out.status.code(),
                String::from_utf8_lossy(&out.stdout),
                stderr(&out)
            ));
        }
    }

    /// A copy of the repository as it is now, for a verifier.
    fn job(&mut self, when: String) -> Job {
        self.copies += 1;
        let copy = self.dir.path().join(format!("copy-{}", self.copies));
        let ok = Command::new("cp")
            .arg("-a")
            .arg(self.root())
            .arg(&copy)
            .status()
            .unwrap();
        assert!(ok.success(), "cp -a of the repository");
        Job { when, copy }
    }

    /// Waits until `child` has stored a snapshot beyond `before` (the full snapshot of a run);
    /// `Err` when it exits first or the deadline passes.
    fn wait_for_full(&self, child: &mut Child, before: &BTreeSet<String>) -> Result<Duration, String> {
        let started = Instant::now();
        loop {
            if self.stored().len() > before.len() {
                return Ok(started.elapsed());
            }
            if let Some(status) = child.try_wait().unwrap() {
                return Err(format!(
                    "the watcher exited with {status} before storing a snapshot"
                ));
            }
            if started.elapsed() > DEADLINE {
                return Err(format!("the watcher stored no snapshot in {DEADLINE:?}"));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// A run that must succeed: waits for its full snapshot, lets it stream for `stream` (and
    /// until its first delta is stored), stops it with SIGTERM and requires exit 0 with a full
    /// snapshot and at least one delta stored.
    /// Returns (time to the full snapshot, time to the first delta if seen while streaming).
    fn clean_run(&self, stream: Duration) -> Result<(Duration, Option<Duration>), String> {
        let before = self.stored();
        let log = self.dir.path().join("watch.log");
        let mut child = self
            .watcher()
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let said = || std::fs::read_to_string(&log).unwrap_or_default();
        let full = match self.wait_for_full(&mut child, &before) {
            Ok(t) => t,
            Err(e) => {
                let _ = kill_process_group(Pid::from_raw(child.id() as i32).unwrap(), Signal::KILL);
                let _ = child.wait();
                return Err(format!("{e}: {}", said()));
            }
        };
        // Streams for `stream`, and on until a delta is stored (at most 10 s more): the watch
        // starts after the full snapshot is stored, later as the repository grows, and the
        // full snapshot holds every write before it, so a delta needs writes after the watch
        // began.
        let mut first_delta = None;
        loop {
            if first_delta.is_none() && self.stored().len() > before.len() + 1 {
                first_delta = Some(started.elapsed());
            }
            let elapsed = started.elapsed();
            if elapsed >= full + stream
                && (first_delta.is_some() || elapsed >= full + stream + Duration::from_secs(10))
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        kill_process(Pid::from_raw(child.id() as i32).unwrap(), Signal::TERM).unwrap();
        let stopping = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if stopping.elapsed() > DEADLINE {
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let Some(status) = status else {
            let _ = kill_process_group(Pid::from_raw(child.id() as i32).unwrap(), Signal::KILL);
            let _ = child.wait();
            return Err(format!(
                "the watcher did not stop within {DEADLINE:?} of SIGTERM: {}",
                said()
            ));
        };
        if !status.success() {
            return Err(format!("the watcher exited with {status} on SIGTERM: {}", said()));
        }
        let added = self.stored().len() - before.len();
        if added < 2 {
            return Err(format!(
                "the watcher stored {added} snapshots while writes went on (a full one and a delta expected): {}",
                said()
            ));
        }
        Ok((full, first_delta))
    }
}

/// drctl on the repository at `repo` with identity `identity`.
fn drctl_on(repo: &Path, identity: &Path) -> Command {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("drctl"));
    c.env("DRCTL_REPO", repo)
        .env("DRCTL_IDENTITY", identity)
        .env_remove("DRCTL_PASSPHRASE_FILE")
        .arg("--quiet");
    c
}

/// The revision the newest recovery point of the repository at `repo` reflects, and how many
/// deltas its chain has: the newest etcd snapshot's chain (its full snapshot and every delta
/// naming it), to its newest delta.
fn latest_revision(repo: &Path, identity: &Path) -> Result<(i64, usize), String> {
    let out = drctl_on(repo, identity)
        .args(["etcd", "snapshots", "-o", "json"])
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(format!("`drctl etcd snapshots` failed: {}", stderr(&out)));
    }
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let newest = list.last().ok_or("no etcd snapshot")?;
    let meta = |s: &serde_json::Value, k: &str| s["meta"][k].as_str().unwrap_or_default().to_string();
    let base = if meta(newest, "type") == "full" {
        newest["id"].as_str().unwrap_or_default().to_string()
    } else {
        meta(newest, "base")
    };
    let chain: Vec<&serde_json::Value> = list
        .iter()
        .filter(|s| s["id"] == base.as_str() || (meta(s, "type") == "delta" && meta(s, "base") == base))
        .collect();
    let revision = chain
        .iter()
        .filter_map(|s| meta(s, "revision").parse::<i64>().ok())
        .max()
        .ok_or_else(|| format!("the chain of {base} has no revision"))?;
    Ok((revision, chain.len() - 1))
}

/// What the verifiers count besides findings.
#[derive(Debug, Default)]
struct Tally {
    /// Restores compared key by key.
    compared: usize,
    /// Restores that failed because the private replay etcd exited at start, and then passed
    /// on a second try of the same restore of the same repository copy.
    replay_start_retried: usize,
    findings: Vec<String>,
}

/// Restores the newest recovery point of `job`'s copy and compares it with etcd.
fn verify(job: &Job, identity: &Path, endpoint: &str, tally: &Mutex<Tally>) {
    let result = compare(job, identity, endpoint, tally);
    let _ = std::fs::remove_dir_all(&job.copy);
    let mut tally = tally.lock().unwrap();
    tally.compared += 1;
    if let Err(e) = result {
        tally.findings.push(format!("{}: {e}", job.when));
    }
}

fn compare(job: &Job, identity: &Path, endpoint: &str, tally: &Mutex<Tally>) -> Result<(), String> {
    let (revision, deltas) = latest_revision(&job.copy, identity)?;
    let db = job.copy.with_extension("db");
    let restore = || {
        drctl_on(&job.copy, identity)
            .args(["etcd", "restore", "latest", "--latest", "--output"])
            .arg(&db)
            .output()
            .unwrap()
    };
    let mut out = restore();
    if !out.status.success() && stderr(&out).contains("private etcd: start: etcd exited") && !db.exists() {
        tally.lock().unwrap().replay_start_retried += 1;
        eprintln!(
            "kill campaign etcd snapshot --watch: {}: the private replay etcd exited at start ({}); restoring again",
            job.when,
            stderr(&out).trim()
        );
        out = restore();
    }
    if !out.status.success() {
        return Err(format!(
            "`drctl etcd restore latest --latest` exited {:?}: {}",
            out.status.code(),
            stderr(&out)
        ));
    }
    let want = state(endpoint, Some(revision))?;
    let member =
        Etcd::from_snapshot(&db).map_err(|e| format!("the restored database does not start: {e}"))?;
    let got = state(&member.endpoint(), None);
    drop(member);
    let _ = std::fs::remove_dir_all(db.with_extension("restored-data"));
    let _ = std::fs::remove_file(&db);
    let got = got?;
    let Some(difference) = state_difference(&want, &got) else {
        return Ok(());
    };
    Err(format!(
        "the latest recovery point (revision {revision}, {deltas} deltas) restores differently: {difference}"
    ))
}

/// Loads about 3 MiB of values into etcd, so the initial snapshot takes a moment.
fn preload(endpoint: &str) {
    for i in 0..48u64 {
        let value: String = lifeboat_tests::volumes::seeded_bytes(i, 32 * 1024)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut child = etcdctl(endpoint)
            .args(["put", &format!("/registry/secrets/bulk/s-{i:02}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(value.as_bytes()).unwrap();
        assert!(child.wait().unwrap().success(), "preload put {i}");
    }
}

#[test]
fn etcd_watch_killed_at_random_moments() {
    let seed = SeededRng::seed_from_env("LIFEBOAT_KILL_SEED");
    let rounds = rounds();
    let salt = 7u64;
    eprintln!("kill campaign etcd snapshot --watch: LIFEBOAT_KILL_SEED={seed} LIFEBOAT_KILL_ROUNDS={rounds}");
    let mut rng = SeededRng((seed ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1);
    let started = Instant::now();

    let etcd = Etcd::start().unwrap();
    preload(&etcd.endpoint());
    let mut lab = Lab::new(&etcd);
    let mut writer = Writer::start(etcd.endpoint());

    // Verifiers: restores run beside the rounds, on copies of the repository.
    let (jobs, queue) = mpsc::channel::<Job>();
    let queue = Arc::new(Mutex::new(queue));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let verifiers: Vec<_> = (0..2)
        .map(|_| {
            let (queue, tally) = (queue.clone(), tally.clone());
            let (identity, endpoint) = (lab.identity.clone(), lab.endpoint.clone());
            std::thread::spawn(move || {
                loop {
                    let job = queue.lock().unwrap().recv();
                    let Ok(job) = job else { break };
                    verify(&job, &identity, &endpoint, &tally);
                }
            })
        })
        .collect();

    // Clean runs, timed (the faster of two: the machine is shared), and checked as every
    // round's next run is.
    let (mut to_full, mut to_delta) = (Duration::MAX, Duration::MAX);
    for run in 0..2 {
        let (full, delta) = lab
            .clean_run(Duration::from_millis(1500))
            .unwrap_or_else(|e| panic!("a clean watch run failed: {e}"));
        to_full = to_full.min(full);
        to_delta = to_delta.min(delta.unwrap_or(full + Duration::from_secs(1)));
        jobs.send(lab.job(format!("clean run {run}"))).unwrap();
    }
    eprintln!(
        "kill campaign etcd snapshot --watch: a clean run stores its full snapshot after {to_full:?}, its first delta after {to_delta:?}"
    );

    let early = rounds.div_ceil(5);
    let snapshotting = (rounds * 2 / 5).max(1);
    let streaming = rounds.saturating_sub(early + snapshotting).max(1);
    let (mut mid_run, mut before_full, mut after_full, mut survived) = (0, 0, 0, 0);
    let mut findings = Vec::new();
    let mut rounds_with_problems = BTreeSet::new();
    for round in 0..rounds {
        let delay = if round < early {
            Duration::from_micros(rng.next_u64() % 15_000)
        } else if round < early + snapshotting {
            let fraction = ((round - early) as f64 + rng.unit()) / snapshotting as f64;
            Duration::from_millis(15)
                + to_full
                    .saturating_sub(Duration::from_millis(15))
                    .mul_f64(fraction * 1.05)
        } else if (round - early - snapshotting).is_multiple_of(2) {
            to_delta.saturating_sub(Duration::from_micros(rng.next_u64() % 60_000))
        } else {
            let k = (round - early - snapshotting) / 2;
            let fraction = (k as f64 + rng.unit()) / streaming.div_ceil(2) as f64;
            to_full + (to_delta + Duration::from_secs(1) - to_full).mul_f64(fraction)
        };
        let when = format!("round {round} (killed after {} ms)", delay.as_millis());
        let mut problems = Vec::new();
        let outside_before = lab.outside();

        let before = lab.stored();
        let mut child = lab
            .watcher()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let finished = child.try_wait().unwrap();
        let at_kill = lab.stored().len() - before.len();
        let _ = kill_process_group(Pid::from_raw(child.id() as i32).unwrap(), Signal::KILL);
        child.wait().unwrap();
        match finished {
            Some(status) => problems.push(format!(
                "{when}: the watcher had exited before the kill, with {status}"
            )),
            None => mid_run += 1,
        }
        if at_kill == 0 {
            before_full += 1;
        } else {
            after_full += 1;
        }

        lab.check(&mut problems, &format!("{when}, after the kill"), true);
        if lab.stored().len() > before.len() {
            jobs.send(lab.job(format!("{when}, the killed run's newest recovery point")))
                .unwrap();
        }

        match lab.clean_run(Duration::from_millis(400)) {
            Ok(_) => jobs.send(lab.job(format!("{when}, after the next run"))).unwrap(),
            Err(e) => problems.push(format!("{when}: the next watch run failed: {e}")),
        }
        lab.check(&mut problems, &format!("{when}, after the next run"), false);
        let outside_after = lab.outside();
        if outside_before != outside_after {
            problems.push(format!(
                "{when}: something outside the repository changed: {outside_before:?} → {outside_after:?}"
            ));
        }
        if problems.is_empty() {
            survived += 1;
        } else {
            rounds_with_problems.insert(round);
        }
        findings.extend(problems);
    }

    drop(jobs);
    for v in verifiers {
        v.join().unwrap();
    }
    let (writes, write_failures) = writer.finish();
    let tally = std::mem::take(&mut *tally.lock().unwrap());
    for f in &tally.findings {
        if let Some(round) = f
            .strip_prefix("round ")
            .and_then(|r| r.split(' ').next())
            .and_then(|r| r.parse::<usize>().ok())
            && rounds_with_problems.insert(round)
        {
            survived -= 1;
        }
    }
    findings.extend(tally.findings);
    findings.extend(write_failures);
    eprintln!(
        "kill campaign etcd snapshot --watch: {rounds} kills ({mid_run} mid-run; {before_full} before the full snapshot was stored, \
         {after_full} while streaming deltas), {survived} survived, {} findings, {} restores retried \
         after the private replay etcd exited at start; {} restores compared key by key, {writes} writes during the campaign, \
         {:.1} s (LIFEBOAT_KILL_SEED={seed})",
        findings.len(),
        tally.replay_start_retried,
        tally.compared,
        started.elapsed().as_secs_f64()
    );
    assert!(
        findings.is_empty(),
        "kill campaign etcd snapshot --watch (LIFEBOAT_KILL_SEED={seed}):\n{}",
        findings.join("\n")
    );
}
