//! Connecting with monitors and a key given as values (a Kubernetes Secret, a CSI driver's
//! config) rather than a `ceph.conf` and keyring on disk.
//!
//! librados reads both from a config file: it is written 0600 into a fresh 0700 directory,
//! read by `rados_connect`, and removed before this returns, whatever the outcome.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::cluster::Cluster;
use crate::error::RbdError;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Removes the directory (and the config in it) on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Cluster {
    /// Connects as `user` (without `client.`) to `monitors` (`host:port` or `v2:`/`v1:`
    /// addresses) with the base64 cephx `key`. The key is written only to a 0600 file in a
    /// private directory under `dir` that is removed before this returns; errors name the
    /// user and monitors, never the key.
    pub fn connect_with_key(
        dir: &Path,
        user: &str,
        monitors: &[String],
        key: &str,
    ) -> Result<Self, RbdError> {
        let bad = |message: &str| RbdError::Connect {
            user: user.to_string(),
            config: format!("monitors {}", monitors.join(",")),
            message: message.to_string(),
        };
        let clean = |s: &str| !s.is_empty() && !s.contains(['\n', '\r', ';', '#', '=', '[', ']', ' ']);
        if monitors.is_empty()
            || !monitors
                .iter()
                .all(|m| clean(m.trim_start_matches('[').trim_end_matches(']')))
        {
            return Err(bad("monitors must be host:port addresses"));
        }
        if !clean(user)
            || !user
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(bad("the cephx user must be [A-Za-z0-9._-]"));
        }
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c))
        {
            return Err(bad("the key is not a base64 cephx key"));
        }
        let private = dir.join(format!(
            "lifeboat-ceph-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let io = |what: &str, e: std::io::Error| bad(&format!("{what} {}: {e}", private.display()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&private)
            .map_err(|e| io("create", e))?;
        let guard = TempDir(private.clone());
        let conf = guard.0.join("ceph.conf");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&conf)
            .map_err(|e| io("create config in", e))?;
        let text = format!(
            "[global]\nmon host = {}\nkey = {key}\nauth client required = cephx\nclient mount timeout = 30\nlog to stderr = false\nerr to stderr = false\n",
            monitors.join(",")
        );
        let written = f.write_all(text.as_bytes());
        drop(f);
        // Overwrite the copy in memory; the file goes with the guard.
        let mut bytes = text.into_bytes();
        bytes.iter_mut().for_each(|b| *b = 0);
        written.map_err(|e| io("write config in", e))?;
        let connected = Self::connect(user, &conf);
        drop(guard);
        connected.map_err(|e| match e {
            RbdError::Connect { message, .. } => bad(&message),
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_is_refused_before_anything_is_written_and_never_echoes_the_key() {
        let dir = std::env::temp_dir();
        let mons = vec!["127.0.0.1:6789".to_string()];
        let cases: [(&str, &[String], &str); 4] = [
            ("admin", &[], "QUJDREVGRw=="),
            ("admin", &["10.0.0.1:6789\nkey = x".to_string()], "QUJDREVGRw=="),
            ("ad min", &mons, "QUJDREVGRw=="),
            ("admin", &mons, "secret-but-not-base64\nmon host = evil"),
        ];
        for (user, monitors, key) in cases {
            let e = match Cluster::connect_with_key(&dir, user, monitors, key) {
                Err(e) => e.to_string(),
                Ok(_) => panic!("{user:?} {monitors:?} connected"),
            };
            assert!(!e.contains("QUJD") && !e.contains("secret-but"), "{e}");
        }
    }
}
