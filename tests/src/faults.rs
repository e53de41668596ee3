//! An object store that fails on purpose, for testing what the engine does when storage
//! breaks mid-operation; and the seeded generator the kill and fault campaigns draw their
//! moments from. Faults on the wire (HTTP errors, resets, truncated answers) are
//! [`crate::fault_proxy`]'s.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// Wraps a store; writes (or deletes) under `prefix` fail once `allowed` of them have
/// succeeded, with the error object_store reports for an HTTP 503 that outlasted its retries.
#[derive(Debug)]
pub struct FailingStore {
    inner: Arc<dyn ObjectStore>,
    prefix: String,
    allowed: usize,
    writes: AtomicUsize,
    deletes: bool,
}

impl FailingStore {
    /// Fails every write under `prefix` after the first `allowed`.
    pub fn new(inner: Arc<dyn ObjectStore>, prefix: &str, allowed: usize) -> Self {
        Self {
            inner,
            prefix: prefix.to_string(),
            allowed,
            writes: AtomicUsize::new(0),
            deletes: false,
        }
    }

    /// Fails every delete under `prefix` (writes pass).
    pub fn failing_deletes(inner: Arc<dyn ObjectStore>, prefix: &str) -> Self {
        Self {
            deletes: true,
            ..Self::new(inner, prefix, 0)
        }
    }

    fn injected(location: &Path) -> object_store::Error {
        object_store::Error::Generic {
            store: "FailingStore",
            source: format!(
                "Error performing PUT {location}, after 10 retries - Server returned non-2xx status code: 503 Service Unavailable: injected failure"
            )
            .into(),
        }
    }

    fn check(&self, location: &Path) -> Result<()> {
        if !self.deletes
            && location.as_ref().starts_with(&self.prefix)
            && self.writes.fetch_add(1, Ordering::SeqCst) >= self.allowed
        {
            return Err(Self::injected(location));
        }
        Ok(())
    }
}

impl fmt::Display for FailingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FailingStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FailingStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.check(location)?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.check(location)?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        if !self.deletes {
            return self.inner.delete_stream(locations);
        }
        use futures::StreamExt;
        let prefix = self.prefix.clone();
        let inner = self.inner.clone();
        locations
            .flat_map(move |location| match location {
                Ok(path) if path.as_ref().starts_with(&prefix) => {
                    futures::stream::once(futures::future::ready(Err(Self::injected(&path)))).boxed()
                }
                other => inner.delete_stream(futures::stream::once(futures::future::ready(other)).boxed()),
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// xorshift64* (Vigna, "An experimental exploration of Marsaglia's xorshift generators"): a
/// seeded sequence for fault campaigns (kill delays, random data), printed so a failure can be
/// replayed. The seed must not be 0.
pub struct SeededRng(pub u64);

impl SeededRng {
    /// The seed a campaign runs with: the value of the environment variable `var` when it
    /// holds a number (to replay a run whose seed was printed), else the clock's nanoseconds.
    pub fn seed_from_env(var: &str) -> u64 {
        std::env::var(var)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}
