//! Watches the test Ceph's OSD keeps for clients that are gone.
//!
//! Ceph 16.2.15 (what the tests run; fixed upstream by ceph/ceph pull request 50861) loses the
//! timeout of a watch whose client dies while the watch op is being committed: the OSD records
//! the watcher in the object's info on disk but, finding the client's session already reset,
//! never builds the in-memory watch that would time it out (Ceph tracker 58120). `rados
//! listwatchers` and librbd then list that watcher forever, so librbd refuses to remove the
//! image ("image has watchers"). Seen here when a fault campaign kills the CSI driver while
//! it opens an image it is creating. The watch goes once the OSD reloads the object (its
//! context evicted from the PG's cache, the PG re-peered or the OSD restarted), which then
//! times it out as any other watch of a gone client.

use std::collections::BTreeSet;
use std::process::Command;

use crate::HarnessError;
use crate::process::run;
use crate::services::ceph::Ceph;

/// One watch listed on an object but held by no client session of its OSD.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StaleWatch {
    /// The watched object (`rbd_header.1042ac969ed3`).
    pub object: String,
    /// The client that registered it (`client.4188`).
    pub client: String,
    /// The watch cookie.
    pub cookie: u64,
}

impl Ceph {
    /// The watches on `pool`'s objects named `prefix…` (`rbd_header.`: image headers) that
    /// `rados listwatchers` lists and no OSD holds in memory (`ceph tell osd.N dump_watchers`):
    /// listed twice, 2 s apart, so a watch being registered in between is not mistaken for one.
    pub fn stale_watches(&self, pool: &str, prefix: &str) -> Result<Vec<StaleWatch>, HarnessError> {
        let first = self.unheld_watches(pool, prefix)?;
        if first.is_empty() {
            return Ok(Vec::new());
        }
        std::thread::sleep(std::time::Duration::from_secs(2));
        let second = self.unheld_watches(pool, prefix)?;
        Ok(first.intersection(&second).cloned().collect())
    }

    /// Makes the OSDs reload the object contexts of `pool` (each PG caches 64 by default):
    /// writes, then removes, 2,000 small objects `stale-watch-evict-N`. A stale watch is then
    /// rebuilt from disk and times out within `osd_client_watch_timeout` (30 s). An object
    /// another client still watches stays loaded: call again once those watches have lapsed.
    pub fn reload_object_contexts(&self, pool: &str) -> Result<(), HarnessError> {
        let cluster = self.connect()?;
        let pool_handle = cluster
            .pool(pool)
            .map_err(|e| harness(format!("open pool {pool}: {e}")))?;
        for i in 0..2000 {
            pool_handle
                .write_object(&format!("stale-watch-evict-{i}"), b"x")
                .map_err(|e| harness(format!("evict object contexts of {pool}: {e}")))?;
        }
        for i in 0..2000 {
            pool_handle
                .remove_object(&format!("stale-watch-evict-{i}"))
                .map_err(|e| harness(format!("evict object contexts of {pool}: {e}")))?;
        }
        Ok(())
    }

    /// Stops the OSD processes (SIGSTOP) until the guard is dropped (SIGCONT): their sockets
    /// stay open, so a client's ops queue up unread, as behind an OSD stalled on its disk.
    pub fn stop_osd_processes(&self) -> Result<OsdsStopped, HarnessError> {
        let guard = OsdsStopped(self.osd_pids());
        run("kill", Command::new("kill").arg("-STOP").args(&guard.0))?;
        Ok(guard)
    }

    /// Continues OSD processes a killed test left stopped (SIGCONT; harmless to running ones).
    pub(crate) fn continue_osds(&self) {
        drop(OsdsStopped(self.osd_pids()));
    }

    fn osd_pids(&self) -> Vec<String> {
        self.daemons()
            .iter()
            .filter(|d| d.name.starts_with("ceph-osd"))
            .map(|d| d.pid.to_string())
            .collect()
    }

    fn unheld_watches(&self, pool: &str, prefix: &str) -> Result<BTreeSet<StaleWatch>, HarnessError> {
        let mut held = BTreeSet::new();
        for osd in run("ceph", self.ceph_cmd().args(["osd", "ls"]))?.split_whitespace() {
            let dump = run(
                "ceph",
                self.ceph_cmd()
                    .args(["tell", &format!("osd.{osd}"), "dump_watchers"]),
            )?;
            let bad = |what: &str| harness(format!("osd.{osd} dump_watchers: {what} in {dump}"));
            let parsed: serde_json::Value = serde_json::from_str(&dump).map_err(|e| bad(&e.to_string()))?;
            // `[{"object": "x", "entity_name": {"type": "client", "num": 7420}, "cookie": 1, …}]`
            for w in parsed.as_array().ok_or_else(|| bad("no array"))? {
                let num = w["entity_name"]["num"].as_u64();
                held.insert(StaleWatch {
                    object: w["object"].as_str().ok_or_else(|| bad("no object"))?.to_string(),
                    client: format!("client.{}", num.ok_or_else(|| bad("no entity_name.num"))?),
                    cookie: w["cookie"].as_u64().ok_or_else(|| bad("no cookie"))?,
                });
            }
        }
        let mut listed = BTreeSet::new();
        let objects = run("rados", self.rados_cmd().args(["-p", pool, "ls"]))?;
        for object in objects.lines().filter(|o| o.starts_with(prefix)) {
            let Ok(watchers) = run(
                "rados",
                self.rados_cmd().args(["-p", pool, "listwatchers", object]),
            ) else {
                continue; // removed since listed
            };
            // `watcher=127.0.0.1:0/2461669363 client.7355 cookie=868311712`
            for line in watchers.lines().filter(|l| !l.trim().is_empty()) {
                let parsed = match line.split_whitespace().collect::<Vec<_>>()[..] {
                    [watcher, client, cookie]
                        if watcher.starts_with("watcher=") && client.starts_with("client.") =>
                    {
                        cookie
                            .strip_prefix("cookie=")
                            .and_then(|c| c.parse().ok())
                            .map(|cookie| (client, cookie))
                    }
                    _ => None,
                };
                let (client, cookie) = parsed.ok_or_else(|| {
                    harness(format!("rados listwatchers {object}: unexpected line {line:?}"))
                })?;
                listed.insert(StaleWatch {
                    object: object.to_string(),
                    client: client.to_string(),
                    cookie,
                });
            }
        }
        Ok(listed.difference(&held).cloned().collect())
    }
}

fn harness(reason: String) -> HarnessError {
    HarnessError::Start {
        service: "ceph".into(),
        reason,
        log_tail: String::new(),
    }
}

/// OSD processes stopped by [`Ceph::stop_osd_processes`]; continued when dropped.
pub struct OsdsStopped(Vec<String>);

impl Drop for OsdsStopped {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-CONT").args(&self.0).status();
    }
}
