//! Create, read, update, delete: names, conflicts, errors, selectors, pagination, services
//! and collections.

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
    // kube-apiserver answers 500 with no reason here (a storage-layer error): only the
    // failure and its message are stable.
    match api.create(&PostParams::default(), &copy).await {
        Err(kube::Error::Api(s)) => assert!(
            s.message
                .contains("resourceVersion should not be set on objects to be created"),
            "{s:?}"
        ),
        other => panic!("create with a resourceVersion: expected an API error, got {other:?}"),
    }
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
    // remainingItemCount is given for plain lists, left out when a selector filters.
    let plain = api
        .list(&ListParams::default().limit(1))
        .await
        .expect("plain page");
    assert!(plain.metadata.remaining_item_count.is_some_and(|n| n > 0));
    let selected = api
        .list(&ListParams::default().limit(1).labels("!absent"))
        .await
        .expect("selected page");
    assert!(selected.metadata.continue_.is_some_and(|c| !c.is_empty()));
    assert_eq!(selected.metadata.remaining_item_count, None);
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
