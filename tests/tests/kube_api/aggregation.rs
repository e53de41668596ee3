//! The aggregation layer: an APIService whose server is down is still listed in `/apis`,
//! reports why it is unavailable, and its group version answers 503.

use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use serde_json::{Value, json};

use crate::common::*;

fn apiservices() -> ApiResource {
    ApiResource {
        group: "apiregistration.k8s.io".into(),
        version: "v1".into(),
        api_version: "apiregistration.k8s.io/v1".into(),
        kind: "APIService".into(),
        plural: "apiservices".into(),
    }
}

/// A group name of this test's own.
fn group() -> String {
    let id: String = lifeboat_tests::unique_name("g")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    format!("{id}.lifeboat-test.dev")
}

/// Registers `v1beta1.GROUP`, served by Service `ns/name` (which does not exist).
async fn register(client: kube::Client, group: &str, ns: &str) -> Api<DynamicObject> {
    let api: Api<DynamicObject> = Api::all_with(client, &apiservices());
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
        "metadata": {"name": format!("v1beta1.{group}")},
        "spec": {"group": group, "version": "v1beta1", "insecureSkipTLSVerify": true,
                 "groupPriorityMinimum": 100, "versionPriority": 10,
                 "service": {"namespace": ns, "name": "no-such-backend", "port": 443}}
    }))
    .expect("APIService");
    api.create(&PostParams::default(), &obj)
        .await
        .expect("register the APIService");
    api
}

fn available(o: &DynamicObject) -> Option<(String, String)> {
    let conds = o.data["status"]["conditions"].as_array()?;
    let c = conds.iter().find(|c| c["type"] == "Available")?;
    Some((
        c["status"].as_str()?.to_string(),
        c["reason"].as_str().unwrap_or("").to_string(),
    ))
}

#[tokio::test]
async fn an_aggregated_api_without_its_server_is_listed_but_answers_503() {
    let (c, ns) = cluster_ns("aggr").await;
    let group = group();
    let api = register(c.client(), &group, &ns).await;
    let name = format!("v1beta1.{group}");
    let status = eventually("the availability check", 60, || {
        let api = api.clone();
        let name = name.clone();
        async move { api.get(&name).await.ok().as_ref().and_then(available) }
    })
    .await;
    assert_eq!(status, ("False".to_string(), "ServiceNotFound".to_string()));

    let client = c.client_without_retries().await.expect("client");
    let groups = client.list_api_groups().await.expect("/apis");
    let listed = groups
        .groups
        .iter()
        .find(|g| g.name == group)
        .expect("listed in /apis");
    assert_eq!(listed.versions[0].version, "v1beta1");
    let answer = client.list_api_group_resources(&format!("{group}/v1beta1")).await;
    let code = match answer {
        Err(kube::Error::Api(s)) => s.code,
        other => panic!("expected a 503, got {other:?}"),
    };
    assert_eq!(code, 503);
    api.delete(&name, &Default::default()).await.expect("unregister");
}

#[tokio::test]
#[cfg_attr(
    not(kube_backend = "in_process"),
    ignore = "making a backend hang needs the in-process test server"
)]
async fn a_hanging_aggregated_api_gives_no_answer() {
    let (c, ns) = cluster_ns("aggrhang").await;
    let Some(faults) = c.faults() else {
        unsupported(
            "a_hanging_aggregated_api_gives_no_answer",
            "making a backend hang needs the in-process test server",
        );
    };
    let group = group();
    let api = register(c.client(), &group, &ns).await;
    faults.hang_api(&format!("{group}/v1beta1"));
    let o = api.get(&format!("v1beta1.{group}")).await.expect("get");
    assert_eq!(available(&o).map(|a| a.0), Some("True".to_string()));
    let client = c.client_without_retries().await.expect("client");
    let gv = format!("{group}/v1beta1");
    let answer = tokio::time::timeout(Duration::from_secs(2), client.list_api_group_resources(&gv)).await;
    assert!(answer.is_err(), "no answer within 2 s: {answer:?}");
}

#[tokio::test]
async fn a_webhook_that_cannot_be_called_blocks_what_it_guards() {
    let (c, ns) = cluster_ns("hooked").await;
    let other = c.namespace("unhooked").await.expect("namespace");
    let guard = lifeboat_tests::unique_name("guard");
    let nss: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(c.client());
    nss.patch(
        &ns,
        &Default::default(),
        &kube::api::Patch::Merge(json!({"metadata": {"labels": {"lifeboat-test/guard": guard}}})),
    )
    .await
    .expect("label the namespace");
    let hooks: Api<DynamicObject> = Api::all_with(
        c.client(),
        &ApiResource {
            group: "admissionregistration.k8s.io".into(),
            version: "v1".into(),
            api_version: "admissionregistration.k8s.io/v1".into(),
            kind: "ValidatingWebhookConfiguration".into(),
            plural: "validatingwebhookconfigurations".into(),
        },
    );
    let hook_name = guard.clone();
    let vwc = |policy: &str| -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": hook_name},
            "webhooks": [{"name": "guard.lifeboat-test.dev", "failurePolicy": policy,
                "sideEffects": "None", "admissionReviewVersions": ["v1"],
                "clientConfig": {"service": {"namespace": ns, "name": "no-such-webhook", "port": 443}},
                "namespaceSelector": {"matchLabels": {"lifeboat-test/guard": guard}},
                "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}]}]
        }))
        .expect("webhook configuration")
    };
    hooks
        .create(&PostParams::default(), &vwc("Fail"))
        .await
        .expect("register the webhook");
    let guarded: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(c.client(), &ns);
    let refused: Value = eventually("the webhook to be in force", 30, || {
        let guarded = guarded.clone();
        async move {
            match guarded
                .create(&PostParams::default(), &cm("blocked", json!({})))
                .await
            {
                Err(kube::Error::Api(s)) => Some(json!({"code": s.code, "message": s.message})),
                Ok(_) => {
                    let _ = guarded.delete("blocked", &Default::default()).await;
                    None
                }
                Err(_) => None,
            }
        }
    })
    .await;
    assert_eq!(refused["code"], 500, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("failed calling webhook \"guard.lifeboat-test.dev\"")),
        "{refused}"
    );
    // Namespaces the selector leaves out are not guarded.
    let free: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(c.client(), &other);
    free.create(&PostParams::default(), &cm("free", json!({})))
        .await
        .expect("an unguarded namespace");
    // failurePolicy Ignore lets requests through when the webhook cannot be called.
    let mut current = hooks.get(&guard).await.expect("get");
    current.data["webhooks"][0]["failurePolicy"] = json!("Ignore");
    hooks
        .replace(&guard, &PostParams::default(), &current)
        .await
        .expect("switch to Ignore");
    eventually("Ignore to be in force", 30, || {
        let guarded = guarded.clone();
        async move {
            guarded
                .create(&PostParams::default(), &cm("allowed", json!({})))
                .await
                .ok()
                .map(|_| ())
        }
    })
    .await;
    hooks
        .delete(&guard, &Default::default())
        .await
        .expect("unregister the webhook");
}
