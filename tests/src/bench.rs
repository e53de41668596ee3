//! What the benchmark binaries share: the 1 GiB dataset, and measuring commands — wall time,
//! CPU time and peak RSS of a child process, via GNU time, after flushing earlier writes so
//! runs do not pay for each other.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// One command's cost.
#[derive(Debug, Clone, Copy)]
pub struct Measure {
    /// Wall-clock seconds.
    pub wall: f64,
    /// User plus system CPU seconds.
    pub cpu: f64,
    /// Peak resident memory in MiB.
    pub rss_mib: f64,
}

/// Runs `cmd` (with extra `env`) under `/usr/bin/time`; panics with its stderr if it fails,
/// since a benchmark of a failing command means nothing.
pub fn timed(cmd: Command, env: &[(String, String)]) -> Measure {
    timed_output(cmd, env).0
}

/// [`timed`], also returning what the command printed on stdout.
pub fn timed_output(cmd: Command, env: &[(String, String)]) -> (Measure, String) {
    let _ = Command::new("sync").status();
    let out_file = tempfile::NamedTempFile::new().expect("temp file");
    let mut timed = Command::new("/usr/bin/time");
    timed
        .arg("-f")
        .arg("%e %U %S %M")
        .arg("-o")
        .arg(out_file.path())
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .envs(cmd.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = cmd.get_current_dir() {
        timed.current_dir(dir);
    }
    let out = timed.output().expect("run timed command");
    assert!(
        out.status.success(),
        "{:?} failed: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(out_file.path()).expect("read time output");
    let f: Vec<f64> = text.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    let measure = Measure {
        wall: f[0],
        cpu: f[1] + f[2],
        rss_mib: f[3] / 1024.0,
    };
    (measure, String::from_utf8_lossy(&out.stdout).to_string())
}

/// Whole-machine CPU counters from `/proc/stat`, to tell how busy all cores were during a
/// phase (driver, Ceph daemons and client together), not just one process.
#[derive(Debug, Clone, Copy)]
pub struct MachineCpu {
    busy: u64,
}

impl MachineCpu {
    /// Reads the counters now (zeros where `/proc/stat` is unreadable).
    pub fn now() -> Self {
        let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let fields: Vec<u64> = text
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
        let busy = fields
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 3 && *i != 4 && *i < 8)
            .map(|(_, v)| v)
            .sum();
        Self { busy }
    }

    /// CPU seconds spent by the whole machine since `earlier` (USER_HZ is 100 on Linux).
    pub fn seconds_since(&self, earlier: &MachineCpu) -> f64 {
        self.busy.saturating_sub(earlier.busy) as f64 / 100.0
    }
}

/// A benchmark's scratch directory holding the 1 GiB dataset (`data`) and an age identity
/// for its repositories; removed on drop.
pub struct BenchData {
    /// The scratch directory.
    pub work: tempfile::TempDir,
    /// The dataset.
    pub data: PathBuf,
    /// The identity file.
    pub identity: PathBuf,
    /// Its public key.
    pub recipient: String,
}

impl BenchData {
    /// Makes the scratch directory (named `prefix…`), the dataset and the identity.
    pub fn generate(prefix: &str) -> Self {
        let work = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .expect("tempdir");
        let data = work.path().join("data");
        eprintln!("generating 1 GiB dataset in {}", data.display());
        make_dataset(&data);
        let (identity, recipient) = crate::repos::make_identity(work.path(), "bench").expect("identity");
        Self {
            work,
            data,
            identity,
            recipient,
        }
    }
}

/// The drctl binary a benchmark runs: `DRCTL_BIN`, else the release build's.
pub fn drctl_bin() -> String {
    std::env::var("DRCTL_BIN").unwrap_or_else(|_| "target/release/drctl".to_string())
}

/// Size of each file of the benchmark dataset.
pub const FILE: usize = 8 << 20;

/// Writes the 1 GiB benchmark dataset into `dir`: 64 files of random bytes and 64 of
/// JSON-lines logs, 8 MiB each (so half of it compresses well and half not at all).
pub fn make_dataset(dir: &Path) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let mut urandom = std::fs::File::open("/dev/urandom").expect("urandom");
    for i in 0..64 {
        let mut buf = vec![0u8; FILE];
        urandom.read_exact(&mut buf).expect("read urandom");
        std::fs::write(dir.join(format!("random-{i:02}.bin")), &buf).expect("write");
    }
    let levels = ["info", "info", "info", "debug", "warn", "error"];
    let paths = [
        "/api/v1/pods",
        "/api/v1/namespaces/default/secrets",
        "/apis/apps/v1/deployments",
        "/healthz",
    ];
    let mut seq: u64 = 0x1234_5678;
    for i in 0..64 {
        let mut out = Vec::with_capacity(FILE + 512);
        while out.len() < FILE {
            seq = seq
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let r = seq >> 33;
            writeln!(
                out,
                "{{\"ts\":\"2026-11-25T{:02}:{:02}:{:02}.{:03}Z\",\"level\":\"{}\",\"req\":\"{:016x}\",\"method\":\"GET\",\"path\":\"{}\",\"status\":{},\"latency_ms\":{},\"node\":\"worker-{}\"}}",
                (r >> 3) % 24, (r >> 8) % 60, (r >> 14) % 60, r % 1000,
                levels[(r % 6) as usize], seq, paths[(r % 4) as usize],
                if r.is_multiple_of(17) { 500 } else { 200 }, r % 250, r % 12
            )
            .expect("format");
        }
        out.truncate(FILE);
        std::fs::write(dir.join(format!("logs-{i:02}.jsonl")), &out).expect("write");
    }
}

/// Changes about 1 % of the dataset: one random file rewritten, 2 MiB appended to one log.
pub fn change_one_percent(dir: &Path) {
    let mut buf = vec![0u8; FILE];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("urandom");
    std::fs::write(dir.join("random-07.bin"), &buf).expect("write");
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("logs-03.jsonl"))
        .expect("open log");
    let line = b"{\"ts\":\"2026-11-26T00:00:00.000Z\",\"level\":\"info\",\"msg\":\"appended after the first backup\"}\n";
    for _ in 0..(2 << 20) / line.len() {
        log.write_all(line).expect("append");
    }
}

/// Deletes a bench bucket and its ~1.2 GB: the test cluster's OSD holds 4 GiB, so a few runs
/// against one held `testenv` would fill it (RGW then blocks every write).
pub fn remove_bucket(bucket: &str) {
    let out = Command::new("radosgw-admin")
        .arg("-c")
        .arg(crate::ceph().expect("ceph").conf())
        .args([
            "bucket",
            "rm",
            "--bucket",
            bucket,
            "--purge-objects",
            "--bypass-gc",
        ])
        .output()
        .expect("radosgw-admin");
    if !out.status.success() {
        eprintln!(
            "could not remove bucket {bucket}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
