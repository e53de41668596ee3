//! Shared by the CSI fault campaigns (`csi_faults`, `csi_osd_pause`): a driver on its own
//! pool, CO-style retries, the pool listed with the `rbd` and `rados` CLIs and compared with
//! what the successful calls made, and a per-RPC tally.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use lifeboat_csi::ids::{RBD_GROUP_PREFIX, hashed_name};
use lifeboat_csi::proto::volume_content_source::{SnapshotSource, Type as Src};
use lifeboat_csi::proto::*;
use lifeboat_csi::rbd::images::{image_name, snapshot_name};
use lifeboat_tests::csi::{Clients, DriverOptions, RbdEnv};
use lifeboat_tests::faults::SeededRng;
use tonic::{Code, Status};

pub const MIB: i64 = 1 << 20;

/// Kills per RPC: `LIFEBOAT_CSI_FAULT_ROUNDS`, 4 by default.
pub fn rounds() -> usize {
    std::env::var("LIFEBOAT_CSI_FAULT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4)
}

/// A controller-mode driver on a new pool named after `prefix`.
pub async fn env(prefix: &str) -> Result<RbdEnv> {
    let opts = DriverOptions {
        mode: "controller",
        ..Default::default()
    };
    let mut e = RbdEnv::start(env!("CARGO_BIN_EXE_csi-driver"), prefix, opts, |_| {}).await?;
    // Default features (exclusive-lock, object-map …) as group snapshots and a real cluster
    // use them: a killed driver then also leaves an exclusive lock behind.
    e.params.remove("imageFeatures");
    Ok(e)
}

/// A CO's request name for `short`: names are unique in a cluster (CSI snapshot names are
/// claimed across pools), so each test's names start with its pool's name.
pub fn named(e: &RbdEnv, short: &str) -> String {
    format!("{}.{short}", e.pool)
}

/// CreateVolume `short` from a snapshot.
pub fn from_snapshot(e: &RbdEnv, short: &str, bytes: i64, snapshot_id: &str) -> CreateVolumeRequest {
    CreateVolumeRequest {
        volume_content_source: Some(VolumeContentSource {
            r#type: Some(Src::Snapshot(SnapshotSource {
                snapshot_id: snapshot_id.into(),
            })),
        }),
        ..e.create_req(&named(e, short), bytes)
    }
}

/// Creates the 16 MiB volume `source` and writes [`write_pattern`]'s data (`seed`) into it;
/// the volume and the data.
pub async fn source(e: &RbdEnv, seed: u8) -> Result<(Volume, Vec<u8>)> {
    let volume = e
        .driver
        .clients()
        .await?
        .controller
        .create_volume(e.create_req(&named(e, "source"), 16 * MIB))
        .await?
        .into_inner()
        .volume
        .context("volume")?;
    let data = write_pattern(&e.pool, &volume.volume_context["imageName"], seed)?;
    Ok((volume, data))
}

/// CreateSnapshot `short` of volume `volume_id`.
pub fn snapshot_req(e: &RbdEnv, volume_id: &str, short: &str) -> CreateSnapshotRequest {
    CreateSnapshotRequest {
        source_volume_id: volume_id.into(),
        name: named(e, short),
        secrets: e.secrets.clone(),
        parameters: Default::default(),
    }
}

/// Distinct data at offsets 0, 5 MiB and 13 MiB of an image.
pub fn write_pattern(pool: &str, image: &str, seed: u8) -> Result<Vec<u8>> {
    let data: Vec<u8> = (0..MIB as usize).map(|i| (i * 31) as u8 ^ seed).collect();
    let cluster = lifeboat_tests::ceph()?.connect()?;
    let p = cluster.pool(pool)?;
    let mut img = p.open(image, None)?;
    for at in [0u64, 5, 13] {
        img.write_at(at * MIB as u64, &data)?;
    }
    img.flush()?;
    Ok(data)
}

/// The data [`write_pattern`] wrote (checking the three copies agree).
pub fn read_pattern(pool: &str, image: &str) -> Result<Vec<u8>> {
    let cluster = lifeboat_tests::ceph()?.connect()?;
    let p = cluster.pool(pool)?;
    let img = p.open_read_only(image, None)?;
    let mut first = vec![0u8; MIB as usize];
    img.read_at(0, &mut first)?;
    for at in [5u64, 13] {
        let mut buf = vec![0u8; MIB as usize];
        img.read_at(at * MIB as u64, &mut buf)?;
        ensure!(buf == first, "{image}: data at {at} MiB differs from data at 0");
    }
    Ok(first)
}

