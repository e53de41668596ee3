//! What a narrowed backup or restore takes besides the selected objects (their Namespaces,
//! CRDs, volumes and classes), and the order a restore puts admission control in.

use std::collections::BTreeMap;

use kube::api::{Api, DynamicObject};
use lifeboat_controller::crd::{BackupSpec, ClusterScoped, RestoreSpec};
use serde_json::json;

use crate::common::*;

fn namespaces() -> kube::api::ApiResource {
    ar("", "v1", "Namespace", "namespaces")
}

async fn delete_namespace(client: &kube::Client, name: &str) {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &namespaces());
    let _ = api.delete(name, &Default::default()).await;
}

#[tokio::test]
async fn a_selected_namespace_keeps_its_labels_whatever_the_selector() {
    let cluster = cluster().await;
    let client = cluster.client();
    let src = cluster.namespace("objs-nslabels").await.expect("namespace");
    let nss: Api<DynamicObject> = Api::all_with(client.clone(), &namespaces());
    nss.patch(
        &src,
        &Default::default(),
        &kube::api::Patch::Merge(json!({"metadata": {"labels": {
            "pod-security.kubernetes.io/enforce": "restricted"}}})),
    )
    .await
    .expect("label the namespace");
    for (name, app) in [("web-config", "web"), ("db-config", "db")] {
        create(
            &client,
            &configmaps(),
            Some(&src),
            json!({"metadata": {"name": name, "labels": {"app": app}}}),
        )
        .await;
    }
    let (_t, repo) = repository().await;
    let outcome = backup(
        &client,
        &repo,
        "shop",
        BackupSpec {
            included_namespaces: vec![src.clone()],
            label_selector: Some("app=web".to_string()),
            ..BackupSpec::default()
        },
    )
    .await;
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    let paths = snapshot_paths(&repo, &outcome.snapshot).await;
    assert!(
        paths.contains(&format!("resources/namespaces/cluster/{src}.json")),
        "{paths:?}"
    );
    assert!(paths.contains(&format!("resources/configmaps/namespaces/{src}/web-config.json")));
    assert!(!paths.contains(&format!("resources/configmaps/namespaces/{src}/db-config.json")));

    let dst = format!("{src}-copy");
    let restored = restore(
        &client,
        &repo,
        &outcome.snapshot,
        RestoreSpec {
            namespace_mapping: BTreeMap::from([(src.clone(), dst.clone())]),
            ..RestoreSpec::default()
        },
    )
    .await;
    let copy = get_cluster(&client, &namespaces(), &dst).await;
    delete_namespace(&client, &dst).await;
    assert!(restored.errors.is_empty(), "{:?}", restored.errors);
    let copy = copy.expect("the namespace is restored");
    assert_eq!(
        copy["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "restricted",
        "{copy}"
    );
    assert_eq!(
        copy["metadata"]["labels"]["kubernetes.io/metadata.name"],
        dst.as_str()
    );
}

#[tokio::test]
async fn a_narrowed_restore_brings_the_crds_volumes_and_classes_its_namespaces_need() {
    let cluster = cluster().await;
    let client = cluster.client();
    let src = cluster.namespace("objs-needs").await.expect("namespace");
    let other = cluster.namespace("objs-needs-other").await.expect("namespace");
    let widgets = widget_crd(&client).await;
    let widget = |name: &str| json!({"apiVersion": widgets.api_version, "kind": "Widget", "metadata": {"name": name}, "spec": {"n": 1}});
    create(&client, &widgets, Some(&src), widget("w")).await;
    create(&client, &widgets, Some(&other), widget("x")).await;
    let class = lifeboat_tests::unique_name("fast");
    let pv_name = lifeboat_tests::unique_name("pv");
    let scs = ar("storage.k8s.io", "v1", "StorageClass", "storageclasses");
    let pvs = ar("", "v1", "PersistentVolume", "persistentvolumes");
    let pvcs = ar("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims");
    storage_class(&client, &class).await;
    bound_claim(&client, &src, "data", &pv_name, &class, json!({})).await;
    let (_t, repo) = repository().await;
    // A backup of both namespaces, restored for one of them.
    let outcome = backup(
        &client,
        &repo,
        "two",
        BackupSpec {
            included_namespaces: vec![src.clone(), other.clone()],
            ..BackupSpec::default()
        },
    )
    .await;
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    let paths = snapshot_paths(&repo, &outcome.snapshot).await;
    for p in [
        format!("resources/persistentvolumes/cluster/{pv_name}.json"),
        format!("resources/storageclasses.storage.k8s.io/cluster/{class}.json"),
        format!(
            "resources/customresourcedefinitions.apiextensions.k8s.io/cluster/widgets.{}.json",
            widgets.group
        ),
    ] {
        assert!(paths.contains(&p), "the backup takes {p}");
    }
    // The cluster loses the CRD (and its objects), the volume and the class.
    delete_crd(&client, &widgets).await;
    let pv_api: Api<DynamicObject> = Api::all_with(client.clone(), &pvs);
    let _ = pv_api.delete(&pv_name, &Default::default()).await;
    let sc_api: Api<DynamicObject> = Api::all_with(client.clone(), &scs);
    let _ = sc_api.delete(&class, &Default::default()).await;
    let crd_name = format!("widgets.{}", widgets.group);
    lifeboat_tests::poll::eventually("the CRD to be gone", 60, || {
        let client = client.clone();
        let crd_name = crd_name.clone();
        async move {
            get_cluster(
                &client,
                &ar(
                    "apiextensions.k8s.io",
                    "v1",
                    "CustomResourceDefinition",
                    "customresourcedefinitions",
                ),
                &crd_name,
            )
            .await
            .is_none()
            .then_some(())
        }
    })
    .await;
    let dst = cluster.namespace("objs-needs-dst").await.expect("namespace");
    let restored = restore(
        &client,
        &repo,
        &outcome.snapshot,
        RestoreSpec {
            included_namespaces: vec![src.clone()],
            namespace_mapping: BTreeMap::from([(src.clone(), dst.clone())]),
            ..RestoreSpec::default()
        },
    )
    .await;
    assert!(restored.errors.is_empty(), "{:?}", restored.errors);
    assert!(
        get(&client, &widgets, &dst, "w").await.is_some(),
        "the widget is back"
    );
    assert!(get(&client, &pvcs, &dst, "data").await.is_some());
    let pv = get_cluster(&client, &pvs, &pv_name)
        .await
        .expect("the volume is back");
    assert_eq!(pv["spec"]["claimRef"]["namespace"], dst.as_str());
    assert!(
        get_cluster(&client, &scs, &class).await.is_some(),
        "the class is back"
    );
    assert!(
        get(&client, &widgets, &other, "x").await.is_none(),
        "the other namespace is not restored"
    );
    let _ = pv_api.delete(&pv_name, &Default::default()).await;
    let _ = sc_api.delete(&class, &Default::default()).await;
    delete_crd(&client, &widgets).await;
}

/// A restore's label selector (Velero's `--selector`) restores the matching objects,
/// namespaced and cluster-scoped, with what they need though it is not labelled: the
/// Namespace object (keeping its own labels), the CRD of a matching custom resource, the
/// volume bound to a matching claim and its class. Nothing else comes back, and what was
/// left out is counted as filtered. A selector that does not parse is refused, naming it.
#[tokio::test]
async fn a_label_selector_restores_the_matching_objects_and_what_they_need() {
    let cluster = cluster().await;
    let client = cluster.client();
    let src = cluster.namespace("objs-sel").await.expect("namespace");
    let nss: Api<DynamicObject> = Api::all_with(client.clone(), &namespaces());
    nss.patch(
        &src,
        &Default::default(),
        &kube::api::Patch::Merge(json!({"metadata": {"labels": {"team": "shop"}}})),
    )
    .await
    .expect("label the namespace");
    // Labels no other test uses: the backup holds every cluster-scoped object of the server.
    let (web, db) = (
        lifeboat_tests::unique_name("web"),
        lifeboat_tests::unique_name("db"),
    );
    let labels = |app: &str| json!({"app": app});
    for (name, app) in [("web-config", &web), ("db-config", &db)] {
        create(
            &client,
            &configmaps(),
            Some(&src),
            json!({"metadata": {"name": name, "labels": labels(app)}}),
        )
        .await;
    }
    let widgets = widget_crd(&client).await;
    for (name, app) in [("w", &web), ("v", &db)] {
        let widget = json!({"apiVersion": widgets.api_version, "kind": "Widget",
            "metadata": {"name": name, "labels": labels(app)}, "spec": {"n": 1}});
        create(&client, &widgets, Some(&src), widget).await;
    }
    let class = lifeboat_tests::unique_name("sel-class");
    let scs = ar("storage.k8s.io", "v1", "StorageClass", "storageclasses");
    let pvs = ar("", "v1", "PersistentVolume", "persistentvolumes");
    let pvcs = ar("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims");
    let roles = ar("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles");
    storage_class(&client, &class).await;
    let (web_pv, db_pv) = (
        lifeboat_tests::unique_name("sel-pv"),
        lifeboat_tests::unique_name("sel-pv"),
    );
    for (claim, pv, app) in [("data", &web_pv, &web), ("cache", &db_pv, &db)] {
        bound_claim(&client, &src, claim, pv, &class, labels(app)).await;
    }
    let (web_role, db_role) = (
        lifeboat_tests::unique_name("sel-role"),
        lifeboat_tests::unique_name("sel-role"),
    );
    for (role, app) in [(&web_role, &web), (&db_role, &db)] {
        create(
            &client,
            &roles,
            None,
            json!({"metadata": {"name": role, "labels": labels(app)}, "rules": []}),
        )
        .await;
    }
    let (_t, repo) = repository().await;
    let outcome = backup(
        &client,
        &repo,
        "labelled",
        BackupSpec {
            included_namespaces: vec![src.clone()],
            cluster_scoped: ClusterScoped::Include,
            ..BackupSpec::default()
        },
    )
    .await;
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    // The cluster loses what is cluster-scoped; the objects come back in another namespace.
    delete_crd(&client, &widgets).await;
    let cluster_api = |r: &kube::api::ApiResource| -> Api<DynamicObject> { Api::all_with(client.clone(), r) };
    for (r, name) in [
        (&pvs, &web_pv),
        (&pvs, &db_pv),
        (&scs, &class),
        (&roles, &web_role),
        (&roles, &db_role),
    ] {
        let _ = cluster_api(r).delete(name, &Default::default()).await;
    }
    let crds = ar(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
    );
    let crd_name = format!("widgets.{}", widgets.group);
    lifeboat_tests::poll::eventually("the CRD to be gone", 60, || {
        let (client, crds, crd_name) = (client.clone(), crds.clone(), crd_name.clone());
        async move {
            get_cluster(&client, &crds, &crd_name)
                .await
                .is_none()
                .then_some(())
        }
    })
    .await;
    let bad = RestoreSpec {
        label_selector: Some("app in (web".to_string()),
        ..RestoreSpec::default()
    };
    let refused = lifeboat_controller::kube_objects::restore::RestoreOptions::from_spec(&bad)
        .expect_err("an unclosed set is refused");
    assert!(refused.to_string().contains("label selector"), "{refused}");

    let dst = format!("{src}-sel");
    let restored = restore(
        &client,
        &repo,
        &outcome.snapshot,
        RestoreSpec {
            label_selector: Some(format!("app={web}")),
            namespace_mapping: BTreeMap::from([(src.clone(), dst.clone())]),
            ..RestoreSpec::default()
        },
    )
    .await;
    let found = (
        get(&client, &configmaps(), &dst, "web-config").await.is_some(),
        get(&client, &configmaps(), &dst, "db-config").await.is_some(),
        get(&client, &widgets, &dst, "w").await.is_some(),
        get(&client, &widgets, &dst, "v").await.is_some(),
        get(&client, &pvcs, &dst, "data").await.is_some(),
        get(&client, &pvcs, &dst, "cache").await.is_some(),
    );
    let cluster_found = (
        get_cluster(&client, &pvs, &web_pv).await,
        get_cluster(&client, &pvs, &db_pv).await.is_some(),
        get_cluster(&client, &scs, &class).await.is_some(),
        get_cluster(&client, &roles, &web_role).await.is_some(),
        get_cluster(&client, &roles, &db_role).await.is_some(),
    );
    let copy = get_cluster(&client, &namespaces(), &dst).await;
    for (r, name) in [(&pvs, &web_pv), (&scs, &class), (&roles, &web_role)] {
        let _ = cluster_api(r).delete(name, &Default::default()).await;
    }
    delete_namespace(&client, &dst).await;
    delete_crd(&client, &widgets).await;

    assert!(restored.errors.is_empty(), "{:?}", restored.errors);
    assert_eq!(
        found,
        (true, false, true, false, true, false),
        "config, widget, claim: web only"
    );
    let (pv, db_pv_back, class_back, web_role_back, db_role_back) = cluster_found;
    let pv = pv.expect("the matching claim's volume is brought along");
    assert_eq!(pv["spec"]["claimRef"]["namespace"], dst.as_str());
    assert!(!db_pv_back, "the other claim's volume stays out");
    assert!(class_back, "the class of the matching claim comes along");
    assert_eq!(
        (web_role_back, db_role_back),
        (true, false),
        "cluster-scoped objects by their labels"
    );
    let copy = copy.expect("the namespace comes along");
    assert_eq!(copy["metadata"]["labels"]["team"], "shop", "{copy}");
    assert!(restored.summary.filtered >= 5, "{:?}", restored.summary);
}

#[tokio::test]
async fn admission_webhooks_are_restored_after_what_they_guard() {
    let cluster = cluster().await;
    let client = cluster.client();
    let src = cluster.namespace("objs-hooked").await.expect("namespace");
    let guard = lifeboat_tests::unique_name("guard");
    let nss: Api<DynamicObject> = Api::all_with(client.clone(), &namespaces());
    nss.patch(
        &src,
        &Default::default(),
        &kube::api::Patch::Merge(json!({"metadata": {"labels": {"lifeboat-test/guard": guard}}})),
    )
    .await
    .expect("label the namespace");
    // Custom resources: the last kind restored before admission control.
    let widgets = widget_crd(&client).await;
    for i in 0..3 {
        create(
            &client,
            &widgets,
            Some(&src),
            json!({"apiVersion": widgets.api_version, "kind": "Widget", "metadata": {"name": format!("w{i}")}}),
        )
        .await;
    }
    // A webhook with failurePolicy Fail guarding them in namespaces with that label, served
    // by a Service that is not there (in a disaster, its Deployment is not back yet).
    let vwcs = ar(
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
    );
    create(
        &client,
        &vwcs,
        None,
        json!({"metadata": {"name": guard},
            "webhooks": [{"name": "guard.lifeboat-test.dev", "failurePolicy": "Fail",
                "sideEffects": "None", "admissionReviewVersions": ["v1"],
                "clientConfig": {"service": {"namespace": src, "name": "no-such-webhook", "port": 443}},
                "namespaceSelector": {"matchLabels": {"lifeboat-test/guard": guard}},
                "rules": [{"operations": ["CREATE"], "apiGroups": [widgets.group], "apiVersions": ["*"],
                           "resources": ["widgets"]}]}]}),
    )
    .await;
    let (_t, repo) = repository().await;
    let only = vec![
        format!("widgets.{}", widgets.group),
        "validatingwebhookconfigurations.admissionregistration.k8s.io".to_string(),
    ];
    let outcome = backup(
        &client,
        &repo,
        "hooked",
        BackupSpec {
            included_namespaces: vec![src.clone()],
            included_resources: only.clone(),
            cluster_scoped: ClusterScoped::Include,
            ..BackupSpec::default()
        },
    )
    .await;
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    // The disaster: the webhook configuration is gone with the cluster.
    let hooks: Api<DynamicObject> = Api::all_with(client.clone(), &vwcs);
    hooks
        .delete(&guard, &Default::default())
        .await
        .expect("delete the webhook configuration");
    let dst = format!("{src}-dr");
    let restored = restore(
        &client,
        &repo,
        &outcome.snapshot,
        RestoreSpec {
            namespace_mapping: BTreeMap::from([(src.clone(), dst.clone())]),
            included_resources: only,
            ..RestoreSpec::default()
        },
    )
    .await;
    let back = get_cluster(&client, &vwcs, &guard).await;
    let _ = hooks.delete(&guard, &Default::default()).await;
    let mut restored_widgets = Vec::new();
    for i in 0..3 {
        restored_widgets.push(get(&client, &widgets, &dst, &format!("w{i}")).await.is_some());
    }
    let labels = get_cluster(&client, &namespaces(), &dst).await;
    delete_namespace(&client, &dst).await;
    delete_crd(&client, &widgets).await;
    assert!(restored.errors.is_empty(), "{:?}", restored.errors);
    assert_eq!(
        labels.map(|n| n["metadata"]["labels"]["lifeboat-test/guard"].clone()),
        Some(json!(guard)),
        "the namespace comes back labelled, so the webhook guards it"
    );
    assert_eq!(
        restored_widgets,
        [true, true, true],
        "the guarded objects came back first"
    );
    assert!(back.is_some(), "the webhook configuration is restored, last");
}

/// A listing that restarts after its continue token expired (410) forgets only what it sent
/// itself: with cluster-scoped objects taken by a label selector, the Namespaces listing's
/// second pass (the namespaces the selection needs) once forgot what the first pass took,
/// sent those objects again and counted them twice.
#[tokio::test]
async fn a_restarted_listing_counts_each_object_once() {
    let cluster = cluster().await;
    let Some(faults) = cluster.faults() else {
        lifeboat_tests::kube::unsupported(
            "a_restarted_listing_counts_each_object_once",
            "expiring a continue token at a chosen page needs the in-process test server",
        );
    };
    let client = cluster.client();
    let src = cluster.namespace("objs-410").await.expect("namespace");
    let pick = src.clone();
    let nss: Api<DynamicObject> = Api::all_with(client.clone(), &namespaces());
    nss.patch(
        &src,
        &Default::default(),
        &kube::api::Patch::Merge(json!({"metadata": {"labels": {"lifeboat-test/pick": pick}}})),
    )
    .await
    .expect("label the namespace");
    create(
        &client,
        &configmaps(),
        Some(&src),
        json!({"metadata": {"name": "picked", "labels": {"lifeboat-test/pick": pick}}}),
    )
    .await;
    // More Namespaces than one list page (the backup's 500) holds, so the second pass continues.
    let page = 500;
    let have = nss
        .list(&Default::default())
        .await
        .expect("list namespaces")
        .items
        .len();
    let fillers: Vec<String> = (have..page + 5).map(|i| format!("{src}-f{i}")).collect();
    futures::future::join_all(fillers.iter().map(|name| {
        let nss = nss.clone();
        let ns: DynamicObject = serde_json::from_value(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
        )
        .expect("namespace object");
        async move {
            nss.create(&Default::default(), &ns)
                .await
                .expect("create a namespace")
        }
    }))
    .await;
    let spec = BackupSpec {
        included_namespaces: vec![src.clone()],
        label_selector: Some(format!("lifeboat-test/pick={pick}")),
        cluster_scoped: ClusterScoped::Include,
        ..BackupSpec::default()
    };
    let (_t, repo) = repository().await;
    let clean = backup(&client, &repo, "clean", spec.clone()).await;
    faults.record_requests(true);
    // The selector pass fits one page; the second pass's second page meets a compaction.
    faults.compact_at(0, Some("GET"), "continue=");
    let restarted = backup(&client, &repo, "restarted", spec).await;
    let seen = faults.seen();
    faults.record_requests(false);
    faults.clear_failures();
    for name in &fillers {
        delete_namespace(&client, name).await;
    }
    delete_namespace(&client, &src).await;
    assert!(
        seen.iter()
            .any(|r| r.code == 410 && r.target.contains("/namespaces?") && r.target.contains("continue=")),
        "the Namespaces listing's second page was answered 410: {:?}",
        seen.iter().map(|r| (&r.target, r.code)).collect::<Vec<_>>()
    );
    assert!(clean.errors.is_empty() && restarted.errors.is_empty());
    assert_eq!(
        restarted.items, clean.items,
        "a restarted listing stores and counts what a clean one does"
    );
    let paths = snapshot_paths(&repo, &restarted.snapshot).await;
    assert!(
        paths.contains(&format!("resources/namespaces/cluster/{src}.json")),
        "{paths:?}"
    );
}

/// An owned Pod or ReplicaSet is left out only when the backup takes what recreates it: its
/// owner, or an owner above it (restores drop owner references, so both would run). When the
/// selection leaves every owner out (`--include-resources pods`, a label selector only the
/// Pod matches), the Pod is the only copy and is kept; it was once left out all the same,
/// "owned by ReplicaSet …, which recreates it", with the ReplicaSet not in the backup.
#[tokio::test]
async fn owned_objects_are_kept_when_their_owners_are_not_taken() {
    let cluster = cluster().await;
    let client = cluster.client();
    let ns = cluster.namespace("objs-owned").await.expect("namespace");
    let pod_spec = json!({"containers": [{"name": "c", "image": "busybox"}]});
    let deploy = create(
        &client,
        &ar("apps", "v1", "Deployment", "deployments"),
        Some(&ns),
        json!({"metadata": {"name": "web", "labels": {"app": "web"}},
               "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod_spec}}}),
    )
    .await;
    let owner = |kind: &str, name: &str, uid: Option<String>| json!([{"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": uid.unwrap_or_default(), "controller": true}]);
    let rs = create(
        &client,
        &ar("apps", "v1", "ReplicaSet", "replicasets"),
        Some(&ns),
        json!({"metadata": {"name": "web-5d", "labels": {"app": "web", "pod-template-hash": "5d"},
                            "ownerReferences": owner("Deployment", "web", deploy.metadata.uid.clone())},
               "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod_spec}}}),
    )
    .await;
    create(
        &client,
        &ar("", "v1", "Pod", "pods"),
        Some(&ns),
        json!({"metadata": {"name": "web-5d-x1", "labels": {"app": "web", "pod-template-hash": "5d", "only": "pod"},
                            "ownerReferences": owner("ReplicaSet", "web-5d", rs.metadata.uid.clone())},
               "spec": pod_spec}),
    )
    .await;
    let (_t, repo) = repository().await;
    let pod = format!("resources/pods/namespaces/{ns}/web-5d-x1.json");
    let replicaset = format!("resources/replicasets.apps/namespaces/{ns}/web-5d.json");
    // (what, includedResources, labelSelector, pod kept, ReplicaSet kept)
    type Case<'a> = (&'a str, &'a [&'a str], Option<&'a str>, bool, bool);
    let cases: [Case; 6] = [
        ("everything", &[], None, false, false),
        ("pods only", &["pods"], None, true, false),
        (
            "pods and deployments",
            &["pods", "deployments"],
            None,
            false,
            false,
        ),
        (
            "a selector only the pod matches",
            &[],
            Some("only=pod"),
            true,
            false,
        ),
        // The ReplicaSet, its Deployment not matching, is kept, and recreates the Pod.
        (
            "a selector the ReplicaSet matches too",
            &[],
            Some("pod-template-hash=5d"),
            false,
            true,
        ),
        ("a selector all three match", &[], Some("app=web"), false, false),
    ];
    for (what, include, selector, pod_kept, rs_kept) in cases {
        let outcome = backup(
            &client,
            &repo,
            "owned",
            BackupSpec {
                included_namespaces: vec![ns.clone()],
                included_resources: include.iter().map(|s| s.to_string()).collect(),
                label_selector: selector.map(str::to_string),
                ..BackupSpec::default()
            },
        )
        .await;
        assert!(outcome.errors.is_empty(), "{what}: {:?}", outcome.errors);
        let paths = snapshot_paths(&repo, &outcome.snapshot).await;
        assert_eq!(
            (paths.contains(&pod), paths.contains(&replicaset)),
            (pod_kept, rs_kept),
            "{what}: {paths:?} {:?}",
            outcome.warnings
        );
    }
    delete_namespace(&client, &ns).await;
}

/// A copy of a claim restored beside its original (`--namespace-mapping` in the same cluster)
/// whose volume is bound to the original is restored unbound, with a warning, for its class to
/// provision anew: it once named that volume and stayed Pending for ever, exit 0.
#[tokio::test]
async fn a_copy_of_a_claim_does_not_name_its_originals_volume() {
    use k8s_openapi::api::core::v1::PersistentVolume;
    let cluster = cluster().await;
    let client = cluster.client();
    let src = cluster.namespace("objs-pvcopy").await.expect("namespace");
    let pv = format!("{src}-pv");
    lifeboat_tests::volumes::bound_claim(
        &client,
        &src,
        "data",
        &pv,
        "standard",
        json!({"driver": "ebs.csi.aws.com", "volumeHandle": "vol-0a1b2c3d"}),
    )
    .await;
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    pvs.patch(
        &pv,
        &Default::default(),
        &kube::api::Patch::Merge(json!({"spec": {"persistentVolumeReclaimPolicy": "Retain"}})),
    )
    .await
    .expect("retain the volume");
    let (_t, repo) = repository().await;
    let outcome = backup_namespace(&client, &repo, "pvcopy", &src).await;
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    let dst = format!("{src}-copy");
    let restored = restore(
        &client,
        &repo,
        &outcome.snapshot,
        RestoreSpec {
            namespace_mapping: BTreeMap::from([(src.clone(), dst.clone())]),
            ..RestoreSpec::default()
        },
    )
    .await;
    let copy = get(
        &client,
        &ar("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
        &dst,
        "data",
    )
    .await;
    let original = pvs.get(&pv).await.expect("the original volume");
    delete_namespace(&client, &dst).await;
    delete_namespace(&client, &src).await;
    let _ = pvs.delete(&pv, &Default::default()).await;
    assert!(restored.errors.is_empty(), "{:?}", restored.errors);
    let copy = copy.expect("the copy of the claim");
    assert!(copy["spec"].get("volumeName").is_none(), "{copy}");
    assert!(
        restored
            .warnings
            .iter()
            .any(|w| w.message.contains(&pv) && w.message.contains(&format!("{src}/data"))),
        "{:?}",
        restored.warnings
    );
    let claim_ref = original.spec.and_then(|s| s.claim_ref).expect("still bound");
    assert_eq!(
        claim_ref.namespace.as_deref(),
        Some(src.as_str()),
        "the original keeps its volume"
    );
}
