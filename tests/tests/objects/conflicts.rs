//! Restoring into a cluster where things are already there or going away: a Service still
//! holding its node port, a namespace being deleted, status to compare and write.

use std::collections::BTreeMap;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use lifeboat_controller::crd::{BackupSpec, ExistingResourcePolicy, RestoreSpec};
use serde_json::json;

use crate::common::*;

fn services() -> kube::api::ApiResource {
    ar("", "v1", "Service", "services")
}

#[tokio::test]
async fn a_service_still_holding_its_node_port_is_an_existing_object() {
    let cluster = cluster().await;
    let client = cluster.client();
    let ns = cluster.namespace("objs-np").await.expect("namespace");
    let port = lifeboat_tests::some_node_port();
    create(
        &client,
        &services(),
        Some(&ns),
        json!({"metadata": {"name": "web", "labels": {"tier": "front"}},
               "spec": {"type": "NodePort", "selector": {"app": "web"},
                        "ports": [{"port": 80, "targetPort": 8080, "nodePort": port}]}}),
    )
    .await;
    let (_t, repo) = repository().await;
    let outcome = backup(
        &client,
        &repo,
        "np",
        BackupSpec {
            included_namespaces: vec![ns.clone()],
            included_resources: vec!["services".to_string()],
            ..BackupSpec::default()
        },
    )
    .await;
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    let in_place = RestoreSpec {
        included_namespaces: vec![ns.clone()],
        included_resources: vec!["services".to_string()],
        excluded_resources: vec!["namespaces".to_string()],
        ..RestoreSpec::default()
    };
    // The Service is still there, holding the port: policy none leaves it alone.
    let again = restore(&client, &repo, &outcome.snapshot, in_place.clone()).await;
    assert!(again.errors.is_empty(), "{:?}", again.errors);
    assert_eq!(
        again.summary.unchanged + again.summary.skipped_existing,
        1,
        "{:?}",
        again.summary
    );
    // Changed meanwhile, policy update puts it back, keeping the port.
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &services());
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"tier": "changed"}}})),
    )
    .await
    .expect("patch");
    let skipped = restore(&client, &repo, &outcome.snapshot, in_place.clone()).await;
    assert!(skipped.errors.is_empty(), "{:?}", skipped.errors);
    assert_eq!(skipped.summary.skipped_existing, 1, "{:?}", skipped.summary);
    let updated = restore(
        &client,
        &repo,
        &outcome.snapshot,
        RestoreSpec {
            existing_resource_policy: ExistingResourcePolicy::Update,
            ..in_place
        },
    )
    .await;
    assert!(updated.errors.is_empty(), "{:?}", updated.errors);
    assert_eq!(updated.summary.updated, 1, "{:?}", updated.summary);
    let svc = get(&client, &services(), &ns, "web").await.expect("service");
    assert_eq!(svc["metadata"]["labels"]["tier"], "front");
    assert_eq!(svc["spec"]["ports"][0]["nodePort"], port);
}

