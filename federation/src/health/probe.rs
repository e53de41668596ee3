//! One probe of one cluster, from wherever the observer is: the API server's `/readyz`,
//! Ready nodes, the Lifeboat controller's Lease, and where configured the repositories, the
//! age of the cluster's newest object backup in each of them (against the RPO), and Ceph.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::ListParams;
use kube::{Api, Client};
use lifeboat_backup::Repository;
use lifeboat_controller::leader::LeaseView;

use super::{Check, ProbeResult};
use crate::clusters::ClusterRecord;
use crate::fence::blocklist;

/// What else to look at.
#[derive(Clone, Default)]
pub struct ProbeOptions {
    /// Repositories whose reachability and newest backups of the cluster to check.
    pub repositories: Vec<Arc<Repository>>,
    /// The recovery point objective the newest backup is held to.
    pub rpo: Option<Duration>,
    /// Also check the cluster's Ceph (`ceph -s`), when its record says how.
    pub ceph: bool,
}

impl std::fmt::Debug for ProbeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeOptions")
            .field("repositories", &self.repositories.len())
            .field("rpo", &self.rpo)
            .field("ceph", &self.ceph)
            .finish()
    }
}

/// Why one check of a probe failed; the message is what the check reports.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// `/readyz` answered something other than `ok`.
    #[error("readyz answered {0:?}")]
    NotReady(String),
    /// `/readyz` could not be asked.
    #[error("readyz: {0}")]
    Readyz(#[source] kube::Error),
    /// `/readyz` did not answer in time.
    #[error("readyz: no answer within {0} s")]
    ReadyzTimeout(u64),
    /// The request could not even be built.
    #[error("readyz: {0}")]
    Request(#[source] http::Error),
    /// Nodes could not be listed.
    #[error("list nodes: {0}")]
    ListNodes(#[source] kube::Error),
    /// No node is Ready.
    #[error("no Ready node ({total} nodes)")]
    NoReadyNode {
        /// Nodes listed.
        total: usize,
    },
    /// The controller's Lease could not be read.
    #[error("read Lease {namespace}/{}: {source}", lifeboat_controller::LEASE_NAME)]
    ReadLease {
        /// Lifeboat's namespace there.
        namespace: String,
        /// The API's answer.
        source: kube::Error,
    },
    /// No controller ever ran there.
    #[error("no Lease {0}/{lease}: the controller is not running", lease = lifeboat_controller::LEASE_NAME)]
    NoLease(String),
    /// The controller stopped renewing its Lease.
    #[error("Lease {0}/{lease} has lapsed: no controller is leading", lease = lifeboat_controller::LEASE_NAME)]
    LeaseLapsed(String),
}

fn check<E: std::fmt::Display>(
    name: &str,
    critical: bool,
    started: Instant,
    result: Result<String, E>,
) -> Check {
    let (ok, message) = match result {
        Ok(m) => (true, m),
        Err(e) => (false, e.to_string()),
    };
    Check {
        name: name.to_string(),
        ok,
        critical,
        message,
        millis: started.elapsed().as_millis() as u64,
    }
}

/// Probes `record`'s cluster through `client` (None: it could not even be connected to).
pub async fn probe(client: Option<&Client>, record: &ClusterRecord, options: &ProbeOptions) -> ProbeResult {
    let mut checks = Vec::new();
    let Some(client) = client else {
        checks.push(Check {
            name: "api".into(),
            ok: false,
            critical: true,
            message: "no client (kubeconfig or Secret missing)".into(),
            millis: 0,
        });
        return ProbeResult { checks };
    };
    let t = Instant::now();
    let readyz = readyz(client).await;
    let api_up = readyz.is_ok();
    checks.push(check("api", true, t, readyz));
    if api_up {
        let t = Instant::now();
        checks.push(check("nodes", true, t, nodes(client).await));
        let t = Instant::now();
        checks.push(check(
            "controller",
            false,
            t,
            controller_lease(client, &record.controller_namespace).await,
        ));
    }
    for repo in &options.repositories {
        let t = Instant::now();
        let found = newest_backup(repo, record, options.rpo).await;
        checks.push(check(&format!("backups {}", repo.url()), false, t, found));
    }
    if options.ceph
        && let Some(ceph) = &record.ceph
    {
        let t = Instant::now();
        let r = blocklist::reachable(ceph).await.map(|()| "reachable".to_string());
        checks.push(check("ceph", false, t, r));
    }
    ProbeResult { checks }
}

/// How long `/readyz` may take.
const READYZ_TIMEOUT: Duration = Duration::from_secs(10);

async fn readyz(client: &Client) -> Result<String, CheckError> {
    let req = http::Request::get("/readyz")
        .body(Vec::new())
        .map_err(CheckError::Request)?;
    match tokio::time::timeout(READYZ_TIMEOUT, client.request_text(req)).await {
        Ok(Ok(body)) if body.trim() == "ok" => Ok("readyz ok".to_string()),
        Ok(Ok(body)) => Err(CheckError::NotReady(body.trim().to_string())),
        Ok(Err(e)) => Err(CheckError::Readyz(e)),
        Err(_) => Err(CheckError::ReadyzTimeout(READYZ_TIMEOUT.as_secs())),
    }
}

async fn nodes(client: &Client) -> Result<String, CheckError> {
    let api: Api<Node> = Api::all(client.clone());
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(CheckError::ListNodes)?;
    let total = list.items.len();
    let ready = list
        .items
        .iter()
        .filter(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .count();
    if ready == 0 {
        return Err(CheckError::NoReadyNode { total });
    }
    Ok(format!("{ready}/{total} nodes Ready"))
}

async fn controller_lease(client: &Client, namespace: &str) -> Result<String, CheckError> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let lease = api
        .get_opt(lifeboat_controller::LEASE_NAME)
        .await
        .map_err(|source| CheckError::ReadLease {
            namespace: namespace.to_string(),
            source,
        })?
        .ok_or_else(|| CheckError::NoLease(namespace.to_string()))?;
    let view = LeaseView::from(&lease);
    match view.held_until(Utc::now()) {
        Some(_) => Ok(format!(
            "held by {}",
            view.holder.unwrap_or_else(|| "?".to_string())
        )),
        None => Err(CheckError::LeaseLapsed(namespace.to_string())),
    }
}

async fn newest_backup(
    repo: &Repository,
    record: &ClusterRecord,
    rpo: Option<Duration>,
) -> Result<String, String> {
    let snaps = lifeboat_controller::kube_objects::object_snapshots(repo, None)
        .await
        .map_err(|e| format!("unreachable: {e}"))?;
    let ours = snaps
        .iter()
        .find(|s| record.cluster_id.is_none() || s.details.cluster_id() == record.cluster_id.as_deref());
    let Some(s) = ours else {
        return Err("no object backup of this cluster".to_string());
    };
    let age = (Utc::now() - s.time).num_seconds().max(0) as u64;
    match rpo {
        Some(rpo) if age > rpo.as_secs() => Err(format!(
            "newest backup {age} s old, beyond the RPO of {} s",
            rpo.as_secs()
        )),
        Some(rpo) => Ok(format!("newest backup {age} s old (RPO {} s)", rpo.as_secs())),
        None => Ok(format!("newest backup {age} s old")),
    }
}
