//! Following a Backup or Restore until it finishes (`drctl … --wait`): a watch on the one
//! object (kube-runtime's `await_condition`), mirroring its `status.progress` into counters a
//! progress bar draws, instead of polling.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use kube::Api;
use kube::runtime::wait::await_condition;
use lifeboat_backup::progress::Progress;

use crate::crd::{Backup, Progress as StatusProgress, Restore};

/// Why waiting stopped before the resource finished.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// The resource was deleted while being followed.
    #[error("{kind} {name} was deleted before it finished")]
    Deleted {
        /// `Backup` or `Restore`.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// The watch failed.
    #[error("watching {kind} {name}: {source}")]
    Watch {
        /// `Backup` or `Restore`.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The watch's error.
        source: kube::runtime::wait::Error,
    },
}

/// Copies a resource's `status.progress` into `progress`.
pub fn mirror(progress: &Progress, status: Option<&StatusProgress>) {
    if let Some(p) = status {
        progress.total_items.store(p.total_items, Ordering::Relaxed);
        progress.done_items.store(p.items_done, Ordering::Relaxed);
    }
}

/// Waits until Backup `name` is Completed, PartiallyFailed or Failed; returns it as it then is.
pub async fn backup_finished(
    api: &Api<Backup>,
    name: &str,
    progress: Arc<Progress>,
) -> Result<Backup, WaitError> {
    let finished = await_condition(api.clone(), name, move |b: Option<&Backup>| {
        let Some(b) = b else { return true };
        let status = b.status.as_ref();
        mirror(&progress, status.and_then(|s| s.progress.as_ref()));
        status.is_some_and(|s| s.phase.is_finished())
    })
    .await;
    done("Backup", name, finished)
}

/// Waits until Restore `name` is Completed, PartiallyFailed or Failed; returns it as it then is.
pub async fn restore_finished(
    api: &Api<Restore>,
    name: &str,
    progress: Arc<Progress>,
) -> Result<Restore, WaitError> {
    let finished = await_condition(api.clone(), name, move |r: Option<&Restore>| {
        let Some(r) = r else { return true };
        let status = r.status.as_ref();
        mirror(&progress, status.and_then(|s| s.progress.as_ref()));
        status.is_some_and(|s| s.phase.is_finished())
    })
    .await;
    done("Restore", name, finished)
}

fn done<K>(
    kind: &'static str,
    name: &str,
    finished: Result<Option<K>, kube::runtime::wait::Error>,
) -> Result<K, WaitError> {
    match finished {
        Ok(Some(k)) => Ok(k),
        Ok(None) => Err(WaitError::Deleted {
            kind,
            name: name.to_string(),
        }),
        Err(source) => Err(WaitError::Watch {
            kind,
            name: name.to_string(),
            source,
        }),
    }
}
