//! Kubernetes fault campaign (issue 21): the in-process API test server answers 409
//! `Conflict`, 429 `TooManyRequests` (with `Retry-After`), 500 and 503 at seeded points,
//! drops watch streams and compacts its history (410 `Expired`) while Lifeboat backs up two
//! namespaces of a few hundred objects (ConfigMaps, Secrets, Deployments, custom resources of
//! a CRD), restores that backup into mapped namespaces, and reconciles a Backup and a Restore
//! resource with the controller running in-process.
//!
//! Each operation either succeeds or fails with an error naming what failed (never a panic or
//! a hang: each is bounded by a timeout); a success must give exactly the source objects
//! (names, data, none missing, none twice, none extra) with a final, truthful status; a
//! failure must be followed by a fault-free retry that does. A tally of what was injected,
//! what it hit and how each operation ended is printed; every fault kind must have hit.
//!
//! ```sh
//! cargo test -p lifeboat-tests --test kube_faults -- --nocapture
//! LIFEBOAT_KUBE_FAULT_SEED=<printed seed> cargo test -p lifeboat-tests --test kube_faults -- --nocapture
//! ```

mod controller_support;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use kube::{Client, ResourceExt};
use lifeboat_backup::Repository;
use lifeboat_backup::progress::Progress;
use lifeboat_backup::snapshot::Snapshot;
use lifeboat_controller::crd::{
    Backup, BackupPhase, BackupSpec, BackupStatus, Restore, RestorePhase, RestoreSpec, RestoreStatus,
};
use lifeboat_controller::kube_objects::{
    BackupOutcome, BackupRequest, RestoreOptions, RestoreOutcome, backup_objects, restore_objects,
};
use lifeboat_tests::faults::SeededRng;
use lifeboat_tests::kube::{Faults, Injected, SeenRequest};
use serde_json::{Value, json};

use controller_support::*;

/// Label on every object the campaign makes in its source namespaces.
const LABEL: &str = "lifeboat-kfaults";
/// Objects of each kind per source namespace.
const CONFIG_MAPS: usize = 45;
const SECRETS: usize = 30;
const DEPLOYMENTS: usize = 15;
const GIZMOS: usize = 25;
/// Small ConfigMaps in a namespace no backup takes, so ConfigMap lists come in several pages
/// (500 each) and a compaction between pages expires the continue token.
const NOISE: usize = 520;
/// Gizmo colours.
const COLOURS: [&str; 3] = ["red", "green", "blue"];
/// Bound on one engine backup or restore.
const ENGINE_DEADLINE: Duration = Duration::from_secs(60);
/// Bound on one Backup or Restore resource reaching a final phase.
const RECONCILE_DEADLINE: Duration = Duration::from_secs(90);

/// The faults, one campaign row each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Conflict,
    TooManyRequests,
    Internal,
    Unavailable,
    WatchDrop,
    Expired,
}

impl Kind {
    const ALL: [Kind; 6] = [
        Kind::Conflict,
        Kind::TooManyRequests,
        Kind::Internal,
        Kind::Unavailable,
        Kind::WatchDrop,
        Kind::Expired,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Conflict => "409 Conflict",
            Kind::TooManyRequests => "429 Retry-After",
            Kind::Internal => "500 Internal",
            Kind::Unavailable => "503 Unavailable",
            Kind::WatchDrop => "watch dropped",
            Kind::Expired => "410 Expired",
        }
    }

    fn code(self) -> Option<u16> {
        match self {
            Kind::Conflict => Some(409),
            Kind::TooManyRequests => Some(429),
            Kind::Internal => Some(500),
            Kind::Unavailable => Some(503),
            Kind::WatchDrop | Kind::Expired => None,
        }
    }

    /// The client retries these itself, honouring `Retry-After`: they must never surface.
    fn client_retries(self) -> bool {
        matches!(self, Kind::TooManyRequests | Kind::Unavailable)
    }

    fn slug(self) -> &'static str {
        match self {
            Kind::Conflict => "conf",
            Kind::TooManyRequests => "tmr",
            Kind::Internal => "ise",
            Kind::Unavailable => "unav",
            Kind::WatchDrop => "wdrop",
            Kind::Expired => "expd",
        }
    }
}

/// The operations each fault is injected into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Backup,
    Restore,
    Reconcile,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Backup => "objects backup",
            Op::Restore => "restore (engine)",
            Op::Reconcile => "Backup+Restore CRs",
        }
    }
}

