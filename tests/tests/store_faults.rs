//! The object-store fault campaign (issue 21): the engine's operations run against Ceph RGW
//! and Azurite through [`FaultProxy`], which answers a share of the requests with HTTP 500,
//! 503 (`SlowDown` / `ServerBusy`), slow answers, connection resets (before the store sees
//! the request, mid-body, or after the store acted) and truncated answer bodies.
//!
//! Every operation (backup, restore, check with data, forget, prune) must either succeed
//! through retries — a restore then gives back exactly what was backed up — or fail with an
//! error naming the object and the store's answer; never panic or hang (each is bounded by
//! [`OP_TIMEOUT`]). After each one, the repository opened directly (not through the proxy)
//! passes `check` with all data read, and its snapshot list is what it was or has the new,
//! complete one. A second part fails every request from the k-th on (k swept over the
//! operation's requests, seeded) with few retries: each such run must fail cleanly and leave
//! no partial snapshot.
//!
//! Each backend prints a tally (requests, faults injected per kind, outcome per operation)
//! and fails on any finding, listing them all. The seed is printed; replay with it:
//!
//! ```sh
//! cargo test -p lifeboat-tests --test store_faults -- --nocapture
//! LIFEBOAT_FAULT_SEED=1234 cargo test -p lifeboat-tests --test store_faults -- --nocapture
//! LIFEBOAT_FAULT_ROUNDS=10 LIFEBOAT_FAULT_RATE=0.3 cargo test -p lifeboat-tests --test store_faults
//! ```
//!
//! Requests sent concurrently may reach the proxy in another order on a replay, so a replay
//! repeats the fault sequence, not always the requests it hits.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test that cannot set up should panic loudly

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use lifeboat_backup::Repository;
use lifeboat_backup::maintenance::{check, forget, prune};
use lifeboat_backup::progress::Progress;
use lifeboat_backup::repository::InitOptions;
use lifeboat_backup::restore::{RestoreOptions, restore_files};
use lifeboat_backup::sources::files::{FilesOptions, backup_files};
use lifeboat_backup::store::{Store, StoreOptions};
use lifeboat_tests::fault_proxy::{Dialect, Fault, FaultConfig, FaultProxy, Tally};
use lifeboat_tests::faults::SeededRng;
use lifeboat_tests::repos::{Backend, TestRepo};

/// The longest any one operation may take before it counts as a hang.
const OP_TIMEOUT: Duration = Duration::from_secs(90);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn progress() -> Arc<Progress> {
    Arc::new(Progress::default())
}

/// What an operation came to.
#[derive(Debug, Clone)]
enum Outcome {
    /// It succeeded (and what was verified).
    Ok(String),
    /// It failed cleanly, with this error.
    Failed(String),
}

/// One line of the tally.
struct Row {
    op: String,
    tally: Tally,
    took: Duration,
    outcome: Outcome,
}

/// A file tree's content: per relative path, mode and (for files and links) a digest.
type TreeDigest = BTreeMap<PathBuf, (u32, [u8; 32])>;

fn digest_tree(root: &Path) -> Result<TreeDigest> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p)?;
        let content = if meta.file_type().is_symlink() {
            std::fs::read_link(&p)?.to_string_lossy().as_bytes().to_vec()
        } else if meta.is_dir() {
            for e in std::fs::read_dir(&p)? {
                stack.push(e?.path());
            }
            Vec::new()
        } else {
            std::fs::read(&p)?
        };
        out.insert(
            p.strip_prefix(root)?.to_path_buf(),
            (meta.mode(), *blake3::hash(&content).as_bytes()),
        );
    }
    Ok(out)
}

/// Whether an error text names an object of the repository and what the store (or the
/// connection to it) answered.
fn names_object_and_answer(error: &str) -> bool {
    let object = ["locks/", "data/", "index/", "snapshots/", "keys/", "config"]
        .iter()
        .any(|k| error.contains(k));
    let answer = [
        "status code: 5",
        "SlowDown",
        "ServerBusy",
        "InternalError",
        "connection",
        "reset",
        "closed",
        "incomplete",
        "error sending request",
        "error decoding response body",
        "timed out",
        "body",
    ]
    .iter()
    .any(|a| error.contains(a));
    object && answer
}

