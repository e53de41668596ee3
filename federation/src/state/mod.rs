//! Where the federation keeps its state: the `federation/` prefix of every repository a plan
//! names, so no cluster is a hub to lose. Each repository holds a full copy; writers write
//! every copy they can reach and readers merge what they find (the highest fencing epoch,
//! the newest record, the union of audit entries).
//!
//! | key | content | how it changes |
//! |---|---|---|
//! | `federation/clusters/<name>` | [`crate::clusters::ClusterRecord`] | overwritten by `drctl cluster add` |
//! | `federation/plans/<name>` | a `FailoverPlan` as run | overwritten when a run starts |
//! | `federation/fence/<plan>/<application>` | [`crate::fence::FenceLease`] | compare-and-swap only |
//! | `federation/health/<cluster>/<observer>` | [`crate::health::Observation`] | by that observer only |
//! | `federation/runs/<run id>` | [`crate::failover::RunRecord`] | compare-and-swap only |
//! | `federation/audit/<time>-<random>` | [`crate::audit::AuditRecord`] | created once, never changed |
//! | `federation/drills/<plan>/<run id>` | [`crate::drill::DrillReport`] | created once |

mod replica;

pub use replica::{Cas, Replica, Version, Versioned};

use futures::future::{BoxFuture, join_all};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The prefix of everything the federation writes in a repository.
pub const PREFIX: &str = "federation";

/// Why the federation state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The store failed (after its own retries).
    #[error("{op} {key} in {url}: {message}")]
    Store {
        /// What was being done.
        op: &'static str,
        /// The object key.
        key: String,
        /// The repository URL.
        url: String,
        /// What the store said.
        message: String,
    },
    /// An object could not be decoded.
    #[error("{key} in {url} is unreadable: {message}")]
    Corrupt {
        /// The object key.
        key: String,
        /// The repository URL.
        url: String,
        /// Why.
        message: String,
    },
    /// The store cannot do conditional writes, which fencing needs.
    #[error(
        "{url} does not support conditional writes (If-Match / If-None-Match), which fencing needs; \
         use S3 (AWS, Ceph RGW, MinIO, R2), Azure Blob, GCS or a local directory"
    )]
    NoConditionalWrites {
        /// The repository URL.
        url: String,
    },
    /// No copy of the state could be reached.
    #[error("no repository of the federation could be reached: {0}")]
    Unreachable(String),
    /// No repository is configured.
    #[error("no repository given for the federation state")]
    NoRepository,
}

impl StateError {
    /// What the operator can do about it, if anything.
    pub fn advice(&self) -> Option<crate::advice::Advice> {
        matches!(self, Self::NoRepository).then_some(crate::advice::Advice::NameStateRepositories)
    }
}

/// What writing every copy did.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct WriteReport {
    /// Repositories written.
    pub written: Vec<String>,
    /// Repositories that could not be written, and why.
    pub failed: Vec<(String, String)>,
}

/// Every reachable copy of the federation state.
#[derive(Debug, Clone)]
pub struct StateStore {
    replicas: Vec<Replica>,
}

impl StateStore {
    /// The state in these repositories (in the plan's order: the first is preferred).
    pub fn new(replicas: Vec<Replica>) -> Result<Self, StateError> {
        if replicas.is_empty() {
            return Err(StateError::NoRepository);
        }
        Ok(Self { replicas })
    }

    /// The copies.
    pub fn replicas(&self) -> &[Replica] {
        &self.replicas
    }

    /// Reads `key` from every copy.
    pub async fn read_all<T: DeserializeOwned + Send>(
        &self,
        key: &str,
    ) -> Vec<(&Replica, Result<Option<Versioned<T>>, StateError>)> {
        type Read<'a, T> = (&'a Replica, Result<Option<Versioned<T>>, StateError>);
        let mut reads: Vec<BoxFuture<'_, Read<'_, T>>> = Vec::new();
        for r in &self.replicas {
            reads.push(Box::pin(async move { (r, r.get::<T>(key).await) }));
        }
        join_all(reads).await
    }

    /// The values of `key` found in the reachable copies; an error only if none answered.
    pub async fn read_values<T: DeserializeOwned + Send>(&self, key: &str) -> Result<Vec<T>, StateError> {
        let mut values = Vec::new();
        let mut errors = Vec::new();
        for (_, r) in self.read_all::<T>(key).await {
            match r {
                Ok(Some(v)) => values.push(v.value),
                Ok(None) => {}
                Err(e) => errors.push(e.to_string()),
            }
        }
        if errors.len() == self.replicas.len() {
            return Err(StateError::Unreachable(errors.join("; ")));
        }
        Ok(values)
    }

    /// Overwrites `key` in every copy (single-writer objects); fails only if no copy took it.
    pub async fn overwrite_all<T: Serialize + Sync>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<WriteReport, StateError> {
        let mut writes: Vec<BoxFuture<'_, (String, Result<(), StateError>)>> = Vec::new();
        for r in &self.replicas {
            writes.push(Box::pin(async move {
                (r.url().to_string(), r.overwrite(key, value).await)
            }));
        }
        collect(join_all(writes).await)
    }

    /// Creates `key` in every copy (an existing object is left as it is, and counts as
    /// written: created-once objects carry unique names).
    pub async fn create_all<T: Serialize + Sync>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<WriteReport, StateError> {
        let mut writes: Vec<BoxFuture<'_, (String, Result<(), StateError>)>> = Vec::new();
        for r in &self.replicas {
            writes.push(Box::pin(async move {
                let done = r.create(key, value).await.map(|_| ());
                (r.url().to_string(), done)
            }));
        }
        collect(join_all(writes).await)
    }

    /// The union of the keys under `prefix` in the reachable copies, sorted.
    pub async fn list_union(&self, prefix: &str) -> Result<Vec<String>, StateError> {
        let mut lists: Vec<BoxFuture<'_, Result<Vec<String>, StateError>>> = Vec::new();
        for r in &self.replicas {
            lists.push(Box::pin(r.list(prefix)));
        }
        let lists = join_all(lists).await;
        let mut keys = std::collections::BTreeSet::new();
        let mut errors = Vec::new();
        for l in lists {
            match l {
                Ok(k) => keys.extend(k),
                Err(e) => errors.push(e.to_string()),
            }
        }
        if errors.len() == self.replicas.len() {
            return Err(StateError::Unreachable(errors.join("; ")));
        }
        Ok(keys.into_iter().collect())
    }

    /// Deletes `key` from every copy; fails only if no copy could be reached.
    pub async fn delete_all(&self, key: &str) -> Result<WriteReport, StateError> {
        let mut deletes: Vec<BoxFuture<'_, (String, Result<(), StateError>)>> = Vec::new();
        for r in &self.replicas {
            deletes.push(Box::pin(
                async move { (r.url().to_string(), r.delete(key).await) },
            ));
        }
        collect(join_all(deletes).await)
    }
}

fn collect(results: Vec<(String, Result<(), StateError>)>) -> Result<WriteReport, StateError> {
    let mut report = WriteReport::default();
    for (url, r) in results {
        match r {
            Ok(()) => report.written.push(url),
            Err(e) => report.failed.push((url, e.to_string())),
        }
    }
    if report.written.is_empty() {
        let why: Vec<String> = report.failed.iter().map(|(_, e)| e.clone()).collect();
        return Err(StateError::Unreachable(why.join("; ")));
    }
    Ok(report)
}

/// `federation/<parts…>`.
pub fn key(parts: &[&str]) -> String {
    let mut k = PREFIX.to_string();
    for p in parts {
        k.push('/');
        k.push_str(p);
    }
    k
}
