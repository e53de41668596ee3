//! Probing the other clusters: every interval, each `Cluster` but this one is probed, the
//! observation recorded in the repositories, and the verdict over every observer written to
//! the Cluster's status (an Event when it changes).

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use tokio::sync::watch;

use super::{Agent, event, pause};
use crate::crd::{CheckStatus, Cluster, ClusterStatus, ObserverStatus};
use crate::health::{self, ProbeOptions, Verdict};
use crate::metrics::ClusterLabels;

pub(super) async fn run(agent: Arc<Agent>, mut stop: watch::Receiver<bool>) {
    let mut phases: HashMap<String, String> = HashMap::new();
    loop {
        let plans = agent.plans().await;
        let mut repos = std::collections::BTreeMap::new();
        for p in &plans {
            repos.extend(agent.plan_repositories(p).await);
        }
        if repos.is_empty() {
            repos = agent.open(&agent.config.repositories).await;
        }
        let state = Agent::state(&repos);
        let records = agent.records(state.as_ref()).await;
        let policy = plans.first().map(|p| p.spec.health.policy()).unwrap_or_default();
        let interval = plans
            .iter()
            .map(|p| std::time::Duration::from_secs(p.spec.health.interval_seconds.max(1)))
            .chain(std::iter::once(agent.config.probe_interval))
            .min()
            .unwrap_or(agent.config.probe_interval);
        let connector = agent.connector();
        let api: Api<Cluster> = Api::namespaced(agent.client.clone(), &agent.config.namespace);
        let clusters = api
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        for c in clusters {
            let name = c.name_any();
            if name == agent.config.cluster {
                continue;
            }
            let Some(record) = records.get(&name) else {
                continue;
            };
            let client = connector.connect(record).await.ok();
            let result = health::probe(client.as_ref(), record, &ProbeOptions::default()).await;
            let now = Utc::now();
            let (obs, verdict, all) = match &state {
                Some(state) => {
                    match health::observe_and_record(state, &name, &agent.actor, result.clone(), &policy)
                        .await
                    {
                        Ok((obs, verdict)) => {
                            let all = health::observations(state, &name)
                                .await
                                .unwrap_or_else(|_| vec![obs.clone()]);
                            (obs, verdict, all)
                        }
                        Err(e) => {
                            tracing::warn!("federation agent: record the health of {name}: {e}");
                            let obs = health::observe(None, &name, &agent.actor, result, now);
                            let v = health::assess(std::slice::from_ref(&obs), &policy, now);
                            (obs.clone(), v, vec![obs])
                        }
                    }
                }
                None => {
                    let obs = health::observe(None, &name, &agent.actor, result, now);
                    let v = health::assess(std::slice::from_ref(&obs), &policy, now);
                    (obs.clone(), v, vec![obs])
                }
            };
            let status = ClusterStatus {
                phase: Some(verdict.phase().to_string()),
                consecutive_failures: obs.consecutive_failures,
                last_probe_time: Some(obs.at.to_rfc3339()),
                last_success_time: obs.last_success.map(|t| t.to_rfc3339()),
                checks: obs
                    .checks
                    .iter()
                    .map(|c| CheckStatus {
                        name: c.name.clone(),
                        ok: c.ok,
                        message: c.message.clone(),
                    })
                    .collect(),
                observers: all
                    .iter()
                    .map(|o| ObserverStatus {
                        observer: o.observer.clone(),
                        ok: o.ok,
                        consecutive_failures: o.consecutive_failures,
                        time: o.at.to_rfc3339(),
                    })
                    .collect(),
                message: Some(verdict.describe(&policy)),
                conditions: vec![lifeboat_controller::crd::Condition::new(
                    "Healthy",
                    matches!(verdict, Verdict::Healthy),
                    verdict.phase(),
                    verdict.describe(&policy),
                )],
            };
            if let Err(e) =
                lifeboat_controller::reconcile::status::write_status(&api, &name, c.status.as_ref(), &status)
                    .await
            {
                tracing::debug!("federation agent: status of Cluster {name}: {e}");
            }
            let value = match verdict {
                Verdict::Healthy => Some(1),
                Verdict::Suspect { .. } => Some(0),
                Verdict::Failed { .. } => Some(-1),
                Verdict::Unknown => None,
            };
            let labels = ClusterLabels {
                cluster: name.clone(),
            };
            match value {
                Some(v) => {
                    agent.metrics.cluster_healthy.get_or_create(&labels).set(v);
                }
                None => {
                    agent.metrics.cluster_healthy.remove(&labels);
                }
            }
            let phase = verdict.phase().to_string();
            if phases.get(&name) != Some(&phase) {
                let warning = !matches!(verdict, Verdict::Healthy);
                event(
                    &agent,
                    "Cluster",
                    &name,
                    warning,
                    &format!("Cluster{phase}"),
                    &verdict.describe(&policy),
                )
                .await;
                phases.insert(name, phase);
            }
        }
        if !pause(&mut stop, interval).await {
            return;
        }
    }
}