#[tokio::test]
async fn a_terminating_namespace_is_named_as_the_problem() {
    let cluster = cluster().await;
    let client = cluster.client();
    let ns = cluster.namespace("objs-term").await.expect("namespace");
    for i in 0..3 {
        create(
            &client,
            &configmaps(),
            Some(&ns),
            json!({"metadata": {"name": format!("c{i}"), "labels": {"app": "term"}}}),
        )
        .await;
    }
    // Something holds the namespace in Terminating.
    create(
        &client,
        &configmaps(),
        Some(&ns),
        json!({"metadata": {"name": "held", "finalizers": ["lifeboat-test.dev/hold"]}}),
    )
    .await;
    let (_t, repo) = repository().await;
    let outcome = backup(
        &client,
        &repo,
        "term",
        BackupSpec {
            included_namespaces: vec![ns.clone()],
            label_selector: Some("app=term".to_string()),
            ..BackupSpec::default()
        },
    )
    .await;
    let cms: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &configmaps());
    let nss: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    nss.delete(&ns, &Default::default())
        .await
        .expect("delete namespace");
    // A bare API server (envtest) has no namespace controller to empty it: do its part.
    for i in 0..3 {
        let _ = cms.delete(&format!("c{i}"), &Default::default()).await;
    }
    lifeboat_tests::poll::eventually("its other objects to go", 60, || {
        let cms = cms.clone();
        async move {
            cms.get_opt("c0")
                .await
                .ok()
                .and_then(|o| o.is_none().then_some(()))
        }
    })
    .await;
    // A dry run says the same (its Namespace object is in the backup: the dry run still
    // looks the namespace up).
    let dry = restore(
        &client,
        &repo,
        &outcome.snapshot,
        RestoreSpec {
            included_namespaces: vec![ns.clone()],
            dry_run: true,
            ..RestoreSpec::default()
        },
    )
    .await;
    for i in 0..3 {
        let item = format!("configmaps/{ns}/c{i}");
        assert!(
            dry.errors.iter().any(|e| e.item == item
                && e.message
                    .contains(&format!("namespace {ns} is being deleted (Terminating)"))),
            "{item}: {:?} / {:?}",
            dry.errors,
            dry.changes
        );
    }
    let restored = restore(
        &client,
        &repo,
        &outcome.snapshot,
        RestoreSpec {
            included_namespaces: vec![ns.clone()],
            ..RestoreSpec::default()
        },
    )
    .await;
    let failed: Vec<&str> = restored.errors.iter().map(|e| e.item.as_str()).collect();
    assert!(
        (0..3).all(|i| failed.contains(&format!("configmaps/{ns}/c{i}").as_str())),
        "{:?}",
        restored.errors
    );
    for e in &restored.errors {
        assert!(
            e.message
                .contains(&format!("namespace {ns} is being deleted (Terminating)"))
                && e.message.contains("--namespace-mapping"),
            "{e:?}"
        );
        assert!(!e.message.contains("grant"), "no permission advice: {e:?}");
    }
    // Release it, so a real cluster can finish deleting it.
    let _ = cms
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await;
}