/// One backend's campaign.
struct Lab {
    name: &'static str,
    t: TestRepo,
    proxy: FaultProxy,
    /// Options that reach the store through the proxy.
    faulty: StoreOptions,
    data: PathBuf,
    rng: SeededRng,
    /// Per snapshot id, the source tree it was taken of.
    expected: BTreeMap<String, TreeDigest>,
    rows: Vec<Row>,
    findings: Vec<String>,
    restores: usize,
}

impl Lab {
    async fn new(backend: Backend, salt: u64) -> Result<Self> {
        let seed = SeededRng::seed_from_env("LIFEBOAT_FAULT_SEED");
        let rate: f64 = env_or("LIFEBOAT_FAULT_RATE", 0.15);
        let (name, dialect) = match backend {
            Backend::Azurite => ("azurite", Dialect::Azure),
            _ => ("rgw", Dialect::S3),
        };
        let mixed = (seed ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1;
        eprintln!("store faults {name}: LIFEBOAT_FAULT_SEED={seed} LIFEBOAT_FAULT_RATE={rate}");
        let t = TestRepo::new(backend)?;
        let upstream = match backend {
            Backend::Azurite => t.options.azure_endpoint.clone(),
            _ => t.options.s3_endpoint.clone(),
        }
        .context("test repository has no endpoint")?;
        let proxy = FaultProxy::in_front_of(&upstream, FaultConfig::new(mixed, dialect, 0.0)).await?;
        let mut faulty = t.options.clone();
        match backend {
            Backend::Azurite => faulty.azure_endpoint = Some(proxy.endpoint()),
            _ => faulty.s3_endpoint = Some(proxy.endpoint()),
        }
        // One request per connection, so every request is the proxy's to fault; retries
        // quick enough for a short test.
        faulty.idle_connections_per_host = Some(0);
        faulty.request_timeout = Duration::from_secs(30);
        Repository::init(&t.store(), &[t.user_recipient()], InitOptions::default()).await?;
        let data = t.path("data");
        let mut lab = Self {
            name,
            t,
            proxy,
            faulty,
            data,
            rng: SeededRng(mixed),
            expected: BTreeMap::new(),
            rows: Vec::new(),
            findings: Vec::new(),
            restores: 0,
        };
        lab.proxy.set_schedule(&FaultConfig::new(mixed, dialect, rate));
        lab.make_data()?;
        Ok(lab)
    }

    fn dialect(&self) -> Dialect {
        if self.name == "azurite" {
            Dialect::Azure
        } else {
            Dialect::S3
        }
    }

    /// A few MiB in a few dozen files: random and compressible data, nesting, a link.
    fn make_data(&mut self) -> Result<()> {
        std::fs::create_dir_all(self.data.join("logs"))?;
        std::fs::create_dir_all(self.data.join("small"))?;
        let random: Vec<u8> = (0..1_500_000).map(|_| self.rng.next_u64() as u8).collect();
        std::fs::write(self.data.join("random.bin"), random)?;
        let log: String = (0..20_000)
            .map(|i| format!("{{\"ts\":{i},\"msg\":\"GET /api/v1/pods\"}}\n"))
            .collect();
        std::fs::write(self.data.join("logs/app.log"), log)?;
        for i in 0..24 {
            self.write_small(i)?;
        }
        std::fs::write(self.data.join("empty"), b"")?;
        std::os::unix::fs::symlink("logs/app.log", self.data.join("current.log"))?;
        Ok(())
    }

    fn write_small(&mut self, i: u64) -> Result<()> {
        let len = 1024 + (self.rng.next_u64() % (96 * 1024)) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| self.rng.next_u64() as u8).collect();
        std::fs::write(self.data.join(format!("small/{i:02}.bin")), bytes)?;
        Ok(())
    }

