//! Back up a namespace with the usual kinds of objects, restore it elsewhere, and check
//! what came back, what was left out and why, and what a second backup costs.

use std::collections::BTreeMap;

use kube::Client;
use lifeboat_controller::crd::{BackupSpec, ExistingResourcePolicy, RestoreSpec};
use serde_json::json;

use crate::common::*;

/// Fills `ns` with a small application; returns the Widget resource.
async fn populate(client: &Client, ns: &str) -> kube::api::ApiResource {
    for i in 0..20 {
        create(client, &configmaps(), Some(ns), json!({"metadata": {"name": format!("cm-{i}"), "labels": {"app": "web"}}, "data": {"k": format!("v{i}")}})).await;
    }
    create(
        client,
        &ar("", "v1", "Secret", "secrets"),
        Some(ns),
        json!({"metadata": {"name": "db"}, "type": "Opaque", "data": {"password": "c2VjcmV0"}}),
    )
    .await;
    let svc = ar("", "v1", "Service", "services");
    create(
        client,
        &svc,
        Some(ns),
        json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
    )
    .await;
    create(client, &svc, Some(ns), json!({"metadata": {"name": "peers"}, "spec": {"clusterIP": "None", "selector": {"app": "db"}, "ports": [{"port": 5432}]}})).await;
    let ep = ar("", "v1", "Endpoints", "endpoints");
    // On a cluster with controllers the endpoints controller may have made this one already.
    let generated: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(client.clone(), ns, &ep);
    let web_ep: kube::api::DynamicObject = serde_json::from_value(
        json!({"metadata": {"name": "web"}, "subsets": [{"addresses": [{"ip": "10.1.0.1"}], "ports": [{"port": 80}]}]}),
    )
    .expect("endpoints");
    match generated.create(&Default::default(), &web_ep).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("create endpoints web: {e}"),
    }
    create(client, &ep, Some(ns), json!({"metadata": {"name": "external-db"}, "subsets": [{"addresses": [{"ip": "10.2.0.1"}], "ports": [{"port": 5432}]}]})).await;
    create(
        client,
        &ar("", "v1", "ServiceAccount", "serviceaccounts"),
        Some(ns),
        json!({"metadata": {"name": "robot"}}),
    )
    .await;
    create(
        client,
        &ar("rbac.authorization.k8s.io", "v1", "Role", "roles"),
        Some(ns),
        json!({"metadata": {"name": "reader"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}),
    )
    .await;
    create(
        client,
        &ar("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings"),
        Some(ns),
        json!({"metadata": {"name": "robot-reads"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": ns}]}),
    )
    .await;
    let pod_spec = json!({"containers": [{"name": "c", "image": "busybox"}]});
    let deploy = create(
        client,
        &ar("apps", "v1", "Deployment", "deployments"),
        Some(ns),
        json!({"metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod_spec}}}),
    )
    .await;
    let owner = |kind: &str, name: &str, uid: &str| json!([{"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": uid, "controller": true}]);
    let rs = create(
        client,
        &ar("apps", "v1", "ReplicaSet", "replicasets"),
        Some(ns),
        json!({"metadata": {"name": "web-5d",
        "ownerReferences": owner("Deployment", "web", deploy.metadata.uid.as_deref().unwrap_or_default())},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod_spec}}}),
    )
    .await;
    let pods = ar("", "v1", "Pod", "pods");
    create(client, &pods, Some(ns), json!({"metadata": {"name": "web-5d-x1", "labels": {"app": "web"},
        "ownerReferences": owner("ReplicaSet", "web-5d", rs.metadata.uid.as_deref().unwrap_or_default())}, "spec": pod_spec})).await;
    create(
        client,
        &pods,
        Some(ns),
        json!({"metadata": {"name": "debug"}, "spec": pod_spec}),
    )
    .await;
    let widgets = widget_crd(client).await;
    for i in 0..3 {
        let w = create(
            client,
            &widgets,
            Some(ns),
            json!({"apiVersion": widgets.api_version, "kind": "Widget",
            "metadata": {"name": format!("w{i}")}, "spec": {"size": i}}),
        )
        .await;
        let api: kube::Api<kube::api::DynamicObject> =
            kube::Api::namespaced_with(client.clone(), ns, &widgets);
        let mut with_status = w.clone();
        with_status.data["status"] = json!({"ready": true});
        api.replace_status(&format!("w{i}"), &Default::default(), &with_status)
            .await
            .expect("write widget status");
    }
    widgets
}

#[tokio::test]
async fn a_namespace_comes_back_under_a_new_name() {
    let cluster = cluster().await;
    let client = cluster.client();
    let src = cluster.namespace("objs-src").await.expect("namespace");
    let dst = cluster.namespace("objs-dst").await.expect("namespace");
    let widgets = populate(&client, &src).await;
    let (_t, repo) = repository().await;

    let spec = BackupSpec {
        repository: "unused".to_string(),
        included_namespaces: vec![src.clone()],
        ..BackupSpec::default()
    };
    let first = backup(&client, &repo, "nightly", spec.clone()).await;
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    assert_eq!(
        first.snapshot.tags.get("backup").map(String::as_str),
        Some("nightly")
    );
    // 20 ConfigMaps, Secret, 2 Services, external Endpoints, ServiceAccount, Role, RoleBinding,
    // Deployment, bare Pod, 3 Widgets, the Namespace, at least our CRD.
    assert!(first.items >= 34, "items: {}", first.items);
    let warnings = format!("{:?}", first.warnings);
    assert!(warnings.contains("owned by ReplicaSet web-5d"), "{warnings}");
    assert!(warnings.contains("owned by Deployment web"), "{warnings}");
    assert!(
        warnings.contains("generated from its Service's selector"),
        "{warnings}"
    );

    // Nothing changed: the second backup stores (almost) nothing.
    let second = backup(&client, &repo, "nightly-2", spec.clone()).await;
    assert_eq!(second.items, first.items);
    assert!(
        second.snapshot.summary.new_bytes * 100 < first.snapshot.summary.new_bytes,
        "unchanged objects must cost nothing: {} new bytes after {}",
        second.snapshot.summary.new_bytes,
        first.snapshot.summary.new_bytes
    );

    let outcome = restore(
        &client,
        &repo,
        &first.snapshot,
        RestoreSpec {
            namespace_mapping: BTreeMap::from([(src.clone(), dst.clone())]),
            restore_status: true,
            labels: BTreeMap::from([("restored-by".to_string(), "lifeboat".to_string())]),
            ..RestoreSpec::default()
        },
    )
    .await;
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    assert!(outcome.summary.created >= 32, "{:?}", outcome.summary);

    for i in 0..20 {
        let cm = get(&client, &configmaps(), &dst, &format!("cm-{i}"))
            .await
            .expect("configmap restored");
        assert_eq!(cm["data"]["k"], format!("v{i}"));
        assert_eq!(cm["metadata"]["labels"]["restored-by"], "lifeboat");
    }
    let secret = get(&client, &ar("", "v1", "Secret", "secrets"), &dst, "db")
        .await
        .expect("secret");
    assert_eq!(secret["data"]["password"], "c2VjcmV0");
    let rb = get(
        &client,
        &ar("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings"),
        &dst,
        "robot-reads",
    )
    .await
    .expect("rolebinding");
    assert_eq!(
        rb["subjects"][0]["namespace"],
        dst.as_str(),
        "subjects follow the namespace mapping"
    );
    let svc = ar("", "v1", "Service", "services");
    assert!(get(&client, &svc, &dst, "web").await.is_some());
    let headless = get(&client, &svc, &dst, "peers").await.expect("headless service");
    assert_eq!(headless["spec"]["clusterIP"], "None");
    let ep = ar("", "v1", "Endpoints", "endpoints");
    assert!(get(&client, &ep, &dst, "external-db").await.is_some());
    let pods = ar("", "v1", "Pod", "pods");
    assert!(get(&client, &pods, &dst, "debug").await.is_some());
    assert!(
        get(&client, &pods, &dst, "web-5d-x1").await.is_none(),
        "owned pods are left to their controller"
    );
    assert!(
        get(
            &client,
            &ar("apps", "v1", "ReplicaSet", "replicasets"),
            &dst,
            "web-5d"
        )
        .await
        .is_none()
    );
    for i in 0..3 {
        let w = get(&client, &widgets, &dst, &format!("w{i}"))
            .await
            .expect("widget restored");
        assert_eq!(w["spec"]["size"], i);
        assert_eq!(w["status"]["ready"], true, "status restored on request");
    }

    // Again: everything exists now; policy none leaves it all alone.
    let again = restore(
        &client,
        &repo,
        &first.snapshot,
        RestoreSpec {
            namespace_mapping: BTreeMap::from([(src.clone(), dst.clone())]),
            ..RestoreSpec::default()
        },
    )
    .await;
    assert_eq!(again.summary.created, 0, "{:?}", again.summary);
    assert!(again.errors.is_empty(), "{:?}", again.errors);

    // A changed object: the dry run names the field, changes nothing; update fixes it.
    let cms: kube::Api<kube::api::DynamicObject> =
        kube::Api::namespaced_with(client.clone(), &dst, &configmaps());
    cms.patch(
        "cm-0",
        &Default::default(),
        &kube::api::Patch::Merge(json!({"data": {"k": "changed"}})),
    )
    .await
    .expect("patch");
    // With the first restore's labels: `update` makes objects match what the restore
    // writes, and a label it does not write would be removed.
    let update = RestoreSpec {
        namespace_mapping: BTreeMap::from([(src.clone(), dst.clone())]),
        existing_resource_policy: ExistingResourcePolicy::Update,
        included_resources: vec!["configmaps".to_string()],
        labels: BTreeMap::from([("restored-by".to_string(), "lifeboat".to_string())]),
        ..RestoreSpec::default()
    };
    let dry = restore(
        &client,
        &repo,
        &first.snapshot,
        RestoreSpec {
            dry_run: true,
            ..update.clone()
        },
    )
    .await;
    let line = dry
        .changes
        .iter()
        .find(|c| c.contains("cm-0"))
        .expect("the dry run reports cm-0");
    assert!(
        line.starts_with("update") && line.contains("/data/k") && line.contains("changed"),
        "{line}"
    );
    assert_eq!(dry.summary.updated, 1, "{:?}", dry.summary);
    assert_eq!(
        get(&client, &configmaps(), &dst, "cm-0").await.expect("cm")["data"]["k"],
        "changed"
    );
    let fixed = restore(&client, &repo, &first.snapshot, update).await;
    assert_eq!(fixed.summary.updated, 1, "{:?}", fixed.summary);
    assert_eq!(
        get(&client, &configmaps(), &dst, "cm-0").await.expect("cm")["data"]["k"],
        "v0"
    );
    delete_crd(&client, &widgets).await;
}

/// A Job comes back: its generated selector (and the controller-uid labels it selects) named
/// the old Job's uid, which kube-apiserver refuses in a create ("`selector` not
/// auto-generated"), so every restored Job failed on a real server; the selector is now made
/// anew for the new uid.
#[tokio::test]
async fn a_job_is_restored_with_a_selector_for_its_new_uid() {
    let cluster = cluster().await;
    let client = cluster.client();
    let src = cluster.namespace("objs-job").await.expect("namespace");
    let jobs = ar("batch", "v1", "Job", "jobs");
    let job = create(
        &client,
        &jobs,
        Some(&src),
        json!({"metadata": {"name": "migrate"},
               "spec": {"template": {"spec": {"restartPolicy": "Never",
                                              "containers": [{"name": "c", "image": "busybox"}]}}}}),
    )
    .await;
    let old_uid = job.metadata.uid.clone().unwrap_or_default();
    let (_t, repo) = repository().await;
    let outcome = backup_namespace(&client, &repo, "job", &src).await;
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    let dst = format!("{src}-dr");
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
    assert!(restored.errors.is_empty(), "{:?}", restored.errors);
    let back = get(&client, &jobs, &dst, "migrate")
        .await
        .expect("the Job is restored");
    let new_uid = back["metadata"]["uid"].as_str().unwrap_or_default();
    assert_ne!(new_uid, old_uid);
    assert_eq!(
        back["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"], new_uid,
        "{back}"
    );
    assert_eq!(
        back["spec"]["template"]["metadata"]["labels"]["controller-uid"], new_uid,
        "{back}"
    );
}

/// A dry run into a namespace that does not exist lists its creation once: the backup's
/// Namespace object (mapped) is one change, and the namespaces the objects need are not
/// listed again because the dry run did not create it (it used to list it twice).
#[tokio::test]
async fn a_dry_run_lists_a_new_namespace_once() {
    let cluster = cluster().await;
    let client = cluster.client();
    let src = cluster.namespace("objs-dry").await.expect("namespace");
    create(
        &client,
        &configmaps(),
        Some(&src),
        json!({"metadata": {"name": "settings"}, "data": {"k": "v"}}),
    )
    .await;
    let (_t, repo) = repository().await;
    let backup = backup_namespace(&client, &repo, "dry", &src).await;
    assert!(backup.errors.is_empty(), "{:?}", backup.errors);
    let dst = lifeboat_tests::unique_name("objs-dry-new");
    let dry = restore(
        &client,
        &repo,
        &backup.snapshot,
        RestoreSpec {
            namespace_mapping: BTreeMap::from([(src.clone(), dst.clone())]),
            dry_run: true,
            ..RestoreSpec::default()
        },
    )
    .await;
    assert!(dry.errors.is_empty(), "{:?}", dry.errors);
    let namespace_lines: Vec<&String> = dry
        .changes
        .iter()
        .filter(|c| c.ends_with(&format!("namespaces/{dst}")))
        .collect();
    assert_eq!(namespace_lines.len(), 1, "{:?}", dry.changes);
    assert!(
        dry.changes
            .iter()
            .any(|c| c.contains(&format!("configmaps/{dst}/settings"))),
        "{:?}",
        dry.changes
    );
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client.clone());
    assert!(
        namespaces.get_opt(&dst).await.expect("get").is_none(),
        "the dry run created {dst}"
    );
}