/// What a pool holds, as the `rbd` and `rados` CLIs list it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Inventory {
    /// Image → its snapshots, sorted, as `namespace:name`; librbd names group-namespace
    /// snapshots itself, so those appear as `group:*` (once per group snapshot).
    images: BTreeMap<String, Vec<String>>,
    groups: BTreeSet<String>,
    trash: BTreeSet<String>,
    /// RADOS objects the driver names `lifeboat.*`.
    records: BTreeSet<String>,
    /// Images listed but not openable: what a removal librbd was killed in leaves (moved to
    /// the trash as "removing", which the trash listings leave out, or half-removed). The
    /// driver's retried DeleteVolume finishes them, so none may be left.
    unopenable: BTreeSet<String>,
}

/// Runs a CLI command that must succeed; its stdout.
pub fn cli(mut cmd: Command, what: &str) -> Result<String> {
    let out = cmd.output().with_context(|| what.to_string())?;
    ensure!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A JSON array printed by `rbd … --format json` (nothing printed is empty).
pub fn json_array(text: &str) -> Result<Vec<serde_json::Value>> {
    if text.trim().is_empty() {
        return Ok(vec![]);
    }
    let v: serde_json::Value =
        serde_json::from_str(text).with_context(|| format!("rbd answered {text:?}"))?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

/// Lists `pool`: images with their snapshots, groups, trash and `lifeboat.*` objects.
pub fn inventory(pool: &str) -> Result<Inventory> {
    let ceph = lifeboat_tests::ceph()?;
    let rbd = |args: &[&str]| -> Result<Vec<serde_json::Value>> {
        let mut c = ceph.rbd_cmd();
        c.args(args).args(["--format", "json"]);
        json_array(&cli(c, &format!("rbd {}", args.join(" ")))?)
    };
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("?").to_string();
    let mut inv = Inventory::default();
    for name in rbd(&["ls", "-p", pool])? {
        let image = text(&name);
        let listed = match rbd(&["snap", "ls", "--all", &format!("{pool}/{image}")]) {
            Err(e) if format!("{e:#}").contains("No such file or directory") => {
                inv.unopenable.insert(image);
                continue;
            }
            other => other?,
        };
        let mut snaps: Vec<String> = listed
            .iter()
            .map(|s| match s["namespace"]["type"].as_str().unwrap_or("user") {
                "group" => "group:*".to_string(),
                ns => format!("{ns}:{}", text(&s["name"])),
            })
            .collect();
        snaps.sort();
        inv.images.insert(image, snaps);
    }
    inv.groups = rbd(&["group", "ls", pool])?.iter().map(text).collect();
    inv.trash = rbd(&["trash", "ls", "--all", pool])?
        .iter()
        .map(|t| text(&t["name"]))
        .collect();
    let mut rados = ceph.rados_cmd();
    rados.args(["-p", pool, "ls"]);
    inv.records = cli(rados, "rados ls")?
        .lines()
        .filter(|o| o.starts_with("lifeboat."))
        .map(str::to_string)
        .collect();
    Ok(inv)
}

/// What the test's successful calls made: volumes by short name (see [`named`]), each with
/// the short names of its CreateSnapshot snapshots, and group snapshots by short name with
/// their member volumes.
#[derive(Debug, Default)]
pub struct Made {
    pub volumes: BTreeMap<String, Vec<String>>,
    pub groups: BTreeMap<String, Vec<String>>,
}

impl Made {
    /// Fails unless the pool holds exactly what was made.
    pub fn check(&self, pool: &str, when: &str) -> Result<()> {
        let full = |short: &str| format!("{pool}.{short}");
        let mut want = Inventory::default();
        for (volume, snaps) in &self.volumes {
            let snaps: Vec<String> = snaps.iter().map(|s| snapshot_name(&full(s))).collect();
            // Each CSI snapshot name is claimed by a record naming its volume.
            want.records
                .extend(snaps.iter().map(|s| format!("lifeboat.csi.{s}")));
            let mut s: Vec<String> = snaps.iter().map(|s| format!("user:{s}")).collect();
            let groups = self.groups.values().filter(|m| m.contains(volume)).count();
            s.extend(std::iter::repeat_n("group:*".to_string(), groups));
            s.sort();
            want.images.insert(image_name(&full(volume)), s);
        }
        for g in self.groups.keys() {
            let group = hashed_name(RBD_GROUP_PREFIX, &full(g));
            want.records.insert(format!("lifeboat.csi.{group}"));
            want.groups.insert(group);
        }
        let got = inventory(pool).with_context(|| format!("{when}: listing pool {pool}"))?;
        ensure!(
            got == want,
            "{when}: the pool does not hold what the successful calls made\n  want {want:?}\n  got  {got:?}"
        );
        Ok(())
    }
}

/// Per-RPC outcomes of a campaign.
#[derive(Default)]
pub struct Tally {
    pub rows: BTreeMap<&'static str, Row>,
}

/// One RPC's line of a [`Tally`].
#[derive(Default)]
pub struct Row {
    pub kills: usize,
    pub cut: usize,
    pub done_before_kill: usize,
    pub retries: usize,
    pub longest_recovery: Duration,
}

impl Tally {
    pub fn print(&self, title: &str, seed: u64) {
        println!("{title} (seed {seed}, replay with LIFEBOAT_CSI_FAULT_SEED={seed}):");
        println!(
            "  {:<34} {:>5} {:>10} {:>11} {:>8} {:>14}",
            "RPC", "kills", "cut mid-RPC", "done before", "retries", "longest retry"
        );
        for (rpc, r) in &self.rows {
            println!(
                "  {:<34} {:>5} {:>10} {:>11} {:>8} {:>13.1}s",
                rpc,
                r.kills,
                r.cut,
                r.done_before_kill,
                r.retries,
                r.longest_recovery.as_secs_f64()
            );
        }
    }
}

/// Codes a CO retries with backoff: the driver's "operation pending" and "not serving yet",
/// and, for deletes, "in use" while a killed driver's watch lapses (30 s, the OSDs'
/// `osd_client_watch_timeout`) or its exclusive lock is broken.
pub fn retryable(code: Code, delete: bool) -> bool {
    matches!(code, Code::Aborted | Code::Unavailable | Code::DeadlineExceeded)
        || (delete && code == Code::FailedPrecondition)
}

/// Calls until the driver answers other than [`retryable`], for up to 3 minutes (each call
/// at most 2).
pub async fn retry<T, F, Fut>(e: &RbdEnv, rpc: &str, delete: bool, call: &F) -> Result<(T, usize)>
where
    F: Fn(Clients) -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, Status>>,
{
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut tries = 0;
    let mut stale_check = Instant::now() + STALE_WATCH_CHECK;
    loop {
        tries += 1;
        if Instant::now() > stale_check {
            let pool = e.pool.clone();
            // Blocking CLI calls and writes: off the runtime's worker threads, which the other
            // campaigns' kill moments depend on.
            match tokio::task::spawn_blocking(move || clear_stale_watches(&pool)).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => println!("looking for stale watches in {}: {err:#}", e.pool),
                Err(err) => println!("looking for stale watches in {}: {err}", e.pool),
            }
            stale_check = Instant::now() + STALE_WATCH_CHECK;
        }
        // A call the driver never answers fails the test instead of hanging it.
        let answer = tokio::time::timeout(Duration::from_secs(120), call(e.driver.clients().await?))
            .await
            .map_err(|_| anyhow::anyhow!("{rpc}: no answer in 120 s\ndriver log:\n{}", e.driver.log()))?;
        match answer {
            Ok(r) => return Ok((r.into_inner(), tries - 1)),
            Err(s) if retryable(s.code(), delete) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(if s.code() == Code::Aborted {
                    100
                } else {
                    1000
                }))
                .await
            }
            Err(s) if retryable(s.code(), delete) => bail!(
                "{rpc}: still {s} after 180 s\npool {}:\n{}\ndriver log:\n{}",
                e.pool,
                pool_state(&e.pool),
                e.driver.log()
            ),
            Err(s) => bail!("{rpc}: {s}\ndriver log:\n{}", e.driver.log()),
        }
    }
}

