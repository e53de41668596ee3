//! Owner references and garbage collection (a controller-manager's job: skipped beside a bare
//! kube-apiserver).

use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

use crate::common::*;

async fn owner_and_dependent(api: &Api<ConfigMap>, owner: &str, dependent: &str) {
    let o = create_cm(api, owner, json!({})).await;
    let mut d = cm(dependent, json!({}));
    d.metadata.owner_references = Some(vec![
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap", "name": owner, "uid": o.uid().expect("uid")
        }))
        .expect("owner reference"),
    ]);
    api.create(&PostParams::default(), &d)
        .await
        .expect("create dependent");
}

#[tokio::test]
#[cfg_attr(
    kube_backend = "envtest",
    ignore = "no garbage collector runs beside a bare kube-apiserver"
)]
async fn garbage_collection_follows_the_propagation_policy() {
    let c = cluster().await;
    if !c.has_controllers() {
        unsupported(
            "garbage_collection_follows_the_propagation_policy",
            "no garbage collector runs beside a bare kube-apiserver",
        );
    }
    let ns = c.namespace("gc").await.expect("namespace");
    let api: Api<ConfigMap> = Api::namespaced(c.client(), &ns);
    let gone = |name: &'static str| {
        let api = api.clone();
        async move { api.get(name).await.is_err().then_some(()) }
    };

    owner_and_dependent(&api, "bg-owner", "bg-dep").await;
    api.delete("bg-owner", &DeleteParams::background())
        .await
        .expect("delete");
    eventually("the background dependent to go", 60, || gone("bg-dep")).await;

    owner_and_dependent(&api, "fg-owner", "fg-dep").await;
    api.delete("fg-owner", &DeleteParams::foreground())
        .await
        .expect("delete");
    eventually("the foreground dependent to go", 60, || gone("fg-dep")).await;
    eventually("the foreground owner to go", 60, || gone("fg-owner")).await;

    owner_and_dependent(&api, "or-owner", "or-dep").await;
    api.delete("or-owner", &DeleteParams::orphan())
        .await
        .expect("delete");
    eventually("the orphaning owner to go", 60, || gone("or-owner")).await;
    let kept = eventually("the orphan to lose its owner reference", 60, || async {
        let d = api.get("or-dep").await.ok()?;
        d.owner_references().is_empty().then_some(d)
    })
    .await;
    assert_eq!(kept.name_any(), "or-dep");
}

#[tokio::test]
#[cfg_attr(
    kube_backend = "envtest",
    ignore = "no service-account controller runs beside a bare kube-apiserver"
)]
async fn new_namespaces_get_a_default_service_account() {
    let c = cluster().await;
    if !c.has_controllers() {
        unsupported(
            "new_namespaces_get_a_default_service_account",
            "no service-account controller runs beside a bare kube-apiserver",
        );
    }
    let ns = c.namespace("sa").await.expect("namespace");
    let sas: Api<ServiceAccount> = Api::namespaced(c.client(), &ns);
    eventually("the default ServiceAccount", 60, || async {
        sas.get("default").await.ok()
    })
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(c.client(), &ns);
    eventually("kube-root-ca.crt", 60, || async {
        cms.get("kube-root-ca.crt").await.ok()
    })
    .await;
}

#[tokio::test]
async fn system_namespaces_cannot_be_deleted() {
    let c = cluster().await;
    let nss: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(c.client());
    // A dry run still passes admission (NamespaceLifecycle refuses), and cannot harm a real
    // cluster that lacks that admission plugin.
    let dry = DeleteParams {
        dry_run: true,
        ..DeleteParams::default()
    };
    assert_eq!(code(nss.delete("kube-system", &dry).await).0, 403);
}
