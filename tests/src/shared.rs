//! Sharing one set of slow services (Ceph, NFS) between all test processes of a run.
//!
//! `cargo test` runs each integration-test file as its own process, and nextest runs each
//! test as its own process, so a per-process cluster would start Ceph dozens of times. Instead
//! the first process to need a service starts it under a state directory, and later processes
//! reuse it:
//!
//! - `setup.lock` (exclusive flock) serialises starting and inspecting services;
//! - `users.lock` is held *shared* by every process that uses a service, for its lifetime —
//!   the kernel drops it when the process exits, even on `kill -9`;
//! - a small reaper (`reaper.sh`, started with the first service) stops every daemon listed in
//!   `pids` once nobody has held `users.lock` for a grace period (default 20 s,
//!   `LIFEBOAT_TEST_SERVICES_GRACE`), then deletes the state.
//!
//! So services live exactly as long as a run needs them, and one test still runs alone with
//! `cargo test -p lifeboat-tests --test smoke rbd`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use crate::HarnessError;
use crate::process::{Daemon, pid_alive};

/// Bumped when the on-disk state or service settings change, so a newer harness never reuses
/// services an older one configured.
pub const STATE_VERSION: u32 = 2;

/// Where shared services keep their data, state and logs.
pub fn state_dir() -> PathBuf {
    std::env::var_os("LIFEBOAT_TEST_STATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("lifeboat-test-services"))
}

/// The `users.lock` this process holds shared for as long as it lives.
static USER_LOCK: OnceLock<File> = OnceLock::new();
/// Serialises set-up between threads of this process (flock is per open file description).
static SETUP_MUTEX: Mutex<()> = Mutex::new(());

/// Runs `f` with the cross-process set-up lock held and this process registered as a user.
pub fn with_setup_lock<T>(f: impl FnOnce(&Path) -> Result<T, HarnessError>) -> Result<T, HarnessError> {
    let dir = state_dir();
    std::fs::create_dir_all(&dir).map_err(|e| HarnessError::io(format!("create {}", dir.display()), e))?;
    let _guard = SETUP_MUTEX.lock().unwrap_or_else(|p| p.into_inner());
    let setup = open_lock(&dir.join("setup.lock"))?;
    setup.lock().map_err(|e| HarnessError::io("lock setup.lock", e))?;
    if USER_LOCK.get().is_none() {
        let users = open_lock(&dir.join("users.lock"))?;
        users
            .lock_shared()
            .map_err(|e| HarnessError::io("lock users.lock", e))?;
        let _ = USER_LOCK.set(users);
    }
    ensure_reaper(&dir)?;
    let result = f(&dir);
    drop(setup);
    result
}

fn open_lock(path: &Path) -> Result<File, HarnessError> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| HarnessError::io(format!("open {}", path.display()), e))
}

/// Adds a daemon to the list the reaper stops.
pub fn register(dir: &Path, daemon: &Daemon) -> Result<(), HarnessError> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("pids"))
        .map_err(|e| HarnessError::io("open pids", e))?;
    writeln!(f, "{} {}", daemon.pid, daemon.name).map_err(|e| HarnessError::io("write pids", e))
}

/// Reads a service's saved state if it was written by this harness version.
pub fn load_state<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    let text = std::fs::read_to_string(path).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    if value.get("version")?.as_u64()? != u64::from(STATE_VERSION) {
        return None;
    }
    serde_json::from_value(value.get("state")?.clone()).ok()
}

/// Saves a service's state for later processes.
pub fn save_state<T: serde::Serialize>(path: &Path, state: &T) -> Result<(), HarnessError> {
    let value = serde_json::json!({ "version": STATE_VERSION, "state": state });
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, value.to_string())
        .map_err(|e| HarnessError::io(format!("write {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path).map_err(|e| HarnessError::io(format!("rename {}", path.display()), e))
}

const REAPER: &str = r#"#!/bin/bash
# Stops Lifeboat's shared test services once no test process has used them for a while.
cd "$1" || exit 0
grace="${LIFEBOAT_TEST_SERVICES_GRACE:-20}"
while :; do
  idle=0
  while [ "$idle" -lt "$grace" ]; do
    sleep 1
    if flock -n -x users.lock true; then idle=$((idle + 1)); else idle=0; fi
  done
  exec 9>setup.lock
  flock -x 9
  # A process may have arrived between the last check and taking setup.lock.
  if flock -n -x users.lock true; then break; fi
  exec 9>&-
done
if [ -f pids ]; then
  while read -r pid name; do kill -TERM -- "-$pid" 2>/dev/null; done < pids
  sleep 3
  while read -r pid name; do kill -KILL -- "-$pid" 2>/dev/null; done < pids
fi
for d in *; do
  case "$d" in setup.lock|users.lock|reaper.pid|reaper.sh|reaper.log) ;; *) rm -rf -- "$d" ;; esac
done
rm -f reaper.pid
"#;

fn ensure_reaper(dir: &Path) -> Result<(), HarnessError> {
    let pid_file = dir.join("reaper.pid");
    if let Some(pid) = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        && pid_alive(pid)
    {
        return Ok(());
    }
    let script = dir.join("reaper.sh");
    std::fs::write(&script, REAPER).map_err(|e| HarnessError::io("write reaper.sh", e))?;
    let mut cmd = Command::new("bash");
    cmd.arg(&script).arg(dir);
    let reaper = Daemon::spawn("reaper", cmd, &dir.join("reaper.log"))?;
    std::fs::write(&pid_file, reaper.pid.to_string()).map_err(|e| HarnessError::io("write reaper.pid", e))
}
