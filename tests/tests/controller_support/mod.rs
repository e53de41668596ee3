//! Shared by the controller tests: a cluster with Lifeboat's CRDs, a namespace, a local-disk
//! repository with its key Secret and BackupRepository, and controllers started in-process
//! through `lifeboat_controller::run`.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use lifeboat_backup::Repository;
use lifeboat_backup::repository::InitOptions;
use lifeboat_controller::Config;
use lifeboat_controller::crd::{
    self, Backup, BackupPhase, BackupRepository, BackupRepositorySpec, BackupSpec, SecretKeyRef,
};
use lifeboat_controller::http::{self, Health};
use lifeboat_controller::metrics::Metrics;
use lifeboat_tests::kube::TestCluster;
pub use lifeboat_tests::poll::eventually;
use lifeboat_tests::repos::{Backend, TestRepo};
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The BackupRepository every test creates.
pub const REPO: &str = "local";

/// A cluster, a namespace and a repository.
pub struct Env {
    pub cluster: TestCluster,
    pub ns: String,
    pub repo: TestRepo,
}

impl Env {
    pub fn client(&self) -> Client {
        self.cluster.client()
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client(), &self.ns)
    }

    /// Opens the repository as the test (not the controller) sees it.
    pub async fn open(&self) -> Repository {
        Repository::open(&self.repo.store(), &[self.repo.user_key()])
            .await
            .expect("open the test repository")
    }

    /// Starts a controller in-process for this namespace.
    pub async fn controller(&self, identity: &str) -> RunningController {
        self.controller_with(identity, |_| {}).await
    }

    /// Starts a controller with settings adjusted by `tune`.
    pub async fn controller_with(&self, identity: &str, tune: impl FnOnce(&mut Config)) -> RunningController {
        self.controller_through(self.client(), identity, tune).await
    }

    /// Starts a controller that reaches the cluster through `client` (a wrapper around
    /// [`Env::client`] that records or alters requests).
    pub async fn controller_through(
        &self,
        client: Client,
        identity: &str,
        tune: impl FnOnce(&mut Config),
    ) -> RunningController {
        let mut config = Config::new(Some(self.ns.clone()), identity.to_string());
        config.watch_namespace = Some(self.ns.clone());
        config.lease_duration = Duration::from_secs(3);
        config.progress_interval = Duration::from_millis(200);
        config.repository_check_interval = Duration::from_secs(2);
        tune(&mut config);
        RunningController::start(client, config).await
    }

    /// Backs up the namespace's ConfigMaps into [`REPO`] as Backup `name`, and waits until
    /// it is Completed.
    pub async fn backup_config_maps(&self, name: &str) {
        let backups: Api<Backup> = self.api();
        let b = Backup::new(
            name,
            BackupSpec {
                repository: REPO.into(),
                included_namespaces: vec![self.ns.clone()],
                included_resources: vec!["configmaps".into()],
                ..BackupSpec::default()
            },
        );
        backups
            .create(&PostParams::default(), &b)
            .await
            .expect("create Backup");
        eventually(&format!("Backup {name} to complete"), 60, || {
            let backups = backups.clone();
            async move {
                let s = backups.get(name).await.ok()?.status?;
                (s.phase == BackupPhase::Completed).then_some(())
            }
        })
        .await;
    }

    /// Creates ConfigMaps `cm-0…` in the namespace.
    pub async fn config_maps(&self, n: usize) {
        let api: Api<ConfigMap> = self.api();
        for i in 0..n {
            let cm: ConfigMap = serde_json::from_value(json!({
                "metadata": {"name": format!("cm-{i}"), "labels": {"app": "demo"}},
                "data": {"index": i.to_string()}
            }))
            .expect("ConfigMap");
            api.create(&PostParams::default(), &cm)
                .await
                .expect("create ConfigMap");
        }
    }
}

/// A controller running in this test process, with its metrics server.
pub struct RunningController {
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub metrics_addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    server: JoinHandle<()>,
}

impl RunningController {
    async fn start(client: Client, config: Config) -> Self {
        let metrics = Arc::new(Metrics::new());
        let health = Arc::new(Health::default());
        let (listener, metrics_addr) = http::bind("127.0.0.1:0").await.expect("bind metrics");
        let server = tokio::spawn(http::serve(
            listener,
            metrics.clone(),
            health.clone(),
            std::future::pending(),
        ));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn({
            let (metrics, health) = (metrics.clone(), health.clone());
            async move {
                let shutdown = async move {
                    let _ = stopped.await;
                };
                if let Err(e) = lifeboat_controller::run(client, config, metrics, health, shutdown).await {
                    panic!("controller failed: {e}");
                }
            }
        });
        Self {
            metrics,
            health,
            metrics_addr,
            stop: Some(stop),
            task: Some(task),
            server,
        }
    }

    /// Stops it the way SIGTERM does.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(20), t).await;
        }
    }

    /// Kills it without any cleanup, as a crashed pod (its Lease is left to expire).
    pub fn kill(mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    /// GETs `path` from its HTTP server.
    pub async fn get(&self, path: &str) -> (u16, String) {
        http_get(self.metrics_addr, path).await
    }
}

impl Drop for RunningController {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        self.server.abort();
    }
}

/// A minimal HTTP/1.1 GET over loopback.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.expect("read");
    let code = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// Installs Lifeboat's CRDs and waits until they are served.
pub async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for c in crd::all() {
        match api.create(&PostParams::default(), &c).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => panic!("create CRD {}: {e}", c.name_any()),
        }
        let name = c.name_any();
        eventually(&format!("CRD {name} Established"), 30, || {
            let api = api.clone();
            let name = name.clone();
            async move {
                let c = api.get(&name).await.ok()?;
                c.status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                    .then_some(())
            }
        })
        .await;
    }
}

/// A cluster with the CRDs, a namespace, an initialised local repository, its key Secret
/// and a BackupRepository named [`REPO`].
pub async fn env(prefix: &str) -> Env {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cluster = TestCluster::start().await.expect("a test cluster starts");
    install_crds(&cluster.client()).await;
    let ns = cluster.namespace(prefix).await.expect("namespace");
    let repo = TestRepo::new(Backend::Local).expect("test repo");
    Repository::init(&repo.store(), &[repo.user_recipient()], InitOptions::default())
        .await
        .expect("init repository");
    let identity = std::fs::read(&repo.identity).expect("read identity");
    let secrets: Api<Secret> = Api::namespaced(cluster.client(), &ns);
    let mut secret = Secret::default();
    secret.metadata.name = Some("repo-key".into());
    secret.data = Some([("identity".to_string(), ByteString(identity))].into());
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("key Secret");
    let env = Env { cluster, ns, repo };
    let repos: Api<BackupRepository> = env.api();
    let r = BackupRepository::new(
        REPO,
        BackupRepositorySpec {
            url: env.repo.url.clone(),
            key_secret: SecretKeyRef {
                name: "repo-key".into(),
                key: None,
            },
            ..BackupRepositorySpec::default()
        },
    );
    repos
        .create(&PostParams::default(), &r)
        .await
        .expect("BackupRepository");
    env
}
