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
    create(
        &client,
        &scs,
        None,
        json!({"metadata": {"name": class}, "provisioner": "csi.lifeboat.dev"}),
    )
    .await;
    create(
        &client,
        &pvcs,
        Some(&src),
        json!({"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
            "storageClassName": class, "volumeName": pv_name,
            "resources": {"requests": {"storage": "1Gi"}}}}),
    )
    .await;
    create(
        &client,
        &pvs,
        None,
        json!({"metadata": {"name": pv_name}, "spec": {"capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"], "storageClassName": class,
            "persistentVolumeReclaimPolicy": "Retain",
            "hostPath": {"path": "/tmp/lifeboat-test"},
            "claimRef": {"namespace": src, "name": "data"}}}),
    )
    .await;
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
