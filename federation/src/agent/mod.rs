//! The federation agent: the continuous parts, run in every cluster by the
//! `lifeboat-federation` binary beside the controller. While it holds its own leader Lease
//! (`lifeboat-federation`) it
//!
//! - probes every other `Cluster` and records its observations in the plans' repositories,
//!   so the verdict over all observers is there for anyone to read ([`health`]);
//! - keeps the fencing lease of every application of every `FailoverPlan`: renews it where
//!   this cluster holds it, and where another cluster took it over, scales the application
//!   to zero here and marks the BackupRepositories so the controller stops backing it up
//!   ([`fence`]);
//! - runs `Drill`s on their cron schedules ([`drills`]).
//!
//! It never needs another cluster to be up: everything it shares goes through the
//! repositories.

mod drills;
mod fence;
mod health;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use lifeboat_backup::Repository;
use lifeboat_controller::leader::{Election, elect};
use lifeboat_controller::metrics::Metrics;
use tokio::sync::watch;

use crate::clusters::{self, ClusterRecord, Connector};
use crate::crd::{Cluster, FailoverPlan};
use crate::metrics::FederationMetrics;
use crate::state::{Replica, StateStore};

/// The agent's Lease.
pub const LEASE_NAME: &str = "lifeboat-federation";

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// This cluster's name in the federation.
    pub cluster: String,
    /// The agent's namespace: Clusters, FailoverPlans, Drills, kubeconfig Secrets and the
    /// BackupRepositories it opens live there.
    pub namespace: String,
    /// This process's identity in the Lease.
    pub identity: String,
    /// Elect a leader (off: always act).
    pub leader_elect: bool,
    /// The Lease's duration.
    pub lease_duration: Duration,
    /// Seconds between probes of the other clusters (a plan's `health.intervalSeconds`
    /// is used where shorter).
    pub probe_interval: Duration,
    /// Seconds between fencing-lease renewals.
    pub fence_interval: Duration,
    /// BackupRepositories (in `namespace`) holding the federation state when no plan names
    /// one.
    pub repositories: Vec<String>,
}

impl AgentConfig {
    /// Defaults for cluster `cluster` in `namespace`.
    pub fn new(cluster: &str, namespace: &str, identity: &str) -> Self {
        Self {
            cluster: cluster.to_string(),
            namespace: namespace.to_string(),
            identity: identity.to_string(),
            leader_elect: true,
            lease_duration: Duration::from_secs(15),
            probe_interval: Duration::from_secs(10),
            fence_interval: Duration::from_secs(10),
            repositories: vec!["default".to_string()],
        }
    }
}

/// What the loops share.
pub(crate) struct Agent {
    pub(crate) client: Client,
    pub(crate) config: AgentConfig,
    pub(crate) metrics: FederationMetrics,
    pub(crate) actor: String,
}

impl Agent {
    /// Opens the BackupRepositories named `names` (in the agent's namespace); those that
    /// fail are logged and left out.
    pub(crate) async fn open(&self, names: &[String]) -> BTreeMap<String, Arc<Repository>> {
        let mut out = BTreeMap::new();
        for name in names {
            let opened = async {
                let r = lifeboat_controller::repository::get_repository(
                    &self.client,
                    &self.config.namespace,
                    name,
                )
                .await?;
                let url = r.spec.url.clone();
                let repo = lifeboat_controller::repository::open_repository(&self.client, &r).await?;
                Ok::<_, lifeboat_controller::repository::AccessError>((url, repo))
            };
            match opened.await {
                Ok((url, repo)) => {
                    out.insert(url, Arc::new(repo));
                }
                Err(e) => tracing::warn!("federation agent: BackupRepository {name}: {e}"),
            }
        }
        out
    }

    /// The repositories of `plan` (by their BackupRepository names here).
    pub(crate) async fn plan_repositories(&self, plan: &FailoverPlan) -> BTreeMap<String, Arc<Repository>> {
        let names: Vec<String> = plan
            .spec
            .repositories
            .iter()
            .map(|r| {
                r.backup_repository
                    .clone()
                    .unwrap_or_else(|| "default".to_string())
            })
            .collect();
        let opened = self.open(&names).await;
        // Key them by the plan's URLs, which steps and records use.
        let mut out = BTreeMap::new();
        for (r, name) in plan.spec.repositories.iter().zip(&names) {
            if let Some((_, repo)) = opened.iter().find(|(url, _)| normalise(url) == normalise(&r.url)) {
                out.insert(r.url.clone(), repo.clone());
            } else if opened.is_empty() {
                tracing::debug!(
                    "federation agent: repository {name} of plan {} not opened",
                    plan.name_any()
                );
            }
        }
        out
    }

    /// A state store over `repos`.
    pub(crate) fn state(repos: &BTreeMap<String, Arc<Repository>>) -> Option<StateStore> {
        StateStore::new(repos.values().map(|r| Replica::new(r)).collect()).ok()
    }

    /// The plans in the agent's namespace.
    pub(crate) async fn plans(&self) -> Vec<FailoverPlan> {
        let api: Api<FailoverPlan> = Api::namespaced(self.client.clone(), &self.config.namespace);
        match api.list(&ListParams::default()).await {
            Ok(l) => l.items.into_iter().filter(|p| p.validate().is_ok()).collect(),
            Err(e) => {
                tracing::debug!("federation agent: list FailoverPlans: {e}");
                Vec::new()
            }
        }
    }

