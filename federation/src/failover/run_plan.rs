//! The plan of a run, computed by a pure function from what was asked and what was observed:
//! `plan(request, plan, observed) -> Plan`. Tests assert on it, `--dry-run` prints it, the
//! executor applies it step by step.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use kube::ResourceExt;
use serde::{Deserialize, Serialize};

use super::steps::{Kind, RecoveryPointRef, Step};
use crate::advice::Advice;
use crate::clusters::valid_name;
use crate::crd::FailoverPlan;
use crate::health::Verdict;

/// What the operator asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    /// Failover, failback, relocate or drill.
    pub kind: Option<Kind>,
    /// The target (`--to`).
    pub to: Option<String>,
    /// Fail over although the holder is reachable or not confirmed failed.
    pub force: bool,
    /// Drills: suffix for restored namespaces.
    pub namespace_suffix: Option<String>,
}

/// One cluster as observed when planning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterView {
    /// Registered (`drctl cluster add`).
    pub registered: bool,
    /// This machine's probe of it just passed.
    pub reachable: bool,
    /// The verdict over every observer.
    pub verdict: Verdict,
    /// Its record says how to reach its Ceph (for blocklisting).
    pub ceph: bool,
}

/// A recovery point found for an application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryPoint {
    /// Snapshot id (hex).
    pub id: String,
    /// The repository holding it.
    pub repository: String,
    /// When it was taken.
    pub time: DateTime<Utc>,
    /// The cluster that took it, when known.
    pub cluster: Option<String>,
}

/// Everything the plan depends on, gathered beforehand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Observed {
    /// When it was gathered.
    pub now: DateTime<Utc>,
    /// Every cluster of the plan.
    pub clusters: BTreeMap<String, ClusterView>,
    /// Per application: the cluster holding its fencing lease and the epoch (`None`: no
    /// lease yet, the plan's primary holds it).
    pub holders: BTreeMap<String, Option<(String, u64)>>,
    /// Per application: its newest recovery point usable for this run.
    pub recovery_points: BTreeMap<String, Option<RecoveryPoint>>,
    /// Namespaces that exist on each reachable cluster.
    pub namespaces: BTreeMap<String, BTreeSet<String>>,
    /// Whether the run moves volume data (not with `--no-volumes`).
    pub volumes: bool,
}

/// A run's plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// What kind of run.
    pub kind: Kind,
    /// The FailoverPlan's name.
    pub plan: String,
    /// The cluster the applications leave (the holder).
    pub from: Option<String>,
    /// The cluster they go to.
    pub to: String,
    /// Namespace on the primary → namespace on the target, as this run uses it.
    pub namespace_mapping: BTreeMap<String, String>,
    /// Recovery points chosen (failover, drill), per application.
    pub recovery_points: BTreeMap<String, Option<RecoveryPoint>>,
    /// The RPO target (seconds).
    pub rpo_seconds: Option<u64>,
    /// The RTO target (seconds).
    pub rto_seconds: Option<u64>,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// What the operator should know before running it.
    pub warnings: Vec<String>,
}

