//! Finalizers and deletion: held objects, terminating namespaces and their content.

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let (c, ns) = cluster_ns("finalizers").await;
    let api: Api<ConfigMap> = Api::namespaced(c.client(), &ns);
    let mut held = cm("held", json!({}));
    held.metadata.finalizers = Some(vec!["test.lifeboat.dev/hold".into()]);
    api.create(&PostParams::default(), &held).await.expect("create");
    let res = api
        .delete("held", &DeleteParams::default())
        .await
        .expect("delete");
    assert!(res.is_left(), "a held object is returned, not a Status");
    let pending = api.get("held").await.expect("still there");
    assert!(pending.metadata.deletion_timestamp.is_some());
    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("release");
    eventually("the released object to go", 10, || async {
        api.get("held").await.is_err().then_some(())
    })
    .await;
    assert_eq!(code(api.get("held").await).0, 404);
}

#[tokio::test]
async fn namespace_deletion_removes_its_objects() {
    let c = cluster().await;
    if !c.has_controllers() {
        return skip(
            "namespace_deletion_removes_its_objects",
            "no namespace controller runs beside a bare kube-apiserver",
        );
    }
    let ns = c.namespace("nsdel").await.expect("namespace");
    let api: Api<ConfigMap> = Api::namespaced(c.client(), &ns);
    create_cm(&api, "doomed", json!({})).await;
    let nss: Api<Namespace> = Api::all(c.client());
    nss.delete(&ns, &DeleteParams::default())
        .await
        .expect("delete namespace");
    eventually("the namespace to go", 120, || async {
        nss.get(&ns).await.is_err().then_some(())
    })
    .await;
    let all: Api<ConfigMap> = Api::all(c.client());
    let left = all
        .list(&ListParams::default().fields(&format!("metadata.namespace={ns}")))
        .await
        .expect("list");
    assert!(left.items.is_empty());
}

#[tokio::test]
async fn a_terminating_namespace_stays_while_its_content_is_held() {
    let c = cluster().await;
    let ns = c.namespace("nsheld").await.expect("namespace");
    let api: Api<ConfigMap> = Api::namespaced(c.client(), &ns);
    let mut held = cm("held", json!({}));
    held.metadata.finalizers = Some(vec!["test.lifeboat.dev/hold".into()]);
    api.create(&PostParams::default(), &held).await.expect("create");
    let nss: Api<Namespace> = Api::all(c.client());
    nss.delete(&ns, &DeleteParams::default())
        .await
        .expect("delete namespace");
    // Updating a terminating namespace (which has no metadata.finalizers) must not finish
    // its deletion: spec.finalizers and the held content keep it.
    nss.patch(
        &ns,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}})),
    )
    .await
    .expect("label the terminating namespace");
    let still = nss.get(&ns).await.expect("the namespace is still there");
    assert!(still.metadata.deletion_timestamp.is_some());
    api.get("held").await.expect("its content is still there");
    // Release the content so the namespace can go (on backends with a namespace controller).
    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("release");
    if c.has_controllers() {
        eventually("the namespace to go", 120, || async {
            nss.get(&ns).await.is_err().then_some(())
        })
        .await;
    }
}
