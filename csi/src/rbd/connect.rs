//! Connections to Ceph clusters, opened with credentials from CSI secrets and cached by
//! (monitors, user, key digest) so a burst of CreateVolume calls pays for one handshake.
//!
//! librados reads monitors and key from a config file: it is written 0600 into a 0700
//! directory, read by `rados_connect`, and removed before the call returns.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use lifeboat_rbd::Cluster;
use sha2::{Digest, Sha256};

use crate::error::{CsiError, Result};
use crate::secrets::Credentials;

/// Open cluster handles.
#[derive(Clone)]
pub struct Connections {
    dir: PathBuf,
    cache: Arc<Mutex<HashMap<String, Cluster>>>,
    /// One connect at a time per cache key: a burst for one cluster pays for one handshake,
    /// while a connect that hangs (monitors down, a key the monitors refuse: up to 30 s) holds
    /// up only the calls with the same monitors and credentials.
    connecting: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    counter: Arc<AtomicU64>,
}

impl Connections {
    /// `dir` holds the short-lived config files (created 0700 if missing).
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            cache: Arc::default(),
            connecting: Arc::default(),
            counter: Arc::default(),
        }
    }

    /// A connection to `monitors` as `creds`, reused when one is open.
    pub async fn get(&self, monitors: &[String], creds: &Credentials) -> Result<Cluster> {
        let key = cache_key(monitors, creds);
        if let Some(c) = self.lookup(&key) {
            return Ok(c);
        }
        let gate = self
            .connecting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.clone())
            .or_default()
            .clone();
        let held = gate.lock().await;
        let result = match self.lookup(&key) {
            Some(c) => Ok(c),
            None => self.connect(&key, monitors, creds).await,
        };
        // The gate is only needed while a connect runs; drop it once nobody waits on it.
        drop(held);
        let mut gates = self.connecting.lock().unwrap_or_else(|p| p.into_inner());
        if gates.get(&key).is_some_and(|g| Arc::strong_count(g) <= 2) {
            gates.remove(&key);
        }
        result
    }

    async fn connect(&self, key: &str, monitors: &[String], creds: &Credentials) -> Result<Cluster> {
        let conf = self.write_conf(monitors, creds)?;
        let user = creds.user.clone();
        let conf_path = conf.0.clone();
        let connected = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            tokio::task::spawn_blocking(move || Cluster::connect(&user, &conf_path)),
        )
        .await;
        drop(conf);
        // librados answers a key the monitors refuse as it does monitors that do not answer:
        // it retries until its timeout (`handle_auth_bad_method` in its log meanwhile).
        let refused_key_too = "; a key the monitors refuse times out the same way, so check the user and key in \
             the secret as well as the monitors";
        let cluster = match connected {
            Err(_) => {
                return Err(CsiError::Unavailable(format!(
                    "connect to Ceph monitors {monitors:?} as {}: timed out{refused_key_too}",
                    creds.user
                )));
            }
            Ok(Err(e)) => return Err(CsiError::Internal(format!("connect task: {e}"))),
            Ok(Ok(Err(e))) => {
                let timed_out = e.errno() == Some(libc::ETIMEDOUT);
                return Err(CsiError::Unavailable(format!(
                    "connect to Ceph monitors {monitors:?} as {}: {}{}",
                    creds.user,
                    e.errno().map_or("connection failed".to_string(), |n| {
                        std::io::Error::from_raw_os_error(n).to_string()
                    }),
                    if timed_out { refused_key_too } else { "" }
                )));
            }
            Ok(Ok(Ok(c))) => c,
        };
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_string(), cluster.clone());
        Ok(cluster)
    }

    /// Forgets a connection that failed, so the next call reconnects.
    pub fn forget(&self, monitors: &[String], creds: &Credentials) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&cache_key(monitors, creds));
    }

    fn lookup(&self, key: &str) -> Option<Cluster> {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    /// Writes a ceph.conf with monitors and key (librados and rbd-fuse give up on monitors that
    /// do not answer, or refuse the key, after 30 s); removed when the returned guard drops.
    pub fn write_conf(&self, monitors: &[String], creds: &Credentials) -> Result<TempConf> {
        write_conf(&self.dir, &self.counter, monitors, creds)
    }
}

fn cache_key(monitors: &[String], creds: &Credentials) -> String {
    let digest = Sha256::digest(creds.key().as_bytes());
    format!(
        "{}|{}|{}",
        monitors.join(","),
        creds.user,
        hex::encode(&digest[..8])
    )
}

/// A config file that is deleted on drop.
pub struct TempConf(pub PathBuf);

impl Drop for TempConf {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn write_conf(
    dir: &PathBuf,
    counter: &AtomicU64,
    monitors: &[String],
    creds: &Credentials,
) -> Result<TempConf> {
    let io = |what: &str, e: std::io::Error| CsiError::Internal(format!("{what} in {}: {e}", dir.display()));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io("create dir", e))?;
    if monitors.is_empty()
        || monitors
            .iter()
            .any(|m| m.is_empty() || m.contains(['\n', ';', '#', '=']))
    {
        return Err(CsiError::InvalidArgument(
            "monitors must be a list of host:port addresses".into(),
        ));
    }
    let path = dir.join(format!(
        "ceph-{}-{}.conf",
        std::process::id(),
        counter.fetch_add(1, Ordering::Relaxed)
    ));
    let guard = TempConf(path.clone());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| io("create config", e))?;
    let text = zeroize::Zeroizing::new(format!(
        "[global]\nmon host = {}\nkey = {}\nauth client required = cephx\nclient mount timeout = 30\nlog to stderr = false\nerr to stderr = false\n",
        monitors.join(","),
        creds.key()
    ));
    f.write_all(text.as_bytes()).map_err(|e| io("write config", e))?;
    Ok(guard)
}