#[tokio::test]
async fn status_is_restored_with_or_without_a_status_subresource() {
    let cluster = cluster().await;
    let client = cluster.client();
    let src = cluster.namespace("objs-status").await.expect("namespace");
    let dst = cluster.namespace("objs-status-dst").await.expect("namespace");
    let group = test_group("st");
    let open = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    let schema = json!({"openAPIV3Schema": {"type": "object", "properties": {"spec": open, "status": open}}});
    // Plain: status is part of the object. Sub: status is a subresource.
    custom_crd(
        &client,
        &group,
        "plains",
        "Plain",
        json!([{"name": "v1", "served": true, "storage": true, "schema": schema}]),
    )
    .await;
    custom_crd(
        &client,
        &group,
        "subs",
        "Sub",
        json!([{"name": "v1", "served": true, "storage": true, "schema": schema,
                "subresources": {"status": {}}}]),
    )
    .await;
    let plains = ar(&group, "v1", "Plain", "plains");
    let subs = ar(&group, "v1", "Sub", "subs");
    create(
        &client,
        &plains,
        Some(&src),
        json!({"apiVersion": format!("{group}/v1"), "kind": "Plain", "metadata": {"name": "p"},
               "spec": {"a": 1}, "status": {"phase": "Ready"}}),
    )
    .await;
    let sub = create(
        &client,
        &subs,
        Some(&src),
        json!({"apiVersion": format!("{group}/v1"), "kind": "Sub", "metadata": {"name": "s"}, "spec": {"a": 1}}),
    )
    .await;
    let sub_api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &src, &subs);
    let mut with_status = sub.clone();
    with_status.data["status"] = json!({"phase": "Ready"});
    sub_api
        .replace_status("s", &Default::default(), &with_status)
        .await
        .expect("write status");
    let (_t, repo) = repository().await;
    let outcome = backup_namespace(&client, &repo, "status", &src).await;
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    let to_dst = RestoreSpec {
        namespace_mapping: BTreeMap::from([(src.clone(), dst.clone())]),
        included_resources: vec![format!("plains.{group}"), format!("subs.{group}")],
        excluded_resources: vec!["namespaces".to_string()],
        restore_status: true,
        ..RestoreSpec::default()
    };
    let first = restore(&client, &repo, &outcome.snapshot, to_dst.clone()).await;
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    assert_eq!(first.summary.created, 2, "{:?}", first.summary);
    for (res, name) in [(&plains, "p"), (&subs, "s")] {
        let o = get(&client, res, &dst, name).await.expect("restored");
        assert_eq!(o["status"]["phase"], "Ready", "{name}: {o}");
    }
    // Status changed in the cluster: policy update compares and writes it back.
    let dst_plains: Api<DynamicObject> = Api::namespaced_with(client.clone(), &dst, &plains);
    dst_plains
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Broken"}})),
        )
        .await
        .expect("patch plain status");
    let dst_subs: Api<DynamicObject> = Api::namespaced_with(client.clone(), &dst, &subs);
    dst_subs
        .patch_status(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Broken"}})),
        )
        .await
        .expect("patch sub status");
    let none = restore(&client, &repo, &outcome.snapshot, to_dst.clone()).await;
    assert_eq!(none.summary.skipped_existing, 2, "{:?}", none.summary);
    let update = RestoreSpec {
        existing_resource_policy: ExistingResourcePolicy::Update,
        ..to_dst
    };
    let dry = restore(
        &client,
        &repo,
        &outcome.snapshot,
        RestoreSpec {
            dry_run: true,
            ..update.clone()
        },
    )
    .await;
    assert_eq!(dry.summary.updated, 2, "{:?}", dry.summary);
    assert!(
        dry.changes
            .iter()
            .all(|c| c.contains("/status/phase: \"Broken\" → \"Ready\"")),
        "{:?}",
        dry.changes
    );
    let fixed = restore(&client, &repo, &outcome.snapshot, update.clone()).await;
    assert!(fixed.errors.is_empty(), "{:?}", fixed.errors);
    assert_eq!(fixed.summary.updated, 2, "{:?}", fixed.summary);
    for (res, name) in [(&plains, "p"), (&subs, "s")] {
        let o = get(&client, res, &dst, name).await.expect("restored");
        assert_eq!(o["status"]["phase"], "Ready", "{name}: {o}");
    }
    let again = restore(&client, &repo, &outcome.snapshot, update).await;
    // The two objects, and the two CRDs they brought along.
    assert_eq!(
        (again.summary.unchanged, again.summary.updated),
        (4, 0),
        "{:?}",
        again.summary
    );
    delete_crd_named(&client, &format!("plains.{group}")).await;
    delete_crd_named(&client, &format!("subs.{group}")).await;
}

/// A namespace create answered 409 `Conflict` (not `AlreadyExists`: the API server created
/// nothing) is tried again; it was taken for "the namespace exists", and every object of the
/// mapped namespace then failed with NotFound.
#[tokio::test]
async fn a_namespace_create_that_conflicts_is_tried_again() {
    let cluster = cluster().await;
    let Some(faults) = cluster.faults() else {
        lifeboat_tests::kube::unsupported(
            "a_namespace_create_that_conflicts_is_tried_again",
            "injecting a 409 Conflict needs the in-process test server",
        );
    };
    let client = cluster.client();
    let ns = cluster.namespace("objs-nsc").await.expect("namespace");
    let configmaps = ar("", "v1", "ConfigMap", "configmaps");
    for i in 0..3 {
        create(
            &client,
            &configmaps,
            Some(&ns),
            json!({"metadata": {"name": format!("cm-{i}")}, "data": {"i": i.to_string()}}),
        )
        .await;
    }
    let (_t, repo) = repository().await;
    let outcome = backup(
        &client,
        &repo,
        "nsc",
        BackupSpec {
            included_namespaces: vec![ns.clone()],
            included_resources: vec!["configmaps".to_string()],
            ..BackupSpec::default()
        },
    )
    .await;
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    let target = lifeboat_tests::unique_name("objs-nsc-to");
    faults.fail_matching(409, 2, Some("POST"), "/api/v1/namespaces");
    let restored = restore(
        &client,
        &repo,
        &outcome.snapshot,
        RestoreSpec {
            included_namespaces: vec![ns.clone()],
            namespace_mapping: BTreeMap::from([(ns.clone(), target.clone())]),
            ..RestoreSpec::default()
        },
    )
    .await;
    faults.clear_failures();
    assert!(restored.errors.is_empty(), "{:?}", restored.errors);
    for i in 0..3 {
        let cm = get(&client, &configmaps, &target, &format!("cm-{i}")).await;
        assert_eq!(cm.expect("restored")["data"]["i"], i.to_string());
    }
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let _ = namespaces.delete(&target, &Default::default()).await;
}

