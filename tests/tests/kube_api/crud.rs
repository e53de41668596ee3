//! Create, read, update, delete: names, conflicts, errors, selectors, pagination, patches,
//! finalizers, namespaces and services.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn create_get_list_replace_delete() {
    let (c, ns) = cluster_ns("crud").await;
    let api: Api<ConfigMap> = Api::namespaced(c.client(), &ns);
    let made = create_cm(&api, "one", json!({"test": "crud"})).await;
    assert!(made.uid().is_some_and(|u| !u.is_empty()));
    assert!(made.metadata.creation_timestamp.is_some());
    let rv1 = made.resource_version().expect("resourceVersion");
    let got = api.get("one").await.expect("get");
    assert_eq!(got.uid(), made.uid());
    // Real namespaces also hold controller-made objects (kube-root-ca.crt): select ours.
    let names: Vec<String> = api
        .list(&ListParams::default().labels("test=crud"))
        .await
        .expect("list")
        .iter()
        .map(|o| o.name_any())
        .collect();
    assert_eq!(names, vec!["one"]);
    let mut changed = got.clone();
    changed.data = Some([("k".to_string(), "w".to_string())].into());
    let replaced = api
        .replace("one", &PostParams::default(), &changed)
        .await
        .expect("replace");
    assert_ne!(replaced.resource_version().expect("rv"), rv1);
    assert_eq!(
        replaced
            .data
            .as_ref()
            .and_then(|d| d.get("k"))
            .map(String::as_str),
        Some("w")
    );
    api.delete("one", &DeleteParams::default()).await.expect("delete");
    assert_eq!(code(api.get("one").await), (404, "NotFound".into()));
    assert_eq!(code(api.delete("one", &DeleteParams::default()).await).0, 404);
}

#[tokio::test]
async fn generate_name_gets_a_suffix() {
    let (c, ns) = cluster_ns("gen").await;
    let api: Api<ConfigMap> = Api::namespaced(c.client(), &ns);
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"generateName": "gen-"}})).expect("cm");
    let a = api.create(&PostParams::default(), &cm).await.expect("create a");
    let b = api.create(&PostParams::default(), &cm).await.expect("create b");
    assert!(
        a.name_any().starts_with("gen-") && a.name_any().len() == 9,
        "{}",
        a.name_any()
    );
    assert_ne!(a.name_any(), b.name_any());
}

#[tokio::test]
async fn stale_resource_version_is_a_conflict_and_duplicates_already_exist() {
    let (c, ns) = cluster_ns("conflict").await;
    let api: Api<ConfigMap> = Api::namespaced(c.client(), &ns);
    let first = create_cm(&api, "cm", json!({})).await;
    let mut newer = first.clone();
    newer.labels_mut().insert("a".into(), "1".into());
    api.replace("cm", &PostParams::default(), &newer)
        .await
        .expect("first update");
    let mut stale = first.clone();
    stale.labels_mut().insert("a".into(), "2".into());
    assert_eq!(
        code(api.replace("cm", &PostParams::default(), &stale).await),
        (409, "Conflict".into())
    );
    let stale_patch =
        json!({"metadata": {"resourceVersion": first.resource_version(), "labels": {"b": "1"}}});
    assert_eq!(
        code(
            api.patch("cm", &PatchParams::default(), &Patch::Merge(&stale_patch))
                .await
        )
        .0,
        409
    );
    assert_eq!(
        code(api.create(&PostParams::default(), &cm("cm", json!({}))).await),
        (409, "AlreadyExists".into())
    );
    // A read object cannot be created again as is: restores must drop resourceVersion.
    let mut copy = api.get("cm").await.expect("get");
    copy.metadata.name = Some("copy".into());
    assert_eq!(code(api.create(&PostParams::default(), &copy).await).0, 400);
}

#[tokio::test]
async fn invalid_and_missing_names_are_422() {
    let (c, ns) = cluster_ns("invalid").await;
    let api: Api<ConfigMap> = Api::namespaced(c.client(), &ns);
    assert_eq!(
        code(
            api.create(&PostParams::default(), &cm("Bad_Name", json!({})))
                .await
        ),
        (422, "Invalid".into())
    );
    let unnamed: ConfigMap = serde_json::from_value(json!({"metadata": {}})).expect("cm");
    assert_eq!(code(api.create(&PostParams::default(), &unnamed).await).0, 422);
    let nss: Api<Namespace> = Api::all(c.client());
    let dotted: Namespace = serde_json::from_value(json!({"metadata": {"name": "a.b"}})).expect("ns");
    assert_eq!(code(nss.create(&PostParams::default(), &dotted).await).0, 422);
    let missing: Api<ConfigMap> = Api::namespaced(c.client(), "no-such-namespace-lifeboat");
    assert_eq!(
        code(missing.create(&PostParams::default(), &cm("x", json!({}))).await).0,
        404
    );
}

