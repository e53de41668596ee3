//! Finalizers and deletion: held objects, terminating namespaces and their content.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
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
#[cfg_attr(
    kube_backend = "envtest",
    ignore = "no namespace controller runs beside a bare kube-apiserver"
)]
async fn namespace_deletion_removes_its_objects() {
    let c = cluster().await;
    if !c.has_controllers() {
        unsupported(
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
    // New content is refused by the NamespaceLifecycle admission plugin: 403 with the
    // NamespaceTerminating cause (clients tell it from an RBAC refusal by that cause).
    let refused = match api.create(&PostParams::default(), &cm("late", json!({}))).await {
        Err(kube::Error::Api(s)) => s,
        other => panic!("expected a 403, got {other:?}"),
    };
    assert_eq!((refused.code, refused.reason.as_str()), (403, "Forbidden"));
    assert!(
        refused.message.contains(&format!(
            "unable to create new content in namespace {ns} because it is being terminated"
        )),
        "{refused:?}"
    );
    let causes = refused.details.map(|d| d.causes).unwrap_or_default();
    assert!(
        causes
            .iter()
            .any(|c| c.reason == "NamespaceTerminating" && c.field == "metadata.namespace"),
        "{causes:?}"
    );
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

#[tokio::test]
async fn deletion_bumps_generation_and_answers_like_kube_apiserver() {
    let (c, ns) = cluster_ns("delanswer").await;
    let hold = json!({"metadata": {"finalizers": ["test.lifeboat.dev/hold"]}});
    let release = Patch::Merge(json!({"metadata": {"finalizers": null}}));
    // Marking an object for deletion bumps a positive generation (generation predicates see it).
    let deps: Api<Deployment> = Api::namespaced(c.client(), &ns);
    let mut d = crate::patches::deployment("web");
    d.metadata.finalizers = Some(vec!["test.lifeboat.dev/hold".into()]);
    let made = deps.create(&PostParams::default(), &d).await.expect("create");
    assert_eq!(made.metadata.generation, Some(1));
    deps.delete("web", &DeleteParams::default())
        .await
        .expect("delete");
    let marked = deps.get("web").await.expect("held");
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert_eq!(marked.metadata.generation, Some(2));
    deps.patch("web", &PatchParams::default(), &release)
        .await
        .expect("release the deployment");

    // Foreground deletion of a held object answers 200 (202 is only for orphanDependents=false).
    let cms: Api<ConfigMap> = Api::namespaced(c.client(), &ns);
    let mut held = cm("held", json!({}));
    held.metadata.finalizers = serde_json::from_value(hold["metadata"]["finalizers"].clone()).ok();
    cms.create(&PostParams::default(), &held).await.expect("create");
    let req = http::Request::delete(format!("/api/v1/namespaces/{ns}/configmaps/held"))
        .header("content-type", "application/json")
        .body(kube::client::Body::from(
            serde_json::to_vec(&json!({"propagationPolicy": "Foreground"})).expect("json"),
        ))
        .expect("request");
    let res = c.client().send(req).await.expect("foreground delete");
    assert_eq!(res.status().as_u16(), 200);
    cms.patch("held", &PatchParams::default(), &release)
        .await
        .expect("release the ConfigMap");

    // Deleting a Service returns the Service, as for Pods (not a Status).
    let svcs: Api<Service> = Api::namespaced(c.client(), &ns);
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}
    }))
    .expect("service");
    svcs.create(&PostParams::default(), &svc)
        .await
        .expect("create service");
    let gone = svcs
        .delete("web", &DeleteParams::default())
        .await
        .expect("delete service");
    assert!(gone.is_left(), "a deleted Service is returned, not a Status");
}
