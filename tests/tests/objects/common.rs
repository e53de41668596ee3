//! Shared setup: a cluster, a repository, objects to back up.

use std::sync::Arc;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use kube::{Client, ResourceExt};
use lifeboat_backup::Repository;
use lifeboat_backup::progress::Progress;
use lifeboat_backup::snapshot::Snapshot;
use lifeboat_controller::crd::{BackupSpec, RestoreSpec};
use lifeboat_controller::objects::{
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
