//! Gathering what a plan depends on: every cluster probed from here (and the observation
//! recorded, so this machine is one of the observers), the fencing leases, the namespaces on
//! the candidate targets, and each application's newest recovery point.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::join_all;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use lifeboat_backup::snapshot::{Node, Snapshot};
use lifeboat_backup::{IndexedRepository, RepoError};
use lifeboat_controller::kube_objects::ObjectPath;

use super::Env;
use super::run_plan::{ClusterView, Observed, RecoveryPoint};
use super::steps::Kind;
use crate::crd::{Application, FailoverPlan};
use crate::fence::{self, FenceLease};
use crate::health::{self, ProbeOptions, Verdict};

/// Whether a snapshot may be restored as `app`'s recovery point: it carries the
/// application's tags, and it was taken by the cluster that held the application at the time
/// (per the fencing lease's history; the plan's primary before any term). A snapshot a
/// fenced cluster wrote after losing the lease is never used.
pub fn eligible(
    time: DateTime<Utc>,
    cluster_id: Option<&str>,
    tags: &BTreeMap<String, String>,
    app: &Application,
    lease: Option<&FenceLease>,
    ids: &BTreeMap<String, String>,
    primary: &str,
) -> bool {
    if !app.snapshot_tags.iter().all(|(k, v)| tags.get(k) == Some(v)) {
        return false;
    }
    if ids.is_empty() {
        // No cluster ids are known: cannot tell who took it.
        return true;
    }
    let Some(taker) = cluster_id.and_then(|id| ids.get(id)) else {
        return false;
    };
    let holder = lease.and_then(|l| l.holder_at(time)).unwrap_or(primary);
    taker == holder
}

/// How many of an application's newest eligible snapshots are read, at most, to find one
/// holding it (when none does, the error says so).
pub const COVERAGE_CANDIDATES: usize = 200;

/// Whether a snapshot's object listing holds every namespace of `app`: the Namespace object
/// of each (a backup of a namespace always takes it, whatever its selector).
pub fn holds_namespaces(nodes: &[Node], app: &Application) -> bool {
    let present: BTreeSet<&str> = nodes
        .iter()
        .filter_map(|n| ObjectPath::split(&n.path))
        .filter(|(key, namespace, _)| *key == "namespaces" && namespace.is_none())
        .map(|(_, _, name)| name)
        .collect();
    app.namespaces.iter().all(|ns| present.contains(ns.as_str()))
}

/// The repositories' indexes, loaded once per observation, for reading snapshot trees.
#[derive(Default)]
struct Trees {
    indexed: BTreeMap<String, IndexedRepository>,
}

impl Trees {
    /// Whether snapshot `s` of the repository at `url` holds `app` ([`holds_namespaces`]).
    /// A damaged snapshot (its tree unreadable for what the repository holds) does not, and
    /// is named in the log; a repository that does not answer is an error, so that a passing
    /// outage never makes an older snapshot the recovery point.
    async fn covers(
        &mut self,
        env: &Env,
        url: &str,
        s: &Snapshot,
        app: &Application,
    ) -> Result<bool, super::FailoverError> {
        let unreadable = |source: RepoError| super::FailoverError::RecoveryPointUnreadable {
            application: app.name.clone(),
            snapshot: s.id.map(|i| i.to_hex()).unwrap_or_default(),
            repository: url.to_string(),
            source,
        };
        if !self.indexed.contains_key(url) {
            let Some(repo) = env.repositories.get(url) else {
                return Ok(false);
            };
            let loaded = repo.indexed().await.map_err(unreadable)?;
            self.indexed.insert(url.to_string(), loaded);
        }
        let Some(repo) = self.indexed.get(url) else {
            return Ok(false);
        };
        match repo.tree(s).await {
            Ok(nodes) => Ok(holds_namespaces(&nodes, app)),
            Err(e @ (RepoError::Store { .. } | RepoError::Io { .. })) => Err(unreadable(e)),
            Err(e) => {
                tracing::warn!(
                    "snapshot {} in {url} is damaged, so not a recovery point of {}: {e}",
                    s.id.map(|i| i.short()).unwrap_or_default(),
                    app.name
                );
                Ok(false)
            }
        }
    }
}

