//! Client-side helpers for aggregated APIs in tests: register an `APIService` whose backing
//! Service does not exist, as users meet it on real clusters (metrics-server gone, a removed
//! operator's API left behind), and wait until the server judges it unavailable.

use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use serde_json::json;

/// `apiregistration.k8s.io/v1` `APIService`.
pub fn resource() -> ApiResource {
    ApiResource {
        group: "apiregistration.k8s.io".into(),
        version: "v1".into(),
        api_version: "apiregistration.k8s.io/v1".into(),
        kind: "APIService".into(),
        plural: "apiservices".into(),
    }
}

/// Registers the aggregated API `v1beta1.GROUP`, served by a Service that does not exist in
/// `ns`, and waits (up to 60 s: the availability controller takes a moment on a real server)
/// until its `Available` condition is `False`: its discovery then answers 503 on any API
/// server. Returns the APIService's name. Panics if the server refuses it.
pub async fn register_unavailable(client: &Client, group: &str, ns: &str) -> String {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource());
    let name = format!("v1beta1.{group}");
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": name},
        "spec": {"group": group, "version": "v1beta1", "insecureSkipTLSVerify": true,
                 "groupPriorityMinimum": 100, "versionPriority": 10,
                 "service": {"namespace": ns, "name": "no-such-backend", "port": 443}}}))
    .expect("APIService");
    api.create(&PostParams::default(), &obj)
        .await
        .expect("register the APIService");
    crate::poll::eventually("the APIService to be judged unavailable", 60, || {
        let api = api.clone();
        let name = name.clone();
        async move {
            let o = api.get(&name).await.ok()?;
            o.data["status"]["conditions"]
                .as_array()?
                .iter()
                .any(|c| c["type"] == "Available" && c["status"] == "False")
                .then_some(())
        }
    })
    .await;
    name
}

/// Deletes the APIService `name`, ignoring failures (cleanup).
pub async fn unregister(client: &Client, name: &str) {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource());
    let _ = api.delete(name, &Default::default()).await;
}
