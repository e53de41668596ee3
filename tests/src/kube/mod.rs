//! A Kubernetes API server for tests, and the switch to a real one.
//!
//! No kube-apiserver, kind or k3s can run on the development machines, yet everything
//! Kubernetes-facing must be tested over real HTTP with `kube::Client`. [`TestCluster::start`]
//! gives a test one cluster:
//!
//! - `USE_EXISTING_CLUSTER=true` or `1` (with `KUBECONFIG`, else `~/.kube/config`): that
//!   cluster; tests keep to their own namespaces ([`TestCluster::namespace`]), which are
//!   deleted when the cluster handle drops.
//! - `KUBEBUILDER_ASSETS=DIR` (with `etcd` and `kube-apiserver` in it): both started on
//!   loopback for this test, as controller-runtime's envtest does.
//! - otherwise: the in-process test server ([`TestServer`]), HTTPS on 127.0.0.1, with
//!   [`Faults`] to break it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), lifeboat_tests::kube::KubeTestError> {
//! let cluster = lifeboat_tests::kube::TestCluster::start().await?;
//! let ns = cluster.namespace("demo").await?;
//! let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
//!     kube::Api::namespaced(cluster.client(), &ns);
//! # Ok(()) }
//! ```

mod addresses;
mod admission;
mod aggregator;
pub mod apiservice;
mod crd;
mod delete;
mod discovery;
mod events;
mod faults;
mod gc;
mod hooks;
mod index;
pub mod kubeconfig;
mod managed;
mod names;
mod object_meta;
mod ops;
mod patch;
pub mod real;
mod registry;
mod routes;
mod scale;
mod schema;
mod selectors;
mod server;
mod status;
mod store;
mod tls;
mod validate;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use addresses::AddressRanges;
pub use faults::{Faults, Injected, SeenRequest};
pub use server::TestServer;
pub use status::ApiError;

/// Why a test cluster could not be started or used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KubeTestError {
    /// A local file or socket operation failed.
    #[error("kube test cluster: {what}: {message}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        message: String,
    },
    /// Building a client or talking to the cluster failed.
    #[error("kube test cluster: client: {0}")]
    Client(String),
    /// A real etcd/kube-apiserver did not start.
    #[error("kube test cluster: real API server: {0}")]
    Start(String),
}

impl KubeTestError {
    pub(crate) fn io(what: impl Into<String>, e: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            message: e.to_string(),
        }
    }
}

#[derive(Debug)]
enum Backend {
    InProcess(TestServer),
    /// Stops etcd and kube-apiserver when dropped.
    Envtest {
        env: real::Envtest,
    },
    Existing,
}

/// Fails a test that this build expected its backend to support (see `tests/build.rs`: a test
/// a backend cannot run is `#[ignore]`d there, so the runner counts it as ignored, never as a
/// silent pass). Reaching this means the environment at run time is not the one the tests were
/// built for, or the backend lacks what the test needs: say which, loudly.
pub fn unsupported(test: &str, why: &str) -> ! {
    panic!(
        "{test} cannot run here: {why}. This build expected the backend to support it (cfg \
         kube_backend, from USE_EXISTING_CLUSTER / KUBEBUILDER_ASSETS at build time): rebuild with the \
         environment you run with, or run it where it is supported"
    )
}

/// One Kubernetes cluster for a test: the in-process server or a real API server.
pub struct TestCluster {
    backend: Backend,
    client: kube::Client,
    /// `None` only for an existing cluster reached without a kubeconfig file (in-cluster).
    kubeconfig: Option<PathBuf>,
    namespaces: Mutex<Vec<String>>,
    // Last, so the kubeconfig and the servers' files outlive everything above.
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster")
            .field("backend", &self.backend)
            .field("kubeconfig", &self.kubeconfig)
            .finish()
    }
}

