//! Patches (merge, JSON, server-side apply), generation and the scale subresource.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::common::*;

pub fn deployment(name: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "example.invalid/none:1"}]}
            }
        }
    }))
    .expect("deployment")
}

#[tokio::test]
async fn generation_bumps_on_spec_changes_only() {
    let (c, ns) = cluster_ns("generation").await;
    let api: Api<Deployment> = Api::namespaced(c.client(), &ns);
    let d = api
        .create(&PostParams::default(), &deployment("web"))
        .await
        .expect("create");
    assert_eq!(d.metadata.generation, Some(1));
    let labelled = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .expect("label");
    assert_eq!(labelled.metadata.generation, Some(1));
    let scaled = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .expect("scale");
    assert_eq!(scaled.metadata.generation, Some(2));
}

#[tokio::test]
async fn patches_merge_json_and_apply() {
    let (c, ns) = cluster_ns("patch").await;
    let api: Api<ConfigMap> = Api::namespaced(c.client(), &ns);
    create_cm(&api, "p", json!({})).await;
    let merged = api
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"m": "1"}})),
        )
        .await
        .expect("merge");
    assert_eq!(merged.data.as_ref().map(|d| d.len()), Some(2));
    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "replace", "path": "/data/k", "value": "json"},
        {"op": "remove", "path": "/data/m"}
    ]))
    .expect("json patch");
    let patched = api
        .patch("p", &PatchParams::default(), &Patch::Json::<()>(ops))
        .await
        .expect("json patch");
    assert_eq!(patched.data, Some([("k".to_string(), "json".to_string())].into()));
    let failing: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/data/k", "value": "nope"}])).expect("test op");
    assert_eq!(
        code(
            api.patch("p", &PatchParams::default(), &Patch::Json::<()>(failing))
                .await
        )
        .0,
        422
    );
    let applied =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"a": "1"}});
    let pp = PatchParams::apply("lifeboat-test").force();
    let made = api
        .patch("applied", &pp, &Patch::Apply(&applied))
        .await
        .expect("apply creates");
    assert_eq!(made.data, Some([("a".to_string(), "1".to_string())].into()));
    let again =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"a": "2"}});
    let updated = api
        .patch("applied", &pp, &Patch::Apply(&again))
        .await
        .expect("apply updates");
    assert_eq!(updated.data, Some([("a".to_string(), "2".to_string())].into()));
    let managers: Vec<(String, String)> = updated
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .map(|m| (m.manager.unwrap_or_default(), m.operation.unwrap_or_default()))
        .collect();
    assert!(
        managers.contains(&("lifeboat-test".into(), "Apply".into())),
        "{managers:?}"
    );
    // Fields the manager stops applying are removed.
    let fewer =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"b": "1"}});
    let pruned = api
        .patch("applied", &pp, &Patch::Apply(&fewer))
        .await
        .expect("apply fewer fields");
    assert_eq!(pruned.data, Some([("b".to_string(), "1".to_string())].into()));
    // Another manager's field: applying a different value conflicts unless forced.
    let other = PatchParams {
        field_manager: Some("other".into()),
        ..PatchParams::default()
    };
    api.patch("applied", &other, &Patch::Merge(json!({"data": {"c": "theirs"}})))
        .await
        .expect("merge patch by another manager");
    let grab = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"b": "1", "c": "mine"}});
    let polite = PatchParams::apply("lifeboat-test");
    assert_eq!(
        code(api.patch("applied", &polite, &Patch::Apply(&grab)).await),
        (409, "Conflict".into())
    );
    let forced = api
        .patch("applied", &pp, &Patch::Apply(&grab))
        .await
        .expect("forced apply");
    assert_eq!(
        forced.data.as_ref().and_then(|d| d.get("c")).map(String::as_str),
        Some("mine")
    );
}

#[tokio::test]
async fn the_scale_subresource_sets_replicas() {
    let (c, ns) = cluster_ns("scale").await;
    let api: Api<Deployment> = Api::namespaced(c.client(), &ns);
    api.create(&PostParams::default(), &deployment("web"))
        .await
        .expect("create");
    let scale = api.get_scale("web").await.expect("get scale");
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(1));
    api.patch_scale(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 0}})),
    )
    .await
    .expect("scale to zero");
    let d = api.get("web").await.expect("get");
    assert_eq!(d.spec.and_then(|s| s.replicas), Some(0));
    assert_eq!(d.metadata.generation, Some(2));
}
