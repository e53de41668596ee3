//! Object I/O with the repository's conventions: errors that name the object, create-only
//! writes for everything but locks, and encrypted JSON (JSON → zstd → age).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{GetResultPayload, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::RepoError;
use crate::crypto::RepoKey;

#[derive(Clone)]
pub(crate) struct Objects {
    store: Arc<dyn ObjectStore>,
    url: String,
    /// Attempts for a write or delete whose connection broke mid-request.
    retries: usize,
}

/// The first pause before a write or delete is sent again, doubled each time up to
/// [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl Objects {
    /// Objects of the store at `url`, a broken write or delete tried again up to
    /// [`StoreOptions::max_retries`](crate::store::StoreOptions) times by default.
    pub(crate) fn new(store: Arc<dyn ObjectStore>, url: &str) -> Self {
        Self {
            store,
            url: url.to_string(),
            retries: crate::store::StoreOptions::default().max_retries,
        }
    }

    /// The same objects, a write or delete whose connection broke tried again up to `retries`
    /// times.
    pub(crate) fn with_retries(mut self, retries: usize) -> Self {
        self.retries = retries;
        self
    }

    /// Runs `attempt` (a write or delete that is safe to repeat) again while its connection
    /// breaks mid-request: reset, closed or timed out after the request went out. The HTTP
    /// client retries such a request only when its method says it is idempotent, and a
    /// create-only PUT or a batch-delete POST does not say so, though every write and delete
    /// here may be repeated (a create finding its object there is success, and so is a delete
    /// finding it gone). Server errors and throttling were already retried by the client.
    async fn repeatable<T, F>(
        &self,
        op: &'static str,
        key: &str,
        mut attempt: impl FnMut() -> F,
    ) -> Result<T, object_store::Error>
    where
        F: std::future::Future<Output = Result<T, object_store::Error>>,
    {
        let mut backoff = FIRST_BACKOFF;
        let mut tries = 0;
        loop {
            match attempt().await {
                Err(e) if tries < self.retries && super::error::interrupted(&e) => {
                    tries += 1;
                    tracing::debug!(
                        "{op} {key} in {}: connection broke ({e}); trying again in {backoff:?} ({tries} of {})",
                        self.url,
                        self.retries
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                other => return other,
            }
        }
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    fn err(&self, op: &'static str, key: &str, e: object_store::Error) -> RepoError {
        RepoError::store(op, key, &self.url, e)
    }

    pub(crate) async fn exists(&self, key: &str) -> Result<bool, RepoError> {
        match self.store.head(&ObjectPath::from(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.err("check", key, e)),
        }
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Bytes, RepoError> {
        let result = self
            .store
            .get(&ObjectPath::from(key))
            .await
            .map_err(|e| self.err("read", key, e))?;
        result.bytes().await.map_err(|e| self.err("read", key, e))
    }

    /// An object's content as it arrives (an HTTP body's chunks), for readers that consume it
    /// front to back without holding all of it; a local file comes as one chunk.
    pub(crate) async fn get_body(
        &self,
        key: &str,
    ) -> Result<BoxStream<'static, Result<Bytes, RepoError>>, RepoError> {
        let result = self
            .store
            .get(&ObjectPath::from(key))
            .await
            .map_err(|e| self.err("read", key, e))?;
        if matches!(result.payload, GetResultPayload::File(..)) {
            let whole = result.bytes().await.map_err(|e| self.err("read", key, e))?;
            return Ok(futures::stream::once(async move { Ok(whole) }).boxed());
        }
        let (objects, key) = (self.clone(), key.to_string());
        Ok(result
            .into_stream()
            .map_err(move |e| objects.err("read", &key, e))
            .boxed())
    }

    /// An object's content for a blocking reader that consumes it front to back without
    /// holding it: a local repository's file itself (read in place), or a remote object's
    /// chunks as they arrive. [`Self::get_body`] reads a local file whole instead.
    pub(crate) async fn get_streamed(&self, key: &str) -> Result<Streamed, RepoError> {
        let result = self
            .store
            .get(&ObjectPath::from(key))
            .await
            .map_err(|e| self.err("read", key, e))?;
        let whole = result.range.start == 0 && result.range.end == result.meta.size;
        if whole && let GetResultPayload::File(file, _) = result.payload {
            return Ok(Streamed::File(file));
        }
        let (objects, key) = (self.clone(), key.to_string());
        Ok(Streamed::Chunks(
            result
                .into_stream()
                .map_err(move |e| objects.err("read", &key, e))
                .boxed(),
        ))
    }

    /// Writes an object that must not exist yet. An existing object under a content-derived
    /// name holds the same bytes, so that is success, not an error.
    pub(crate) async fn put_new(&self, key: &str, bytes: Bytes) -> Result<(), RepoError> {
        self.put_new_payload(key, PutPayload::from(bytes)).await
    }

    /// [`Self::put_new`] of a payload in parts (an HTTP body's chunks, not concatenated).
    pub(crate) async fn put_new_payload(&self, key: &str, payload: PutPayload) -> Result<(), RepoError> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        let path = ObjectPath::from(key);
        let put = || self.store.put_opts(&path, payload.clone(), opts.clone());
        match self.repeatable("write", key, put).await {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(self.err("write", key, e)),
        }
    }

    /// Writes or replaces a small mutable object (locks only).
    pub(crate) async fn put_overwrite(&self, key: &str, bytes: Bytes) -> Result<(), RepoError> {
        let (path, payload) = (ObjectPath::from(key), PutPayload::from(bytes));
        self.repeatable("write", key, || self.store.put(&path, payload.clone()))
            .await
            .map(|_| ())
            .map_err(|e| self.err("write", key, e))
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<(), RepoError> {
        let path = ObjectPath::from(key);
        match self.repeatable("delete", key, || self.store.delete(&path)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err("delete", key, e)),
        }
    }

    /// The names at the top level: "folders" (common prefixes) and objects, one listing.
    pub(crate) async fn list_top(&self) -> Result<Vec<String>, RepoError> {
        let listed = self
            .store
            .list_with_delimiter(None)
            .await
            .map_err(|e| self.err("list", "", e))?;
        Ok(listed
            .common_prefixes
            .iter()
            .map(|p| format!("{p}/"))
            .chain(listed.objects.iter().map(|m| m.location.to_string()))
            .collect())
    }

    pub(crate) async fn list_keys(&self, prefix: &str) -> Result<Vec<String>, RepoError> {
        let p = ObjectPath::from(prefix.trim_end_matches('/'));
        self.store
            .list(Some(&p))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .map_err(|e| self.err("list", prefix, e))
    }

    pub(crate) async fn put_json<T: serde::Serialize>(
        &self,
        key: &RepoKey,
        name: &str,
        value: &T,
    ) -> Result<(), RepoError> {
        let bytes = seal_json(key, name, value)?;
        self.put_new(name, bytes.into()).await
    }

    pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        key: &RepoKey,
        name: &str,
    ) -> Result<T, RepoError> {
        let bytes = self.get(name).await?;
        open_json(key, name, &bytes)
    }
}

