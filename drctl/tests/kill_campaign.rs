//! Crash campaign: drctl killed with SIGKILL at random moments of `backup files` (a first
//! backup and an incremental one), `repo prune` (with packs to repack), `forget` followed by
//! `repo prune` (what a retention job runs), `restore files` and `repo repair index`, on a
//! local-disk repository. Every round starts from the same repository state (a copy of the
//! directory), kills the operation after a seeded random delay, then requires, with no manual
//! step in between:
//!
//! - `drctl repo check --read-data` exits 0 (a lock left by the killed process must not get in
//!   its way: the holder is gone from this host);
//! - the snapshots are those the operation may leave (a backup adds at most one, complete;
//!   prune and repair change none; forget removes only what the policy removes);
//! - every snapshot restores identical to its source (content hash, mode, owner, times);
//! - nothing outside the repository and the restore target changed (the source tree, an
//!   unrelated sibling of the restore target);
//! - the next run of the same operation succeeds, and leaves the same guarantees.
//!
//! Delays: clean runs of the operation are timed first (the fastest of three counts); the
//! first fifth of the rounds kill within the first 15 ms (start-up, opening the repository),
//! the rest at stratified uniform fractions of the clean run's duration (up to 105 %, so a
//! few kills land after the end). Each operation prints a tally line (`kill campaign <op>: N
//! kills (M mid-run), S survived, F findings, L stale locks …`); the test fails on any
//! finding, listing them all. The seed differs per operation unless `LIFEBOAT_KILL_SEED` is
//! set (each operation then mixes in its own salt).
//!
//! ```sh
//! cargo test -p drctl --test kill_campaign                      # 20 kills per operation
//! LIFEBOAT_KILL_SEED=1234 cargo test -p drctl --test kill_campaign  # replay a printed seed
//! LIFEBOAT_KILL_ROUNDS=200 cargo test -p drctl --test kill_campaign -- --test-threads 1
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test that cannot set up should panic loudly

mod files_support;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use files_support::*;
use lifeboat_tests::faults::SeededRng;
use lifeboat_tests::repos::Backend;
use rustix::process::{Pid, Signal, kill_process_group};

/// Whether a lock left by a process killed on this host may block conflicting operations until
/// `drctl repo unlock` (it did before stale locks of dead local holders were removed by the
/// next lock taker). While true, the campaign runs `repo unlock` when drctl says the holder is
/// gone, and counts it; false (now) makes the campaign assert that no unlock was needed.
const STALE_LOCKS_NEED_UNLOCK: bool = false;

/// `LIFEBOAT_KILL_ROUNDS` (kills per operation), 20 by default.
fn rounds() -> usize {
    std::env::var("LIFEBOAT_KILL_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

/// The operations killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    FirstBackup,
    IncrementalBackup,
    Prune,
    ForgetPrune,
    Restore,
    RepairIndex,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::FirstBackup => "backup files (first)",
            Op::IncrementalBackup => "backup files (incremental)",
            Op::Prune => "repo prune",
            Op::ForgetPrune => "forget --keep-last 1 && repo prune",
            Op::Restore => "restore files",
            Op::RepairIndex => "repo repair index --read-all-packs",
        }
    }
}

/// Writes `bytes` random bytes to `path`.
fn write_random(path: &Path, bytes: usize) {
    std::fs::write(path, random(bytes)).unwrap();
}

