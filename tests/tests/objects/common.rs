//! Shared setup: a cluster, a repository, objects to back up.

use std::sync::Arc;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use kube::{Client, ResourceExt};
use lifeboat_backup::Repository;
use lifeboat_backup::progress::Progress;
use lifeboat_backup::snapshot::Snapshot;
use lifeboat_controller::crd::{BackupSpec, RestoreSpec};
use lifeboat_controller::kube_objects::{
    BackupOutcome, BackupRequest, RestoreOptions, RestoreOutcome, backup_objects, restore_objects,
};
use lifeboat_tests::kube::TestCluster;
use lifeboat_tests::repos::{Backend, TestRepo};
use serde_json::{Value, json};

pub async fn cluster() -> TestCluster {
    TestCluster::start().await.expect("a test cluster starts")
}

pub async fn repository() -> (TestRepo, Repository) {
    let t = TestRepo::new(Backend::Local).expect("test repo");
    let repo = Repository::init(
        &t.store(),
        &[t.user_recipient()],
        lifeboat_backup::repository::InitOptions::default(),
    )
    .await
    .expect("init repository");
    (t, repo)
}

/// Creates an object from JSON through the dynamic API.
pub async fn create(client: &Client, ar: &ApiResource, ns: Option<&str>, obj: Value) -> DynamicObject {
    let api: Api<DynamicObject> = match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, ar),
        None => Api::all_with(client.clone(), ar),
    };
    let obj: DynamicObject = serde_json::from_value(obj).expect("valid object");
    api.create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("create {}: {e}", obj.name_any()))
}

pub fn ar(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.to_string(),
        version: version.to_string(),
        api_version: if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        },
        kind: kind.to_string(),
        plural: plural.to_string(),
    }
}

pub fn configmaps() -> ApiResource {
    ar("", "v1", "ConfigMap", "configmaps")
}

/// A namespaced CRD `widgets.<group>` with a status subresource; returns its resource.
pub async fn widget_crd(client: &Client) -> ApiResource {
    let group = format!(
        "t{}.lifeboat-test.dev",
        lifeboat_tests::unique_name("g").replace(['-', '_'], "")
    );
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": {"name": format!("widgets.{group}")},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}]
        }
    }))
    .expect("valid CRD");
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.create(&PostParams::default(), &crd)
        .await
        .expect("create CRD");
    let res = ar(&group, "v1", "Widget", "widgets");
    // Wait until the new type is served.
    let widgets: Api<DynamicObject> = Api::all_with(client.clone(), &res);
    for _ in 0..100 {
        if widgets.list(&Default::default()).await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    res
}

pub async fn delete_crd(client: &Client, res: &ApiResource) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let _ = api
        .delete(&format!("{}.{}", res.plural, res.group), &Default::default())
        .await;
}

pub async fn backup(client: &Client, repo: &Repository, name: &str, spec: BackupSpec) -> BackupOutcome {
    let request = BackupRequest::from_spec(name, &spec).expect("valid spec");
    backup_objects(client, repo, &request, Arc::new(Progress::default()))
        .await
        .expect("backup runs")
}

/// [`backup`] of namespace `ns`, everything else as a Backup's defaults.
pub async fn backup_namespace(client: &Client, repo: &Repository, name: &str, ns: &str) -> BackupOutcome {
    let spec = BackupSpec {
        included_namespaces: vec![ns.to_string()],
        ..BackupSpec::default()
    };
    backup(client, repo, name, spec).await
}

pub async fn restore(
    client: &Client,
    repo: &Repository,
    snapshot: &Snapshot,
    spec: RestoreSpec,
) -> RestoreOutcome {
    let options = RestoreOptions::from_spec(&spec).expect("valid spec");
    restore_objects(client, repo, snapshot, &options, Arc::new(Progress::default()))
        .await
        .expect("restore runs")
}

/// Fetches an object's JSON, if it exists.
pub async fn get(client: &Client, ar: &ApiResource, ns: &str, name: &str) -> Option<Value> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, ar);
    api.get_opt(name)
        .await
        .expect("get")
        .map(|o| serde_json::to_value(o).expect("json"))
}

