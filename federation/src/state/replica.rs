//! One copy of the federation state: the `federation/` prefix of one repository, each object
//! sealed like every other repository object (JSON → zstd → age with the repository key).
//!
//! Mutable objects change only by compare-and-swap on the store's ETag (`PutMode::Update`:
//! S3 and RGW `If-Match`, Azure `If-Match`, GCS generation match, local disk under a
//! directory lock), or are created once (`PutMode::Create`: `If-None-Match: *`).

use std::sync::Arc;

use bytes::Bytes;
use lifeboat_backup::Repository;
use lifeboat_backup::crypto::RepoKey;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::StateError;

/// The store's version of an object, for the next compare-and-swap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    e_tag: Option<String>,
    version: Option<String>,
}

impl Version {
    fn update(&self) -> UpdateVersion {
        UpdateVersion {
            e_tag: self.e_tag.clone(),
            version: self.version.clone(),
        }
    }
}

/// A value and the version it was read at.
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    /// The decoded object.
    pub value: T,
    /// Its version, for [`Replica::update`].
    pub version: Version,
}

/// What a conditional write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cas {
    /// Written; the new version.
    Written(Version),
    /// Someone else wrote first (the object changed, or exists for a create).
    Conflict,
}

/// One repository's copy of the federation state.
#[derive(Clone)]
pub struct Replica {
    url: String,
    store: Arc<dyn ObjectStore>,
    key: Arc<RepoKey>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Replica {
    /// The federation state inside `repo`.
    pub fn new(repo: &Repository) -> Self {
        Self {
            url: repo.url().to_string(),
            store: repo.object_store().clone(),
            key: repo.key().clone(),
        }
    }

    /// The repository's URL, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn err(&self, op: &'static str, key: &str, e: impl std::fmt::Display) -> StateError {
        StateError::Store {
            op,
            key: key.to_string(),
            url: self.url.clone(),
            message: e.to_string(),
        }
    }

    fn seal<T: Serialize>(&self, key: &str, value: &T) -> Result<Bytes, StateError> {
        let json = serde_json::to_vec(value).map_err(|e| self.err("encode", key, e))?;
        let packed = zstd::bulk::compress(&json, 3).map_err(|e| self.err("compress", key, e))?;
        let sealed = self
            .key
            .encrypt(&packed, key)
            .map_err(|e| self.err("encrypt", key, e))?;
        Ok(Bytes::from(sealed))
    }

    fn open<T: DeserializeOwned>(&self, key: &str, bytes: &[u8]) -> Result<T, StateError> {
        let corrupt = |message: String| StateError::Corrupt {
            key: key.to_string(),
            url: self.url.clone(),
            message,
        };
        let packed = self.key.decrypt(bytes, key).map_err(|e| corrupt(e.to_string()))?;
        let json = zstd::stream::decode_all(&packed[..]).map_err(|e| corrupt(format!("zstd: {e}")))?;
        serde_json::from_slice(&json).map_err(|e| corrupt(format!("JSON: {e}")))
    }

    /// Reads `key`; `None` when it does not exist.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<Versioned<T>>, StateError> {
        let got = match self.store.get(&Path::from(key)).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.err("read", key, e)),
        };
        let version = Version {
            e_tag: got.meta.e_tag.clone(),
            version: got.meta.version.clone(),
        };
        let bytes = got.bytes().await.map_err(|e| self.err("read", key, e))?;
        Ok(Some(Versioned {
            value: self.open(key, &bytes)?,
            version,
        }))
    }

    /// Creates `key` unless it exists (`If-None-Match: *`).
    pub async fn create<T: Serialize>(&self, key: &str, value: &T) -> Result<Cas, StateError> {
        self.put_mode(key, value, PutMode::Create).await
    }

    /// Replaces `key` only if it is still at `version` (`If-Match`).
    ///
    /// Ceph RGW 16 (Pacific) compares `If-Match` on a PUT with the stored ETag *without* its
    /// quotes, so the quoted ETag S3 hands back (and `object_store` sends) always fails with
    /// 412; it does honour the bare one (and refuses a stale bare one). So a refused quoted
    /// ETag is tried once more bare: still a compare-and-swap, one more request only on a
    /// conflict.
    pub async fn update<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        version: &Version,
    ) -> Result<Cas, StateError> {
        let first = self
            .put_mode(key, value, PutMode::Update(version.update()))
            .await?;
        let bare = version
            .e_tag
            .as_deref()
            .and_then(|t| t.strip_prefix('"'))
            .and_then(|t| t.strip_suffix('"'));
        match (first, bare) {
            (Cas::Conflict, Some(bare)) => {
                let unquoted = UpdateVersion {
                    e_tag: Some(bare.to_string()),
                    version: version.version.clone(),
                };
                self.put_mode(key, value, PutMode::Update(unquoted)).await
            }
            (first, _) => Ok(first),
        }
    }

    /// Writes `key` whatever is there: only for objects with one writer (an observer's own
    /// health observations).
    pub async fn overwrite<T: Serialize>(&self, key: &str, value: &T) -> Result<(), StateError> {
        match self.put_mode(key, value, PutMode::Overwrite).await? {
            Cas::Written(_) => Ok(()),
            Cas::Conflict => Err(self.err("write", key, "unexpected conflict on an overwrite")),
        }
    }

    async fn put_mode<T: Serialize>(&self, key: &str, value: &T, mode: PutMode) -> Result<Cas, StateError> {
        let sealed = self.seal(key, value)?;
        let opts = PutOptions {
            mode,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&Path::from(key), PutPayload::from(sealed), opts)
            .await
        {
            Ok(r) => Ok(Cas::Written(Version {
                e_tag: r.e_tag,
                version: r.version,
            })),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                Ok(Cas::Conflict)
            }
            Err(object_store::Error::NotImplemented { .. }) => Err(StateError::NoConditionalWrites {
                url: self.url.clone(),
            }),
            Err(e) => Err(self.err("write", key, e)),
        }
    }

    /// Keys under `prefix`, sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StateError> {
        use futures::TryStreamExt;
        let p = Path::from(prefix.trim_end_matches('/'));
        let mut keys: Vec<String> = self
            .store
            .list(Some(&p))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .map_err(|e| self.err("list", prefix, e))?;
        keys.sort();
        Ok(keys)
    }

    /// Deletes `key`; absent is fine.
    pub async fn delete(&self, key: &str) -> Result<(), StateError> {
        match self.store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err("delete", key, e)),
        }
    }
}
