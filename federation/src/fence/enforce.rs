//! What stopping an application on a cluster means, and undoing it: workloads scaled to zero
//! (their replica count kept in an annotation), CronJobs suspended, and fencing marks on the
//! BackupRepositories of the plan's repositories so the controller stops backing the
//! application up. Every function is idempotent: a second call changes nothing and a
//! scale-down never overwrites the replica count it recorded first.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use lifeboat_controller::crd::BackupRepository;
use lifeboat_controller::fence::{ANNOTATION_PREFIX, FenceMark};
use serde_json::{Value, json};

/// Annotation holding the replica count a workload had before Lifeboat scaled it to zero.
pub const SCALED_DOWN: &str = "lifeboat.dev/scaled-down-replicas";
/// Annotation saying why (`fenced: plan/app epoch 3 held by c2`, `quiesced: relocate run …`).
pub const SCALED_DOWN_BY: &str = "lifeboat.dev/scaled-down-by";
/// Annotation on CronJobs Lifeboat suspended.
pub const SUSPENDED_BY: &str = "lifeboat.dev/suspended-by";
/// The field manager of these changes.
const MANAGER: &str = "lifeboat-federation";

/// Why a cluster could not be changed.
#[derive(Debug, thiserror::Error)]
#[error("cluster {cluster}: {action}: {message}")]
pub struct EnforceError {
    /// The cluster.
    pub cluster: String,
    /// What was being done.
    pub action: String,
    /// What the API server said.
    pub message: String,
}

/// Which workloads: the application's namespaces, optionally narrowed by a label selector.
#[derive(Debug, Clone)]
pub struct Scope<'a> {
    /// The cluster's name, for messages.
    pub cluster: &'a str,
    /// The namespaces as they are named on this cluster.
    pub namespaces: &'a [String],
    /// A label selector (`app=shop`).
    pub selector: Option<&'a str>,
}

impl Scope<'_> {
    fn fail(&self, action: String, e: impl std::fmt::Display) -> EnforceError {
        EnforceError {
            cluster: self.cluster.to_string(),
            action,
            message: e.to_string(),
        }
    }

    fn params(&self) -> ListParams {
        match self.selector {
            Some(s) if !s.is_empty() => ListParams::default().labels(s),
            _ => ListParams::default(),
        }
    }
}

fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(MANAGER.to_string()),
        ..PatchParams::default()
    }
}

async fn scale_kind<K>(
    client: &Client,
    scope: &Scope<'_>,
    why: &str,
    kind: &str,
) -> Result<Vec<String>, EnforceError>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let mut changes = Vec::new();
    for ns in scope.namespaces {
        let api: Api<K> = Api::namespaced(client.clone(), ns);
        let list = match api.list(&scope.params()).await {
            Ok(l) => l,
            Err(kube::Error::Api(e)) if e.code == 404 => continue,
            Err(e) => return Err(scope.fail(format!("list {kind} in {ns}"), e)),
        };
        for obj in list.items {
            let name = obj.name_any();
            let value = serde_json::to_value(&obj).unwrap_or(Value::Null);
            let replicas = value["spec"]["replicas"].as_i64().unwrap_or(1);
            let recorded = obj.annotations().get(SCALED_DOWN).cloned();
            if replicas == 0 && recorded.is_some() {
                continue;
            }
            let mut annotations = serde_json::Map::new();
            if recorded.is_none() {
                annotations.insert(SCALED_DOWN.into(), json!(replicas.to_string()));
                annotations.insert(SCALED_DOWN_BY.into(), json!(why));
            }
            let patch = json!({"metadata": {"annotations": annotations}, "spec": {"replicas": 0}});
            api.patch(&name, &patch_params(), &Patch::Merge(&patch))
                .await
                .map_err(|e| scope.fail(format!("scale {kind} {ns}/{name} to zero"), e))?;
            changes.push(format!("{kind} {ns}/{name}: replicas {replicas} → 0"));
        }
    }
    Ok(changes)
}