/// A group name of the test's own (`t<id>.lifeboat-test.dev`).
pub fn test_group(prefix: &str) -> String {
    let id: String = lifeboat_tests::unique_name(prefix)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    format!("t{id}.lifeboat-test.dev")
}

/// Backs up with explicit discovery deadlines.
pub async fn backup_request(client: &Client, repo: &Repository, request: &BackupRequest) -> BackupOutcome {
    backup_objects(client, repo, request, Arc::new(Progress::default()))
        .await
        .expect("backup runs")
}

/// A namespaced CRD `PLURAL.GROUP` (kind `KIND`) from its `versions`; waits until served.
pub async fn custom_crd(client: &Client, group: &str, plural: &str, kind: &str, versions: Value) {
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": {"name": format!("{plural}.{group}")},
        "spec": {"group": group, "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind},
            "versions": versions}
    }))
    .expect("valid CRD");
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.create(&PostParams::default(), &crd)
        .await
        .expect("create CRD");
    let version = crd
        .spec
        .versions
        .iter()
        .find(|v| v.storage)
        .map(|v| v.name.clone())
        .expect("a storage version");
    let res = ar(group, &version, kind, plural);
    let objs: Api<DynamicObject> = Api::all_with(client.clone(), &res);
    lifeboat_tests::poll::eventually("the CRD to be served", 30, || {
        let objs = objs.clone();
        async move { objs.list(&Default::default()).await.ok().map(|_| ()) }
    })
    .await;
}

pub async fn delete_crd_named(client: &Client, name: &str) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let _ = api.delete(name, &Default::default()).await;
    lifeboat_tests::poll::eventually("the CRD to be gone", 60, || {
        let api = api.clone();
        async move {
            api.get_opt(name)
                .await
                .ok()
                .and_then(|o| o.is_none().then_some(()))
        }
    })
    .await;
}

/// Fetches a cluster-scoped object's JSON, if it exists.
pub async fn get_cluster(client: &Client, ar: &ApiResource, name: &str) -> Option<Value> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), ar);
    api.get_opt(name)
        .await
        .expect("get")
        .map(|o| serde_json::to_value(o).expect("json"))
}

/// The paths of a snapshot's objects.
pub async fn snapshot_paths(repo: &Repository, snapshot: &Snapshot) -> Vec<String> {
    repo.indexed()
        .await
        .expect("index")
        .tree(snapshot)
        .await
        .expect("tree")
        .into_iter()
        .map(|n| n.path)
        .collect()
}

/// A StorageClass `class` of lifeboat-csi.
pub async fn storage_class(client: &Client, class: &str) {
    let scs = ar("storage.k8s.io", "v1", "StorageClass", "storageclasses");
    let sc = json!({"metadata": {"name": class}, "provisioner": "csi.lifeboat.dev"});
    create(client, &scs, None, sc).await;
}

/// Claim `ns/claim` (with `labels`) bound to a new PersistentVolume `pv` (reclaim policy
/// Retain, a hostPath) of class `class`.
pub async fn bound_claim(client: &Client, ns: &str, claim: &str, pv: &str, class: &str, labels: Value) {
    let pvcs = ar("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims");
    let pvs = ar("", "v1", "PersistentVolume", "persistentvolumes");
    let spec = json!({"accessModes": ["ReadWriteOnce"], "storageClassName": class,
        "volumeName": pv, "resources": {"requests": {"storage": "1Gi"}}});
    let pvc = json!({"metadata": {"name": claim, "labels": labels}, "spec": spec});
    create(client, &pvcs, Some(ns), pvc).await;
    let volume = json!({"metadata": {"name": pv}, "spec": {"capacity": {"storage": "1Gi"},
        "accessModes": ["ReadWriteOnce"], "storageClassName": class,
        "persistentVolumeReclaimPolicy": "Retain",
        "hostPath": {"path": "/tmp/lifeboat-test"},
        "claimRef": {"namespace": ns, "name": claim}}});
    create(client, &pvs, None, volume).await;
}
