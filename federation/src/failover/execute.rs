//! The executor: starts or resumes a run, then applies its steps one at a time, recording
//! the run after every transition (compare-and-swap in every repository, so two processes
//! never run one run) and publishing each step as it starts and ends.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use chrono::Utc;
use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::api::ListParams;
use kube::{Api, Client};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::machine::{MAX_ATTEMPTS, Next, Phase, RunRecord, StepState};
use super::run_plan::Plan;
use super::steps::{Kind, RecoveryPointRef, Step};
use super::{Env, FailoverError, data, ready, teardown, traffic};
use crate::audit::{self, AuditRecord};
use crate::crd::{Application, FailoverPlan};
use crate::fence::{self, blocklist, enforce};
use crate::state::{Cas, StateError, StateStore, Version, key};
use lifeboat_controller::fence::FenceMark;

/// How often a running step's record is saved with a fresh heartbeat (well inside
/// [`super::machine::STALE_AFTER_SECS`]).
const HEARTBEAT_EVERY: std::time::Duration = std::time::Duration::from_secs(20);

/// A step starting or ending, for progress output.
#[derive(Debug, Clone)]
pub enum Event {
    /// Step `index` (of `total`) starts.
    Started {
        /// Its index.
        index: usize,
        /// Steps in the run.
        total: usize,
        /// Its title.
        title: String,
        /// Which attempt.
        attempt: u32,
    },
    /// Step `index` ended.
    Ended {
        /// Its index.
        index: usize,
        /// Steps in the run.
        total: usize,
        /// Its title.
        title: String,
        /// How it ended.
        state: StepState,
        /// What it said.
        message: Option<String>,
        /// How long it took.
        seconds: f64,
    },
}

/// `federation/active/<plan>` (or `<plan>.drill`): the run in progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Active {
    run: String,
    kind: Kind,
}

fn active_key(plan: &str, kind: Kind) -> String {
    if kind == Kind::Drill {
        key(&["active", &format!("{plan}.drill")])
    } else {
        key(&["active", plan])
    }
}

/// A run's key.
pub fn run_key(id: &str) -> String {
    key(&["runs", id])
}

/// Writes one run's record with compare-and-swap in every repository.
pub struct RunStore {
    state: StateStore,
    key: String,
    versions: HashMap<String, Version>,
}

impl RunStore {
    /// The store of a new run.
    pub fn new(state: &StateStore, id: &str) -> Self {
        Self {
            state: state.clone(),
            key: run_key(id),
            versions: HashMap::new(),
        }
    }

    /// Reads a run (the copy with the highest revision).
    pub async fn load(state: &StateStore, id: &str) -> Result<Option<(RunRecord, Self)>, FailoverError> {
        let mut store = Self::new(state, id);
        let mut best: Option<RunRecord> = None;
        let mut answered = false;
        for (r, got) in state.read_all::<RunRecord>(&store.key).await {
            let Ok(got) = got else { continue };
            answered = true;
            if let Some(v) = got {
                store.versions.insert(r.url().to_string(), v.version.clone());
                if best.as_ref().is_none_or(|b| v.value.revision > b.revision) {
                    best = Some(v.value);
                }
            }
        }
        if !answered {
            return Err(StateError::Unreachable(format!("reading run {id}")).into());
        }
        Ok(best.map(|b| (b, store)))
    }

