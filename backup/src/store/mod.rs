//! Object storage behind one API: S3-compatible services (AWS, Ceph RGW, MinIO), GCS, Azure
//! Blob and a local directory, all through `object_store`.
//!
//! A repository is addressed by a URL (`/path`, `file:///path`, `s3://bucket/prefix`,
//! `gs://bucket/prefix`, `az://container/prefix`); the prefix is applied here so the rest of
//! the engine sees keys relative to the repository root.

mod local;
mod location;
pub mod object_lock;
mod options;

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;

pub use local::LocalStore;
pub use location::{Location, LocationError};
pub use object_lock::{LockMode, LockSettings, LockSupport, ObjectLock, Retention};
pub use options::{Secret, StoreOptions};

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL is not one we understand.
    #[error(transparent)]
    Location(#[from] LocationError),
    /// The local directory does not exist or cannot be used.
    #[error("repository directory {path}: {message} (create it, or check the path)")]
    LocalDir {
        /// The directory.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The cloud client could not be configured (missing credentials, bad endpoint…).
    #[error("configure {scheme} store for {url}: {message}")]
    Configure {
        /// `s3`, `gs` or `az`.
        scheme: &'static str,
        /// The repository URL.
        url: String,
        /// What the client library said (never contains secrets: it reports names, not values).
        message: String,
    },
}

/// An opened object store, already scoped to the repository's prefix.
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    location: Location,
    lock: Option<Arc<ObjectLock>>,
    max_retries: usize,
}

impl Store {
    /// Opens the store at `url` with `options` (credentials and endpoint for clouds).
    pub fn open(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        let location = Location::parse(url)?;
        let inner = build(&location, options)?;
        let lock = ObjectLock::for_location(&location, options).map(Arc::new);
        Ok(Self {
            inner,
            location,
            lock,
            max_retries: options.max_retries,
        })
    }

    /// Like [`Store::open`], but first creates a local repository directory that does not
    /// exist yet (private: mode 0700), as `repo init` does. Cloud locations are opened as
    /// they are: buckets and containers are not created.
    pub fn create(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        if let Location::Local { path } = Location::parse(url)?
            && !path.exists()
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&path)
                .map_err(|e| StoreError::LocalDir {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?;
        }
        Self::open(url, options)
    }

    /// The underlying `object_store` handle, keys relative to the repository root.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    /// [`StoreOptions::max_retries`] it was opened with: the repository also spends them on
    /// writes and deletes whose connection broke mid-request, which the HTTP client does not
    /// retry itself.
    pub fn max_retries(&self) -> usize {
        self.max_retries
    }

    /// Where this store points.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// S3 Object Lock requests for this store: `None` for stores without the feature (local
    /// disk, Azure Blob and GCS in this version) or S3 without static credentials.
    pub fn object_lock(&self) -> Option<&Arc<ObjectLock>> {
        self.lock.as_ref()
    }

    /// Whether objects written here can be locked, and if not, why (for status and `check`).
    pub async fn lock_support(&self) -> LockSupport {
        match (&self.lock, &self.location) {
            (Some(lock), _) => match lock.support().await {
                Ok(s) => s.clone(),
                Err(e) => LockSupport::Unsupported(e.to_string()),
            },
            (None, Location::S3 { .. }) => LockSupport::Unsupported(
                "object lock needs static S3 credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
                    .to_string(),
            ),
            (None, other) => LockSupport::Unsupported(format!(
                "{} stores have no object lock in Lifeboat (S3 only)",
                scheme(other)
            )),
        }
    }
}

fn scheme(location: &Location) -> &'static str {
    match location {
        Location::Local { .. } => "local disk",
        Location::S3 { .. } => "S3",
        Location::Gcs { .. } => "GCS",
        Location::Azure { .. } => "Azure Blob",
    }
}

fn build(location: &Location, options: &StoreOptions) -> Result<Arc<dyn ObjectStore>, StoreError> {
    let configure = |scheme, e: object_store::Error| StoreError::Configure {
        scheme,
        url: location.to_string(),
        message: e.to_string(),
    };
    let scoped = |store: Arc<dyn ObjectStore>, prefix: &str| -> Arc<dyn ObjectStore> {
        if prefix.is_empty() {
            store
        } else {
            Arc::new(PrefixStore::new(store, prefix))
        }
    };
    Ok(match location {
        Location::Local { path } => {
            let fs = LocalFileSystem::new_with_prefix(path).map_err(|e| StoreError::LocalDir {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            Arc::new(LocalStore::new(fs.with_automatic_cleanup(true)))
        }
        Location::S3 { bucket, prefix } => {
            let mut b = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_retry(options.retry_config())
                .with_client_options(options.client_options());
            if let Some(endpoint) = &options.s3_endpoint {
                b = b
                    .with_endpoint(endpoint)
                    .with_allow_http(endpoint.starts_with("http://"));
            }
            if let Some(region) = &options.s3_region {
                b = b.with_region(region);
            }
            if let (Some(key), Some(secret)) = (&options.access_key_id, &options.secret_access_key) {
                b = b.with_access_key_id(key).with_secret_access_key(secret.expose());
            }
            scoped(Arc::new(b.build().map_err(|e| configure("s3", e))?), prefix)
        }
        Location::Gcs { bucket, prefix } => {
            let b = GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(bucket)
                .with_retry(options.retry_config())
                .with_client_options(options.client_options());
            scoped(Arc::new(b.build().map_err(|e| configure("gs", e))?), prefix)
        }
        Location::Azure { container, prefix } => {
            let mut b = MicrosoftAzureBuilder::from_env()
                .with_container_name(container)
                .with_retry(options.retry_config())
                .with_client_options(options.client_options());
            if let Some(endpoint) = &options.azure_endpoint {
                b = b
                    .with_endpoint(endpoint.clone())
                    .with_allow_http(endpoint.starts_with("http://"));
            }
            if let Some(account) = &options.azure_account {
                b = b.with_account(account);
            }
            if let Some(key) = &options.azure_access_key {
                b = b.with_access_key(key.expose());
            }
            scoped(Arc::new(b.build().map_err(|e| configure("az", e))?), prefix)
        }
    })
}
