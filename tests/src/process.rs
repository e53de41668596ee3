//! Starting daemons, waiting for them to be healthy, and failing loudly when they are not.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::HarnessError;

/// A daemon started by the harness: its pid and where its output goes.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Daemon {
    /// What it is, for messages (`"ceph-mon"`).
    pub name: String,
    /// Its process id (also its process group id).
    pub pid: u32,
    /// Its combined stdout and stderr, plus any log file it writes itself.
    pub logs: Vec<PathBuf>,
}

impl Daemon {
    /// Starts `cmd` in its own process group, with output appended to `log`.
    ///
    /// Its own process group keeps a Ctrl-C in the terminal from killing a cluster that other
    /// test processes share; the harness stops it by pid instead.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Self, HarnessError> {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| HarnessError::io(format!("open log {}", log.display()), e))?;
        let err = out
            .try_clone()
            .map_err(|e| HarnessError::io("clone log handle", e))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0);
        let child = cmd.spawn().map_err(|e| HarnessError::Start {
            service: name.to_string(),
            reason: format!(
                "cannot run {:?}: {e} (is its package installed? run scripts/install-deps.sh)",
                cmd.get_program()
            ),
            log_tail: String::new(),
        })?;
        // The child is reaped by whoever stops it (or by init once we exit); dropping the
        // handle does not kill it.
        Ok(Self {
            name: name.to_string(),
            pid: child.id(),
            logs: vec![log.to_path_buf()],
        })
    }

    /// Also show `path` in the log tail of failure messages (a daemon's own log file).
    pub fn with_log(mut self, path: PathBuf) -> Self {
        self.logs.push(path);
        self
    }

    /// Whether the process still exists (and is not a zombie).
    pub fn is_alive(&self) -> bool {
        pid_alive(self.pid)
    }

    /// The last lines of each of its logs, for error messages.
    pub fn log_tail(&self) -> String {
        self.logs
            .iter()
            .map(|p| format!("--- {} ---\n{}", p.display(), tail(p, 30)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A start-up failure for this daemon, with its log tail.
    pub fn failed(&self, reason: impl Into<String>) -> HarnessError {
        HarnessError::Start {
            service: self.name.clone(),
            reason: reason.into(),
            log_tail: self.log_tail(),
        }
    }

    /// Polls `ready` until it returns true, the daemon dies, or `timeout` passes.
    pub fn wait_ready(
        &self,
        what: &str,
        timeout: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> Result<(), HarnessError> {
        let start = Instant::now();
        loop {
            if ready() {
                return Ok(());
            }
            if !self.is_alive() {
                return Err(self.failed(format!("exited before {what}")));
            }
            if start.elapsed() > timeout {
                return Err(self.failed(format!("not {what} after {timeout:?}")));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the process group: SIGTERM, then SIGKILL after a grace period.
    pub fn stop(&self) {
        stop_pid(self.pid);
    }
}

/// Sends SIGTERM to a process group, waits up to 5 s, then SIGKILLs what is left.
///
/// A child of ours that exits stays a zombie until this process ends; [`pid_alive`] treats
/// zombies as gone, which is all callers need.
pub fn stop_pid(pid: u32) {
    let Ok(pgid) = i32::try_from(pid) else { return };
    let _ = Command::new("kill")
        .args(["-TERM", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while pid_alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    if pid_alive(pid) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .stderr(Stdio::null())
            .status();
    }
}

/// True while `/proc/PID` exists and the process is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// The last `lines` lines of a file (empty if it cannot be read).
pub fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut f) = File::open(path) else {
        return "(no log)".to_string();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(16 * 1024);
    let mut buf = String::new();
    if f.seek(SeekFrom::Start(start)).is_err() || f.read_to_string(&mut buf).is_err() {
        // Binary junk in a log: show it lossily.
        let mut bytes = Vec::new();
        let _ = f.seek(SeekFrom::Start(start));
        let _ = f.read_to_end(&mut bytes);
        buf = String::from_utf8_lossy(&bytes).into_owned();
    }
    let all: Vec<&str> = buf.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16, HarnessError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| HarnessError::io("bind 127.0.0.1:0", e))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| HarnessError::io("read local address", e))
}

/// True when something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(300),
    )
    .is_ok()
}

/// Runs a set-up command to completion; on failure, the error names the service, the command
/// and its output.
pub fn run(service: &str, cmd: &mut Command) -> Result<String, HarnessError> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| HarnessError::Start {
            service: service.to_string(),
            reason: format!(
                "cannot run {:?}: {e} (run scripts/install-deps.sh)",
                cmd.get_program()
            ),
            log_tail: String::new(),
        })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    Err(HarnessError::Start {
        service: service.to_string(),
        reason: format!("{} failed with {}", describe(cmd), out.status),
        log_tail: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    })
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program().to_string_lossy().into_owned())
        .chain(cmd.get_args().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The standard output of a command that must have succeeded; panics with its exit code,
/// stdout and stderr otherwise (for tests that run drctl and read what it printed).
#[allow(clippy::unwrap_used)] // harness code: a test that cannot go on should panic loudly
pub fn succeeded(out: Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A child process killed (SIGKILL) and reaped when dropped, so a failing test leaves none
/// behind.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