    /// Records `record` in every reachable repository.
    pub async fn save(&mut self, record: &RunRecord) -> Result<(), FailoverError> {
        let mut written = 0;
        let mut errors = Vec::new();
        for r in self.state.replicas().to_vec() {
            let url = r.url().to_string();
            let mut attempt = match self.versions.get(&url) {
                Some(v) => r.update(&self.key, record, v).await,
                None => r.create(&self.key, record).await,
            };
            if matches!(attempt, Ok(Cas::Conflict)) {
                // Someone wrote it: a newer revision by another owner means we lost the run.
                match r.get::<RunRecord>(&self.key).await {
                    Ok(Some(cur))
                        if cur.value.revision >= record.revision && cur.value.owner != record.owner =>
                    {
                        return Err(FailoverError::TakenOver {
                            run: record.id.clone(),
                            owner: cur.value.owner,
                        });
                    }
                    Ok(Some(cur)) => attempt = r.update(&self.key, record, &cur.version).await,
                    Ok(None) => attempt = r.create(&self.key, record).await,
                    Err(e) => attempt = Err(e),
                }
            }
            match attempt {
                Ok(Cas::Written(v)) => {
                    self.versions.insert(url, v);
                    written += 1;
                }
                Ok(Cas::Conflict) => {
                    return Err(FailoverError::TakenOver {
                        run: record.id.clone(),
                        owner: "another process".to_string(),
                    });
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        if written == 0 {
            return Err(StateError::Unreachable(errors.join("; ")).into());
        }
        Ok(())
    }
}

/// The run of `plan` (of this kind) in progress, if any.
pub async fn find_active(
    env: &Env,
    plan: &str,
    kind: Kind,
) -> Result<Option<(RunRecord, RunStore)>, FailoverError> {
    let actives: Vec<Active> = env.state.read_values(&active_key(plan, kind)).await?;
    for a in actives {
        if let Some((record, store)) = RunStore::load(&env.state, &a.run).await?
            && record.phase != Phase::Succeeded
        {
            return Ok(Some((record, store)));
        }
    }
    Ok(None)
}

/// Starts a new run of `plan`: refuses if one of the same plan (and kind family) is in
/// progress, records the run and the audit entry.
pub async fn start(env: &Env, fp: &FailoverPlan, plan: Plan) -> Result<(RunRecord, RunStore), FailoverError> {
    use kube::ResourceExt;
    if let Some((r, _)) = find_active(env, &plan.plan, plan.kind).await? {
        let step = r
            .steps
            .iter()
            .find(|s| s.state != StepState::Done && s.state != StepState::Skipped)
            .map(|s| s.step.title())
            .unwrap_or_default();
        return Err(FailoverError::InProgress {
            kind: r.plan.kind.as_str().to_string(),
            run: r.id,
            plan: plan.plan,
            step,
        });
    }
    let now = Utc::now();
    let id = format!(
        "{}-{}-{}-{:04x}",
        plan.kind.as_str(),
        plan.plan,
        now.format("%Y%m%d%H%M%S"),
        rand::random::<u16>()
    );
    let record = RunRecord::new(
        id.clone(),
        plan.clone(),
        &fp.namespace()
            .unwrap_or_else(|| lifeboat_controller::DEFAULT_NAMESPACE.to_string()),
        fp.spec.clone(),
        &env.actor,
        now,
    );
    super::store_plan(&env.state, fp).await?;
    let mut store = RunStore::new(&env.state, &id);
    store.save(&record).await?;
    env.state
        .overwrite_all(
            &active_key(&plan.plan, plan.kind),
            &Active {
                run: id.clone(),
                kind: plan.kind,
            },
        )
        .await?;
    let mut a = AuditRecord::new(plan.kind.as_str(), "started", &env.actor, describe(&plan));
    a.plan = Some(plan.plan.clone());
    a.run = Some(id);
    a.from = plan.from.clone();
    a.to = Some(plan.to.clone());
    audit::append(&env.state, &a).await?;
    Ok((record, store))
}

fn describe(plan: &Plan) -> String {
    format!(
        "{} of plan {} from {} to {} in {} steps",
        plan.kind.as_str(),
        plan.plan,
        plan.from.as_deref().unwrap_or("-"),
        plan.to,
        plan.steps.len()
    )
}

/// Takes an existing run over (after an interruption or a fixed failure).
pub async fn resume(env: &Env, plan: &str, kind: Kind) -> Result<(RunRecord, RunStore), FailoverError> {
    let Some((mut record, mut store)) = find_active(env, plan, kind).await? else {
        return Err(FailoverError::NoRun(format!("in progress for plan {plan}")));
    };
    // Checked before any step runs: the final backup and the restore must agree.
    let restores = |with: bool| {
        record
            .steps
            .iter()
            .any(|s| matches!(s.step, Step::RestoreObjects { volumes, .. } if volumes == with))
    };
    match (restores(true), restores(false), env.volumes.is_some()) {
        (true, _, false) => {
            return Err(FailoverError::VolumesDiffer {
                run: record.id.clone(),
                planned: "with",
                fix: "without --no-volumes",
            });
        }
        (_, true, true) => {
            return Err(FailoverError::VolumesDiffer {
                run: record.id.clone(),
                planned: "without",
                fix: "with --no-volumes",
            });
        }
        _ => {}
    }
    record.resume(&env.actor, Utc::now())?;
    store.save(&record).await?;
    Ok((record, store))
}

/// Applies the run's remaining steps; returns the finished record.
pub async fn run(env: &Env, mut record: RunRecord, store: &mut RunStore) -> Result<RunRecord, FailoverError> {
    let mut clients = Clients::default();
    let total = record.steps.len();
    loop {
        let i = match record.next() {
            Next::Finish(phase) => return finish(env, record, store, phase, &mut clients).await,
            Next::Run(i) => i,
        };
        record.begin(i, Utc::now());
        store.save(&record).await?;
        let title = record.steps[i].step.title();
        (env.events)(&Event::Started {
            index: i,
            total,
            title: title.clone(),
            attempt: record.steps[i].attempts,
        });
        let t = Instant::now();
        let (outcome, heartbeat, revision) = apply_beating(env, &record, i, &mut clients, store).await?;
        record.heartbeat = record.heartbeat.max(heartbeat);
        record.revision = record.revision.max(revision);
        let now = Utc::now();
        match outcome {
            Ok(Outcome::Done(message, output)) => record.done(i, message, output, now),
            Ok(Outcome::Skipped(why)) => record.skip(i, why, now),
            Err(Failure { message, permanent }) => {
                record.fail(i, message, permanent, now);
                let exhausted = record.steps[i].attempts >= MAX_ATTEMPTS;
                if !exhausted {
                    tokio::time::sleep(std::time::Duration::from_secs(
                        2 * u64::from(record.steps[i].attempts),
                    ))
                    .await;
                }
            }
        }
        store.save(&record).await?;
        let s = &record.steps[i];
        (env.events)(&Event::Ended {
            index: i,
            total,
            title,
            state: s.state,
            message: s.message.clone(),
            seconds: t.elapsed().as_secs_f64(),
        });
    }
}

/// Applies step `i` and, while it runs (a restore of large volumes, a readiness wait), saves
/// a copy of the record with a fresh heartbeat every [`HEARTBEAT_EVERY`], so a `--resume`
/// elsewhere does not take a live run over. Returns the outcome, and the copy's heartbeat
/// and revision. A heartbeat that finds the run taken over stops the step there
/// ([`FailoverError::TakenOver`]): two owners must not run one step side by side.
async fn apply_beating(
    env: &Env,
    record: &RunRecord,
    i: usize,
    clients: &mut Clients,
    store: &mut RunStore,
) -> Result<(Result<Outcome, Failure>, chrono::DateTime<Utc>, u64), FailoverError> {
    let mut beat = record.clone();
    let step = apply(env, record, i, clients);
    tokio::pin!(step);
    let start = tokio::time::Instant::now() + HEARTBEAT_EVERY;
    let mut tick = tokio::time::interval_at(start, HEARTBEAT_EVERY);
    let outcome = loop {
        tokio::select! {
            outcome = &mut step => break outcome,
            _ = tick.tick() => {
                beat.beat(Utc::now());
                match store.save(&beat).await {
                    Ok(()) => {}
                    Err(e @ FailoverError::TakenOver { .. }) => return Err(e),
                    Err(e) => tracing::warn!(run = %beat.id, error = %e, "could not record the run's heartbeat"),
                }
            }
        }
    };
    Ok((outcome, beat.heartbeat, beat.revision))
}

async fn finish(
    env: &Env,
    mut record: RunRecord,
    store: &mut RunStore,
    phase: Phase,
    clients: &mut Clients,
) -> Result<RunRecord, FailoverError> {
    if record.phase == Phase::Running {
        record.finish(phase, Utc::now());
        store.save(&record).await?;
    }
    let kind = record.plan.kind;
    if phase == Phase::Succeeded || kind == Kind::Drill {
        env.state.delete_all(&active_key(&record.plan.plan, kind)).await?;
    }
    let outcome = if phase == Phase::Succeeded {
        "succeeded"
    } else {
        "failed"
    };
    let failed_step = record
        .steps
        .iter()
        .find(|s| s.state == StepState::Failed)
        .map(|s| {
            format!(
                ": {} failed: {}",
                s.step.title(),
                s.message.clone().unwrap_or_default()
            )
        })
        .unwrap_or_default();
    let message = format!("{}{failed_step}", describe(&record.plan));
    let mut a = AuditRecord::new(kind.as_str(), outcome, &env.actor, message.clone());
    a.plan = Some(record.plan.plan.clone());
    a.run = Some(record.id.clone());
    a.from = record.plan.from.clone();
    a.to = Some(record.plan.to.clone());
    a.epoch = record
        .output_of(|s| matches!(s, Step::Fence { .. }))
        .and_then(|o| o["epoch"].as_u64());
    audit::append(&env.state, &a).await?;
    let reason = format!(
        "{}{}",
        capitalise(kind.as_str()),
        if phase == Phase::Succeeded {
            "Succeeded"
        } else {
            "Failed"
        }
    );
    let mut involved = vec![record.plan.to.clone()];
    involved.extend(record.plan.from.clone());
    for c in involved {
        if let Ok(client) = clients.get(env, &c).await {
            audit::event(
                &client,
                &record.plan_namespace,
                &record.plan.plan,
                phase != Phase::Succeeded,
                &reason,
                &message,
            )
            .await;
        }
    }
    Ok(record)
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// How a step ended: done (a message, an output), or skipped (why).
pub(super) enum Outcome {
    Done(Option<String>, Value),
    Skipped(String),
}

/// A failed step: retried unless `permanent`.
pub(super) struct Failure {
    message: String,
    permanent: bool,
}

pub(super) fn retry(message: impl Into<String>) -> Failure {
    Failure {
        message: message.into(),
        permanent: false,
    }
}

pub(super) fn permanent(message: impl Into<String>) -> Failure {
    Failure {
        message: message.into(),
        permanent: true,
    }
}

/// Clients by cluster, connected on first use.
#[derive(Default)]
pub(super) struct Clients {
    by_name: HashMap<String, Client>,
}

impl Clients {
    pub(super) async fn get(&mut self, env: &Env, cluster: &str) -> Result<Client, Failure> {
        if let Some(c) = self.by_name.get(cluster) {
            return Ok(c.clone());
        }
        let record = env.records.get(cluster).ok_or_else(|| {
            permanent(format!(
                "cluster {cluster} is not registered in the federation; register it and resume the run"
            ))
        })?;
        let c = env
            .connector
            .connect(record)
            .await
            .map_err(|e| retry(e.to_string()))?;
        self.by_name.insert(cluster.to_string(), c.clone());
        Ok(c)
    }
}

pub(super) fn application<'a>(record: &'a RunRecord, name: &str) -> Result<&'a Application, Failure> {
    record
        .spec
        .applications
        .iter()
        .find(|a| a.name == name)
        .ok_or_else(|| permanent(format!("application {name} is not in the plan")))
}

fn mapped(record: &RunRecord, namespaces: &[String]) -> Vec<String> {
    namespaces
        .iter()
        .map(|n| {
            record
                .plan
                .namespace_mapping
                .get(n)
                .cloned()
                .unwrap_or_else(|| n.clone())
        })
        .collect()
}

fn plan_urls(record: &RunRecord) -> Vec<String> {
    record.spec.repositories.iter().map(|r| r.url.clone()).collect()
}

/// The recovery point the plan restores `application` from (verification uses the same
/// one); the final backup when the plan names none.
pub(super) fn restored_point(record: &RunRecord, application: &str) -> RecoveryPointRef {
    record
        .steps
        .iter()
        .find_map(|s| match &s.step {
            Step::RestoreObjects {
                application: a,
                recovery_point,
                ..
            } if a == application => Some(recovery_point.clone()),
            _ => None,
        })
        .unwrap_or(RecoveryPointRef::FinalBackup)
}

fn epoch_of(record: &RunRecord, application: &str) -> u64 {
    record
        .output_of(|s| matches!(s, Step::Fence { application: a, .. } if a == application))
        .and_then(|o| o["epoch"].as_u64())
        .unwrap_or(0)
}

/// The first repository of the plan that could be opened.
fn first_repository(
    env: &Env,
    record: &RunRecord,
) -> Result<(String, std::sync::Arc<lifeboat_backup::Repository>), Failure> {
    record
        .spec
        .repositories
        .iter()
        .find_map(|r| {
            env.repositories
                .get(&r.url)
                .map(|repo| (r.url.clone(), repo.clone()))
        })
        .ok_or_else(|| retry("none of the plan's repositories could be opened"))
}

async fn node_addresses(client: Option<&Client>, recorded: &[String]) -> Vec<String> {
    let mut out: Vec<String> = recorded.to_vec();
    if let Some(c) = client
        && let Ok(list) = Api::<Node>::all(c.clone()).list(&ListParams::default()).await
    {
        for n in list.items {
            for a in n.status.and_then(|s| s.addresses).unwrap_or_default() {
                if a.type_ == "InternalIP" && !out.contains(&a.address) {
                    out.push(a.address);
                }
            }
        }
    }
    out
}

async fn apply(env: &Env, record: &RunRecord, i: usize, clients: &mut Clients) -> Result<Outcome, Failure> {
    let plan_name = record.plan.plan.clone();
    match record.steps[i].step.clone() {
        Step::Preflight {
            cluster,
            namespaces,
            isolated,
        } => {
            let client = clients.get(env, &cluster).await?;
            let api: Api<Namespace> = Api::all(client);
            let existing: Vec<String> = api
                .list(&ListParams::default())
                .await
                .map_err(|e| retry(format!("list namespaces on {cluster}: {e}")))?
                .items
                .iter()
                .map(kube::ResourceExt::name_any)
                .collect();
            let clash: Vec<&String> = namespaces.iter().filter(|n| existing.contains(n)).collect();
            if isolated && !clash.is_empty() {
                return Err(permanent(format!(
                    "namespace(s) {} exist on {cluster}; a drill restores only into new namespaces (use \
                     --namespace-suffix)",
                    clash.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                )));
            }
            let created: Vec<&String> = namespaces.iter().filter(|n| !existing.contains(n)).collect();
            // A planned move checks its volume data can move before it stops anything.
            if env.volumes.is_some() {
                let blocked = planned_move_blockers(env, record, clients, &cluster).await?;
                if !blocked.is_empty() {
                    return Err(permanent(format!(
                        "nothing was stopped: volume data cannot move: {}; pass --no-volumes to move \
                         objects only (claims come back empty)",
                        blocked.join("; ")
                    )));
                }
            }
            Ok(Outcome::Done(
                Some(format!(
                    "{cluster} answers; {} of {} namespaces are new",
                    created.len(),
                    namespaces.len()
                )),
                json!({"created": created}),
            ))
        }
        Step::Quiesce {
            cluster,
            application: a,
        } => {
            let app = application(record, &a)?;
            let client = clients.get(env, &cluster).await?;
            let scope = enforce::Scope {
                cluster: &cluster,
                namespaces: &app.namespaces,
                selector: app.selector.as_deref(),
            };
            let why = format!("quiesced: {} run {}", record.plan.kind.as_str(), record.id);
            let changes = enforce::stop(&client, &scope, &why)
                .await
                .map_err(|e| retry(e.to_string()))?;
            let timeout = std::time::Duration::from_secs(record.spec.readiness.timeout_seconds);
            enforce::wait_stopped(&client, &scope, timeout)
                .await
                .map_err(|e| retry(e.to_string()))?;
            Ok(Outcome::Done(
                Some(format!("{} change(s); stopped", changes.len())),
                json!({"changes": changes}),
            ))
        }
        Step::FinalBackup {
            cluster,
            application: a,
        } => {
            let app = application(record, &a)?;
            let client = clients.get(env, &cluster).await?;
            let (url, repo) = first_repository(env, record)?;
            let snap = data::final_backup(
                &client,
                &repo,
                &plan_name,
                &record.id,
                app,
                env.volumes.as_ref(),
                env.items.clone(),
            )
            .await
            .map_err(|e| retry(e.to_string()))?;
            let id = snap.id.map(|i| i.to_hex()).unwrap_or_default();
            Ok(Outcome::Done(
                Some(format!("snapshot {} in {url}", &id[..id.len().min(12)])),
                json!({"snapshot": id, "repository": url, "time": snap.time, "objects": snap.summary.files}),
            ))
        }
        Step::Fence {
            application: a,
            from,
            to,
        } => {
            let app = application(record, &a)?;
            let reason = format!("{} run {}", record.plan.kind.as_str(), record.id);
            let taken = fence::take_over(&env.state, &plan_name, &a, &to, &reason)
                .await
                .map_err(|e| retry(e.to_string()))?;
            // Nothing backs the application up on the target until its restore is ready.
            let target_ns = mapped(record, &app.namespaces);
            let mark = FenceMark {
                plan: plan_name.clone(),
                application: a.clone(),
                namespaces: target_ns,
                holder: to.clone(),
                epoch: taken.lease.epoch,
            };
            let client = clients.get(env, &to).await?;
            enforce::mark_repositories(&client, &to, &plan_urls(record), &mark)
                .await
                .map_err(|e| retry(e.to_string()))?;
            if !taken.already_held {
                let mut entry = AuditRecord::new(
                    "fence",
                    "done",
                    &env.actor,
                    format!(
                        "{plan_name}/{a}: epoch {} now held by {to}{}",
                        taken.lease.epoch,
                        if taken.unreachable.is_empty() {
                            String::new()
                        } else {
                            format!(
                                " (not yet written to {}: unreachable)",
                                taken
                                    .unreachable
                                    .iter()
                                    .map(|(u, _)| u.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        }
                    ),
                );
                entry.plan = Some(plan_name.clone());
                entry.run = Some(record.id.clone());
                entry.from = from.clone();
                entry.to = Some(to.clone());
                entry.epoch = Some(taken.lease.epoch);
                audit::append(&env.state, &entry)
                    .await
                    .map_err(|e| retry(e.to_string()))?;
            }
            Ok(Outcome::Done(
                Some(format!("epoch {} held by {to}", taken.lease.epoch)),
                json!({"epoch": taken.lease.epoch, "written": taken.written, "unreachable": taken.unreachable}),
            ))
        }
        Step::StopSource {
            cluster,
            application: a,
        } => {
            let app = application(record, &a)?;
            let client = clients.get(env, &cluster).await?;
            let epoch = epoch_of(record, &a);
            let why = format!("fenced: {plan_name}/{a} epoch {epoch} held by {}", record.plan.to);
            let scope = enforce::Scope {
                cluster: &cluster,
                namespaces: &app.namespaces,
                selector: app.selector.as_deref(),
            };
            let mut changes = enforce::stop(&client, &scope, &why)
                .await
                .map_err(|e| retry(e.to_string()))?;
            let mark = FenceMark {
                plan: plan_name.clone(),
                application: a.clone(),
                namespaces: app.namespaces.clone(),
                holder: record.plan.to.clone(),
                epoch,
            };
            changes.extend(
                enforce::mark_repositories(&client, &cluster, &plan_urls(record), &mark)
                    .await
                    .map_err(|e| retry(e.to_string()))?,
            );
            Ok(Outcome::Done(
                Some(format!("{} change(s)", changes.len())),
                json!({"changes": changes}),
            ))
        }
        Step::Blocklist { cluster } => {
            let rec = env.records.get(&cluster).cloned();
            let Some(ceph) = rec.as_ref().and_then(|r| r.ceph.clone()) else {
                return Ok(Outcome::Skipped(format!("{cluster} has no Ceph configured")));
            };
            let client = clients.get(env, &cluster).await.ok();
            let addresses = node_addresses(
                client.as_ref(),
                &rec.map(|r| r.node_addresses).unwrap_or_default(),
            )
            .await;
            if addresses.is_empty() {
                return Ok(Outcome::Skipped(format!("no node address of {cluster} is known")));
            }
            match blocklist::add(&ceph, &addresses).await {
                Ok(added) => Ok(Outcome::Done(
                    Some(format!("{} client address(es) blocklisted", added.len())),
                    json!({"blocklisted": added}),
                )),
                // Its Ceph is gone with it: nothing can write there anyway.
                Err(e) => Ok(Outcome::Skipped(format!("its Ceph is unreachable: {e}"))),
            }
        }
        Step::Unblocklist { cluster } => {
            let rec = env.records.get(&cluster).cloned();
            let Some(ceph) = rec.as_ref().and_then(|r| r.ceph.clone()) else {
                return Ok(Outcome::Skipped(format!("{cluster} has no Ceph configured")));
            };
            let client = clients.get(env, &cluster).await.ok();
            let addresses = node_addresses(
                client.as_ref(),
                &rec.map(|r| r.node_addresses).unwrap_or_default(),
            )
            .await;
            let removed = blocklist::remove(&ceph, &addresses)
                .await
                .map_err(|e| retry(e.to_string()))?;
            Ok(Outcome::Done(
                Some(format!("{} blocklist entr(ies) removed", removed.len())),
                json!({"removed": removed}),
            ))
        }
        Step::RestoreObjects {
            application: a,
            cluster,
            recovery_point,
            namespace_mapping,
            storage_class_mapping,
            drill,
            volumes,
        } => {
            let mover = match (volumes, &env.volumes) {
                (false, _) => None,
                (true, Some(mover)) => Some(mover),
                (true, None) => {
                    return Err(permanent(
                        "this run's plan restores volume data, and this drctl was started with \
                         --no-volumes: resume without it",
                    ));
                }
            };
            let app = application(record, &a)?;
            let client = clients.get(env, &cluster).await?;
            let (repo, snapshot) = recovery_snapshot(env, record, &a, &recovery_point).await?;
            let restored = data::restore(
                &client,
                &repo,
                &snapshot,
                app,
                &namespace_mapping,
                &storage_class_mapping,
                drill,
                &record.id,
                mover,
                env.items.clone(),
            )
            .await
            .map_err(|e| match e {
                // Trying again changes nothing until the operator deletes the claims.
                data::DataError::StaleVolumes { .. } => permanent(e.to_string()),
                e => retry(e.to_string()),
            })?;
            let volumes = match restored.volumes.len() {
                0 => String::new(),
                n => format!(", {}/{n} volumes written", restored.volumes_in_place()),
            };
            Ok(Outcome::Done(
                Some(format!(
                    "{} created, {} updated, {} unchanged from {}{volumes}",
                    restored.created,
                    restored.updated,
                    restored.unchanged,
                    &restored.snapshot[..restored.snapshot.len().min(12)]
                )),
                json!({"restored": restored, "time": snapshot.time}),
            ))
        }
        Step::StartWorkloads {
            cluster,
            application: a,
            namespaces,
        } => {
            let app = application(record, &a)?;
            let client = clients.get(env, &cluster).await?;
            let scope = enforce::Scope {
                cluster: &cluster,
                namespaces: &namespaces,
                selector: app.selector.as_deref(),
            };
            let changes = enforce::start(&client, &scope)
                .await
                .map_err(|e| retry(e.to_string()))?;
            Ok(Outcome::Done(
                Some(format!("{} workload(s) scaled back up", changes.len())),
                json!({"changes": changes}),
            ))
        }
        Step::WaitReady {
            cluster,
            application: a,
            namespaces,
        } => {
            let app = application(record, &a)?;
            let client = clients.get(env, &cluster).await?;
            let gates = ready::wait(
                &client,
                &namespaces,
                app.selector.as_deref(),
                &record.spec.readiness,
                &cluster,
            )
            .await
            .map_err(|e| permanent(e.to_string()))?;
            Ok(Outcome::Done(
                Some(
                    gates
                        .iter()
                        .map(|g| format!("{} after {:.1} s", g.detail, g.after_seconds))
                        .collect::<Vec<_>>()
                        .join("; "),
                ),
                json!({"gates": gates}),
            ))
        }
        Step::SwitchTraffic { hook, from, to } => {
            let Some(h) = record.spec.traffic.iter().find(|h| h.name == hook) else {
                return Err(permanent(format!("traffic hook {hook} is not in the plan")));
            };
            let to_client = clients.get(env, &to).await?;
            let from_client = match &from {
                Some(f) => clients.get(env, f).await.ok(),
                None => None,
            };
            let first_app = record
                .spec
                .applications
                .first()
                .map(|a| a.name.clone())
                .unwrap_or_default();
            let s = traffic::Switch {
                plan: &plan_name,
                run: &record.id,
                applications: record.spec.applications.iter().map(|a| a.name.clone()).collect(),
                from: from.as_deref().map(|f| (f, from_client)),
                to: (&to, to_client),
                epoch: epoch_of(record, &first_app),
                namespace_mapping: &record.plan.namespace_mapping,
            };
            let done = traffic::switch(h, &s).await.map_err(|e| retry(e.to_string()))?;
            Ok(Outcome::Done(Some(done), Value::Null))
        }
        Step::Unfence {
            cluster,
            application: a,
        } => {
            let client = clients.get(env, &cluster).await?;
            let changes = enforce::unmark_repositories(&client, &cluster, &plan_urls(record), &plan_name, &a)
                .await
                .map_err(|e| retry(e.to_string()))?;
            let mut entry = AuditRecord::new(
                "unfence",
                "done",
                &env.actor,
                format!("{plan_name}/{a}: {cluster} may back it up again"),
            );
            entry.plan = Some(plan_name.clone());
            entry.run = Some(record.id.clone());
            entry.to = Some(cluster.clone());
            entry.epoch = Some(epoch_of(record, &a));
            audit::append(&env.state, &entry)
                .await
                .map_err(|e| retry(e.to_string()))?;
            Ok(Outcome::Done(
                Some(format!("{} mark(s) lifted", changes.len())),
                json!({"changes": changes}),
            ))
        }
        Step::VerifyVolumes { cluster, application } => {
            super::verify::volumes(env, record, clients, &cluster, &application).await
        }
        Step::Verify { cluster, application } => {
            super::verify::objects(env, record, clients, &cluster, &application).await
        }
        Step::RestartSource { cluster, application } => {
            super::restart::restart_source(env, record, clients, &cluster, &application).await
        }
        Step::Teardown { cluster, namespaces } => {
            let created: Vec<String> = record
                .output_of(|s| matches!(s, Step::Preflight { .. }))
                .and_then(|o| serde_json::from_value(o["created"].clone()).ok())
                .unwrap_or_default();
            let doomed: Vec<String> = namespaces.into_iter().filter(|n| created.contains(n)).collect();
            let client = clients.get(env, &cluster).await?;
            let (message, output) = teardown::tear_down(
                &client,
                &cluster,
                &doomed,
                env.volumes.as_ref(),
                teardown::CLAIMS_GONE_WITHIN,
            )
            .await
            .map_err(retry)?;
            Ok(Outcome::Done(Some(message), output))
        }
    }
}

/// Each of `app`'s namespaces → its name on the target.
pub(super) fn namespace_mapping(record: &RunRecord, app: &Application) -> BTreeMap<String, String> {
    app.namespaces
        .iter()
        .map(|n| {
            (
                n.clone(),
                record
                    .plan
                    .namespace_mapping
                    .get(n)
                    .cloned()
                    .unwrap_or_else(|| n.clone()),
            )
        })
        .collect()
}

/// For each application a planned move takes a final backup of: what stands in the way of its
/// volume data moving from the source to `target` (see [`super::volume_preflight`]).
async fn planned_move_blockers(
    env: &Env,
    record: &RunRecord,
    clients: &mut Clients,
    target: &str,
) -> Result<Vec<String>, Failure> {
    let mut out = Vec::new();
    for s in &record.steps {
        let Step::FinalBackup {
            cluster,
            application: a,
        } = &s.step
        else {
            continue;
        };
        let app = application(record, a)?;
        let mapping = record
            .steps
            .iter()
            .find_map(|r| match &r.step {
                Step::RestoreObjects {
                    application: x,
                    storage_class_mapping,
                    ..
                } if x == a => Some(storage_class_mapping.clone()),
                _ => None,
            })
            .unwrap_or_default();
        let source = clients.get(env, cluster).await?;
        let target = clients.get(env, target).await?;
        let found = super::volume_preflight::problems(&source, &target, app, &mapping)
            .await
            .map_err(retry)?;
        out.extend(found.into_iter().map(|p| format!("{a}: {p}")));
    }
    Ok(out)
}

/// The repository and snapshot of a recovery point (a replica holding the same snapshot
/// id serves if the chosen repository cannot be reached).
pub(super) async fn recovery_snapshot(
    env: &Env,
    record: &RunRecord,
    application: &str,
    rp: &RecoveryPointRef,
) -> Result<
    (
        std::sync::Arc<lifeboat_backup::Repository>,
        lifeboat_backup::snapshot::Snapshot,
    ),
    Failure,
> {
    let (id, preferred) = match rp {
        RecoveryPointRef::Snapshot { id, repository, .. } => (id.clone(), Some(repository.clone())),
        RecoveryPointRef::FinalBackup => {
            let out = record
                .output_of(|s| matches!(s, Step::FinalBackup { application: a, .. } if a == application))
                .ok_or_else(|| permanent("the final backup has not run"))?;
            (
                out["snapshot"].as_str().unwrap_or_default().to_string(),
                out["repository"].as_str().map(str::to_string),
            )
        }
    };
    let mut order: Vec<&String> = Vec::new();
    if let Some(p) = &preferred
        && let Some((k, _)) = env.repositories.get_key_value(p)
    {
        order.push(k);
    }
    order.extend(env.repositories.keys().filter(|k| Some(*k) != preferred.as_ref()));
    let mut errors = Vec::new();
    for url in order {
        let repo = &env.repositories[url];
        match repo.find_snapshot(&id).await {
            Ok(s) => return Ok((repo.clone(), s)),
            Err(e) => errors.push(e.to_string()),
        }
    }
    Err(retry(format!(
        "recovery point {id} not found: {}",
        errors.join("; ")
    )))
}