    /// Changes a few files, so the next backup has new data to upload.
    fn change_data(&mut self, round: u64) -> Result<()> {
        for _ in 0..3 {
            let i = self.rng.next_u64() % 24;
            self.write_small(i)?;
        }
        let extra: Vec<u8> = (0..200_000).map(|_| self.rng.next_u64() as u8).collect();
        std::fs::write(self.data.join(format!("round-{round}.bin")), extra)?;
        Ok(())
    }

    fn faulty_repo_store(&self) -> Result<Store> {
        Ok(Store::open(&self.t.url, &self.faulty)?)
    }

    /// The repository opened directly, not through the proxy.
    async fn direct(&self) -> Result<Repository> {
        Ok(Repository::open(&self.t.store(), &[self.t.user_key()]).await?)
    }

    async fn snapshot_ids(&self) -> Result<BTreeSet<String>> {
        Ok(self
            .direct()
            .await?
            .snapshots()
            .await?
            .iter()
            .filter_map(|s| s.id.as_ref().map(|id| id.to_string()))
            .collect())
    }

    /// Runs `op` through the proxy, bounded by [`OP_TIMEOUT`], with a panic caught and made
    /// a finding rather than the end of the campaign.
    async fn run<T>(
        &mut self,
        op: &str,
        work: impl std::future::Future<Output = Result<T, String>>,
    ) -> (Result<T, String>, Tally, Duration) {
        use futures::FutureExt;
        let _ = self.proxy.take_tally();
        let started = Instant::now();
        let caught = std::panic::AssertUnwindSafe(work).catch_unwind();
        let result = match tokio::time::timeout(OP_TIMEOUT, caught).await {
            Err(_) => {
                self.findings
                    .push(format!("{op}: still running after {OP_TIMEOUT:?} (a hang)"));
                Err("timed out".to_string())
            }
            Ok(Err(panic)) => {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                self.findings.push(format!("{op}: panicked: {what}"));
                Err(format!("panicked: {what}"))
            }
            Ok(Ok(result)) => result,
        };
        (result, self.proxy.take_tally(), started.elapsed())
    }

    fn record(&mut self, op: &str, tally: Tally, took: Duration, outcome: Outcome) {
        if let Outcome::Failed(e) = &outcome
            && !names_object_and_answer(e)
        {
            self.findings.push(format!(
                "{op}: failed without naming the object and the store's answer: {e}"
            ));
        }
        self.rows.push(Row {
            op: op.to_string(),
            tally,
            took,
            outcome,
        });
    }

    /// After an operation: the repository, opened directly, has every snapshot of `before`
    /// (minus `removed`), at most the one `new` snapshot more, and passes a check with all
    /// data read.
    async fn verify(&mut self, op: &str, before: &BTreeSet<String>, allowed_new: usize) -> Result<()> {
        let after = self.snapshot_ids().await?;
        let new: Vec<&String> = after.difference(before).collect();
        if new.len() > allowed_new {
            self.findings
                .push(format!("{op}: {} new snapshots appeared: {new:?}", new.len()));
        }
        for id in &new {
            if !self.expected.contains_key(*id) {
                self.findings.push(format!(
                    "{op}: snapshot {id} appeared though the operation reported failure"
                ));
            }
        }
        let report = check::check(&self.direct().await?, true, progress()).await?;
        if !report.ok() {
            self.findings
                .push(format!("{op}: direct check afterwards failed: {report:?}"));
        }
        Ok(())
    }