fn env_true(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

impl TestCluster {
    /// The cluster the environment asks for (see the module docs).
    pub async fn start() -> Result<Self, KubeTestError> {
        if env_true("USE_EXISTING_CLUSTER") {
            return Self::existing().await;
        }
        match std::env::var_os("KUBEBUILDER_ASSETS").filter(|v| !v.is_empty()) {
            Some(dir) => Self::envtest(Path::new(&dir)).await,
            None => Self::in_process().await,
        }
    }

    /// Like [`start`](Self::start), giving Services addresses from `ranges` (kube-apiserver's
    /// `--service-cluster-ip-range` and `--service-node-port-range`): a fresh API server with
    /// those flags. `None` for an existing cluster, whose ranges a test cannot choose.
    pub async fn start_with_ranges(ranges: AddressRanges) -> Result<Option<Self>, KubeTestError> {
        if env_true("USE_EXISTING_CLUSTER") {
            return Ok(None);
        }
        match std::env::var_os("KUBEBUILDER_ASSETS").filter(|v| !v.is_empty()) {
            Some(dir) => {
                let tmp = tempdir()?;
                let (env, path) = real::start_envtest_with(Path::new(&dir), tmp.path(), &ranges).await?;
                let client = kubeconfig::client(&path).await?;
                Ok(Some(Self::new(Backend::Envtest { env }, client, Some(path), tmp)))
            }
            None => Self::in_process_with(ranges).await.map(Some),
        }
    }

    /// Always the in-process test server, whatever the environment says (for tests of the
    /// test server itself or of several clusters with faults).
    pub async fn in_process() -> Result<Self, KubeTestError> {
        Self::in_process_with(AddressRanges::default()).await
    }

    async fn in_process_with(ranges: AddressRanges) -> Result<Self, KubeTestError> {
        let dir = tempdir()?;
        let server = TestServer::start_configured(0, ranges).await?;
        // The server accepts anyone, but kubectl asks for a password over HTTPS without a token.
        let auth = kubeconfig::Auth::Token("lifeboat-test".into());
        let trust = match server.ca_pem() {
            Some(pem) => kubeconfig::Trust::Ca(pem.to_string()),
            None => kubeconfig::Trust::None,
        };
        let path = kubeconfig::write(dir.path(), &server.url(), &auth, &trust)?;
        let client = kubeconfig::client(&path).await?;
        Ok(Self::new(Backend::InProcess(server), client, Some(path), dir))
    }

    async fn envtest(assets: &Path) -> Result<Self, KubeTestError> {
        let dir = tempdir()?;
        let (env, path) = real::start_envtest(assets, dir.path()).await?;
        let client = kubeconfig::client(&path).await?;
        Ok(Self::new(Backend::Envtest { env }, client, Some(path), dir))
    }

    async fn existing() -> Result<Self, KubeTestError> {
        let dir = tempdir()?;
        let client = real::existing_client().await?;
        Ok(Self::new(Backend::Existing, client, user_kubeconfig(), dir))
    }

    fn new(
        backend: Backend,
        client: kube::Client,
        kubeconfig: Option<PathBuf>,
        dir: tempfile::TempDir,
    ) -> Self {
        Self {
            backend,
            client,
            kubeconfig,
            namespaces: Mutex::new(Vec::new()),
            _dir: dir,
        }
    }

    /// A client for this cluster.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// A client that hands back 429, 503 and 504 answers instead of retrying them (kube's
    /// default client retries them for minutes), for tests that look at those answers.
    pub async fn client_without_retries(&self) -> Result<kube::Client, KubeTestError> {
        let mut cfg = match &self.kubeconfig {
            Some(path) => kubeconfig::config(path).await?,
            None => {
                kubeconfig::install_crypto_provider();
                kube::Config::infer()
                    .await
                    .map_err(|e| KubeTestError::Client(e.to_string()))?
            }
        };
        cfg.default_retry = false;
        kube::Client::try_from(cfg).map_err(|e| KubeTestError::Client(e.to_string()))
    }

    /// A kubeconfig file for this cluster (for kubectl or code that reads one): the generated
    /// one, or for an existing cluster the user's (`KUBECONFIG`, else `~/.kube/config`);
    /// `None` when an existing cluster was reached without such a file (in-cluster config).
    pub fn kubeconfig_path(&self) -> Option<&Path> {
        self.kubeconfig.as_deref()
    }

    /// The fault handle; `None` on a real cluster, which a test cannot break.
    pub fn faults(&self) -> Option<&Faults> {
        match &self.backend {
            Backend::InProcess(s) => Some(s.faults()),
            _ => None,
        }
    }

    /// Compacts the cluster's storage at its current revision, so every earlier
    /// resourceVersion is gone (watches from one get 410 Expired): the test server forgets
    /// its history, an envtest etcd is compacted. `false` for an existing cluster, whose etcd
    /// a test cannot reach.
    pub async fn compact(&self) -> Result<bool, KubeTestError> {
        match &self.backend {
            Backend::InProcess(s) => {
                s.faults().compact();
                Ok(true)
            }
            Backend::Envtest { env } => env.compact().await.map(|()| true),
            Backend::Existing => Ok(false),
        }
    }

    /// Whether this is a real kube-apiserver (envtest or an existing cluster).
    pub fn is_real(&self) -> bool {
        !matches!(self.backend, Backend::InProcess(_))
    }

    /// Whether a controller-manager runs (namespace and garbage-collection controllers):
    /// true for existing clusters and the test server, false for a bare envtest API server.
    pub fn has_controllers(&self) -> bool {
        !matches!(self.backend, Backend::Envtest { .. })
    }

    /// Which backend this is, for messages.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::InProcess(_) => "in-process test server",
            Backend::Envtest { .. } => "kube-apiserver from KUBEBUILDER_ASSETS",
            Backend::Existing => "existing cluster (USE_EXISTING_CLUSTER)",
        }
    }

    /// Creates a namespace named uniquely after `prefix`, deleted when this handle drops on
    /// an existing cluster (envtest and test servers go away whole).
    pub async fn namespace(&self, prefix: &str) -> Result<String, KubeTestError> {
        use k8s_openapi::api::core::v1::Namespace;
        let name = format!("{}-{}", crate::unique_name(prefix), names::generate_suffix());
        let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))
            .map_err(|e| KubeTestError::Client(e.to_string()))?;
        kube::Api::<Namespace>::all(self.client())
            .create(&Default::default(), &ns)
            .await
            .map_err(|e| KubeTestError::Client(format!("create namespace {name}: {e}")))?;
        if let Ok(mut list) = self.namespaces.lock() {
            list.push(name.clone());
        }
        Ok(name)
    }
}