/// How one operation under one fault ended.
#[derive(Debug, Clone)]
enum Outcome {
    /// It succeeded with the faults in place.
    Succeeded,
    /// It failed, saying this; a retry without faults then succeeded.
    FailedThenRetried(String),
    /// The fault cannot reach this operation (said why).
    NotApplicable(&'static str),
}

/// One tally row.
#[derive(Debug, Clone)]
struct Row {
    kind: Kind,
    op: Op,
    /// Faults that fired: answers injected, compactions, drop signals sent.
    injected: usize,
    /// What they hit: requests re-sent after a 429/503 (at least its Retry-After later),
    /// requests answered with the injected error, watch streams broken, listings or watches
    /// that met 410 and started over.
    seen: usize,
    outcome: Outcome,
    secs: f64,
}

fn pick<'a, T>(rng: &mut SeededRng, items: &'a [T]) -> &'a T {
    &items[(rng.next_u64() % items.len() as u64) as usize]
}

fn between(rng: &mut SeededRng, lo: u64, hi: u64) -> u64 {
    lo + rng.next_u64() % (hi - lo + 1)
}

/// Runs `f` or fails the test naming `what`: nothing may hang.
async fn bounded<T>(what: &str, limit: Duration, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what} did not finish within {} s (a hang)", limit.as_secs()),
    }
}

/// The campaign's cluster: source namespaces, their objects, the CRD, the repository.
struct World {
    env: Env,
    sources: [String; 2],
    gizmos: ApiResource,
    repo: Repository,
}

impl World {
    fn client(&self) -> Client {
        self.env.client()
    }

    fn faults(&self) -> &Faults {
        match self.env.cluster.faults() {
            Some(f) => f,
            None => lifeboat_tests::kube::unsupported(
                "kube_faults",
                "fault injection needs the in-process test server",
            ),
        }
    }

    /// Two fresh namespaces to restore into, mapped from the sources.
    async fn targets(&self, tag: &str) -> BTreeMap<String, String> {
        let mut mapping = BTreeMap::new();
        for (i, src) in self.sources.iter().enumerate() {
            let t = self
                .env
                .cluster
                .namespace(&format!("kft-{tag}-{i}"))
                .await
                .expect("target namespace");
            mapping.insert(src.clone(), t);
        }
        mapping
    }

    fn backup_spec(&self) -> BackupSpec {
        BackupSpec {
            repository: REPO.into(),
            included_namespaces: self.sources.to_vec(),
            ..BackupSpec::default()
        }
    }

    /// Every object of the campaign's kinds in `ns`, by `kind/name`, with what must survive
    /// a backup and restore (labels and data or spec). `kube-root-ca.crt` is left out: every
    /// namespace gets its own from the server.
    async fn contents(&self, ns: &str) -> BTreeMap<String, Value> {
        let client = self.client();
        let lp = ListParams::default();
        let mut out = BTreeMap::new();
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        for c in cms.list(&lp).await.expect("list ConfigMaps").items {
            if c.name_any() == "kube-root-ca.crt" {
                continue;
            }
            let v = json!({"labels": c.metadata.labels, "data": c.data});
            assert!(out.insert(format!("configmaps/{}", c.name_any()), v).is_none());
        }
        let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
        for s in secrets.list(&lp).await.expect("list Secrets").items {
            let v = json!({"labels": s.metadata.labels, "type": s.type_, "data": s.data});
            assert!(out.insert(format!("secrets/{}", s.name_any()), v).is_none());
        }
        let deps: Api<Deployment> = Api::namespaced(client.clone(), ns);
        for d in deps.list(&lp).await.expect("list Deployments").items {
            let v = json!({"labels": d.metadata.labels, "spec": d.spec});
            assert!(out.insert(format!("deployments/{}", d.name_any()), v).is_none());
        }
        let gizmos: Api<DynamicObject> = Api::namespaced_with(client, ns, &self.gizmos);
        for g in gizmos.list(&lp).await.expect("list gizmos").items {
            let v = json!({"labels": g.metadata.labels, "spec": g.data["spec"]});
            assert!(out.insert(format!("gizmos/{}", g.name_any()), v).is_none());
        }
        out
    }

    /// Asserts the mapped namespaces hold exactly what the sources hold.
    async fn assert_restored(&self, mapping: &BTreeMap<String, String>, what: &str) {
        for (src, dst) in mapping {
            let want = self.contents(src).await;
            let got = self.contents(dst).await;
            let missing: Vec<&String> = want.keys().filter(|k| !got.contains_key(*k)).collect();
            let extra: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
            let differ: Vec<&String> = want
                .iter()
                .filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v))
                .map(|(k, _)| k)
                .collect();
            assert!(
                missing.is_empty() && extra.is_empty() && differ.is_empty(),
                "{what}: {dst} (restored from {src}) is not its source: missing {missing:?}, extra {extra:?}, different {differ:?}"
            );
            assert_eq!(
                want.len(),
                CONFIG_MAPS + SECRETS + DEPLOYMENTS + GIZMOS,
                "{what}: the source {src} changed"
            );
        }
    }
}

