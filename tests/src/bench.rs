//! Measuring commands for the benchmark binaries: wall time, CPU time and peak RSS of a child
//! process, via GNU time, after flushing earlier writes so runs do not pay for each other.

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
        .stdout(Stdio::null())
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
    Measure {
        wall: f[0],
        cpu: f[1] + f[2],
        rss_mib: f[3] / 1024.0,
    }
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
