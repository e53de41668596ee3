//! The Ceph RBD backend: images in pools, found again from their ids.

pub mod connect;
pub mod groups;
pub mod images;
pub mod params;
pub mod qos;

use std::sync::Arc;

use lifeboat_rbd::Cluster;

use crate::config::DriverConfig;
use crate::error::{CsiError, Result};
use crate::secrets::Credentials;
use connect::Connections;

/// Async front of the blocking image operations: credentials, connections, worker threads.
#[derive(Clone)]
pub struct RbdBackend {
    /// Cluster ids to monitors.
    pub config: Arc<DriverConfig>,
    /// Cached connections.
    pub conns: Connections,
}

impl RbdBackend {
    /// A backend using `config` and writing its short-lived config files under `run_dir`.
    pub fn new(config: Arc<DriverConfig>, run_dir: std::path::PathBuf) -> Self {
        Self {
            config,
            conns: Connections::new(run_dir),
        }
    }

    /// Connects to cluster `id` as `creds`.
    pub async fn connect(&self, id: &str, creds: &Credentials) -> Result<Cluster> {
        let cluster = self.config.cluster(id)?;
        self.conns.get(&cluster.monitors, creds).await
    }

    /// Connects to cluster `id` with the driver's own read-only credentials.
    pub async fn connect_readonly(&self, id: &str) -> Result<Cluster> {
        let cluster = self.config.cluster(id)?;
        let creds = cluster.credentials()?.ok_or_else(|| {
            CsiError::FailedPrecondition(format!(
                "cluster {id} has no user/keyFile in the driver config, needed by RPCs without secrets"
            ))
        })?;
        self.conns.get(&cluster.monitors, &creds).await
    }

    /// Runs a blocking image operation on a worker thread.
    pub async fn run<T, F>(&self, cluster: Cluster, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Cluster) -> Result<T> + Send + 'static,
    {
        tokio::task::spawn_blocking(move || f(&cluster))
            .await
            .map_err(|e| CsiError::Internal(format!("worker thread: {e}")))?
    }
}