/// Creates the CRD, the source namespaces and their objects, and the paging noise.
async fn world() -> World {
    let env = env("kfaults").await;
    let client = env.client();
    let group = format!(
        "k{}.lifeboat-test.dev",
        lifeboat_tests::unique_name("g").replace(['-', '_'], "")
    );
    let crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
        serde_json::from_value(json!({
            "metadata": {"name": format!("gizmos.{group}")},
            "spec": {"group": group, "scope": "Namespaced",
                "names": {"plural": "gizmos", "singular": "gizmo", "kind": "Gizmo"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}]}
        }))
        .expect("CRD");
    Api::all(client.clone())
        .create(&PostParams::default(), &crd)
        .await
        .expect("create CRD");
    let gizmos = ApiResource {
        group: group.clone(),
        version: "v1".into(),
        api_version: format!("{group}/v1"),
        kind: "Gizmo".into(),
        plural: "gizmos".into(),
    };
    let probe: Api<DynamicObject> = Api::all_with(client.clone(), &gizmos);
    eventually("the CRD to be served", 30, || {
        let probe = probe.clone();
        async move { probe.list(&ListParams::default()).await.ok().map(|_| ()) }
    })
    .await;
    let sources = [
        env.cluster.namespace("kfs-a").await.expect("namespace"),
        env.cluster.namespace("kfs-b").await.expect("namespace"),
    ];
    let noise = env.cluster.namespace("kfs-noise").await.expect("namespace");
    let labels = json!({ LABEL: "1" });
    let mut writes: Vec<(Option<ApiResource>, String, Value)> = Vec::new();
    let cm = ApiResource::erase::<ConfigMap>(&());
    let secret = ApiResource::erase::<Secret>(&());
    let deployment = ApiResource::erase::<Deployment>(&());
    for ns in &sources {
        for i in 0..CONFIG_MAPS {
            writes.push((
                Some(cm.clone()),
                ns.clone(),
                json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("cm-{i}"), "labels": labels},
                "data": {"index": i.to_string(), "payload": "x".repeat(i * 7)}}),
            ));
        }
        for i in 0..SECRETS {
            let s = Secret {
                metadata: kube::api::ObjectMeta {
                    name: Some(format!("secret-{i}")),
                    labels: Some([(LABEL.to_string(), "1".to_string())].into()),
                    ..Default::default()
                },
                type_: Some("Opaque".into()),
                data: Some(
                    [(
                        "token".to_string(),
                        ByteString(format!("s3cr3t-{ns}-{i}").into_bytes()),
                    )]
                    .into(),
                ),
                ..Default::default()
            };
            writes.push((
                Some(secret.clone()),
                ns.clone(),
                serde_json::to_value(&s).expect("Secret"),
            ));
        }
        for i in 0..DEPLOYMENTS {
            let app = format!("app-{i}");
            writes.push((Some(deployment.clone()), ns.clone(), json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": format!("deploy-{i}"), "labels": labels},
                "spec": {"replicas": i % 3, "selector": {"matchLabels": {"app": app}},
                    "template": {"metadata": {"labels": {"app": app}},
                        "spec": {"containers": [{"name": "main", "image": format!("registry.example/app:{i}")}]}}}})));
        }
        for i in 0..GIZMOS {
            writes.push((
                Some(gizmos.clone()),
                ns.clone(),
                json!({
                "apiVersion": format!("{group}/v1"), "kind": "Gizmo",
                "metadata": {"name": format!("gizmo-{i}"), "labels": labels},
                "spec": {"size": i, "colour": COLOURS[i % 3]}}),
            ));
        }
    }
    for i in 0..NOISE {
        writes.push((
            Some(cm.clone()),
            noise.clone(),
            json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("noise-{i}")}}),
        ));
    }
    futures::stream::iter(writes)
        .for_each_concurrent(16, |(ar, ns, body)| {
            let client = client.clone();
            async move {
                let ar = ar.expect("resource");
                let api: Api<DynamicObject> = Api::namespaced_with(client, &ns, &ar);
                let obj: DynamicObject = serde_json::from_value(body).expect("object");
                api.create(&PostParams::default(), &obj)
                    .await
                    .unwrap_or_else(|e| panic!("create {} in {ns}: {e}", obj.name_any()));
            }
        })
        .await;
    let repo = env.open().await;
    World {
        env,
        sources,
        gizmos,
        repo,
    }
}