/// Policy `update` makes an existing object match the backup, removing what was added since
/// (a label, a ConfigMap key, a Deployment's `paused` and pod-template fields): it once
/// compared only the fields the backup sets, called such objects "unchanged" and left the
/// additions in place.
#[tokio::test]
async fn update_removes_what_was_added_since_the_backup() {
    let cluster = cluster().await;
    let client = cluster.client();
    let ns = cluster.namespace("objs-drift").await.expect("namespace");
    let deployments = ar("apps", "v1", "Deployment", "deployments");
    create(
        &client,
        &deployments,
        Some(&ns),
        json!({"metadata": {"name": "web", "labels": {"app": "web"}},
               "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                                     "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}),
    )
    .await;
    create(
        &client,
        &configmaps(),
        Some(&ns),
        json!({"metadata": {"name": "conf"}, "data": {"k": "v"}}),
    )
    .await;
    let (_t, repo) = repository().await;
    let outcome = backup(
        &client,
        &repo,
        "drift",
        BackupSpec {
            included_namespaces: vec![ns.clone()],
            included_resources: vec!["deployments".to_string(), "configmaps".to_string()],
            ..BackupSpec::default()
        },
    )
    .await;
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    let patch = |ar: &kube::api::ApiResource, name: &'static str, body: serde_json::Value| {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, ar);
        async move {
            api.patch(name, &PatchParams::default(), &Patch::Merge(body))
                .await
                .expect("patch");
        }
    };
    patch(
        &deployments,
        "web",
        json!({"metadata": {"labels": {"added": "x"}},
               "spec": {"paused": true, "template": {"spec": {"hostNetwork": true, "nodeSelector": {"evil": "true"}}}}}),
    )
    .await;
    patch(&configmaps(), "conf", json!({"data": {"extra": "y"}})).await;
    let spec = |policy| RestoreSpec {
        included_namespaces: vec![ns.clone()],
        included_resources: vec!["deployments".to_string(), "configmaps".to_string()],
        existing_resource_policy: policy,
        ..RestoreSpec::default()
    };
    // Policy none: the drift is seen (not "unchanged") and left alone.
    let left = restore(
        &client,
        &repo,
        &outcome.snapshot,
        spec(ExistingResourcePolicy::None),
    )
    .await;
    assert_eq!(left.summary.skipped_existing, 2, "{:?}", left.summary);
    let updated = restore(
        &client,
        &repo,
        &outcome.snapshot,
        spec(ExistingResourcePolicy::Update),
    )
    .await;
    assert!(updated.errors.is_empty(), "{:?}", updated.errors);
    assert_eq!(updated.summary.updated, 2, "{:?}", updated.summary);
    let web = get(&client, &deployments, &ns, "web").await.expect("deployment");
    assert!(web["metadata"]["labels"].get("added").is_none(), "{web}");
    assert!(web["spec"].get("paused").is_none_or(|p| p == false), "{web}");
    let pod = &web["spec"]["template"]["spec"];
    assert!(
        pod.get("hostNetwork").is_none_or(|h| h == false) && pod.get("nodeSelector").is_none(),
        "{web}"
    );
    let conf = get(&client, &configmaps(), &ns, "conf").await.expect("configmap");
    assert_eq!(conf["data"], json!({"k": "v"}));
    // Now it matches: a rerun finds both unchanged.
    let again = restore(
        &client,
        &repo,
        &outcome.snapshot,
        spec(ExistingResourcePolicy::Update),
    )
    .await;
    assert!(
        again.summary.updated == 0 && again.summary.unchanged >= 2,
        "{:?}",
        again.summary
    );
}

