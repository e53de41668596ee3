//! Validation a real server applies to built-in kinds, which creating or restoring objects
//! runs into: required fields, selectors, immutable fields; labels and annotations of every
//! kind; a Secret's `stringData` stored as `data`.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
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

/// Labels that are not valid are refused (422, the field named) on create and on update,
/// whatever the kind; annotation keys too.
#[tokio::test]
async fn labels_and_annotations_that_are_not_valid_are_refused() {
    let (c, ns) = cluster_ns("labels").await;
    let cms: Api<ConfigMap> = Api::namespaced(c.client(), &ns);
    for (name, meta) in [
        ("key", json!({"labels": {"bad key": "x"}})),
        ("value", json!({"labels": {"app": "-web"}})),
        ("long", json!({"labels": {"app": "v".repeat(64)}})),
        ("prefix", json!({"labels": {"Example.COM/app": "x"}})),
        ("annotation", json!({"annotations": {"a b": "x"}})),
    ] {
        let mut metadata = meta.clone();
        metadata["name"] = json!(name);
        let refused = cms
            .create(&PostParams::default(), &obj(json!({"metadata": metadata})))
            .await;
        let Err(kube::Error::Api(e)) = refused else {
            panic!("{name}: {meta} was taken: {refused:?}");
        };
        assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"), "{name}: {e:?}");
        let field = if name == "annotation" {
            "metadata.annotations"
        } else {
            "metadata.labels"
        };
        assert!(e.message.contains(field), "{name}: {}", e.message);
    }
    let good = obj(
        json!({"metadata": {"name": "good", "labels": {"app.kubernetes.io/name": "web_1.2", "empty": ""}}}),
    );
    cms.create(&PostParams::default(), &good)
        .await
        .expect("valid labels");
    let bad = Patch::Merge(json!({"metadata": {"labels": {"bad key": "x"}}}));
    assert_eq!(
        code(cms.patch("good", &PatchParams::default(), &bad).await).0,
        422
    );
}

/// A Secret's `stringData` is stored base64-encoded in `data` (replacing a key both hold)
/// and never returned.
#[tokio::test]
async fn a_secrets_string_data_is_stored_as_data() {
    let (c, ns) = cluster_ns("stringdata").await;
    let secrets: Api<DynamicObject> = Api::namespaced_with(
        c.client(),
        &ns,
        &ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&()),
    );
    let json = |o: DynamicObject| serde_json::to_value(o).expect("JSON");
    let made = secrets
        .create(
            &PostParams::default(),
            &obj(
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                "data": {"a": "b2xk", "keep": "eA=="}, "stringData": {"a": "new", "b": "two"}}),
            ),
        )
        .await
        .expect("create");
    for got in [json(made), json(secrets.get("s").await.expect("get"))] {
        assert_eq!(
            got["data"],
            json!({"a": "bmV3", "keep": "eA==", "b": "dHdv"}),
            "{got}"
        );
        assert!(got.get("stringData").is_none(), "{got}");
    }
    let patched = secrets
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"keep": "y"}})),
        )
        .await
        .map(json)
        .expect("patch");
    assert_eq!(patched["data"]["keep"], "eQ==", "{patched}");
    assert!(patched.get("stringData").is_none(), "{patched}");
}