    /// Cluster records: those in the registry, completed by the `Cluster` resources here
    /// (which say which Secret holds each kubeconfig in this cluster).
    pub(crate) async fn records(&self, state: Option<&StateStore>) -> BTreeMap<String, ClusterRecord> {
        let mut out: BTreeMap<String, ClusterRecord> = BTreeMap::new();
        if let Some(state) = state
            && let Ok(list) = clusters::list(state).await
        {
            out.extend(list.into_iter().map(|r| (r.name.clone(), r)));
        }
        let api: Api<Cluster> = Api::namespaced(self.client.clone(), &self.config.namespace);
        if let Ok(list) = api.list(&ListParams::default()).await {
            for c in list.items {
                let name = c.name_any();
                let now = chrono::Utc::now();
                let entry = out.entry(name.clone()).or_insert_with(|| ClusterRecord {
                    name: name.clone(),
                    region: c.spec.region.clone(),
                    cloud: c.spec.cloud.clone(),
                    role: c.spec.role,
                    server: String::new(),
                    context: None,
                    kubeconfig_path: None,
                    kubeconfig_secret: None,
                    cluster_id: None,
                    node_addresses: Vec::new(),
                    ceph: None,
                    controller_namespace: lifeboat_controller::DEFAULT_NAMESPACE.to_string(),
                    added: now,
                    updated: now,
                });
                if c.spec.kubeconfig_secret.is_some() {
                    entry.kubeconfig_secret = c.spec.kubeconfig_secret.clone();
                    entry.context = c.spec.context.clone().or(entry.context.take());
                }
                if let Some(ns) = &c.spec.controller_namespace {
                    entry.controller_namespace = ns.clone();
                }
            }
        }
        out
    }

    /// How this agent reaches clusters.
    pub(crate) fn connector(&self) -> Connector {
        Connector::Secrets {
            client: self.client.clone(),
            namespace: self.config.namespace.clone(),
            own: Some((self.config.cluster.clone(), self.client.clone())),
        }
    }
}

fn normalise(url: &str) -> String {
    url.trim().trim_end_matches('/').to_string()
}

/// Runs the agent until `shutdown` completes.
pub async fn run(
    client: Client,
    config: AgentConfig,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let fed = FederationMetrics::register(&metrics);
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let (leading_tx, mut leading_rx) = watch::channel(None::<bool>);
    let election = if config.leader_elect {
        let e = Election {
            namespace: config.namespace.clone(),
            name: LEASE_NAME.to_string(),
            identity: config.identity.clone(),
            duration: config.lease_duration,
        };
        let mut stop = stop_rx.clone();
        Some(tokio::spawn(elect(client.clone(), e, leading_tx, async move {
            let _ = stop.wait_for(|s| *s).await;
        })))
    } else {
        leading_tx.send_replace(Some(true));
        let mut stop = stop_rx.clone();
        Some(tokio::spawn(async move {
            let _ = stop.wait_for(|s| *s).await;
            drop(leading_tx);
        }))
    };
    let agent = Arc::new(Agent {
        client,
        actor: format!("agent@{}", config.cluster),
        config,
        metrics: fed,
    });
    let mut stopping = stop_rx.clone();
    loop {
        let lead = tokio::select! {
            r = leading_rx.wait_for(|l| l.is_some_and(|v| v)) => r.is_ok(),
            _ = stopping.wait_for(|s| *s) => false,
        };
        if !lead || *stopping.borrow() {
            break;
        }
        metrics.leader.set(1);
        tracing::info!(cluster = %agent.config.cluster, "federation agent leading");
        let (term_tx, term_rx) = watch::channel(false);
        let loops = tokio::spawn({
            let agent = agent.clone();
            async move {
                futures::join!(
                    health::run(agent.clone(), term_rx.clone()),
                    fence::run(agent.clone(), term_rx.clone()),
                    drills::run(agent.clone(), term_rx.clone()),
                );
            }
        });
        tokio::select! {
            _ = leading_rx.wait_for(|l| *l != Some(true)) => {}
            _ = stopping.wait_for(|s| *s) => {}
        }
        let _ = term_tx.send(true);
        if tokio::time::timeout(Duration::from_secs(10), loops)
            .await
            .is_err()
        {
            tracing::warn!("federation loops did not stop in time");
        }
        metrics.leader.set(0);
    }
    if let Some(e) = election {
        let _ = e.await;
    }
}

/// Sleeps `d` unless `stop` turns true first; returns whether to go on.
pub(crate) async fn pause(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    let stopped = tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.wait_for(|s| *s) => true,
    };
    !stopped && !*stop.borrow()
}

/// Publishes an Event about an object of the agent's namespace (best effort).
pub(crate) async fn event(agent: &Agent, kind: &str, name: &str, warning: bool, reason: &str, note: &str) {
    use k8s_openapi::api::core::v1::ObjectReference;
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    let reporter = Reporter {
        controller: "lifeboat-federation".to_string(),
        instance: Some(agent.config.identity.clone()),
    };
    let reference = ObjectReference {
        api_version: Some("lifeboat.dev/v1alpha1".to_string()),
        kind: Some(kind.to_string()),
        name: Some(name.to_string()),
        namespace: Some(agent.config.namespace.clone()),
        ..ObjectReference::default()
    };
    let e = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.to_string(),
        note: Some(note.chars().take(1000).collect()),
        action: reason.to_string(),
        secondary: None,
    };
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        Recorder::new(agent.client.clone(), reporter).publish(&e, &reference),
    )
    .await;
}