/// What the recorded requests say a fault hit, for kinds answered with a code: the injected
/// answers, and (for 429/503) the re-sent requests, each checked to come no sooner than the
/// `Retry-After` (1 s) asked.
fn answered(seen: &[SeenRequest], kind: Kind) -> (usize, usize) {
    let Some(code) = kind.code() else {
        return (0, 0);
    };
    let mut injected = 0;
    let mut resent = 0;
    for (i, r) in seen.iter().enumerate() {
        if r.injected != Some(Injected::Answer(code)) {
            continue;
        }
        assert_eq!(r.code, code, "{r:?}");
        injected += 1;
        if kind.client_retries() {
            let again = seen[i + 1..]
                .iter()
                .find(|n| n.method == r.method && n.target == r.target && n.name == r.name);
            let again = again.unwrap_or_else(|| {
                panic!(
                    "{} {} got {code} and was never sent again (the client must retry it)",
                    r.method, r.target
                )
            });
            let waited = again.at.duration_since(r.at);
            assert!(
                waited >= Duration::from_millis(900),
                "{} {} was sent again {waited:?} after a {code} with Retry-After: 1",
                r.method,
                r.target
            );
            resent += 1;
        }
    }
    (injected, if kind.client_retries() { resent } else { injected })
}

/// Compactions at a request, and the list pages answered 410 `Expired` for them.
fn expired(seen: &[SeenRequest]) -> (usize, usize) {
    let compactions = seen
        .iter()
        .filter(|r| r.injected == Some(Injected::Compact))
        .count();
    (compactions, seen.iter().filter(|r| r.code == 410).count())
}

/// Lists of Backups or Restores (not watch resumes) among `seen`: how the controller's
/// watchers start over after a 410 `Expired`.
fn relists(seen: &[SeenRequest]) -> usize {
    seen.iter()
        .filter(|r| {
            r.method == "GET"
                && (r.target.contains("/backups?") || r.target.contains("/restores?"))
                && !r.target.contains("watch=")
        })
        .count()
}

/// Queues this kind's request faults for `op` at seeded points; returns how many answers
/// were queued.
fn arm(faults: &Faults, rng: &mut SeededRng, kind: Kind, op: Op, targets: &[String]) -> usize {
    let Some(code) = kind.code() else {
        return 0;
    };
    let kinds = ["/configmaps", "/secrets", "/deployments", "/gizmos"];
    let mut queued = 0;
    let rounds = between(rng, 2, 3);
    for _ in 0..rounds {
        let path = *pick(rng, &kinds);
        let count = between(rng, 1, 2) as usize;
        match op {
            Op::Backup => {
                // One list request per kind, but ConfigMaps come in pages.
                let skip = if path == "/configmaps" {
                    between(rng, 0, 1) as usize
                } else {
                    0
                };
                faults.fail_matching_after(code, skip, count, Some("GET"), &format!("{path}?"));
            }
            Op::Restore => {
                let ns = pick(rng, targets);
                let skip = between(rng, 0, 10) as usize;
                faults.fail_matching_after(
                    code,
                    skip,
                    count,
                    Some("POST"),
                    &format!("/namespaces/{ns}{path}"),
                );
            }
            Op::Reconcile => {
                // The controller's own writes (finalizers, status) and the restore's creates.
                let (method, at, most) = match rng.next_u64() % 3 {
                    0 => ("PATCH", "/backups/".to_string(), 1),
                    1 => ("PATCH", "/restores/".to_string(), 1),
                    _ => ("POST", format!("/namespaces/{}{path}", pick(rng, targets)), 5),
                };
                let skip = between(rng, 0, most) as usize;
                faults.fail_matching_after(code, skip, count.min(1), Some(method), &at);
                queued += count.min(1);
                continue;
            }
        }
        queued += count;
    }
    queued
}

/// A task that drops every watch (after compacting, for `Expired`) at seeded moments until
/// stopped; returns how many times it did.
fn chaos(
    faults: Faults,
    rng: &mut SeededRng,
    kind: Kind,
) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<usize>) {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    // The first soon (a Backup of a few hundred objects takes well under a second), then
    // every 150-700 ms.
    let delays: Vec<u64> = (0..64)
        .map(|i| {
            if i == 0 {
                between(rng, 20, 150)
            } else {
                between(rng, 150, 700)
            }
        })
        .collect();
    let task = tokio::spawn(async move {
        let mut fired = 0;
        for d in delays {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(d)) => {}
                _ = &mut stopped => return fired,
            }
            if kind == Kind::Expired {
                faults.compact();
            }
            faults.drop_watches();
            fired += 1;
        }
        fired
    });
    (stop, task)
}

