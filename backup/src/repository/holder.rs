//! Who holds a lock, and whether that process still runs: a lock records its holder's host,
//! boot, PID namespace, pid and process start time, so a lock left by a killed process on
//! this host is recognised as such (pids are reused; containers share a hostname with their
//! node but not its pids).

use chrono::{DateTime, Utc};

use super::LockInfo;

/// Facts about this process's host that decide whether a lock's holder can be checked here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThisHost {
    /// `/proc/sys/kernel/hostname`.
    pub hostname: String,
    /// `/proc/sys/kernel/random/boot_id`: changes at every boot.
    pub boot_id: Option<String>,
    /// The PID namespace (`/proc/self/ns/pid` link text, e.g. `pid:[4026531836]`).
    pub pid_namespace: Option<String>,
}

impl ThisHost {
    /// This host, as the kernel describes it.
    pub fn current() -> Self {
        Self {
            hostname: super::hostname(),
            boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
            pid_namespace: std::fs::read_link("/proc/self/ns/pid")
                .ok()
                .map(|p| p.display().to_string()),
        }
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// When process `pid` started (clock ticks after boot, field 22 of `/proc/<pid>/stat`), or
/// `None` when no such process runs.
///
/// A zombie (state `Z`: it has exited and its parent has not reaped it yet, as when a shell
/// and its child are killed together and nothing waits for the child) or a dying process
/// (`X`) no longer runs, although `/proc/<pid>` is still there.
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    start_of_running(&stat)
}

/// The start time in a `/proc/<pid>/stat` line (proc(5)), or `None` when the line is
/// malformed or describes a process that has exited (state `Z` or `X`).
fn start_of_running(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    if matches!(fields.next()?, "Z" | "X" | "x") {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// Whether a lock's holder still runs, as far as this host can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HolderState {
    /// The holding process runs on this host.
    Running,
    /// The holder is certainly gone; why.
    Gone(String),
    /// It cannot be checked from here; why.
    Unknown(String),
}

/// Decides whether `lock`'s holder still runs, from this host's facts and a way to find a
/// process's start time (`None`: not running). Pure, so every case is tested.
pub fn holder_state(lock: &LockInfo, here: &ThisHost, start_of: impl Fn(u32) -> Option<u64>) -> HolderState {
    if lock.hostname != here.hostname {
        return HolderState::Unknown(format!(
            "it is held on host {}, and this is {}",
            lock.hostname, here.hostname
        ));
    }
    if let (Some(theirs), Some(ours)) = (&lock.boot_id, &here.boot_id)
        && theirs != ours
    {
        return HolderState::Gone(format!("{} has rebooted since the lock was taken", lock.hostname));
    }
    match (&lock.pid_namespace, &here.pid_namespace) {
        (Some(theirs), Some(ours)) if theirs == ours => {}
        (Some(_), Some(_)) => {
            return HolderState::Unknown(
                "it was taken in another PID namespace (another container) on this host".to_string(),
            );
        }
        _ => {
            return HolderState::Unknown(
                "the lock does not say which PID namespace it was taken in".to_string(),
            );
        }
    }
    match (start_of(lock.pid), lock.process_start) {
        (None, _) => HolderState::Gone(format!("process {} is no longer running", lock.pid)),
        (Some(now), Some(then)) if now != then => HolderState::Gone(format!(
            "process {} ended (its pid now belongs to another process)",
            lock.pid
        )),
        _ => HolderState::Running,
    }
}

/// "pid 123 on node-1, exclusive lock for prune, taken 5m 3s ago".
pub fn describe(lock: &LockInfo, now: DateTime<Utc>) -> String {
    format!(
        "pid {} on {}, {} lock for {}, taken {} ago",
        lock.pid,
        lock.hostname,
        match lock.kind {
            super::LockKind::Shared => "shared",
            super::LockKind::Exclusive => "exclusive",
        },
        lock.purpose,
        age((now - lock.created).to_std().unwrap_or_default())
    )
}

/// A duration as people say it: `42s`, `5m 3s`, `2h 10m`, `3d 4h`.
fn age(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::LockKind;

    fn lock() -> LockInfo {
        let t = Utc::now();
        LockInfo {
            kind: LockKind::Exclusive,
            purpose: "prune".into(),
            hostname: "node-1".into(),
            pid: 4242,
            created: t - chrono::Duration::seconds(303),
            expires: t,
            boot_id: Some("boot-a".into()),
            pid_namespace: Some("pid:[1]".into()),
            process_start: Some(777),
        }
    }

    fn here() -> ThisHost {
        ThisHost {
            hostname: "node-1".into(),
            boot_id: Some("boot-a".into()),
            pid_namespace: Some("pid:[1]".into()),
        }
    }

    #[test]
    fn a_dead_or_replaced_holder_on_this_host_is_gone() {
        let l = lock();
        assert_eq!(holder_state(&l, &here(), |_| Some(777)), HolderState::Running);
        assert!(matches!(
            holder_state(&l, &here(), |_| None),
            HolderState::Gone(_)
        ));
        assert!(matches!(
            holder_state(&l, &here(), |_| Some(778)),
            HolderState::Gone(_)
        ));
        let rebooted = ThisHost {
            boot_id: Some("boot-b".into()),
            ..here()
        };
        assert!(matches!(
            holder_state(&l, &rebooted, |_| Some(777)),
            HolderState::Gone(_)
        ));
    }

    #[test]
    fn holders_elsewhere_are_never_judged_from_here() {
        let l = lock();
        let other_host = ThisHost {
            hostname: "node-2".into(),
            ..here()
        };
        assert!(matches!(
            holder_state(&l, &other_host, |_| None),
            HolderState::Unknown(_)
        ));
        let container = ThisHost {
            pid_namespace: Some("pid:[2]".into()),
            ..here()
        };
        assert!(matches!(
            holder_state(&l, &container, |_| None),
            HolderState::Unknown(_)
        ));
        let old_format = LockInfo {
            pid_namespace: None,
            ..lock()
        };
        assert!(matches!(
            holder_state(&old_format, &here(), |_| None),
            HolderState::Unknown(_)
        ));
    }

    #[test]
    fn an_exited_process_not_yet_reaped_is_not_running() {
        let line = |state: &str| {
            format!("4147 (drctl (x) y) {state} 1 4147 4147 0 -1 4194560 1 0 0 0 3 1 0 0 20 0 9 0 777 1 2")
        };
        assert_eq!(start_of_running(&line("S")), Some(777));
        assert_eq!(start_of_running(&line("R")), Some(777));
        assert_eq!(start_of_running(&line("Z")), None);
        assert_eq!(start_of_running(&line("X")), None);
        assert_eq!(start_of_running("4147 (drctl"), None);

        // A real zombie: killed and not waited for.
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        assert!(process_start(pid).is_some());
        child.kill().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while process_start(pid).is_some() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(
            std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "still a zombie"
        );
        assert_eq!(process_start(pid), None);
        child.wait().unwrap();
    }

    #[test]
    fn descriptions_name_holder_operation_and_age() {
        let l = lock();
        let text = describe(&l, l.expires);
        assert_eq!(
            text,
            "pid 4242 on node-1, exclusive lock for prune, taken 5m 3s ago"
        );
        assert!(process_start(std::process::id()).is_some());
    }
}