/// The kubeconfig file kube's `Config::infer` reads: the first existing entry of
/// `KUBECONFIG`, else `$HOME/.kube/config` if it exists.
fn user_kubeconfig() -> Option<PathBuf> {
    if let Some(list) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        return std::env::split_paths(&list).find(|p| p.is_file());
    }
    let home = std::env::var_os("HOME").filter(|v| !v.is_empty())?;
    Some(PathBuf::from(home).join(".kube").join("config")).filter(|p| p.is_file())
}

fn tempdir() -> Result<tempfile::TempDir, KubeTestError> {
    tempfile::Builder::new()
        .prefix("lifeboat-kube-")
        .tempdir()
        .map_err(|e| KubeTestError::io("create a temporary directory", e))
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if !matches!(self.backend, Backend::Existing) {
            return;
        }
        let names: Vec<String> = self
            .namespaces
            .lock()
            .map(|mut n| std::mem::take(&mut *n))
            .unwrap_or_default();
        if names.is_empty() {
            return;
        }
        // Drop cannot await, and the test's runtime may be shutting down: a private runtime
        // on its own thread does the clean-up.
        let cleanup = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async move {
                let Ok(client) = real::existing_client().await else {
                    return;
                };
                let api = kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(client);
                for n in names {
                    let _ = api.delete(&n, &Default::default()).await;
                }
            });
        });
        let _ = cleanup.join();
    }
}