    /// Backs the data up through the proxy with `options` (the faulty ones, or those with
    /// fewer retries). A snapshot may appear only complete: a direct check reads it all, and
    /// the next restore compares it with its source.
    async fn backup(&mut self, op: &str, options: &StoreOptions) -> Result<Outcome> {
        let before = self.snapshot_ids().await?;
        let digest = digest_tree(&self.data)?;
        let (store, key) = (Store::open(&self.t.url, options)?, self.t.user_key());
        let data = self.data.clone();
        let (result, tally, took) = self
            .run(op, async move {
                let repo = Repository::open(&store, &[key])
                    .await
                    .map_err(|e| format!("{e:#}"))?;
                backup_files(&repo, &[data], &FilesOptions::default(), progress())
                    .await
                    .map_err(|e| format!("{e:#}"))
            })
            .await;
        let outcome = match result {
            Ok(snap) => {
                let id = snap.id.as_ref().map(|i| i.to_string()).unwrap_or_default();
                self.expected.insert(id.clone(), digest);
                Outcome::Ok(format!("snapshot {}", &id[..8.min(id.len())]))
            }
            Err(e) => {
                // The store may have acted on a request whose answer was lost (the snapshot
                // written, then the connection reset): then the snapshot is there, and must
                // be complete.
                let after = self.snapshot_ids().await?;
                let written: Vec<&String> = after.difference(&before).collect();
                for id in &written {
                    self.expected.insert((*id).clone(), digest.clone());
                }
                match written.first() {
                    Some(id) => Outcome::Failed(format!(
                        "{e} [snapshot {} was written nonetheless; checked complete]",
                        &id[..8]
                    )),
                    None => Outcome::Failed(e),
                }
            }
        };
        self.record(op, tally, took, outcome.clone());
        self.verify(op, &before, 1).await?;
        Ok(outcome)
    }

    /// Restores the newest snapshot through the proxy and compares it with its source.
    async fn restore(&mut self, op: &str) -> Result<()> {
        let before = self.snapshot_ids().await?;
        let direct = self.direct().await?;
        let Some(snap) = direct.snapshots().await?.pop() else {
            bail!("{op}: no snapshot to restore");
        };
        let id = snap.id.as_ref().map(|i| i.to_string()).unwrap_or_default();
        self.restores += 1;
        let target = self.t.path(&format!("restore-{}", self.restores));
        let (store, key) = (self.faulty_repo_store()?, self.t.user_key());
        let into = target.clone();
        let (result, tally, took) = self
            .run(op, async move {
                let repo = Repository::open(&store, &[key])
                    .await
                    .map_err(|e| format!("{e:#}"))?;
                restore_files(&repo, &snap, &into, &RestoreOptions::default(), progress())
                    .await
                    .map_err(|e| format!("{e:#}"))
            })
            .await;
        let outcome = match result {
            Ok(report) if !report.damaged_packs.is_empty() => {
                self.findings.push(format!(
                    "{op}: packs called damaged by a transient fault: {:?}",
                    report.damaged_packs
                ));
                Outcome::Failed(report.errors.join("; "))
            }
            Ok(report) if !report.errors.is_empty() => Outcome::Failed(report.errors.join("; ")),
            Ok(report) => {
                let restored = target.join(self.data.strip_prefix("/").unwrap_or(&self.data));
                let got = digest_tree(&restored)?;
                match self.expected.get(&id) {
                    Some(want) if *want == got => Outcome::Ok(format!("{} files identical", report.files)),
                    Some(_) => {
                        self.findings.push(format!(
                            "{op}: restore of {id} succeeded but differs from its source"
                        ));
                        Outcome::Ok("DIFFERS".to_string())
                    }
                    None => bail!("{op}: snapshot {id} has no recorded source"),
                }
            }
            Err(e) => Outcome::Failed(e),
        };
        self.record(op, tally, took, outcome);
        self.verify(op, &before, 0).await
    }

