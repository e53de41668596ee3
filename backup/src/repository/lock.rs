//! Repository locks. Backups, forgets and restores hold shared locks and run side by side;
//! prune holds an exclusive one. A lock is a small plaintext object that expires unless its
//! holder refreshes it, so a crashed holder cannot block the repository forever.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::error::LockAdvice;
use super::holder::{HolderState, ThisHost, describe, holder_state, process_start};
use super::object_io::Objects;
use super::{RepoError, Repository};
use crate::blob::Id;

/// How a holder keeps its lock alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockTimings {
    /// How long a lock lives without a refresh (30 minutes).
    pub ttl: Duration,
    /// How often a live holder refreshes (every 5 minutes).
    pub refresh: Duration,
    /// How soon a failed refresh is tried again (30 seconds). Once the next try would come
    /// later than `refresh` before the lock lapses, the holder gives up and its operation is
    /// stopped ([`RepoError::LockLost`]): past that point another process may take an
    /// exclusive lock (prune) and delete what the operation relies on.
    pub retry: Duration,
}

impl Default for LockTimings {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(30 * 60),
            refresh: Duration::from_secs(5 * 60),
            retry: Duration::from_secs(30),
        }
    }
}

/// Shared or exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockKind {
    /// Compatible with other shared locks (backup, restore, forget, check).
    Shared,
    /// Alone (prune).
    Exclusive,
}

/// A lock object's content.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LockInfo {
    /// Shared or exclusive.
    pub kind: LockKind,
    /// What the holder is doing.
    pub purpose: String,
    /// The holder's host.
    pub hostname: String,
    /// The holder's process id.
    pub pid: u32,
    /// When it was taken.
    pub created: DateTime<Utc>,
    /// When it lapses unless refreshed.
    pub expires: DateTime<Utc>,
    /// The holder's boot (`/proc/sys/kernel/random/boot_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// The holder's PID namespace (`/proc/self/ns/pid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_namespace: Option<String>,
    /// When the holding process started (clock ticks after boot), so a reused pid is told
    /// apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_start: Option<u64>,
}

/// What `repo unlock` did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct UnlockReport {
    /// Locks removed, each described with why it could go.
    pub removed: Vec<String>,
    /// Locks left in place, each described with why.
    pub kept: Vec<String>,
}

/// Deletions of locks whose guards were dropped (cancelled operations) still running, so a
/// process that ends on a signal can wait for them ([`finish_dropped_releases`]).
static DROPPED_RELEASES: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>> =
    std::sync::Mutex::new(Vec::new());

/// Waits up to `within` for the deletions of locks whose guards were dropped: a process
/// stopping on SIGINT/SIGTERM drops its operation, then calls this before it exits, so its
/// locks do not stay behind until their TTL.
pub async fn finish_dropped_releases(within: std::time::Duration) {
    let handles = std::mem::take(&mut *DROPPED_RELEASES.lock().unwrap_or_else(|p| p.into_inner()));
    let _ = tokio::time::timeout(within, futures::future::join_all(handles)).await;
}

/// A held lock; refreshed in the background until [`LockGuard::release`] or drop.
pub struct LockGuard {
    objects: Objects,
    key: String,
    url: String,
    refresher: tokio::task::JoinHandle<()>,
    /// Set (with the store's answer) when the lock could not be refreshed in time.
    lost: watch::Receiver<Option<String>>,
    released: bool,
}

impl LockGuard {
    /// Deletes the lock object.
    pub async fn release(mut self) -> Result<(), RepoError> {
        self.refresher.abort();
        self.released = true;
        tracing::debug!(lock = %self.key, "lock released");
        self.objects.delete(&self.key).await
    }

    /// Deletes the lock object at the end of an operation whose outcome does not depend on
    /// it: a failure is logged as a warning naming the lock, which then lapses after its TTL
    /// or goes with `repo unlock` once this process has ended.
    pub async fn release_or_warn(self) {
        let (key, url) = (self.key.clone(), self.url.clone());
        if let Err(e) = self.release().await {
            tracing::warn!(
                "could not remove the lock {key} of {url} when done ({e}); it lapses after its time \
                 to live, or unlocking the repository removes it once this process has ended"
            );
        }
    }

