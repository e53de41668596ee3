//! Helpers shared by the Kubernetes API tests.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use lifeboat_tests::kube::TestCluster;
pub use lifeboat_tests::poll::eventually;
use serde_json::json;

pub async fn cluster() -> TestCluster {
    match TestCluster::start().await {
        Ok(c) => c,
        Err(e) => panic!("cannot start a test cluster: {e}"),
    }
}

/// A test cluster and a fresh namespace in it.
pub async fn cluster_ns(prefix: &str) -> (TestCluster, String) {
    let c = cluster().await;
    let ns = c.namespace(prefix).await.expect("create the test namespace");
    (c, ns)
}

/// The API status code of a failed call (panics on success or a non-API error).
pub fn code<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> (u16, String) {
    match r {
        Err(kube::Error::Api(s)) => (s.code, s.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

pub fn cm(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "data": {"k": "v"}
    }))
    .expect("valid ConfigMap")
}

pub async fn create_cm(api: &Api<ConfigMap>, name: &str, labels: serde_json::Value) -> ConfigMap {
    api.create(&PostParams::default(), &cm(name, labels))
        .await
        .expect("create ConfigMap")
}

pub use lifeboat_tests::kube::unsupported;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

/// A CRD for `plural.group` (version v1, status subresource, schema that keeps any fields).
pub fn crd(group: &str, plural: &str, kind: &str) -> CustomResourceDefinition {
    let open = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    serde_json::from_value(json!({
        "metadata": {"name": format!("{plural}.{group}")},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind, "listKind": format!("{kind}List")},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": open, "status": open}}}
            }]
        }
    }))
    .expect("crd")
}

/// Creates `crd` (or finds it already there, on a shared cluster) and waits for Established.
pub async fn install_crd(client: kube::Client, crd: &CustomResourceDefinition) {
    let api: Api<CustomResourceDefinition> = Api::all(client);
    match api.create(&PostParams::default(), crd).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("create CRD: {e}"),
    }
    let name = crd.metadata.name.clone().unwrap_or_default();
    eventually("the CRD to be Established", 30, || {
        let api = api.clone();
        let name = name.clone();
        async move {
            let c = api.get(&name).await.ok()?;
            let conds = c.status?.conditions?;
            conds
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        }
    })
    .await;
}

/// Discovery, retried: on a shared cluster another test's CRD can vanish between the group
/// list and the group's resource list, which fails one run.
pub async fn discover(client: kube::Client) -> kube::discovery::Discovery {
    eventually("a complete discovery", 30, || {
        let client = client.clone();
        async move { kube::discovery::Discovery::new(client).run().await.ok() }
    })
    .await
}