/// How long a call may be refused before [`retry`] looks for stale watches: past the OSDs'
/// 30 s watch timeout, with a margin for a loaded machine.
const STALE_WATCH_CHECK: Duration = Duration::from_secs(45);

/// Clears the watches `pool`'s OSD kept for clients that are gone (see
/// `lifeboat_tests::services::stale_watches`: a Ceph bug, not the driver's), printing each, so
/// that the driver's retries are judged on what the driver does. Those watches make librbd
/// refuse to remove an image until the OSD reloads it; the driver's answer names the watcher.
fn clear_stale_watches(pool: &str) -> Result<()> {
    let ceph = lifeboat_tests::ceph()?;
    let stale = ceph.stale_watches(pool, "rbd_header.")?;
    if stale.is_empty() {
        return Ok(());
    }
    for w in &stale {
        println!(
            "Ceph kept a watch of a gone client ({} on {pool}/{}, cookie {}; Ceph tracker 58120): \
             reloading the pool's object contexts",
            w.client, w.object, w.cookie
        );
    }
    ceph.reload_object_contexts(pool)?;
    Ok(())
}

/// What a retry that never succeeds needs to be explained: the pool's images with their
/// watchers and lock holders, its trash (`rbd trash ls --all --long`) and the OSD blocklist, as
/// the `rbd` and `ceph` CLIs print them; a command that fails prints its error instead.
pub fn pool_state(pool: &str) -> String {
    let Ok(ceph) = lifeboat_tests::ceph() else {
        return "(no test Ceph)".into();
    };
    let run = |mut c: Command| -> String {
        match c.output() {
            Ok(o) => format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => format!("{e}\n"),
        }
    };
    let rbd = |args: &[&str]| {
        let mut c = ceph.rbd_cmd();
        c.args(args);
        format!("$ rbd {}\n{}", args.join(" "), run(c))
    };
    let mut out = rbd(&["ls", "-l", pool]);
    let mut ls = ceph.rbd_cmd();
    ls.args(["ls", pool]);
    for image in run(ls).lines().filter(|l| l.starts_with("csi-")) {
        let spec = format!("{pool}/{image}");
        out += &rbd(&["status", &spec]);
        out += &rbd(&["lock", "ls", &spec]);
    }
    out += &rbd(&["trash", "ls", "--all", "--long", pool]);
    let mut blocklist = ceph.ceph_cmd();
    blocklist.args(["osd", "blocklist", "ls"]);
    out + &format!("$ ceph osd blocklist ls\n{}", run(blocklist))
}