async fn restore_kind<K>(client: &Client, scope: &Scope<'_>, kind: &str) -> Result<Vec<String>, EnforceError>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let mut changes = Vec::new();
    for ns in scope.namespaces {
        let api: Api<K> = Api::namespaced(client.clone(), ns);
        let list = match api.list(&scope.params()).await {
            Ok(l) => l,
            Err(kube::Error::Api(e)) if e.code == 404 => continue,
            Err(e) => return Err(scope.fail(format!("list {kind} in {ns}"), e)),
        };
        for obj in list.items {
            let Some(recorded) = obj.annotations().get(SCALED_DOWN).cloned() else {
                continue;
            };
            let name = obj.name_any();
            let replicas: i64 = recorded.trim().parse().unwrap_or(1);
            let patch = json!({
                "metadata": {"annotations": {SCALED_DOWN: null, SCALED_DOWN_BY: null}},
                "spec": {"replicas": replicas},
            });
            api.patch(&name, &patch_params(), &Patch::Merge(&patch))
                .await
                .map_err(|e| scope.fail(format!("scale {kind} {ns}/{name} back up"), e))?;
            changes.push(format!("{kind} {ns}/{name}: replicas 0 → {replicas}"));
        }
    }
    Ok(changes)
}

/// Scales the scope's Deployments and StatefulSets to zero and suspends its CronJobs,
/// recording what they were. Returns one line per change.
pub async fn stop(client: &Client, scope: &Scope<'_>, why: &str) -> Result<Vec<String>, EnforceError> {
    let mut changes = scale_kind::<Deployment>(client, scope, why, "Deployment").await?;
    changes.extend(scale_kind::<StatefulSet>(client, scope, why, "StatefulSet").await?);
    for ns in scope.namespaces {
        let api: Api<CronJob> = Api::namespaced(client.clone(), ns);
        let list = match api.list(&scope.params()).await {
            Ok(l) => l,
            Err(kube::Error::Api(e)) if e.code == 404 => continue,
            Err(e) => return Err(scope.fail(format!("list CronJobs in {ns}"), e)),
        };
        for cj in list.items {
            let suspended = cj.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false);
            if suspended {
                continue;
            }
            let name = cj.name_any();
            let patch = json!({"metadata": {"annotations": {SUSPENDED_BY: why}}, "spec": {"suspend": true}});
            api.patch(&name, &patch_params(), &Patch::Merge(&patch))
                .await
                .map_err(|e| scope.fail(format!("suspend CronJob {ns}/{name}"), e))?;
            changes.push(format!("CronJob {ns}/{name}: suspended"));
        }
    }
    Ok(changes)
}

/// Undoes [`stop`]: workloads back to their recorded replica counts, CronJobs Lifeboat
/// suspended resumed. Workloads that carry no record are left alone.
pub async fn start(client: &Client, scope: &Scope<'_>) -> Result<Vec<String>, EnforceError> {
    let mut changes = restore_kind::<Deployment>(client, scope, "Deployment").await?;
    changes.extend(restore_kind::<StatefulSet>(client, scope, "StatefulSet").await?);
    for ns in scope.namespaces {
        let api: Api<CronJob> = Api::namespaced(client.clone(), ns);
        let list = match api.list(&scope.params()).await {
            Ok(l) => l,
            Err(kube::Error::Api(e)) if e.code == 404 => continue,
            Err(e) => return Err(scope.fail(format!("list CronJobs in {ns}"), e)),
        };
        for cj in list.items {
            if !cj.annotations().contains_key(SUSPENDED_BY) {
                continue;
            }
            let name = cj.name_any();
            let patch =
                json!({"metadata": {"annotations": {SUSPENDED_BY: null}}, "spec": {"suspend": false}});
            api.patch(&name, &patch_params(), &Patch::Merge(&patch))
                .await
                .map_err(|e| scope.fail(format!("resume CronJob {ns}/{name}"), e))?;
            changes.push(format!("CronJob {ns}/{name}: resumed"));
        }
    }
    Ok(changes)
}