    /// A check with all data read, through the proxy: faults may make it fail, never make it
    /// report damage.
    async fn check(&mut self, op: &str) -> Result<()> {
        let before = self.snapshot_ids().await?;
        let (store, key) = (self.faulty_repo_store()?, self.t.user_key());
        let (result, tally, took) = self
            .run(op, async move {
                let repo = Repository::open(&store, &[key])
                    .await
                    .map_err(|e| format!("{e:#}"))?;
                check::check(&repo, true, progress())
                    .await
                    .map_err(|e| format!("{e:#}"))
            })
            .await;
        let outcome = match result {
            Ok(report) if report.ok() => Outcome::Ok(format!(
                "{} snapshots, {} packs read",
                report.snapshots, report.packs_read
            )),
            Ok(report) => {
                if !report.damaged_packs.is_empty()
                    || !report.affected.is_empty()
                    || !report.damaged_snapshots.is_empty()
                {
                    self.findings.push(format!(
                        "{op}: a transient fault reported as damage: packs {:?}, snapshots {:?}",
                        report.damaged_packs, report.damaged_snapshots
                    ));
                }
                Outcome::Failed(report.errors.join("; "))
            }
            Err(e) => Outcome::Failed(e),
        };
        self.record(op, tally, took, outcome);
        self.verify(op, &before, 0).await
    }

    /// forget --keep-last 1, then prune, through the proxy.
    async fn forget_and_prune(&mut self) -> Result<()> {
        let before = self.snapshot_ids().await?;
        let newest = self
            .direct()
            .await?
            .snapshots()
            .await?
            .pop()
            .and_then(|s| s.id.map(|i| i.to_string()));
        let (store, key) = (self.faulty_repo_store()?, self.t.user_key());
        let (result, tally, took) = self
            .run("forget --keep-last 1", async move {
                let repo = Repository::open(&store, &[key])
                    .await
                    .map_err(|e| format!("{e:#}"))?;
                let policy = forget::RetentionPolicy {
                    keep_last: 1,
                    ..Default::default()
                };
                forget::forget(&repo, &policy, Default::default(), false)
                    .await
                    .map_err(|e| format!("{e:#}"))
            })
            .await;
        let outcome = match result {
            Ok(f) => Outcome::Ok(format!(
                "{} removed",
                f.groups.iter().map(|g| g.remove.len()).sum::<usize>()
            )),
            Err(e) => Outcome::Failed(e),
        };
        self.record("forget --keep-last 1", tally, took, outcome);
        let after = self.snapshot_ids().await?;
        if let Some(newest) = &newest
            && !after.contains(newest)
        {
            self.findings
                .push(format!("forget: the newest snapshot {newest} is gone"));
        }
        self.verify("forget", &before, 0).await?;

        let before = self.snapshot_ids().await?;
        let (store, key) = (self.faulty_repo_store()?, self.t.user_key());
        let (result, tally, took) = self
            .run("prune", async move {
                let repo = Repository::open(&store, &[key])
                    .await
                    .map_err(|e| format!("{e:#}"))?;
                prune::prune(&repo, false).await.map_err(|e| format!("{e:#}"))
            })
            .await;
        let outcome = match result {
            Ok(plan) => Outcome::Ok(format!(
                "{} packs deleted, {} repacked",
                plan.delete.len(),
                plan.repack.len()
            )),
            Err(e) => Outcome::Failed(e),
        };
        self.record("prune", tally, took, outcome);
        if self.snapshot_ids().await? != before {
            self.findings.push("prune changed the snapshot list".to_string());
        }
        self.verify("prune", &before, 0).await
    }

    /// Every request from the `skip`-th on fails (500, 503, resets, truncation), with one
    /// retry: the backup must fail cleanly and leave no partial snapshot.
    async fn all_faults(&mut self, skip: u64) -> Result<()> {
        let op = format!("backup, all fail from #{skip}");
        let config = FaultConfig {
            kinds: Fault::FAILING.to_vec(),
            skip,
            ..FaultConfig::new(self.rng.next_u64(), self.dialect(), 1.0)
        };
        let mut options = self.faulty.clone();
        options.max_retries = 1;
        self.change_data(100 + skip)?;
        self.proxy.set_schedule(&config);
        let outcome = self.backup(&op, &options).await;
        self.proxy.set_schedule(&FaultConfig::new(1, self.dialect(), 0.0));
        if let (Outcome::Ok(_), Some(row)) = (outcome?, self.rows.last())
            && row.tally.injected_total() + skip >= row.tally.requests_total()
            && row.tally.injected_total() > 0
        {
            self.findings.push(format!(
                "{op}: succeeded though every one of its requests from #{skip} failed"
            ));
        }
        Ok(())
    }

