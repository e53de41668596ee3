//! The object lock state of a repository, as `repo check` reports it: whether its bucket locks
//! objects, how many objects are retained and until when, and which are not.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::repository::{RepoError, Repository};
use crate::store::LockSupport;

/// Unlocked snapshot manifests listed by name (the rest are counted).
const LISTED: usize = 20;

/// What `repo check` says about object lock.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LockReport {
    /// Whether the bucket locks objects.
    pub support: LockSupport,
    /// Objects whose retention was read.
    pub objects: usize,
    /// Objects retained now.
    pub locked: usize,
    /// Per kind of object (`config`, `keys`, `index`, `snapshots`, `data`): how many are not
    /// retained (never locked, or their date has passed).
    pub unlocked: BTreeMap<String, usize>,
    /// The soonest a retained object's lock ends.
    pub earliest_expiry: Option<DateTime<Utc>>,
    /// The latest a retained object's lock ends.
    pub latest_expiry: Option<DateTime<Utc>>,
    /// Snapshot manifests that are not retained (the first few; `unlocked` counts all).
    pub unlocked_snapshots: Vec<String>,
}

/// Reads the retention of every object of `repo` (one request each, 32 at a time) when its
/// bucket has object lock; otherwise says why not.
pub async fn report(repo: &Repository) -> Result<LockReport, RepoError> {
    let support = match repo.object_lock() {
        None => LockSupport::Unsupported("this store has no object lock in Lifeboat (S3 only)".to_string()),
        Some(lock) => lock
            .support()
            .await
            .cloned()
            .unwrap_or_else(|e| LockSupport::Unsupported(e.to_string())),
    };
    let mut report = LockReport {
        support: support.clone(),
        objects: 0,
        locked: 0,
        unlocked: BTreeMap::new(),
        earliest_expiry: None,
        latest_expiry: None,
        unlocked_snapshots: Vec::new(),
    };
    if !support.enabled() {
        return Ok(report);
    }
    let mut keys = vec!["config".to_string()];
    for prefix in ["keys/", "index/", "snapshots/", "data/"] {
        keys.extend(repo.list(prefix).await?.into_iter().map(|(k, _)| k));
    }
    report.objects = keys.len();
    let retained = repo.retained(keys.iter().cloned(), Utc::now()).await?;
    report.locked = retained.len();
    report.earliest_expiry = retained.values().map(|r| r.until).min();
    report.latest_expiry = retained.values().map(|r| r.until).max();
    for key in keys.iter().filter(|k| !retained.contains_key(*k)) {
        let kind = key.split('/').next().unwrap_or(key).to_string();
        if kind == "snapshots" && report.unlocked_snapshots.len() < LISTED {
            report.unlocked_snapshots.push(key.clone());
        }
        *report.unlocked.entry(kind).or_default() += 1;
    }
    Ok(report)
}