/// Waits until the scope's Deployments and StatefulSets report no replicas (their pods are
/// gone, so nothing writes any more), up to `timeout`.
pub async fn wait_stopped(client: &Client, scope: &Scope<'_>, timeout: Duration) -> Result<(), EnforceError> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut running = Vec::new();
        for ns in scope.namespaces {
            let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
            let sets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
            let d = deployments
                .list(&scope.params())
                .await
                .map_err(|e| scope.fail(format!("list Deployments in {ns}"), e))?;
            for x in d.items {
                if x.status.as_ref().and_then(|s| s.replicas).unwrap_or(0) > 0 {
                    running.push(format!("Deployment {ns}/{}", x.name_any()));
                }
            }
            let s = sets
                .list(&scope.params())
                .await
                .map_err(|e| scope.fail(format!("list StatefulSets in {ns}"), e))?;
            for x in s.items {
                if x.status.as_ref().map(|s| s.replicas).unwrap_or(0) > 0 {
                    running.push(format!("StatefulSet {ns}/{}", x.name_any()));
                }
            }
        }
        if running.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(scope.fail(
                "wait for the application to stop".to_string(),
                format!(
                    "still running after {}s: {}",
                    timeout.as_secs(),
                    running.join(", ")
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// BackupRepositories on the cluster whose URL is one of `urls`.
async fn repositories(
    client: &Client,
    cluster: &str,
    urls: &[String],
) -> Result<Vec<BackupRepository>, EnforceError> {
    let api: Api<BackupRepository> = Api::all(client.clone());
    let fail = |e: kube::Error| EnforceError {
        cluster: cluster.to_string(),
        action: "list BackupRepositories".to_string(),
        message: e.to_string(),
    };
    let list = match api.list(&ListParams::default()).await {
        Ok(l) => l,
        // No Lifeboat CRDs here: nothing backs up, nothing to mark.
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(Vec::new()),
        Err(e) => return Err(fail(e)),
    };
    let wanted: Vec<String> = urls.iter().map(|u| normalise(u)).collect();
    Ok(list
        .items
        .into_iter()
        .filter(|r| wanted.contains(&normalise(&r.spec.url)))
        .collect())
}

fn normalise(url: &str) -> String {
    url.trim().trim_end_matches('/').to_string()
}

async fn annotate(
    client: &Client,
    cluster: &str,
    repo: &BackupRepository,
    annotations: BTreeMap<String, Value>,
) -> Result<(), EnforceError> {
    let ns = repo.namespace().unwrap_or_default();
    let api: Api<BackupRepository> = Api::namespaced(client.clone(), &ns);
    let patch = json!({"metadata": {"annotations": annotations}});
    api.patch(&repo.name_any(), &patch_params(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .map_err(|e| EnforceError {
            cluster: cluster.to_string(),
            action: format!("annotate BackupRepository {ns}/{}", repo.name_any()),
            message: e.to_string(),
        })
}

/// Puts `mark` on every BackupRepository of the cluster that points at one of `urls`.
pub async fn mark_repositories(
    client: &Client,
    cluster: &str,
    urls: &[String],
    mark: &FenceMark,
) -> Result<Vec<String>, EnforceError> {
    let value = serde_json::to_string(mark).unwrap_or_default();
    let mut changes = Vec::new();
    for r in repositories(client, cluster, urls).await? {
        if r.annotations().get(&mark.annotation()) == Some(&value) {
            continue;
        }
        annotate(
            client,
            cluster,
            &r,
            BTreeMap::from([(mark.annotation(), json!(value))]),
        )
        .await?;
        changes.push(format!(
            "BackupRepository {}/{}: fenced for {}/{}",
            r.namespace().unwrap_or_default(),
            r.name_any(),
            mark.plan,
            mark.application
        ));
    }
    Ok(changes)
}

/// Removes the marks of `plan`/`application` from the cluster's BackupRepositories.
pub async fn unmark_repositories(
    client: &Client,
    cluster: &str,
    urls: &[String],
    plan: &str,
    application: &str,
) -> Result<Vec<String>, EnforceError> {
    let key = format!("{ANNOTATION_PREFIX}{plan}.{application}");
    let mut changes = Vec::new();
    for r in repositories(client, cluster, urls).await? {
        if !r.annotations().contains_key(&key) {
            continue;
        }
        annotate(client, cluster, &r, BTreeMap::from([(key.clone(), Value::Null)])).await?;
        changes.push(format!(
            "BackupRepository {}/{}: fence of {plan}/{application} lifted",
            r.namespace().unwrap_or_default(),
            r.name_any()
        ));
    }
    Ok(changes)
}