    /// Resolves when the lock could not be refreshed before it would lapse, with the error
    /// that says why; never resolves while refreshes succeed.
    pub async fn lost(&self) -> RepoError {
        let mut lost = self.lost.clone();
        loop {
            if let Some(why) = lost.borrow_and_update().clone() {
                return RepoError::LockLost {
                    url: self.url.clone(),
                    why,
                };
            }
            if lost.changed().await.is_err() {
                // The refresher stopped without losing the lock (released or dropped).
                std::future::pending::<()>().await;
            }
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.refresher.abort();
        if self.released {
            return;
        }
        // Dropped without a release (the operation was cancelled): delete the lock in the
        // background if a runtime is still running; otherwise it lapses after its TTL.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (objects, key) = (self.objects.clone(), self.key.clone());
            let deletion = runtime.spawn(async move {
                let _ = objects.delete(&key).await;
            });
            let mut pending = DROPPED_RELEASES.lock().unwrap_or_else(|p| p.into_inner());
            pending.retain(|h| !h.is_finished());
            pending.push(deletion);
        }
    }
}

/// This machine's name, recorded in locks and snapshots.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

impl Repository {
    /// Runs `work` under a lock and releases it afterwards, whatever `work` returned. If the
    /// lock cannot be refreshed in time, `work` is dropped (cancelled at its next await) and
    /// the result is [`RepoError::LockLost`]. A release that fails does not change the result
    /// (the operation is done, or failed, either way): see [`LockGuard::release_or_warn`].
    pub async fn while_locked<T, E: From<RepoError>>(
        &self,
        kind: LockKind,
        purpose: &str,
        work: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        if !self.locking {
            // `--no-lock` (read-only commands on a repository that cannot be written).
            return work.await;
        }
        let lock = self.lock(kind, purpose).await?;
        let result = tokio::select! {
            result = work => result,
            lost = lock.lost() => Err(lost.into()),
        };
        lock.release_or_warn().await;
        result
    }

    /// Takes a lock, or fails naming the holder of a conflicting one.
    pub async fn lock(&self, kind: LockKind, purpose: &str) -> Result<LockGuard, RepoError> {
        let objects = self.objects();
        let timings = self.lock_timings;
        let key = format!("locks/{}", Id::random().to_hex()[..24].to_owned());
        let purpose = purpose.to_string();
        let host = ThisHost::current();
        let pid = std::process::id();
        let started = process_start(pid);
        let info = move |now: DateTime<Utc>| LockInfo {
            kind,
            purpose: purpose.clone(),
            hostname: host.hostname.clone(),
            pid,
            created: now,
            expires: now
                + chrono::Duration::from_std(timings.ttl).unwrap_or_else(|_| chrono::Duration::minutes(30)),
            boot_id: host.boot_id.clone(),
            pid_namespace: host.pid_namespace.clone(),
            process_start: started,
        };
        fn encode(i: &LockInfo) -> Vec<u8> {
            serde_json::to_vec(i).unwrap_or_default()
        }
        objects
            .put_overwrite(&key, encode(&info(Utc::now())).into())
            .await
            .map_err(|e| RepoError::LockNotWritten {
                url: self.url.clone(),
                message: e.to_string(),
            })?;

        // With ours visible, look for others: whoever sees a conflict backs off, so two
        // racing takers may both fail, but never both succeed.
        let now = Utc::now();
        for other in self.lock_keys().await? {
            if other == key {
                continue;
            }
            let Ok(bytes) = objects.get(&other).await else {
                continue;
            };
            let theirs = match serde_json::from_slice::<LockInfo>(&bytes) {
                Ok(theirs) => theirs,
                Err(e) => {
                    tracing::warn!(
                        "{other} in {} is not a readable lock ({e}), ignored; unlocking the repository removes it",
                        self.url
                    );
                    continue;
                }
            };
            if theirs.expires < now {
                continue;
            }
            if kind == LockKind::Exclusive || theirs.kind == LockKind::Exclusive {
                let here = ThisHost::current();
                let state = holder_state(&theirs, &here, process_start);
                let same_boot = theirs.boot_id.is_some() && theirs.boot_id == here.boot_id;
                if let (HolderState::Gone(why), true) = (&state, same_boot) {
                    // A holder this very kernel can prove dead (same boot and pid namespace,
                    // process gone or replaced) protects nothing: its lock is stale, as restic
                    // treats one. Remove it and go on rather than block until it expires. A
                    // different boot id alone proves nothing (another machine may share the
                    // host name), so that case still waits for an unlock.
                    match objects.delete(&other).await {
                        Ok(()) | Err(RepoError::NotFound { .. }) => {
                            tracing::warn!(
                                "removed a stale lock {other} in {}: {} ({why})",
                                self.url,
                                describe(&theirs, now)
                            );
                            continue;
                        }
                        Err(e) => {
                            tracing::warn!("could not remove the stale lock {other} in {}: {e}", self.url);
                        }
                    }
                }
                objects.delete(&key).await?;
                let advice = match state {
                    HolderState::Running => LockAdvice::Wait,
                    HolderState::Gone(why) => LockAdvice::HolderGone { why },
                    HolderState::Unknown(why) => LockAdvice::HolderUnknown {
                        host: theirs.hostname.clone(),
                        why,
                    },
                };
                return Err(RepoError::Locked {
                    url: self.url.clone(),
                    holder: describe(&theirs, now),
                    advice,
                    expires: theirs.expires.to_rfc3339(),
                });
            }
        }

        let refresh_objects = objects.clone();
        let refresh_key = key.clone();
        let created = info(Utc::now()).created;
        let (lost_tx, lost) = watch::channel(None);
        let refresher = tokio::spawn(async move {
            let objects = Arc::new(refresh_objects);
            let mut refreshed = tokio::time::Instant::now();
            loop {
                tokio::time::sleep_until(refreshed + timings.refresh).await;
                // Retry a failed refresh until the next try would come too close to the lapse.
                let give_up = refreshed + timings.ttl.saturating_sub(timings.refresh);
                loop {
                    let mut i = info(Utc::now());
                    i.created = created;
                    match objects.put_overwrite(&refresh_key, encode(&i).into()).await {
                        Ok(()) => {
                            refreshed = tokio::time::Instant::now();
                            break;
                        }
                        Err(e) if tokio::time::Instant::now() + timings.retry >= give_up => {
                            let _ = lost_tx.send(Some(e.to_string()));
                            return;
                        }
                        Err(e) => {
                            tracing::warn!("could not refresh lock {refresh_key} (trying again): {e}");
                            tokio::time::sleep(timings.retry).await;
                        }
                    }
                }
            }
        });
        tracing::debug!(repository = %self.url, lock = %key, ?kind, "lock taken");
        Ok(LockGuard {
            objects,
            key,
            url: self.url.clone(),
            refresher,
            lost,
            released: false,
        })
    }

