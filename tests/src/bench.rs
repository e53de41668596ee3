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