    fn table(&self) -> String {
        let mut out = String::new();
        let kinds: Vec<&str> = Fault::ALL.iter().map(|k| k.name()).collect();
        let _ = writeln!(
            out,
            "{:<8} {:<26} {:>5} {:>4} {:>4} {:>4} {:>5} {:>5} {:>11} {:>9} {:>6}  outcome",
            "backend",
            "operation",
            "reqs",
            kinds[0],
            kinds[1],
            kinds[2],
            kinds[3],
            "rst-a",
            "truncated",
            "faulted",
            "secs"
        );
        let mut total = Tally::default();
        for r in &self.rows {
            total.add(&r.tally);
            let outcome = match &r.outcome {
                Outcome::Ok(detail) => format!("ok: {detail}"),
                Outcome::Failed(e) => format!("FAILED cleanly: {}", shorten(e, 150)),
            };
            let _ = writeln!(
                out,
                "{:<8} {:<26} {:>5} {:>4} {:>4} {:>4} {:>5} {:>5} {:>11} {:>9} {:>6.1}  {outcome}",
                self.name,
                r.op,
                r.tally.requests_total(),
                r.tally.injected_of(Fault::ServerError),
                r.tally.injected_of(Fault::Throttle),
                r.tally.injected_of(Fault::Slow),
                r.tally.injected_of(Fault::Reset),
                r.tally.injected_of(Fault::ResetAfterForward),
                r.tally.injected_of(Fault::Truncate),
                r.tally.injected_total(),
                r.took.as_secs_f64(),
            );
        }
        let _ = writeln!(
            out,
            "{:<8} {:<26} {:>5} {:>4} {:>4} {:>4} {:>5} {:>5} {:>11} {:>9}",
            self.name,
            "TOTAL",
            total.requests_total(),
            total.injected_of(Fault::ServerError),
            total.injected_of(Fault::Throttle),
            total.injected_of(Fault::Slow),
            total.injected_of(Fault::Reset),
            total.injected_of(Fault::ResetAfterForward),
            total.injected_of(Fault::Truncate),
            total.injected_total(),
        );
        let _ = writeln!(out, "{:<8} by method: {}", self.name, total.by_method());
        out
    }

    fn total(&self) -> Tally {
        let mut total = Tally::default();
        for r in &self.rows {
            total.add(&r.tally);
        }
        total
    }
}