/// The source: 8 directories of 12 small files, a 2 MiB file (several chunks), an empty file
/// and a symlink; about 2.3 MiB.
fn populate(src: &Path) {
    for d in 0..8 {
        let dir = src.join(format!("dir-{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..12 {
            write_random(&dir.join(format!("file-{f}")), 300 + (d * 12 + f) * 97 % 5000);
        }
    }
    write_random(&src.join("big.bin"), 2 << 20);
    std::fs::write(src.join("empty"), b"").unwrap();
    std::os::unix::fs::symlink("dir-0/file-0", src.join("link")).unwrap();
}

/// Changes the source as between two backups: rewrites one directory's files, deletes half
/// of another's, adds a directory and, with `replace_big`, replaces the big file (so the
/// packs holding the old one fall below prune's repack threshold).
fn mutate(src: &Path, generation: usize, replace_big: bool) {
    let rewrite = src.join(format!("dir-{}", generation % 8));
    for f in 0..12 {
        let p = rewrite.join(format!("file-{f}"));
        if p.exists() {
            write_random(&p, 400 + f * 211);
        }
    }
    let thin = src.join(format!("dir-{}", (generation + 3) % 8));
    for f in 0..6 {
        let _ = std::fs::remove_file(thin.join(format!("file-{f}")));
    }
    let added = src.join(format!("new-{generation}"));
    std::fs::create_dir_all(&added).unwrap();
    for f in 0..6 {
        write_random(&added.join(format!("file-{f}")), 700 + f * 333);
    }
    if replace_big {
        write_random(&src.join("big.bin"), 2 << 20);
    }
}

/// A tree without restore temporaries (`.lifeboat-restore-*`, which FORMAT.md documents a
/// killed restore may leave), and how many there were.
fn without_temporaries(tree: Tree) -> (Tree, usize) {
    let before = tree.len();
    let kept: Tree = tree
        .into_iter()
        .filter(|(k, _)| {
            !k.rsplit(|b| *b == b'/')
                .next()
                .unwrap_or(k)
                .starts_with(b".lifeboat-restore-")
        })
        .collect();
    let removed = before - kept.len();
    (kept, removed)
}

/// A repository, its source, and what every snapshot must restore to.
struct Lab {
    op: Op,
    repo: Repo,
    src: PathBuf,
    /// The repository as every round starts.
    pristine: PathBuf,
    /// Snapshot id → the source as it was backed up.
    expected: BTreeMap<String, Tree>,
    /// The snapshots in the pristine repository.
    start: BTreeSet<String>,
    /// For forget: the snapshots the policy keeps.
    kept: BTreeSet<String>,
    /// The last snapshot [`Lab::backup`] made (what `restore files` restores).
    latest: Option<String>,
    /// How often a lock of a killed process had to be removed with `repo unlock`.
    unlocks: std::cell::Cell<usize>,
    /// Rounds whose next restore left the killed one's temporary files in the target, and
    /// how many (FORMAT.md says a killed restore may leave them; nothing removes them).
    leftovers: (usize, usize),
    /// Where `restore files` writes (the operation under test, not verification).
    restore_target: PathBuf,
    /// Files and directories nothing may change: the source, and a sibling of the target.
    outside: Vec<PathBuf>,
    findings: Vec<String>,
}

impl Lab {
    fn new(op: Op) -> Self {
        let repo = Repo::new(Backend::Local);
        let src = repo.path("src");
        populate(&src);
        let parent = repo.path("restores");
        let sibling = parent.join("sibling");
        std::fs::create_dir_all(sibling.join("nested")).unwrap();
        write_random(&sibling.join("keep.bin"), 70_000);
        std::fs::write(sibling.join("nested/notes.txt"), "not part of any snapshot\n").unwrap();
        let mut outside = vec![sibling.clone(), sibling.join("keep.bin")];
        outside.extend([sibling.join("nested"), sibling.join("nested/notes.txt")]);
        Self {
            op,
            pristine: repo.path("pristine"),
            restore_target: parent.join("target"),
            repo,
            src,
            expected: BTreeMap::new(),
            start: BTreeSet::new(),
            kept: BTreeSet::new(),
            latest: None,
            unlocks: std::cell::Cell::new(0),
            leftovers: (0, 0),
            outside,
            findings: Vec::new(),
        }
    }

    fn root(&self) -> PathBuf {
        self.repo.path("repo")
    }

    fn drctl(&self, args: &[&str]) -> Output {
        self.unstuck(|| self.repo.drctl(As::Me, args))
    }

    /// Runs `run`; if it fails on a lock whose holder drctl itself says is gone, counts that,
    /// runs `drctl repo unlock` and runs it again.
    ///
    /// A lock left by a process killed on this host must not block what comes next (the next
    /// lock taker removes it as stale). The tally prints how often an unlock was needed; with
    /// [`STALE_LOCKS_NEED_UNLOCK`] false any is a failure.
    fn unstuck(&self, mut run: impl FnMut() -> Output) -> Output {
        let out = run();
        if out.status.success() || !stderr(&out).contains("Its holder is gone") {
            return out;
        }
        self.unlocks.set(self.unlocks.get() + 1);
        let unlock = self.repo.drctl(As::Me, ["repo", "unlock"]);
        assert!(unlock.status.success(), "repo unlock: {}", stderr(&unlock));
        run()
    }

    /// A backup of the source that must succeed; records what it must restore to.
    fn backup(&mut self) -> String {
        let (code, snap, err) = self.repo.backup(As::Me, &self.src);
        assert_eq!(code, Some(0), "backup: {err}");
        let id = snapshot_id(&snap);
        self.expected.insert(id.clone(), tree(&self.src));
        self.latest = Some(id.clone());
        id
    }

    fn snapshots(&self) -> Result<BTreeSet<String>, String> {
        let out = self.drctl(&["snapshots", "-o", "json"]);
        if !out.status.success() {
            return Err(format!("`drctl snapshots` failed: {}", stderr(&out)));
        }
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        Ok(list
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect())
    }

    /// Freezes the repository as every round starts.
    fn freeze(&mut self) {
        self.start = self.snapshots().unwrap();
        copy_dir(&self.root(), &self.pristine);
    }

    fn reset(&self) {
        copy_dir(&self.pristine, &self.root());
        if self.restore_target.exists() {
            std::fs::remove_dir_all(&self.restore_target).unwrap();
        }
    }

    /// The operation under test, in its own process group (forget && prune is a shell).
    fn command(&self) -> Command {
        let target = self.restore_target.display().to_string();
        let src = self.src.display().to_string();
        let mut cmd = match self.op {
            Op::FirstBackup | Op::IncrementalBackup => {
                self.repo.command(As::Me, ["backup", "files", "-o", "json", &src])
            }
            Op::Prune => self.repo.command(As::Me, ["repo", "prune"]),
            Op::ForgetPrune => {
                let script = r#""$0" --quiet forget --keep-last 1 && exec "$0" --quiet repo prune"#;
                let mut sh = Command::new("sh");
                sh.args(["-c", script])
                    .arg(drctl_bin())
                    .envs(self.repo.t.drctl_env())
                    .env_remove("DRCTL_PASSPHRASE_FILE")
                    .env("HOME", self.repo.t.dir.path());
                sh
            }
            Op::Restore => self.repo.command(
                As::Me,
                [
                    "restore",
                    "files",
                    self.latest.as_deref().unwrap(),
                    "--target",
                    &target,
                ],
            ),
            Op::RepairIndex => self
                .repo
                .command(As::Me, ["repo", "repair", "index", "--read-all-packs"]),
        };
        cmd.process_group(0);
        cmd
    }

    /// Runs the operation to the end: its exit code, what it printed, how long it took.
    fn run_to_end(&self) -> (Option<i32>, Output, Duration) {
        let started = Instant::now();
        let out = self.command().output().unwrap();
        (out.status.code(), out, started.elapsed())
    }

    /// Restores `id` into a scratch directory and compares it with its source.
    fn verify_restore(&self, id: &str) -> Result<(), String> {
        let scratch = self.repo.path("verify");
        if scratch.exists() {
            std::fs::remove_dir_all(&scratch).unwrap();
        }
        let out = self.unstuck(|| {
            self.repo.drctl(
                As::Me,
                [
                    "restore".as_ref(),
                    "files".as_ref(),
                    std::ffi::OsStr::new(id),
                    "--target".as_ref(),
                    scratch.as_os_str(),
                ],
            )
        });
        let code = out.status.code();
        if code != Some(0) {
            let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
            return Err(format!("restore of snapshot {id} exited {code:?}: {said}"));
        }
        let got = tree(&restored(&scratch, &self.src));
        std::fs::remove_dir_all(&scratch).unwrap();
        match tree_difference(&self.expected[id], &got) {
            Some(d) => Err(format!("snapshot {id} restores differently: {d}")),
            None => Ok(()),
        }
    }

    /// `repo check` (with `read_data`, `--read-data`), which must pass with no manual step.
    fn check(&self, problems: &mut Vec<String>, when: &str, read_data: bool) {
        let args: &[&str] = if read_data {
            &["repo", "check", "--read-data"]
        } else {
            &["repo", "check"]
        };
        let out = self.drctl(args);
        if !out.status.success() {
            problems.push(format!(
                "{when}: `drctl {}` ended with {}: {}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                stderr(&out)
            ));
        }
    }

    /// What the operation may leave after a kill (`after_rerun`: after the next run ended).
    /// After the kill: `repo check --read-data` (plain `repo check` after a restore, which
    /// writes nothing there) and a restore of every snapshot. After the next run: a restore
    /// of every snapshot not restored yet this round, and `repo check`, with `--read-data`
    /// after prune and repair (which rewrite packs and index files the snapshots need).
    fn verify(
        &mut self,
        problems: &mut Vec<String>,
        when: &str,
        src_tree: &Tree,
        after_rerun: bool,
        verified: &mut BTreeSet<String>,
    ) {
        let rewrites = matches!(self.op, Op::Prune | Op::ForgetPrune | Op::RepairIndex);
        let read_data = if after_rerun {
            rewrites
        } else {
            self.op != Op::Restore
        };
        self.check(problems, when, read_data);
        let now = match self.snapshots() {
            Ok(s) => s,
            Err(e) => {
                problems.push(format!("{when}: {e}"));
                return;
            }
        };
        let added: Vec<&String> = now.difference(&self.start).collect();
        let removed: BTreeSet<String> = self.start.difference(&now).cloned().collect();
        let (may_add, may_remove): (usize, BTreeSet<String>) = match self.op {
            Op::FirstBackup | Op::IncrementalBackup => (if after_rerun { 2 } else { 1 }, BTreeSet::new()),
            Op::ForgetPrune => (0, self.start.difference(&self.kept).cloned().collect()),
            Op::Prune | Op::Restore | Op::RepairIndex => (0, BTreeSet::new()),
        };
        if added.len() > may_add || !removed.is_subset(&may_remove) {
            problems.push(format!(
                "{when}: snapshots added {added:?} (at most {may_add} allowed), removed {removed:?} (allowed {may_remove:?})"
            ));
        }
        if after_rerun && self.op == Op::ForgetPrune && now != self.kept {
            problems.push(format!(
                "{when}: snapshots {now:?}, the policy keeps {:?}",
                self.kept
            ));
        }
        // A snapshot a killed backup left is the source as it is (it did not change).
        for id in &added {
            if !self.expected.contains_key(*id) {
                self.expected.insert((*id).clone(), src_tree.clone());
            }
        }
        if self.op != Op::Restore {
            for id in &now {
                if verified.contains(id) {
                    continue;
                }
                if let Err(e) = self.verify_restore(id) {
                    problems.push(format!("{when}: {e}"));
                }
                verified.insert(id.clone());
            }
        }
        let src_now = tree(&self.src);
        if let Some(d) = tree_difference(src_tree, &src_now) {
            problems.push(format!("{when}: the source changed: {d}"));
        }
    }

    /// One round: reset, start, kill after `delay`, verify, run again, verify.
    fn round(&mut self, round: usize, delay: Duration) -> (bool, Vec<String>) {
        self.reset();
        let src_tree = tree(&self.src);
        let outside_before = fingerprint(&self.outside.iter().map(PathBuf::as_path).collect::<Vec<_>>());
        let mut child = self
            .command()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let finished = child.try_wait().unwrap();
        let _ = kill_process_group(Pid::from_raw(child.id() as i32).unwrap(), Signal::KILL);
        child.wait().unwrap();
        let mut problems = Vec::new();
        let mut verified = BTreeSet::new();
        let when = format!("round {round} (killed after {} ms)", delay.as_millis());
        if let Some(status) = finished
            && !status.success()
        {
            problems.push(format!("{when}: it had finished before the kill, with {status}"));
        }
        self.verify(
            &mut problems,
            &format!("{when}, after the kill"),
            &src_tree,
            false,
            &mut verified,
        );

        let out = self.unstuck(|| self.command().output().unwrap());
        let code = out.status.code();
        if code != Some(0) {
            problems.push(format!(
                "{when}: the next run exited {code:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                stderr(&out)
            ));
        }
        if matches!(self.op, Op::FirstBackup | Op::IncrementalBackup)
            && let Ok(snap) = serde_json::from_slice::<serde_json::Value>(&out.stdout)
        {
            self.expected.insert(snapshot_id(&snap), src_tree.clone());
        }
        if self.op == Op::Restore {
            let (got, temporaries) = without_temporaries(tree(&restored(&self.restore_target, &self.src)));
            let latest = self.latest.as_deref().unwrap();
            if let Some(d) = tree_difference(&self.expected[latest], &got) {
                problems.push(format!("{when}: the next restore differs from the source: {d}"));
            }
            if temporaries > 0 {
                self.leftovers.0 += 1;
                self.leftovers.1 += temporaries;
            }
        }
        self.verify(
            &mut problems,
            &format!("{when}, after the next run"),
            &src_tree,
            true,
            &mut verified,
        );
        let outside_after = fingerprint(&self.outside.iter().map(PathBuf::as_path).collect::<Vec<_>>());
        if outside_before != outside_after {
            problems.push(format!(
                "{when}: something outside the target changed: {outside_before:?} → {outside_after:?}"
            ));
        }
        (finished.is_none(), problems)
    }
}

/// Builds the repository state every round of `op` starts from.
fn setup(op: Op) -> Lab {
    let mut lab = Lab::new(op);
    match op {
        Op::FirstBackup => {}
        Op::IncrementalBackup | Op::Restore | Op::RepairIndex => {
            lab.backup();
            mutate(&lab.src, 1, false);
            if op != Op::IncrementalBackup {
                lab.backup();
            }
        }
        Op::Prune => {
            lab.backup();
            mutate(&lab.src, 1, true);
            lab.backup();
            mutate(&lab.src, 2, false);
            lab.backup();
            let out = lab.drctl(&["forget", "--keep-last", "2"]);
            assert!(out.status.success(), "forget: {}", stderr(&out));
        }
        Op::ForgetPrune => {
            let mut ids = Vec::new();
            for generation in 0..3 {
                if generation > 0 {
                    mutate(&lab.src, generation, generation % 2 == 1);
                }
                ids.push(lab.backup());
            }
            lab.kept = ids[2..].iter().cloned().collect();
        }
    }
    lab.freeze();
    lab
}

/// Runs the campaign for `op`; prints its tally and fails on any finding.
fn campaign(op: Op, salt: u64) {
    let seed = SeededRng::seed_from_env("LIFEBOAT_KILL_SEED");
    let rounds = rounds();
    eprintln!(
        "kill campaign {}: LIFEBOAT_KILL_SEED={seed} LIFEBOAT_KILL_ROUNDS={rounds}",
        op.name()
    );
    let mut rng = SeededRng((seed ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1);
    let mut lab = setup(op);

    // Clean runs, timed (the fastest of three: the machine is shared, and a slow sample
    // would put kills after the end), and checked as every round's next run is.
    let mut clean = Duration::MAX;
    for _ in 0..3 {
        lab.reset();
        let (code, out, took) = lab.run_to_end();
        assert_eq!(
            code,
            Some(0),
            "a clean run of {} failed: {}",
            op.name(),
            stderr(&out)
        );
        clean = clean.min(took);
    }
    eprintln!("kill campaign {}: a clean run takes {clean:?}", op.name());

    let early = rounds.div_ceil(5);
    let (mut mid_run, mut survived) = (0, 0);
    let mut findings = Vec::new();
    for round in 0..rounds {
        let delay = if round < early {
            Duration::from_micros(rng.next_u64() % 15_000)
        } else {
            let fraction = ((round - early) as f64 + rng.unit()) / (rounds - early) as f64;
            clean.mul_f64(fraction * 1.05)
        };
        let (killed_mid_run, problems) = lab.round(round, delay);
        mid_run += usize::from(killed_mid_run);
        if problems.is_empty() {
            survived += 1;
        }
        findings.extend(problems);
    }
    lab.findings = findings;
    eprintln!(
        "kill campaign {}: {rounds} kills ({mid_run} mid-run), {survived} survived, {} findings, \
         {} stale locks of killed processes needed `repo unlock` (LIFEBOAT_KILL_SEED={seed})",
        op.name(),
        lab.findings.len(),
        lab.unlocks.get()
    );
    if lab.leftovers.0 > 0 {
        eprintln!(
            "kill campaign {}: in {} rounds the next restore left {} temporary files \
             (.lifeboat-restore-*) of the killed one in the target",
            op.name(),
            lab.leftovers.0,
            lab.leftovers.1
        );
    }
    assert!(
        STALE_LOCKS_NEED_UNLOCK || lab.unlocks.get() == 0,
        "kill campaign {}: a lock of a killed process blocked later operations {} times",
        op.name(),
        lab.unlocks.get()
    );
    assert!(
        lab.findings.is_empty(),
        "kill campaign {} (LIFEBOAT_KILL_SEED={seed}):\n{}",
        op.name(),
        lab.findings.join("\n")
    );
}

#[test]
fn backup_files_first_killed_at_random_moments() {
    campaign(Op::FirstBackup, 1);
}

#[test]
fn backup_files_incremental_killed_at_random_moments() {
    campaign(Op::IncrementalBackup, 2);
}

#[test]
fn prune_killed_at_random_moments() {
    campaign(Op::Prune, 3);
}

#[test]
fn forget_then_prune_killed_at_random_moments() {
    campaign(Op::ForgetPrune, 4);
}

#[test]
fn restore_files_killed_at_random_moments() {
    campaign(Op::Restore, 5);
}

#[test]
fn repair_index_killed_at_random_moments() {
    campaign(Op::RepairIndex, 6);
}