/// One round: starts `call` on a fresh connection, kills the driver after `delay`, restarts
/// it and retries until the call succeeds.
pub async fn killed<T, F, Fut>(
    e: &mut RbdEnv,
    tally: &mut Tally,
    rpc: &'static str,
    delay: Duration,
    call: F,
) -> Result<T>
where
    T: Send + 'static,
    F: Fn(Clients) -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, Status>> + Send + 'static,
{
    let pending = tokio::spawn(call(e.driver.clients().await?));
    tokio::time::sleep(delay).await;
    e.driver.kill();
    let first = pending.await?;
    e.driver.restart().await?;
    let started = Instant::now();
    let delete = rpc.starts_with("Delete");
    let (answer, retries) = retry(e, rpc, delete, &call)
        .await
        .with_context(|| format!("retry of {rpc} after a kill at {} ms", delay.as_millis()))?;
    let row = tally.rows.entry(rpc).or_default();
    row.kills += 1;
    if first.is_ok() {
        row.done_before_kill += 1;
    } else {
        row.cut += 1;
    }
    row.retries += retries;
    row.longest_recovery = row.longest_recovery.max(started.elapsed());
    Ok(answer)
}

/// Times one unfaulted call on a freshly started driver (so it includes connecting to Ceph,
/// as every killed call does); kills are then drawn from 0 to 1.2× that.
pub async fn timed<T, F, Fut>(e: &mut RbdEnv, rpc: &str, call: F) -> Result<(T, Duration)>
where
    F: Fn(Clients) -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, Status>>,
{
    e.driver.kill();
    e.driver.restart().await?;
    let started = Instant::now();
    let (answer, _) = retry(e, rpc, rpc.starts_with("Delete"), &call).await?;
    Ok((
        answer,
        started.elapsed().mul_f64(1.2).max(Duration::from_millis(20)),
    ))
}

/// A uniform random moment within `span`.
pub fn draw(rng: &mut SeededRng, span: Duration) -> Duration {
    span.mul_f64(rng.unit())
}

/// `LIFEBOAT_CSI_FAULT_SEED`, or the clock; printed.
pub fn seed() -> (u64, SeededRng) {
    let seed = SeededRng::seed_from_env("LIFEBOAT_CSI_FAULT_SEED");
    println!("LIFEBOAT_CSI_FAULT_SEED={seed}");
    (seed, SeededRng(seed))
}

/// `call(req)` on a client of the driver, as an `Fn` the rounds can repeat.
#[allow(unused_macros)]
macro_rules! rpc {
    ($client:ident . $method:ident, $req:expr) => {{
        let req = $req;
        move |c: Clients| {
            let req = req.clone();
            let mut client = c.$client;
            async move { client.$method(req).await }
        }
    }};
}