/// Why no plan could be made; each says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// `--to` names a cluster outside the plan.
    #[error("{cluster} is not a cluster of plan {plan} ({members}); pick one of them")]
    UnknownCluster {
        /// The name given.
        cluster: String,
        /// The plan.
        plan: String,
        /// Its clusters.
        members: String,
    },
    /// The target already holds the applications.
    #[error(
        "{cluster} already runs the applications of plan {plan} (epoch {epoch}); there is nothing to move"
    )]
    AlreadyHolder {
        /// The cluster.
        cluster: String,
        /// The plan.
        plan: String,
        /// Its epoch.
        epoch: u64,
    },
    /// Failover from a holder that is not confirmed failed.
    #[error(
        "{cluster} is not confirmed failed ({phase}: {why}); a planned move of plan {plan} (relocate) loses \
         no data, a forced failover fences {cluster}"
    )]
    SourceNotFailed {
        /// The holder.
        cluster: String,
        /// The plan.
        plan: String,
        /// Its verdict.
        phase: String,
        /// The verdict in words.
        why: String,
    },
    /// A planned move needs the source.
    #[error(
        "{cluster} cannot be reached, so it cannot be quiesced and backed up one last time; a failover \
         of plan {plan} restores the newest recovery point instead"
    )]
    SourceUnreachable {
        /// The source.
        cluster: String,
        /// The plan.
        plan: String,
    },
    /// The target cannot take the applications.
    #[error("{cluster} cannot take over: {why}")]
    TargetUnavailable {
        /// The target.
        cluster: String,
        /// Why.
        why: String,
    },
    /// No cluster can take the applications.
    #[error("no cluster of plan {plan} can take over: {tried}")]
    NoTarget {
        /// The plan.
        plan: String,
        /// Each candidate and why not.
        tried: String,
        /// The candidates not registered in the federation.
        unregistered: Vec<String>,
    },
    /// The target is not registered in the federation.
    #[error("{cluster} cannot take over: it is not registered in the federation")]
    NotRegistered {
        /// The target.
        cluster: String,
    },
    /// A relocation names no target cluster.
    #[error("a relocation of plan {plan} needs a target cluster")]
    RelocateWithoutTarget {
        /// The plan.
        plan: String,
    },
    /// A drill into the cluster that runs the applications, into their own namespaces.
    #[error("{cluster} runs the applications; a drill into it restores only into namespaces of its own")]
    DrillIntoHolder {
        /// The target.
        cluster: String,
    },
    /// A failback names a target other than the plan's primary.
    #[error("{cluster} cannot take over: a failback goes to the plan's primary {primary}")]
    NotThePrimary {
        /// The target asked for.
        cluster: String,
        /// The plan.
        plan: String,
        /// The plan's primary.
        primary: String,
    },
    /// An application has no usable backup.
    #[error("application {application} has no recovery point: {why}; back it up and try again")]
    NoRecoveryPoint {
        /// The application.
        application: String,
        /// Why.
        why: String,
    },
    /// A drill would restore into existing namespaces.
    #[error("a drill restores in isolation, but {cluster} already has namespace(s) {namespaces}")]
    NamespacesExist {
        /// The target.
        cluster: String,
        /// The namespaces.
        namespaces: String,
    },
    /// A mapped namespace name is not valid.
    #[error("namespace {namespace:?} (after mapping and suffix) is not a valid name: {why}")]
    InvalidNamespace {
        /// The name.
        namespace: String,
        /// Why.
        why: crate::clusters::NameError,
    },
}

impl PlanError {
    /// What the operator can do about it, if anything.
    pub fn advice(&self) -> Option<Advice> {
        Some(match self {
            Self::SourceNotFailed { plan, .. } => Advice::RelocateOrForce { plan: plan.clone() },
            Self::SourceUnreachable { plan, .. } => Advice::FailOver { plan: plan.clone() },
            Self::NoRecoveryPoint { .. } => Advice::BackUpApplication,
            Self::NotRegistered { cluster } => Advice::RegisterClusters {
                clusters: vec![cluster.clone()],
            },
            Self::NoTarget { unregistered, .. } if !unregistered.is_empty() => Advice::RegisterClusters {
                clusters: unregistered.clone(),
            },
            Self::NotThePrimary { cluster, plan, .. } => Advice::RelocateTo {
                plan: plan.clone(),
                to: cluster.clone(),
            },
            Self::RelocateWithoutTarget { .. } => Advice::NameTarget,
            Self::NamespacesExist { .. } | Self::DrillIntoHolder { .. } => Advice::DrillBesideTheApplications,
            _ => return None,
        })
    }
}