fn shorten(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

async fn campaign(backend: Backend, salt: u64) -> Result<()> {
    let started = Instant::now();
    let mut lab = Lab::new(backend, salt).await?;
    let rounds: u64 = env_or("LIFEBOAT_FAULT_ROUNDS", 3);
    let rate: f64 = env_or("LIFEBOAT_FAULT_RATE", 0.15);

    // Part 1: a share of the requests faulted; operations succeed through retries or fail
    // cleanly.
    for round in 1..=rounds {
        if round > 1 {
            lab.change_data(round)?;
        }
        let options = lab.faulty.clone();
        lab.backup(&format!("backup #{round}"), &options).await?;
        lab.restore(&format!("restore latest #{round}")).await?;
        lab.check(&format!("check --read-data #{round}")).await?;
    }
    lab.forget_and_prune().await?;
    lab.restore("restore after prune").await?;
    let faulted = lab.total();

    // Part 2: everything fails from the k-th request on. The sweep covers the start
    // (nothing reaches the store), two seeded points inside a backup, and its end.
    let per_backup = lab
        .rows
        .iter()
        .find(|r| r.op.starts_with("backup #"))
        .map_or(12, |r| r.tally.requests_total())
        .max(4);
    let mut points = vec![
        0,
        1 + lab.rng.next_u64() % (per_backup / 2),
        per_backup / 2 + lab.rng.next_u64() % (per_backup / 2),
    ];
    points.push(per_backup.saturating_sub(2));
    points.sort_unstable();
    points.dedup();
    for skip in points {
        lab.all_faults(skip).await?;
    }
    // Whatever those left must restore (a snapshot written before its answer was lost).
    lab.proxy
        .set_schedule(&FaultConfig::new(lab.rng.next_u64(), lab.dialect(), rate));
    lab.restore("restore latest at the end").await?;
    let locks = lab.direct().await?.list("locks/").await?.len();

    eprintln!(
        "\nstore faults {} (seed printed above), {:.0} s:\n{}locks left by failed operations: {locks} (they lapse after their TTL)\n",
        lab.name,
        started.elapsed().as_secs_f64(),
        lab.table()
    );

    // The campaign did what it says: requests were faulted, every kind at least once, and
    // retries carried operations through.
    ensure!(
        faulted.injected_total() > 0,
        "{}: no faults were injected in part 1",
        lab.name
    );
    for kind in Fault::ALL {
        ensure!(
            faulted.injected_of(kind) > 0,
            "{}: no {kind} fault was injected in part 1 ({} requests)",
            lab.name,
            faulted.requests_total()
        );
    }
    let succeeded = lab
        .rows
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Ok(_)) && r.tally.injected_total() > 0)
        .count();
    ensure!(
        succeeded > 0,
        "{}: no faulted operation succeeded through retries",
        lab.name
    );
    ensure!(
        lab.findings.is_empty(),
        "{} findings on {}:\n{}",
        lab.findings.len(),
        lab.name,
        lab.findings.join("\n")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rgw_operations_survive_store_faults() -> Result<()> {
    campaign(Backend::Rgw, 1).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn azurite_operations_survive_store_faults() -> Result<()> {
    campaign(Backend::Azurite, 2).await
}

/// A connection reset on a write or a delete (before the store saw it, or after it acted) is
/// tried again, for each kind of request a backup makes: the HTTP client does not retry a
/// create-only PUT or a batch-delete POST whose connection broke, and the engine must
/// (regression: one reset used to fail the whole backup, or leave a restore's lock behind).
async fn resets_are_retried(backend: Backend) -> Result<()> {
    let mut lab = Lab::new(backend, 3).await?;
    let dialect = lab.dialect();
    let options = lab.faulty.clone();
    for fault in [Fault::Reset, Fault::ResetAfterForward] {
        for method in ["PUT", "POST"] {
            let op = format!("backup, {fault} on {method}s");
            lab.proxy.set_schedule(&FaultConfig {
                kinds: vec![fault],
                methods: Some(vec![method.to_string()]),
                limit: Some(4),
                ..FaultConfig::new(1, dialect, 1.0)
            });
            lab.change_data(200)?;
            let outcome = lab.backup(&op, &options).await?;
            let injected = lab.rows.last().map_or(0, |r| r.tally.injected_total());
            ensure!(injected > 0, "{op}: nothing injected");
            ensure!(
                matches!(outcome, Outcome::Ok(_)),
                "{op}: {injected} resets failed the backup: {outcome:?}"
            );
        }
    }
    lab.proxy.set_schedule(&FaultConfig::new(1, dialect, 0.0));
    lab.restore("restore latest").await?;
    let locks = lab.direct().await?.list("locks/").await?.len();
    eprintln!("\n{}", lab.table());
    ensure!(locks == 0, "{locks} locks left behind");
    ensure!(
        lab.findings.is_empty(),
        "findings on {}:\n{}",
        lab.name,
        lab.findings.join("\n")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resets_of_writes_and_deletes_are_retried() -> Result<()> {
    resets_are_retried(Backend::Rgw).await?;
    resets_are_retried(Backend::Azurite).await
}