/// Checks a failure names what failed: the injected code or reason appears in it.
fn assert_names_failure(kind: Kind, op: Op, message: &str) {
    let words: &[&str] = match kind {
        Kind::Conflict => &["409", "Conflict", "conflict"],
        Kind::TooManyRequests => &["429", "TooManyRequests"],
        Kind::Internal => &["500", "Internal error", "InternalError"],
        Kind::Unavailable => &["503", "ServiceUnavailable"],
        Kind::WatchDrop | Kind::Expired => &["410", "Expired", "too old", "watch"],
    };
    assert!(
        words.iter().any(|w| message.contains(w)),
        "{} under {}: the failure does not say what failed: {message}",
        op.name(),
        kind.name()
    );
    assert!(
        [
            "configmaps",
            "secrets",
            "deployments",
            "gizmos",
            "Backup",
            "Restore",
            "list",
            "status"
        ]
        .iter()
        .any(|w| message.contains(w)),
        "{} under {}: the failure does not name the object or request: {message}",
        op.name(),
        kind.name()
    );
}

async fn engine_backup(w: &World, name: &str) -> Result<BackupOutcome, String> {
    let request = BackupRequest::from_spec(name, &w.backup_spec()).expect("valid spec");
    let out = bounded(
        &format!("backup {name}"),
        ENGINE_DEADLINE,
        backup_objects(&w.client(), &w.repo, &request, Arc::new(Progress::default())),
    )
    .await
    .map_err(|e| e.to_string())?;
    if out.errors.is_empty() {
        Ok(out)
    } else {
        Err(out
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.item, e.message))
            .collect::<Vec<_>>()
            .join("; "))
    }
}

async fn engine_restore(
    w: &World,
    snapshot: &Snapshot,
    mapping: &BTreeMap<String, String>,
) -> Result<RestoreOutcome, (String, RestoreOutcome)> {
    let spec = RestoreSpec {
        namespace_mapping: mapping.clone(),
        ..RestoreSpec::default()
    };
    let options = RestoreOptions::from_spec(&spec).expect("valid spec");
    let out = bounded(
        "restore",
        ENGINE_DEADLINE,
        restore_objects(
            &w.client(),
            &w.repo,
            snapshot,
            &options,
            Arc::new(Progress::default()),
        ),
    )
    .await
    .map_err(|e| (e.to_string(), RestoreOutcome::default()))?;
    if out.errors.is_empty() {
        Ok(out)
    } else {
        let m = out
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.item, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        Err((m, out))
    }
}

