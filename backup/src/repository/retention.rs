//! Which objects S3 Object Lock still retains: asked before anything is deleted, so `forget`
//! and `prune` never try to delete a locked object early (on a versioned, locked bucket a
//! plain delete would only hide it behind a delete marker).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};

use super::{RepoError, Repository, StoreFailure};
use crate::store::object_lock::{LockError, Retention};

/// Retention lookups in flight at once.
const LOOKUPS_IN_FLIGHT: usize = 32;

fn lock_error(url: &str, e: LockError) -> RepoError {
    let failure = match &e {
        // Not sent, or no answer: the network.
        LockError::Request { .. } => StoreFailure::Transient,
        LockError::Refused { status, .. } => match status {
            401 => StoreFailure::Unauthenticated,
            403 => StoreFailure::PermissionDenied,
            412 => StoreFailure::Precondition,
            501 => StoreFailure::NotSupported,
            408 | 429 | 500..=599 => StoreFailure::Transient,
            _ => StoreFailure::Other,
        },
    };
    RepoError::Store {
        op: "read object lock state",
        key: String::new(),
        url: url.to_string(),
        failure,
        message: e.to_string(),
    }
}

impl Repository {
    /// True when the repository's bucket has object lock enabled (so retention is worth asking
    /// about). Stores without the feature, and S3 services that do not implement it, say no.
    pub async fn object_lock_enabled(&self) -> Result<bool, RepoError> {
        match self.object_lock() {
            None => Ok(false),
            Some(lock) => Ok(lock
                .support()
                .await
                .map_err(|e| lock_error(self.url(), e))?
                .enabled()),
        }
    }

    /// The retention of each of `keys` that cannot be deleted at `now` (its date has not
    /// passed); empty when the bucket has no object lock.
    pub async fn retained(
        &self,
        keys: impl IntoIterator<Item = String>,
        now: DateTime<Utc>,
    ) -> Result<BTreeMap<String, Retention>, RepoError> {
        if !self.object_lock_enabled().await? {
            return Ok(BTreeMap::new());
        }
        let Some(lock) = self.object_lock() else {
            return Ok(BTreeMap::new());
        };
        let found: Vec<(String, Option<Retention>)> = futures::stream::iter(keys)
            .map(|key| async move {
                let r = lock
                    .retention(&key)
                    .await
                    .map_err(|e| lock_error(self.url(), e))?;
                Ok::<_, RepoError>((key, r))
            })
            .buffer_unordered(LOOKUPS_IN_FLIGHT)
            .try_collect()
            .await?;
        Ok(found
            .into_iter()
            .filter_map(|(k, r)| r.filter(|r| r.until > now).map(|r| (k, r)))
            .collect())
    }
}
