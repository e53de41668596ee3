//! Validation a real server applies to built-in kinds, which creating or restoring objects
//! runs into: required fields, selectors, immutable fields.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::common::*;

fn obj<K: DeserializeOwned>(v: Value) -> K {
    serde_json::from_value(v).expect("valid JSON for the kind")
}

fn pod_template(app: &str, restart: Option<&str>) -> Value {
    let mut spec = json!({"containers": [{"name": "c", "image": "example.invalid/none:1"}]});
    if let Some(r) = restart {
        spec["restartPolicy"] = json!(r);
    }
    json!({"metadata": {"labels": {"app": app}}, "spec": spec})
}

#[tokio::test]
async fn workloads_need_matching_selectors_and_jobs_a_restart_policy() {
    let (c, ns) = cluster_ns("valid").await;
    let deployments: Api<Deployment> = Api::namespaced(c.client(), &ns);
    let mismatched = obj(json!({"metadata": {"name": "d"},
        "spec": {"selector": {"matchLabels": {"app": "other"}}, "template": pod_template("d", None)}}));
    assert_eq!(
        code(deployments.create(&PostParams::default(), &mismatched).await),
        (422, "Invalid".into())
    );
    let jobs: Api<Job> = Api::namespaced(c.client(), &ns);
    let no_policy = obj(json!({"metadata": {"name": "j"}, "spec": {"template": pod_template("j", None)}}));
    assert_eq!(code(jobs.create(&PostParams::default(), &no_policy).await).0, 422);
    let good =
        obj(json!({"metadata": {"name": "j"}, "spec": {"template": pod_template("j", Some("Never"))}}));
    jobs.create(&PostParams::default(), &good)
        .await
        .expect("a valid Job");
}

#[tokio::test]
async fn immutable_fields_cannot_change() {
    let (c, ns) = cluster_ns("immutable").await;
    let pp = PatchParams::default();

    let cms: Api<ConfigMap> = Api::namespaced(c.client(), &ns);
    let frozen = obj(json!({"metadata": {"name": "frozen"}, "data": {"a": "1"}, "immutable": true}));
    cms.create(&PostParams::default(), &frozen).await.expect("create");
    let change = Patch::Merge(json!({"data": {"a": "2"}}));
    assert_eq!(code(cms.patch("frozen", &pp, &change).await).0, 422);

    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(c.client(), &ns);
    let pvc = obj(json!({"metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}));
    pvcs.create(&PostParams::default(), &pvc).await.expect("create");
    let modes = Patch::Merge(json!({"spec": {"accessModes": ["ReadWriteMany"]}}));
    assert_eq!(code(pvcs.patch("data", &pp, &modes).await).0, 422);

    let sts: Api<StatefulSet> = Api::namespaced(c.client(), &ns);
    let set = obj(json!({"metadata": {"name": "db"}, "spec": {
        "serviceName": "db", "selector": {"matchLabels": {"app": "db"}}, "template": pod_template("db", None)}}));
    sts.create(&PostParams::default(), &set).await.expect("create");
    let scaled = Patch::Merge(json!({"spec": {"replicas": 2}}));
    sts.patch("db", &pp, &scaled).await.expect("replicas may change");
    let renamed = Patch::Merge(json!({"spec": {"serviceName": "other"}}));
    assert_eq!(code(sts.patch("db", &pp, &renamed).await).0, 422);

    let svcs: Api<Service> = Api::namespaced(c.client(), &ns);
    let svc = obj(json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}));
    let made = svcs.create(&PostParams::default(), &svc).await.expect("create");
    let ip = made.spec.and_then(|s| s.cluster_ip).expect("clusterIP");
    let other = if ip == "10.0.0.99" {
        "10.0.0.98"
    } else {
        "10.0.0.99"
    };
    let moved = Patch::Merge(json!({"spec": {"clusterIP": other, "clusterIPs": [other]}}));
    assert_eq!(code(svcs.patch("web", &pp, &moved).await).0, 422);
}