/// Waits for a Backup to reach a final phase.
async fn backup_done(api: &Api<Backup>, name: &str) -> BackupStatus {
    let deadline = Instant::now() + RECONCILE_DEADLINE;
    loop {
        let s = api.get(name).await.ok().and_then(|b| b.status);
        if let Some(s) = &s
            && s.phase.is_finished()
        {
            return s.clone();
        }
        assert!(
            Instant::now() < deadline,
            "Backup {name} not finished after {} s (a hang): {s:?}",
            RECONCILE_DEADLINE.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for a Restore to reach a final phase.
async fn restore_done(api: &Api<Restore>, name: &str) -> RestoreStatus {
    let deadline = Instant::now() + RECONCILE_DEADLINE;
    loop {
        let s = api.get(name).await.ok().and_then(|b| b.status);
        if let Some(s) = &s
            && s.phase.is_finished()
        {
            return s.clone();
        }
        assert!(
            Instant::now() < deadline,
            "Restore {name} not finished after {} s (a hang): {s:?}",
            RECONCILE_DEADLINE.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The clean run's numbers every faulted run must match.
struct Baseline {
    /// Objects a backup of the sources stores.
    items: u64,
    /// Objects a restore of it into fresh namespaces creates.
    created: u64,
    /// Objects it finds there already (the target namespaces themselves, the CRD…).
    existing: u64,
}

async fn baseline(w: &World) -> Baseline {
    let out = engine_backup(w, "baseline").await.expect("a fault-free backup");
    let mapping = w.targets("base").await;
    let r = engine_restore(w, &out.snapshot, &mapping)
        .await
        .unwrap_or_else(|(e, _)| panic!("a fault-free restore: {e}"));
    w.assert_restored(&mapping, "fault-free restore").await;
    let expected = 2 * (CONFIG_MAPS + SECRETS + DEPLOYMENTS + GIZMOS) as u64;
    assert!(
        r.summary.created >= expected,
        "created {} < {expected}",
        r.summary.created
    );
    Baseline {
        items: out.items,
        created: r.summary.created,
        existing: r.summary.unchanged + r.summary.skipped_existing,
    }
}

/// The engine backup under `kind`; returns the row and the snapshot to restore.
async fn backup_under(w: &World, rng: &mut SeededRng, kind: Kind, base: &Baseline) -> (Row, Snapshot) {
    let faults = w.faults();
    let start = Instant::now();
    faults.record_requests(true);
    if kind == Kind::Expired {
        // Between two pages of a listing: the continue token expires.
        let skip = between(rng, 0, 1) as usize;
        faults.compact_at(skip, Some("GET"), "continue=");
    } else {
        arm(faults, rng, kind, Op::Backup, &[]);
    }
    let name = format!("backup-{}", kind.slug());
    let result = engine_backup(w, &name).await;
    let seen = faults.seen();
    faults.clear_failures();
    faults.record_requests(false);
    let (injected, hit) = if kind == Kind::Expired {
        expired(&seen)
    } else {
        answered(&seen, kind)
    };
    let (outcome, snapshot) = match result {
        Ok(out) => {
            assert_eq!(
                out.items,
                base.items,
                "backup under {}: {} objects stored, a clean backup stores {}",
                kind.name(),
                out.items,
                base.items
            );
            (Outcome::Succeeded, out.snapshot)
        }
        Err(e) => {
            assert!(
                !kind.client_retries(),
                "the client retries {}: the backup must not fail: {e}",
                kind.name()
            );
            assert_names_failure(kind, Op::Backup, &e);
            let out = engine_backup(w, &format!("{name}-retry"))
                .await
                .unwrap_or_else(|e| panic!("the retry without faults failed: {e}"));
            assert_eq!(out.items, base.items);
            (Outcome::FailedThenRetried(e), out.snapshot)
        }
    };
    let row = Row {
        kind,
        op: Op::Backup,
        injected,
        seen: hit,
        outcome,
        secs: start.elapsed().as_secs_f64(),
    };
    (row, snapshot)
}

/// The engine restore of `snapshot` under `kind` into fresh namespaces.
async fn restore_under(
    w: &World,
    rng: &mut SeededRng,
    kind: Kind,
    base: &Baseline,
    snapshot: &Snapshot,
) -> Row {
    let faults = w.faults();
    let start = Instant::now();
    let mapping = w.targets(kind.slug()).await;
    let targets: Vec<String> = mapping.values().cloned().collect();
    faults.record_requests(true);
    arm(faults, rng, kind, Op::Restore, &targets);
    let result = engine_restore(w, snapshot, &mapping).await;
    let seen = faults.seen();
    faults.clear_failures();
    faults.record_requests(false);
    let (injected, hit) = answered(&seen, kind);
    let outcome = match result {
        Ok(out) => {
            assert_eq!(
                (
                    out.summary.created,
                    out.summary.unchanged + out.summary.skipped_existing
                ),
                (base.created, base.existing),
                "restore under {}: created/existing differ from a clean restore's",
                kind.name()
            );
            Outcome::Succeeded
        }
        Err((e, first)) => {
            assert!(
                !kind.client_retries(),
                "the client retries {}: the restore must not fail: {e}",
                kind.name()
            );
            assert_names_failure(kind, Op::Restore, &e);
            let again = engine_restore(w, snapshot, &mapping)
                .await
                .unwrap_or_else(|(e, _)| panic!("the retry without faults failed: {e}"));
            assert_eq!(
                first.summary.created + again.summary.created,
                base.created,
                "restore under {} then its retry: created {} + {}, a clean restore creates {} (objects lost or made twice)",
                kind.name(),
                first.summary.created,
                again.summary.created,
                base.created
            );
            Outcome::FailedThenRetried(e)
        }
    };
    w.assert_restored(&mapping, &format!("restore under {}", kind.name()))
        .await;
    Row {
        kind,
        op: Op::Restore,
        injected,
        seen: hit,
        outcome,
        secs: start.elapsed().as_secs_f64(),
    }
}

/// A Backup resource, then a Restore resource from it, reconciled by the running
/// controller under `kind`.
async fn reconcile_under(w: &World, rng: &mut SeededRng, kind: Kind, base: &Baseline) -> Row {
    let faults = w.faults();
    let start = Instant::now();
    let mapping = w.targets(&format!("cr{}", kind.slug())).await;
    let targets: Vec<String> = mapping.values().cloned().collect();
    let backups: Api<Backup> = w.env.api();
    let restores: Api<Restore> = w.env.api();
    let dropped_before = faults.watches_dropped();
    faults.record_requests(true);
    arm(faults, rng, kind, Op::Reconcile, &targets);
    let mut chaos = matches!(kind, Kind::WatchDrop | Kind::Expired).then(|| chaos(faults.clone(), rng, kind));
    let mut fired = 0;
    let mut failures = Vec::new();

    // The Backup.
    let name = format!("cr-{}", kind.slug());
    backups
        .create(&PostParams::default(), &Backup::new(&name, w.backup_spec()))
        .await
        .expect("create Backup");
    let status = backup_done(&backups, &name).await;
    let mut from = name.clone();
    if status.phase == BackupPhase::Completed {
        assert_backup_truthful(w, &status, base, &name).await;
    } else {
        let message = format!(
            "{:?}: {} {:?}",
            status.phase,
            status.message.clone().unwrap_or_default(),
            status.errors
        );
        assert!(
            !kind.client_retries(),
            "Backup {name} under {}: {message}",
            kind.name()
        );
        assert_names_failure(kind, Op::Reconcile, &message);
        failures.push(format!("Backup: {message}"));
        from = format!("{name}-retry");
        // The retry runs without faults.
        faults.clear_failures();
        fired += stop_chaos(&mut chaos).await;
        backups
            .create(&PostParams::default(), &Backup::new(&from, w.backup_spec()))
            .await
            .expect("create Backup");
        let retried = backup_done(&backups, &from).await;
        assert_eq!(retried.phase, BackupPhase::Completed, "{retried:?}");
        assert_backup_truthful(w, &retried, base, &from).await;
    }

    // The Restore from it.
    let rname = format!("cr-{}", kind.slug());
    let spec = RestoreSpec {
        backup_name: Some(from.clone()),
        namespace_mapping: mapping.clone(),
        ..RestoreSpec::default()
    };
    restores
        .create(&PostParams::default(), &Restore::new(&rname, spec.clone()))
        .await
        .expect("create Restore");
    let status = restore_done(&restores, &rname).await;
    fired += stop_chaos(&mut chaos).await;
    let seen = faults.seen();
    faults.clear_failures();
    faults.record_requests(false);
    if status.phase == RestorePhase::Completed {
        assert_restore_truthful(&status, base, &rname);
    } else {
        let message = format!(
            "{:?}: {} {:?}",
            status.phase,
            status.message.clone().unwrap_or_default(),
            status.errors
        );
        assert!(
            !kind.client_retries(),
            "Restore {rname} under {}: {message}",
            kind.name()
        );
        assert_names_failure(kind, Op::Reconcile, &message);
        assert_eq!(
            status.items_failed,
            status.errors.len() as u64,
            "Restore {rname}: itemsFailed does not count status.errors: {status:?}"
        );
        failures.push(format!("Restore: {message}"));
        let retry = format!("{rname}-retry");
        restores
            .create(&PostParams::default(), &Restore::new(&retry, spec))
            .await
            .expect("create Restore");
        let again = restore_done(&restores, &retry).await;
        assert_eq!(again.phase, RestorePhase::Completed, "{again:?}");
        assert_eq!(
            status.items_restored + again.items_restored,
            base.created,
            "Restore {rname} then its retry restored {} + {} objects, a clean restore {}",
            status.items_restored,
            again.items_restored,
            base.created
        );
    }
    w.assert_restored(&mapping, &format!("Restore {rname} under {}", kind.name()))
        .await;

    let (injected, hit) = match kind {
        Kind::WatchDrop => (fired, (faults.watches_dropped() - dropped_before) as usize),
        Kind::Expired => (fired, relists(&seen)),
        _ => answered(&seen, kind),
    };
    let outcome = if failures.is_empty() {
        Outcome::Succeeded
    } else {
        Outcome::FailedThenRetried(failures.join(" | "))
    };
    Row {
        kind,
        op: Op::Reconcile,
        injected,
        seen: hit,
        outcome,
        secs: start.elapsed().as_secs_f64(),
    }
}

/// Stops the watch-dropping task, if any; how many times it fired.
async fn stop_chaos(
    chaos: &mut Option<(tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<usize>)>,
) -> usize {
    match chaos.take() {
        Some((stop, task)) => {
            let _ = stop.send(());
            task.await.unwrap_or(0)
        }
        None => 0,
    }
}

async fn assert_backup_truthful(w: &World, s: &BackupStatus, base: &Baseline, name: &str) {
    assert_eq!(
        s.items_backed_up, base.items,
        "Backup {name} says {} items, a clean backup stores {}: {s:?}",
        s.items_backed_up, base.items
    );
    assert!(s.errors.is_empty() && s.error_count == 0, "{s:?}");
    assert!(s.completion_time.is_some(), "{s:?}");
    let id = s
        .snapshot_id
        .as_deref()
        .expect("a Completed Backup names its snapshot");
    let snap = w.repo.find_snapshot(id).await;
    let snap = match snap {
        Ok(s) => s,
        // The repository handle caches the index: open it anew to see the controller's writes.
        Err(_) => w
            .env
            .open()
            .await
            .find_snapshot(id)
            .await
            .unwrap_or_else(|e| panic!("Backup {name}'s snapshot {id} is not in the repository: {e}")),
    };
    assert_eq!(snap.tags.get("backup").map(String::as_str), Some(name));
}

fn assert_restore_truthful(s: &RestoreStatus, base: &Baseline, name: &str) {
    assert_eq!(
        (s.items_restored, s.items_skipped, s.items_failed),
        (base.created, base.existing, 0),
        "Restore {name}: restored/skipped/failed differ from a clean restore's: {s:?}"
    );
    assert!(s.errors.is_empty() && s.completion_time.is_some(), "{s:?}");
}

fn print_tally(seed: u64, rows: &[Row], secs: f64) {
    let mut t = format!(
        "\nKubernetes faults (LIFEBOAT_KUBE_FAULT_SEED={seed}), {secs:.0} s:\n{:<16} {:<19} {:>8} {:>6} {:>6}  outcome\n",
        "fault", "operation", "injected", "seen", "secs"
    );
    for r in rows {
        let outcome = match &r.outcome {
            Outcome::Succeeded => "succeeded".to_string(),
            Outcome::FailedThenRetried(e) => {
                let short: String = e.chars().take(110).collect();
                format!("failed, retry ok: {short}")
            }
            Outcome::NotApplicable(why) => format!("n/a: {why}"),
        };
        let (inj, seen) = match r.outcome {
            Outcome::NotApplicable(_) => ("-".to_string(), "-".to_string()),
            _ => (r.injected.to_string(), r.seen.to_string()),
        };
        t.push_str(&format!(
            "{:<16} {:<19} {:>8} {:>6} {:>6.1}  {outcome}\n",
            r.kind.name(),
            r.op.name(),
            inj,
            seen,
            r.secs
        ));
    }
    t.push_str("seen: 429/503 re-sent by the client no sooner than Retry-After; 409/500 requests answered with it; watch streams broken; listings that met 410 and started over\n");
    eprintln!("{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    not(kube_backend = "in_process"),
    ignore = "fault injection needs the in-process test server"
)]
async fn kubernetes_faults_lose_and_duplicate_nothing() {
    let started = Instant::now();
    let seed = SeededRng::seed_from_env("LIFEBOAT_KUBE_FAULT_SEED");
    eprintln!("kube faults: LIFEBOAT_KUBE_FAULT_SEED={seed}");
    let mut rng = SeededRng(seed | 1);
    let w = world().await;
    let base = baseline(&w).await;
    let ctl = w.env.controller("kfaults").await;
    let mut rows = Vec::new();
    for kind in Kind::ALL {
        let not_applicable = |op: Op, why: &'static str| Row {
            kind,
            op,
            injected: 0,
            seen: 0,
            outcome: Outcome::NotApplicable(why),
            secs: 0.0,
        };
        let snapshot = match kind {
            Kind::Conflict => {
                rows.push(not_applicable(Op::Backup, "reads only; 409 answers writes"));
                None
            }
            Kind::WatchDrop => {
                rows.push(not_applicable(Op::Backup, "lists only, no watches"));
                None
            }
            _ => {
                let (row, snap) = backup_under(&w, &mut rng, kind, &base).await;
                rows.push(row);
                Some(snap)
            }
        };
        match kind {
            Kind::WatchDrop | Kind::Expired => rows.push(not_applicable(
                Op::Restore,
                "no lists or watches: reads the repository, writes objects",
            )),
            _ => {
                let snap = match snapshot {
                    Some(s) => s,
                    None => {
                        engine_backup(&w, &format!("for-{}", kind.slug()))
                            .await
                            .expect("a fault-free backup")
                            .snapshot
                    }
                };
                rows.push(restore_under(&w, &mut rng, kind, &base, &snap).await);
            }
        }
        rows.push(reconcile_under(&w, &mut rng, kind, &base).await);
        eprintln!("kube faults: {} done: {:?}", kind.name(), &rows[rows.len() - 3..]);
    }
    ctl.stop().await;
    print_tally(seed, &rows, started.elapsed().as_secs_f64());
    for r in &rows {
        if matches!(r.outcome, Outcome::NotApplicable(_)) {
            continue;
        }
        assert!(
            r.injected > 0 && r.seen > 0,
            "{} during {}: no fault reached the operation (injected {}, seen {}); seed {seed}",
            r.kind.name(),
            r.op.name(),
            r.injected,
            r.seen
        );
    }
}