/// Observes everything `fp` needs for a run of `kind`.
pub async fn observe(env: &Env, fp: &FailoverPlan, kind: Kind) -> Result<Observed, super::FailoverError> {
    let now = Utc::now();
    let policy = fp.spec.health.policy();
    let plan_name = fp.name_any();

    // Leases first: they say who the source is, whose failures need confirming.
    let mut leases = BTreeMap::new();
    let mut holders = BTreeMap::new();
    for app in &fp.spec.applications {
        let view = fence::read(&env.state, &plan_name, &app.name).await?;
        holders.insert(
            app.name.clone(),
            view.newest.as_ref().map(|l| (l.holder.clone(), l.epoch)),
        );
        leases.insert(app.name.clone(), view.newest);
    }
    let sources: BTreeSet<String> = holders
        .values()
        .map(|h| {
            h.clone()
                .map(|(c, _)| c)
                .unwrap_or_else(|| fp.spec.primary.clone())
        })
        .collect();

    let mut probes = Vec::new();
    for name in fp.clusters().into_iter().map(str::to_string) {
        let is_source = sources.contains(&name);
        probes.push(async move {
            let name = name.as_str();
            let Some(record) = env.records.get(name) else {
                return (
                    name.to_string(),
                    ClusterView {
                        registered: false,
                        reachable: false,
                        verdict: Verdict::Unknown,
                        ceph: false,
                    },
                    None,
                );
            };
            let client = env.connector.connect(record).await.ok();
            // A failing source is probed until this observer's own count confirms it, so
            // one run of drctl is one full observer.
            let attempts = if kind == Kind::Failover && is_source {
                policy.failure_threshold.max(1)
            } else {
                1
            };
            let mut last = None;
            for n in 0..attempts {
                if n > 0 {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                let result = health::probe(client.as_ref(), record, &ProbeOptions::default()).await;
                let ok = result.ok();
                let recorded =
                    health::observe_and_record(&env.state, name, &env.actor, result, &policy).await;
                last = Some((ok, recorded));
                if ok {
                    break;
                }
            }
            let (reachable, verdict) = match last {
                Some((ok, Ok((_, verdict)))) => (ok, verdict),
                Some((ok, Err(_))) => (ok, Verdict::Unknown),
                None => (false, Verdict::Unknown),
            };
            let namespaces = match (&client, reachable) {
                (Some(c), true) => Api::<Namespace>::all(c.clone())
                    .list(&ListParams::default())
                    .await
                    .ok()
                    .map(|l| l.items.iter().map(|n| n.name_any()).collect::<BTreeSet<_>>()),
                _ => None,
            };
            (
                name.to_string(),
                ClusterView {
                    registered: true,
                    reachable,
                    verdict,
                    ceph: record.ceph.is_some(),
                },
                namespaces,
            )
        });
    }
    let mut clusters = BTreeMap::new();
    let mut namespaces = BTreeMap::new();
    for (name, view, ns) in join_all(probes).await {
        if let Some(ns) = ns {
            namespaces.insert(name.clone(), ns);
        }
        clusters.insert(name, view);
    }

    let mut recovery_points = BTreeMap::new();
    if !kind.planned() {
        let ids: BTreeMap<String, String> = env
            .records
            .values()
            .filter_map(|r| r.cluster_id.clone().map(|id| (id, r.name.clone())))
            .collect();
        let mut per_repo = Vec::new();
        for (url, repo) in &env.repositories {
            if let Ok(snaps) = lifeboat_controller::kube_objects::object_snapshots(repo, None).await {
                per_repo.push((url.clone(), snaps));
            }
        }
        let mut trees = Trees::default();
        for app in &fp.spec.applications {
            let lease = leases.get(&app.name).cloned().flatten();
            let mut candidates: Vec<(&String, &Snapshot)> = per_repo
                .iter()
                .flat_map(|(url, snaps)| snaps.iter().map(move |s| (url, s)))
                .filter(|(_, s)| {
                    eligible(
                        s.time,
                        s.details.cluster_id(),
                        &s.tags,
                        app,
                        lease.as_ref(),
                        &ids,
                        &fp.spec.primary,
                    )
                })
                .collect();
            candidates.sort_by_key(|(_, s)| std::cmp::Reverse(s.time));
            // The newest that holds the application: a backup of the same cluster's other
            // namespaces (another application's Schedule) is not its recovery point.
            let mut best = None;
            for (url, s) in candidates.into_iter().take(COVERAGE_CANDIDATES) {
                if trees.covers(env, url, s, app).await? {
                    best = Some(RecoveryPoint {
                        id: s.id.map(|i| i.to_hex()).unwrap_or_default(),
                        repository: url.clone(),
                        time: s.time,
                        cluster: s.details.cluster_id().and_then(|id| ids.get(id)).cloned(),
                    });
                    break;
                }
            }
            recovery_points.insert(app.name.clone(), best);
        }
    }
    Ok(Observed {
        now,
        clusters,
        holders,
        recovery_points,
        namespaces,
        volumes: env.volumes.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).expect("time")
    }

    #[test]
    fn only_the_holder_at_the_time_makes_recovery_points() {
        let app = Application {
            name: "shop".into(),
            namespaces: vec!["shop".into()],
            ..Application::default()
        };
        let ids = BTreeMap::from([
            ("uid-1".to_string(), "c1".to_string()),
            ("uid-2".to_string(), "c2".to_string()),
        ]);
        let none = BTreeMap::new();
        // Before any failover: the primary's backups count, the standby's do not.
        assert!(eligible(at(0), Some("uid-1"), &none, &app, None, &ids, "c1"));
        assert!(!eligible(at(0), Some("uid-2"), &none, &app, None, &ids, "c1"));
        // After c2 took over at t=100: c1's later backups (it came back, fenced) are refused.
        let lease = FenceLease::initial("p", "shop", "c1", at(0)).taken_over("c2", at(100), "failover");
        assert!(eligible(
            at(50),
            Some("uid-1"),
            &none,
            &app,
            Some(&lease),
            &ids,
            "c1"
        ));
        assert!(!eligible(
            at(150),
            Some("uid-1"),
            &none,
            &app,
            Some(&lease),
            &ids,
            "c1"
        ));
        assert!(eligible(
            at(150),
            Some("uid-2"),
            &none,
            &app,
            Some(&lease),
            &ids,
            "c1"
        ));
        // Unknown clusters never count once ids are known; with no ids at all, anything does.
        assert!(!eligible(
            at(150),
            Some("uid-9"),
            &none,
            &app,
            Some(&lease),
            &ids,
            "c1"
        ));
        assert!(eligible(at(150), None, &none, &app, None, &BTreeMap::new(), "c1"));
        // Tags narrow further.
        let tagged = Application {
            snapshot_tags: BTreeMap::from([("app".to_string(), "shop".to_string())]),
            ..app.clone()
        };
        assert!(!eligible(at(0), Some("uid-1"), &none, &tagged, None, &ids, "c1"));
        let tags = BTreeMap::from([("app".to_string(), "shop".to_string())]);
        assert!(eligible(at(0), Some("uid-1"), &tags, &tagged, None, &ids, "c1"));
    }

    #[test]
    fn a_snapshot_of_other_namespaces_does_not_hold_the_application() {
        let node = |path: &str| Node::stream(path, 1, Vec::new(), at(0));
        let app = Application {
            name: "shop".into(),
            namespaces: vec!["shop".into(), "shop-db".into()],
            ..Application::default()
        };
        let web = [
            node("resources/namespaces/cluster/web.json"),
            node("resources/configmaps/namespaces/shop/leaked.json"),
        ];
        assert!(!holds_namespaces(&web, &app));
        let part = [node("resources/namespaces/cluster/shop.json")];
        assert!(!holds_namespaces(&part, &app));
        let whole = [
            node("lifeboat/resources.json"),
            node("resources/namespaces/cluster/shop-db.json"),
            node("resources/namespaces/cluster/shop.json"),
        ];
        assert!(holds_namespaces(&whole, &app));
    }
}