/// JSON → zstd → age.
pub(crate) fn seal_json<T: serde::Serialize>(
    key: &RepoKey,
    name: &str,
    value: &T,
) -> Result<Vec<u8>, RepoError> {
    let json = serde_json::to_vec(value).map_err(|e| RepoError::Corrupt {
        object: name.to_string(),
        message: e.to_string(),
    })?;
    let compressed = zstd::bulk::compress(&json, 3).map_err(|e| RepoError::Corrupt {
        object: name.to_string(),
        message: e.to_string(),
    })?;
    Ok(key.encrypt(&compressed, name)?)
}

/// age → zstd → JSON.
pub(crate) fn open_json<T: serde::de::DeserializeOwned>(
    key: &RepoKey,
    name: &str,
    bytes: &[u8],
) -> Result<T, RepoError> {
    let bad = |message: String| RepoError::Corrupt {
        object: name.to_string(),
        message,
    };
    let compressed = key.decrypt(bytes, name)?;
    let json = zstd::stream::decode_all(&compressed[..]).map_err(|e| bad(format!("zstd: {e}")))?;
    serde_json::from_slice(&json).map_err(|e| bad(format!("JSON: {e}")))
}

/// See [`Objects::get_streamed`].
pub(crate) enum Streamed {
    /// A local file, open at its start.
    File(std::fs::File),
    /// A remote object's body.
    Chunks(BoxStream<'static, Result<Bytes, RepoError>>),
}
