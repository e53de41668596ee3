//! Backups and restores running in this process. A resource found InProgress that is not
//! in here was interrupted (controller restart, lost leadership) and is run again.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use kube::Api;
use lifeboat_backup::progress::Progress;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::task::AbortHandle;

use super::outcome::{Failure, MAX_VOLUMES_IN_STATUS};
use super::status::write_status;
use crate::crd::{Progress as ProgressStatus, VolumeProgress};

/// The counters of each volume a run moves, by claim (`namespace/name`), for a status's
/// `volumeProgress`; the run's `progress` adds their bytes up.
#[derive(Debug, Default, Clone)]
pub struct VolumeBoard {
    volumes: Arc<Mutex<Vec<Tracked>>>,
}

/// One claim (`namespace/name`) and its counters.
type Tracked = (String, Arc<Progress>);

impl VolumeBoard {
    /// New counters for `claim`.
    pub fn track(&self, claim: &str) -> Arc<Progress> {
        let progress = Arc::new(Progress::default());
        if let Ok(mut v) = self.volumes.lock() {
            v.push((claim.to_string(), progress.clone()));
        }
        progress
    }

    /// Each claim's progress (at most [`MAX_VOLUMES_IN_STATUS`]), and the bytes of all.
    pub fn status(&self) -> (Vec<VolumeProgress>, u64, u64) {
        let Ok(v) = self.volumes.lock() else {
            return (Vec::new(), 0, 0);
        };
        let (mut done, mut total) = (0, 0);
        let mut out = Vec::new();
        for (claim, p) in v.iter() {
            let (bytes_done, total_bytes) = p.bytes();
            let (items_done, items) = p.items();
            done += bytes_done;
            total += total_bytes;
            if out.len() < MAX_VOLUMES_IN_STATUS {
                out.push(VolumeProgress {
                    claim: claim.clone(),
                    total_bytes,
                    bytes_done,
                    done: items > 0 && items_done >= items,
                });
            }
        }
        (out, done, total)
    }

    /// The run's final counters: `progress`'s, with the volumes' bytes added (the list is
    /// cleared at the end of a run).
    pub fn final_progress(&self, progress: &Progress) -> ProgressStatus {
        let mut out = progress_status(progress);
        let (_, done, total) = self.status();
        out.bytes_done += done;
        out.total_bytes += total;
        out
    }

    /// Copies the volumes into a status: their list, and their bytes added to `progress`.
    pub fn report(&self, progress: &mut ProgressStatus, volumes: &mut Vec<VolumeProgress>) {
        let (list, done, total) = self.status();
        progress.bytes_done += done;
        progress.total_bytes += total;
        *volumes = list;
    }
}

/// Runs in flight, by key (`kind/namespace/name/uid`).
#[derive(Debug, Default, Clone)]
pub struct Runs {
    inner: Arc<Mutex<HashMap<String, AbortHandle>>>,
}

impl Runs {
    /// Whether `key` runs here.
    pub fn is_running(&self, key: &str) -> bool {
        self.inner.lock().map(|m| m.contains_key(key)).unwrap_or(false)
    }

    /// Starts `run` under `key` unless it already runs; false if it did.
    pub fn start<F>(&self, key: String, run: F) -> bool
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Ok(mut map) = self.inner.lock() else {
            return false;
        };
        if map.contains_key(&key) {
            return false;
        }
        let inner = self.inner.clone();
        let k = key.clone();
        let handle = tokio::spawn(async move {
            run.await;
            if let Ok(mut m) = inner.lock() {
                m.remove(&k);
            }
        });
        map.insert(key, handle.abort_handle());
        true
    }

    /// Stops the run under `key`, if any (its resource is being deleted).
    pub fn abort(&self, key: &str) {
        if let Ok(mut m) = self.inner.lock()
            && let Some(h) = m.remove(key)
        {
            h.abort();
        }
    }

    /// Stops every run (leadership lost, shutdown); their resources stay InProgress and the
    /// next leader runs them again.
    pub fn abort_all(&self) {
        if let Ok(mut m) = self.inner.lock() {
            for (_, h) in m.drain() {
                h.abort();
            }
        }
    }
}