fn deployment(name: &str) -> Deployment {
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
async fn label_and_field_selectors() {
    let (c, ns) = cluster_ns("selectors").await;
    let api: Api<ConfigMap> = Api::namespaced(c.client(), &ns);
    // Every object also carries set=s, to leave out controller-made ones (kube-root-ca.crt).
    create_cm(&api, "a", json!({"set": "s", "app": "a", "tier": "front"})).await;
    create_cm(&api, "b", json!({"set": "s", "app": "b"})).await;
    create_cm(&api, "c", json!({"set": "s"})).await;
    let names = |l: kube::core::ObjectList<ConfigMap>| l.iter().map(|o| o.name_any()).collect::<Vec<_>>();
    let q = |s: &str| ListParams::default().labels(&format!("set=s,{s}"));
    assert_eq!(names(api.list(&q("app=a")).await.expect("eq")), ["a"]);
    assert_eq!(names(api.list(&q("app in (a,b)")).await.expect("in")), ["a", "b"]);
    assert_eq!(names(api.list(&q("!app")).await.expect("not")), ["c"]);
    assert_eq!(
        names(api.list(&q("app,tier!=front")).await.expect("exists")),
        ["b"]
    );
    let f = |s: &str| ListParams::default().labels("set=s").fields(s);
    assert_eq!(names(api.list(&f("metadata.name=b")).await.expect("name")), ["b"]);
    assert_eq!(
        names(api.list(&f("metadata.name!=b")).await.expect("not name")),
        ["a", "c"]
    );
    let all: Api<ConfigMap> = Api::all(c.client());
    let in_ns = all
        .list(&f(&format!("metadata.namespace={ns}")))
        .await
        .expect("namespace");
    assert_eq!(names(in_ns), ["a", "b", "c"]);
    assert_eq!(code(api.list(&f("data.k=v")).await).0, 400);
}

#[tokio::test]
async fn pagination_with_limit_and_continue() {
    let (c, ns) = cluster_ns("pages").await;
    let api: Api<ConfigMap> = Api::namespaced(c.client(), &ns);
    for i in 0..5 {
        create_cm(&api, &format!("cm-{i}"), json!({})).await;
    }
    // Real namespaces may hold a kube-root-ca.crt ConfigMap: count ours only.
    let mut seen = Vec::new();
    let mut lp = ListParams::default().limit(2);
    let mut pages = 0;
    loop {
        let page = api.list(&lp).await.expect("page");
        assert!(page.items.len() <= 2);
        pages += 1;
        seen.extend(page.iter().map(|o| o.name_any()).filter(|n| n.starts_with("cm-")));
        if pages == 1 {
            // Later pages show the list's snapshot: changes made meanwhile do not show.
            api.delete("cm-4", &DeleteParams::default())
                .await
                .expect("delete");
            create_cm(&api, "cm-9", json!({})).await;
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => lp = lp.continue_token(&token),
            None => break,
        }
    }
    assert!(pages >= 3);
    assert_eq!(seen, ["cm-0", "cm-1", "cm-2", "cm-3", "cm-4"]);
}

#[tokio::test]
async fn list_at_an_exact_resource_version() {
    let (c, ns) = cluster_ns("exact").await;
    let api: Api<ConfigMap> = Api::namespaced(c.client(), &ns);
    create_cm(&api, "old", json!({"test": "exact"})).await;
    let lp = ListParams::default().labels("test=exact");
    let rv = api
        .list(&lp)
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("rv");
    create_cm(&api, "new", json!({"test": "exact"})).await;
    api.delete("old", &DeleteParams::default()).await.expect("delete");
    let then = api
        .list(&lp.clone().at(&rv).matching(kube::api::VersionMatch::Exact))
        .await
        .expect("list at rv");
    let names: Vec<String> = then.iter().map(|o| o.name_any()).collect();
    assert_eq!(names, ["old"]);
    let now: Vec<String> = api
        .list(&lp)
        .await
        .expect("list")
        .iter()
        .map(|o| o.name_any())
        .collect();
    assert_eq!(now, ["new"]);
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
async fn services_get_a_cluster_ip() {
    let (c, ns) = cluster_ns("svc").await;
    let api: Api<Service> = Api::namespaced(c.client(), &ns);
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}
    }))
    .expect("service");
    let made = api.create(&PostParams::default(), &svc).await.expect("create");
    let spec = made.spec.expect("spec");
    let ip = spec.cluster_ip.expect("clusterIP");
    assert!(ip.parse::<std::net::IpAddr>().is_ok(), "{ip}");
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
}

#[tokio::test]
async fn delete_collection_by_label() {
    let (c, ns) = cluster_ns("delcol").await;
    let api: Api<ConfigMap> = Api::namespaced(c.client(), &ns);
    create_cm(&api, "x1", json!({"del": "yes"})).await;
    create_cm(&api, "x2", json!({"del": "yes"})).await;
    create_cm(&api, "keep", json!({"del": "no"})).await;
    api.delete_collection(&DeleteParams::default(), &ListParams::default().labels("del=yes"))
        .await
        .expect("deletecollection");
    let left: Vec<String> = api
        .list(&ListParams::default().labels("del"))
        .await
        .expect("list")
        .iter()
        .map(|o| o.name_any())
        .collect();
    assert_eq!(left, ["keep"]);
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