/// A Service whose node port another Service now holds is restored with a node port the API
/// server assigns, and a warning naming the port, when the API server had assigned it; the
/// restore once failed it ("provided port is already allocated", exit 3), as after a restore
/// of a copy had taken the port. A port the user set (kubectl apply's last-applied
/// configuration names it; an outside load balancer may point at it) is kept, and the
/// Service fails naming the fix.
#[tokio::test]
async fn a_service_whose_node_port_is_taken_gets_a_new_one_unless_set_by_its_user() {
    let cluster = cluster().await;
    let client = cluster.client();
    let ns = cluster.namespace("objs-npt").await.expect("namespace");
    let other = cluster.namespace("objs-npt-other").await.expect("namespace");
    // One draw: two could be one port (the second +2 equal to the first +1).
    let base = lifeboat_tests::some_node_port();
    let (port, fixed_port) = (base.wrapping_add(1), base.wrapping_add(2));
    let service = |name: &str, port: u16, applied: bool| {
        let mut s = json!({"metadata": {"name": name},
               "spec": {"type": "NodePort", "selector": {"app": "web"},
                        "ports": [{"port": 80, "targetPort": 8080, "nodePort": port}]}});
        if applied {
            s["metadata"]["annotations"] = json!({"kubectl.kubernetes.io/last-applied-configuration":
                json!({"spec": {"ports": [{"port": 80, "nodePort": port}]}}).to_string()});
        }
        s
    };
    create(&client, &services(), Some(&ns), service("web", port, false)).await;
    create(
        &client,
        &services(),
        Some(&ns),
        service("fixed", fixed_port, true),
    )
    .await;
    let (_t, repo) = repository().await;
    let outcome = backup(
        &client,
        &repo,
        "npt",
        BackupSpec {
            included_namespaces: vec![ns.clone()],
            included_resources: vec!["services".to_string()],
            ..BackupSpec::default()
        },
    )
    .await;
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &services());
    for name in ["web", "fixed"] {
        api.delete(name, &Default::default()).await.expect("delete");
    }
    create(
        &client,
        &services(),
        Some(&other),
        service("squatter", port, false),
    )
    .await;
    create(
        &client,
        &services(),
        Some(&other),
        service("squatter-2", fixed_port, false),
    )
    .await;
    let restored = restore(
        &client,
        &repo,
        &outcome.snapshot,
        RestoreSpec {
            included_namespaces: vec![ns.clone()],
            included_resources: vec!["services".to_string()],
            ..RestoreSpec::default()
        },
    )
    .await;
    let squatters: Api<DynamicObject> = Api::namespaced_with(client.clone(), &other, &services());
    for name in ["squatter", "squatter-2"] {
        let _ = squatters.delete(name, &Default::default()).await;
    }
    assert_eq!(restored.summary.created, 1, "{:?}", restored.summary);
    assert!(
        restored
            .warnings
            .iter()
            .any(|w| w.message.contains(&port.to_string()) && w.message.contains("held by another Service")),
        "{:?}",
        restored.warnings
    );
    let web = get(&client, &services(), &ns, "web").await.expect("restored");
    let new = web["spec"]["ports"][0]["nodePort"].as_u64().unwrap_or(0);
    assert!(new != 0 && new != u64::from(port), "{web}");
    assert_eq!(restored.errors.len(), 1, "{:?}", restored.errors);
    assert!(
        restored.errors[0].item.contains("fixed") && restored.errors[0].message.contains("sets explicitly"),
        "{:?}",
        restored.errors
    );
}