    /// Deletes locks whose holders stopped refreshing them (prune, holding the exclusive
    /// lock, tidies up so).
    pub(crate) async fn remove_expired_locks(&self) -> Result<usize, RepoError> {
        let objects = self.objects();
        let now = Utc::now();
        let mut removed = 0;
        for key in self.lock_keys().await? {
            let Ok(bytes) = objects.get(&key).await else {
                continue;
            };
            let stale = serde_json::from_slice::<LockInfo>(&bytes).map_or(true, |l| l.expires < now);
            if stale {
                objects.delete(&key).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// `repo unlock`: deletes every lock that has expired, whose content is unreadable, or whose
    /// holder ran on this host and is no longer running (killed, crashed, or the host
    /// rebooted). With `remove_all`, every other lock too: only for operators who have made
    /// sure the holders are gone, since a live holder's work is then unprotected.
    pub async fn unlock(&self, remove_all: bool) -> Result<UnlockReport, RepoError> {
        let objects = self.objects();
        let now = Utc::now();
        let here = ThisHost::current();
        let mut report = UnlockReport::default();
        for key in self.lock_keys().await? {
            let bytes = match objects.get(&key).await {
                Ok(b) => b,
                Err(RepoError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            let (described, why_removable) = match serde_json::from_slice::<LockInfo>(&bytes) {
                Err(e) => (key.clone(), Ok(format!("unreadable: {e}"))),
                Ok(lock) => {
                    let why = if lock.expires < now {
                        Ok("expired".to_string())
                    } else {
                        match holder_state(&lock, &here, process_start) {
                            HolderState::Gone(why) => Ok(why),
                            HolderState::Running => Err("its holder is running".to_string()),
                            HolderState::Unknown(why) => Err(why),
                        }
                    };
                    (describe(&lock, now), why)
                }
            };
            match why_removable {
                Ok(why) => {
                    objects.delete(&key).await?;
                    report.removed.push(format!("{described}: {why}"));
                }
                Err(why) if remove_all => {
                    objects.delete(&key).await?;
                    report.removed.push(format!(
                        "{described}: removed although {why} (removing every lock was asked for)"
                    ));
                }
                Err(why) => report.kept.push(format!("{described}: {why}")),
            }
        }
        Ok(report)
    }
}