/// Runs the future `make` builds on a blocking thread of its own, for futures the compiler
/// cannot prove `Send` (the object backup and restore pipelines borrow across their stream
/// combinators). Dropping the returned future cancels the work at its next await point.
pub async fn off_thread<T, F, Fut>(make: F) -> Option<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    let handle = tokio::runtime::Handle::current();
    let (cancel_tx, cancel_rx) = tokio::sync::oneshot::channel::<()>();
    let joined = tokio::task::spawn_blocking(move || {
        handle.block_on(async move {
            tokio::select! {
                r = make() => Some(r),
                _ = cancel_rx => None,
            }
        })
    })
    .await;
    drop(cancel_tx);
    joined.ok().flatten()
}

/// The counters of a run as its resource's status shows them.
pub fn progress_status(p: &Progress) -> ProgressStatus {
    let (done, total) = p.items();
    let (bytes_done, total_bytes) = p.bytes();
    ProgressStatus {
        total_items: total,
        items_done: done,
        total_bytes,
        bytes_done,
    }
}

/// Runs the work `make` builds (off this thread, see [`off_thread`]) to its end, copying
/// `progress` into the resource's status every `interval` through `set`, so a long backup or
/// restore shows how far it has got. Returns the work's result (a cancelled run is a
/// transient failure) and the status as last written.
pub async fn run_reporting<K, S, T, F, Fut>(
    api: &Api<K>,
    name: &str,
    interval: std::time::Duration,
    mut current: S,
    progress: &Progress,
    set: impl Fn(&mut S, ProgressStatus),
    make: F,
) -> (Result<T, Failure>, S)
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
    S: Clone + PartialEq + Serialize,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, Failure>>,
    T: Send + 'static,
{
    let work = off_thread(make);
    tokio::pin!(work);
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    loop {
        tokio::select! {
            r = &mut work => {
                let result = r.unwrap_or_else(|| Err(Failure::Transient("cancelled".to_string())));
                return (result, current);
            }
            _ = ticker.tick() => {
                let mut next = current.clone();
                set(&mut next, progress_status(progress));
                if next != current && write_status(api, name, Some(&current), &next).await.is_ok() {
                    current = next;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_board_lists_each_volume_and_adds_their_bytes_to_the_run() {
        let board = VolumeBoard::default();
        let db = board.track("shop/db");
        let logs = board.track("shop/logs");
        db.add_total(100, 1);
        db.add_done(40, 0);
        logs.add_total(10, 1);
        logs.add_done(10, 1);
        let mut progress = ProgressStatus {
            total_items: 5,
            items_done: 2,
            total_bytes: 0,
            bytes_done: 0,
        };
        let mut volumes = Vec::new();
        board.report(&mut progress, &mut volumes);
        // At the end, the run's own counters plus every volume's bytes.
        let objects = Progress::default();
        objects.add_total(7, 3);
        objects.add_done(7, 3);
        let end = board.final_progress(&objects);
        assert_eq!((end.bytes_done, end.total_bytes), (57, 117));
        assert_eq!((end.items_done, end.total_items), (3, 3));
        assert_eq!((progress.bytes_done, progress.total_bytes), (50, 110));
        assert_eq!((progress.items_done, progress.total_items), (2, 5));
        assert_eq!(
            volumes,
            vec![
                VolumeProgress {
                    claim: "shop/db".into(),
                    total_bytes: 100,
                    bytes_done: 40,
                    done: false
                },
                VolumeProgress {
                    claim: "shop/logs".into(),
                    total_bytes: 10,
                    bytes_done: 10,
                    done: true
                },
            ]
        );
    }
}