/// Plans a run of `plan` per `request` given `observed`.
pub fn plan(request: &Request, fp: &FailoverPlan, observed: &Observed) -> Result<Plan, PlanError> {
    let kind = request.kind.unwrap_or(Kind::Failover);
    let spec = &fp.spec;
    let name = fp.name_any();
    let members = fp.clusters();
    let unknown = |c: &str| PlanError::UnknownCluster {
        cluster: c.to_string(),
        plan: name.clone(),
        members: members.join(", "),
    };
    if let Some(to) = &request.to
        && !members.contains(&to.as_str())
    {
        return Err(unknown(to));
    }
    // Who holds each application now.
    let holder_of = |app: &str| -> (String, u64) {
        observed
            .holders
            .get(app)
            .cloned()
            .flatten()
            .unwrap_or_else(|| (spec.primary.clone(), 0))
    };
    let holders: BTreeMap<String, (String, u64)> = spec
        .applications
        .iter()
        .map(|a| (a.name.clone(), holder_of(&a.name)))
        .collect();
    let mut from_set: Vec<String> = holders.values().map(|(h, _)| h.clone()).collect();
    from_set.sort();
    from_set.dedup();
    let from = holders.values().next().map(|(h, _)| h.clone());
    let mut warnings = Vec::new();
    if from_set.len() > 1 {
        warnings.push(format!(
            "the applications are held by different clusters ({}); each is moved from its own holder",
            from_set.join(", ")
        ));
    }
    let view = |c: &str| observed.clusters.get(c);
    let usable = |c: &str| -> Result<(), String> {
        match view(c) {
            None => Err("not observed".to_string()),
            Some(v) if !v.registered => Err("not registered".to_string()),
            Some(v) if !v.reachable => Err("unreachable from here".to_string()),
            Some(v) if matches!(v.verdict, Verdict::Failed { .. }) => Err("confirmed failed".to_string()),
            Some(_) => Ok(()),
        }
    };

    // The target.
    let to = match (kind, &request.to) {
        (Kind::Failback, Some(t)) if *t != spec.primary => {
            return Err(PlanError::NotThePrimary {
                cluster: t.clone(),
                plan: name.clone(),
                primary: spec.primary.clone(),
            });
        }
        (Kind::Failback, _) => spec.primary.clone(),
        (_, Some(t)) => t.clone(),
        (Kind::Relocate, None) => {
            return Err(PlanError::RelocateWithoutTarget { plan: name.clone() });
        }
        (_, None) => {
            let mut tried = Vec::new();
            let order = spec.standbys.iter().chain(std::iter::once(&spec.primary));
            let mut chosen = None;
            let order_unregistered = || {
                let order = spec.standbys.iter().chain(std::iter::once(&spec.primary));
                order
                    .filter(|c| view(c).is_some_and(|v| !v.registered))
                    .cloned()
                    .collect::<Vec<_>>()
            };
            for c in order {
                let holds = from_set.contains(c);
                if holds && !(kind == Kind::Drill && request.namespace_suffix.is_some()) {
                    continue;
                }
                match usable(c) {
                    Ok(()) => {
                        chosen = Some(c.clone());
                        break;
                    }
                    Err(why) => tried.push(format!("{c}: {why}")),
                }
            }
            chosen.ok_or_else(|| PlanError::NoTarget {
                unregistered: order_unregistered(),
                plan: name.clone(),
                tried: if tried.is_empty() {
                    "every other cluster holds the applications".to_string()
                } else {
                    tried.join("; ")
                },
            })?
        }
    };
    if view(&to).is_some_and(|v| !v.registered) {
        return Err(PlanError::NotRegistered { cluster: to.clone() });
    }
    usable(&to).map_err(|why| PlanError::TargetUnavailable {
        cluster: to.clone(),
        why,
    })?;
    if kind != Kind::Drill
        && let Some((_, (h, epoch))) = holders.iter().find(|(_, (h, _))| *h == to)
        && from_set.len() == 1
    {
        return Err(PlanError::AlreadyHolder {
            cluster: h.clone(),
            plan: name.clone(),
            epoch: *epoch,
        });
    }
    if kind == Kind::Drill && from_set.contains(&to) && request.namespace_suffix.is_none() {
        return Err(PlanError::DrillIntoHolder { cluster: to.clone() });
    }

    // The source's state decides between failover and a planned move.
    for h in &from_set {
        let v = view(h);
        let reachable = v.is_some_and(|v| v.reachable);
        match kind {
            Kind::Failover => {
                let failed = v.is_some_and(|v| matches!(v.verdict, Verdict::Failed { .. }));
                if !failed && !request.force {
                    let verdict = v.map(|v| v.verdict.clone()).unwrap_or(Verdict::Unknown);
                    let policy = fp.spec.health.policy();
                    return Err(PlanError::SourceNotFailed {
                        cluster: h.clone(),
                        plan: name.clone(),
                        phase: verdict.phase().to_string(),
                        why: if reachable {
                            format!("it answers from here; {}", verdict.describe(&policy))
                        } else {
                            verdict.describe(&policy)
                        },
                    });
                }
                if !failed {
                    warnings.push(format!(
                        "{h} is not confirmed failed: failing over because the run is forced"
                    ));
                }
            }
            Kind::Failback | Kind::Relocate if !reachable => {
                return Err(PlanError::SourceUnreachable {
                    cluster: h.clone(),
                    plan: name.clone(),
                });
            }
            _ => {}
        }
    }

    // Namespaces on the target.
    let mapping = spec.targets.get(&to).cloned().unwrap_or_default();
    let suffix = request.namespace_suffix.clone().unwrap_or_default();
    let mut ns_map = BTreeMap::new();
    for app in &spec.applications {
        for ns in &app.namespaces {
            let mapped = mapping
                .namespace_mapping
                .get(ns)
                .cloned()
                .unwrap_or_else(|| ns.clone());
            let mapped = if kind == Kind::Drill {
                format!("{mapped}{suffix}")
            } else {
                mapped
            };
            valid_name(&mapped).map_err(|why| PlanError::InvalidNamespace {
                namespace: mapped.clone(),
                why,
            })?;
            ns_map.insert(ns.clone(), mapped);
        }
    }
    let target_namespaces: Vec<String> = ns_map
        .values()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if kind == Kind::Drill {
        let existing = observed.namespaces.get(&to).cloned().unwrap_or_default();
        let clash: Vec<&String> = target_namespaces
            .iter()
            .filter(|n| existing.contains(*n))
            .collect();
        if !clash.is_empty() {
            return Err(PlanError::NamespacesExist {
                cluster: to.clone(),
                namespaces: clash.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
            });
        }
    }

    // Recovery points.
    let mut recovery_points = BTreeMap::new();
    if !kind.planned() {
        for app in &spec.applications {
            let rp = observed.recovery_points.get(&app.name).cloned().flatten();
            let Some(rp) = rp else {
                return Err(PlanError::NoRecoveryPoint {
                    application: app.name.clone(),
                    why: format!(
                        "no object snapshot by its holder {} in the plan's repositories holds its \
                         namespaces ({}; the newest {} eligible snapshots were read)",
                        holders.get(&app.name).map(|(h, _)| h.as_str()).unwrap_or("?"),
                        app.namespaces.join(", "),
                        super::observe::COVERAGE_CANDIDATES
                    ),
                });
            };
            let age = (observed.now - rp.time).num_seconds().max(0) as u64;
            if let Some(rpo) = spec.rpo_seconds
                && age > rpo
            {
                warnings.push(format!(
                    "the newest recovery point of {} is {age} s old, beyond the RPO of {rpo} s",
                    app.name
                ));
            }
            recovery_points.insert(app.name.clone(), Some(rp));
        }
    }
    if !observed.volumes {
        warnings.push(
            "volume data is not restored (--no-volumes): claims come back without it, unbound, and \
             the target's StorageClass provisions them empty"
                .to_string(),
        );
    }

    let mut steps = vec![Step::Preflight {
        cluster: to.clone(),
        namespaces: target_namespaces.clone(),
        isolated: kind == Kind::Drill,
    }];
    let app_ns = |app: &crate::crd::Application| -> Vec<String> {
        app.namespaces
            .iter()
            .map(|n| ns_map.get(n).cloned().unwrap_or_else(|| n.clone()))
            .collect()
    };
    let reachable = |c: &str| view(c).is_some_and(|v| v.reachable);
    let ceph = |c: &str| view(c).is_some_and(|v| v.ceph);
    if kind.planned() {
        for app in &spec.applications {
            let (h, _) = &holders[&app.name];
            steps.push(Step::Quiesce {
                cluster: h.clone(),
                application: app.name.clone(),
            });
        }
        for app in &spec.applications {
            let (h, _) = &holders[&app.name];
            steps.push(Step::FinalBackup {
                cluster: h.clone(),
                application: app.name.clone(),
            });
        }
    }
    if kind != Kind::Drill {
        for app in &spec.applications {
            let (h, _) = &holders[&app.name];
            steps.push(Step::Fence {
                application: app.name.clone(),
                from: Some(h.clone()),
                to: to.clone(),
            });
        }
        for app in &spec.applications {
            let (h, _) = &holders[&app.name];
            if reachable(h) {
                steps.push(Step::StopSource {
                    cluster: h.clone(),
                    application: app.name.clone(),
                });
            } else {
                warnings.push(format!(
                    "{h} is unreachable: its own agent stops {} there when it comes back and sees the higher epoch",
                    app.name
                ));
            }
        }
        if kind == Kind::Failover {
            for h in &from_set {
                if ceph(h) {
                    steps.push(Step::Blocklist { cluster: h.clone() });
                }
            }
        }
        if ceph(&to) {
            steps.push(Step::Unblocklist { cluster: to.clone() });
        }
    }
    let mut starts = Vec::new();
    for app in &spec.applications {
        let recovery_point = match recovery_points.get(&app.name).cloned().flatten() {
            Some(rp) => RecoveryPointRef::Snapshot {
                id: rp.id,
                repository: rp.repository,
                time: rp.time,
            },
            None => RecoveryPointRef::FinalBackup,
        };
        steps.push(Step::RestoreObjects {
            application: app.name.clone(),
            cluster: to.clone(),
            recovery_point,
            namespace_mapping: app
                .namespaces
                .iter()
                .map(|n| (n.clone(), ns_map.get(n).cloned().unwrap_or_else(|| n.clone())))
                .filter(|(a, b)| a != b)
                .collect(),
            storage_class_mapping: mapping.storage_class_mapping.clone(),
            drill: kind == Kind::Drill,
            volumes: observed.volumes,
        });
        if kind == Kind::Drill && observed.volumes {
            steps.push(Step::VerifyVolumes {
                cluster: to.clone(),
                application: app.name.clone(),
            });
        }
        starts.push(Step::StartWorkloads {
            cluster: to.clone(),
            application: app.name.clone(),
            namespaces: app_ns(app),
        });
        // Each application starts as soon as its data is in, except in a drill that reads
        // volume data back: no workload runs while that is left out of the measured RTO.
        if !(kind == Kind::Drill && observed.volumes) {
            steps.append(&mut starts);
        }
    }
    steps.append(&mut starts);
    for app in &spec.applications {
        steps.push(Step::WaitReady {
            cluster: to.clone(),
            application: app.name.clone(),
            namespaces: app_ns(app),
        });
    }
    if kind == Kind::Drill {
        for app in &spec.applications {
            steps.push(Step::Verify {
                cluster: to.clone(),
                application: app.name.clone(),
            });
        }
        steps.push(Step::Teardown {
            cluster: to.clone(),
            namespaces: target_namespaces,
        });
    } else {
        for hook in &spec.traffic {
            steps.push(Step::SwitchTraffic {
                hook: hook.name.clone(),
                from: from.clone(),
                to: to.clone(),
            });
        }
        for app in &spec.applications {
            steps.push(Step::Unfence {
                cluster: to.clone(),
                application: app.name.clone(),
            });
        }
        if kind.planned() {
            for app in &spec.applications {
                let (h, _) = &holders[&app.name];
                steps.push(Step::RestartSource {
                    cluster: h.clone(),
                    application: app.name.clone(),
                });
            }
        }
    }
    Ok(Plan {
        kind,
        plan: name,
        from,
        to,
        namespace_mapping: ns_map,
        recovery_points,
        rpo_seconds: spec.rpo_seconds,
        rto_seconds: spec.rto_seconds,
        steps,
        warnings,
    })
}

#[cfg(test)]
#[path = "run_plan_tests.rs"]
mod tests;
