//! What a backup reads: every group that answers (a down aggregated API costs seconds and is
//! recorded, a CRD group that cannot be read fails the backup partially), and custom
//! resources at their CRD's storage version.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use lifeboat_controller::crd::{BackupSpec, RestoreSpec};
use lifeboat_controller::kube_objects::{BackupRequest, DiscoveryDeadlines};
use lifeboat_tests::kube::apiservice;
use serde_json::json;

use crate::common::*;

use lifeboat_tests::kube::unsupported;

#[tokio::test]
async fn an_aggregated_api_whose_server_is_down_is_skipped_and_recorded() {
    let cluster = cluster().await;
    let client = cluster.client();
    let ns = cluster.namespace("objs-aggr").await.expect("namespace");
    create(
        &client,
        &configmaps(),
        Some(&ns),
        json!({"metadata": {"name": "app"}, "data": {"k": "v"}}),
    )
    .await;
    let group = test_group("aggr");
    let apiservice = apiservice::register_unavailable(&client, &group, &ns).await;
    let (_t, repo) = repository().await;
    let started = Instant::now();
    let outcome = backup(
        &client,
        &repo,
        "with-a-down-api",
        BackupSpec {
            cluster_scoped: lifeboat_controller::crd::ClusterScoped::Include,
            included_namespaces: vec![ns.clone()],
            ..BackupSpec::default()
        },
    )
    .await;
    let took = started.elapsed();
    apiservice::unregister(&client, &apiservice).await;
    assert!(took < Duration::from_secs(30), "the backup took {took:?}");
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    let gv = format!("{group}/v1beta1");
    let skipped = outcome
        .skipped_groups
        .iter()
        .find(|g| g.item == gv)
        .unwrap_or_else(|| panic!("{gv} recorded as skipped: {:?}", outcome.skipped_groups));
    assert!(
        skipped.message.contains(&apiservice) && skipped.message.contains("no-such-backend"),
        "names the APIService and its Service: {skipped:?}"
    );
    assert!(
        outcome
            .snapshot
            .summary
            .warnings
            .iter()
            .any(|w| w.starts_with(&gv)),
        "the snapshot records it too"
    );
    // The APIService object itself is backed up, with everything else.
    let paths = snapshot_paths(&repo, &outcome.snapshot).await;
    assert!(
        paths.contains(&format!(
            "resources/apiservices.apiregistration.k8s.io/cluster/{apiservice}.json"
        )),
        "the APIService is in the backup"
    );
    assert!(paths.contains(&format!("resources/configmaps/namespaces/{ns}/app.json")));
    // The API server's own APIServices are not (it registers them itself).
    assert!(
        !paths.iter().any(|p| p.ends_with("/cluster/v1.apps.json")),
        "local APIServices are left out"
    );
}

#[tokio::test]
#[cfg_attr(
    not(kube_backend = "in_process"),
    ignore = "making an aggregated API hang needs the in-process test server"
)]
async fn a_hanging_aggregated_api_costs_only_its_deadline() {
    let cluster = cluster().await;
    let Some(faults) = cluster.faults() else {
        unsupported(
            "a_hanging_aggregated_api_costs_only_its_deadline",
            "making an aggregated API hang needs the in-process test server",
        );
    };
    let client = cluster.client();
    let ns = cluster.namespace("objs-hang").await.expect("namespace");
    create(
        &client,
        &configmaps(),
        Some(&ns),
        json!({"metadata": {"name": "app"}}),
    )
    .await;
    let group = test_group("hang");
    let apiservice = apiservice::register_unavailable(&client, &group, &ns).await;
    faults.hang_api(&format!("{group}/v1beta1"));
    let (_t, repo) = repository().await;
    let mut request = BackupRequest::from_spec(
        "hanging",
        &BackupSpec {
            included_namespaces: vec![ns.clone()],
            ..BackupSpec::default()
        },
    )
    .expect("request");
    assert_eq!(request.discovery, DiscoveryDeadlines::default());
    request.discovery.aggregated = Duration::from_secs(2);
    let started = Instant::now();
    let outcome = backup_request(&client, &repo, &request).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(15), "the backup took {took:?}");
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    let skipped = outcome
        .skipped_groups
        .iter()
        .find(|g| g.item == format!("{group}/v1beta1"))
        .expect("recorded as skipped");
    assert!(skipped.message.contains("no answer within 2 s"), "{skipped:?}");
    assert!(outcome.items >= 1);
    apiservice::unregister(&client, &apiservice).await;
}

#[tokio::test]
#[cfg_attr(
    not(kube_backend = "in_process"),
    ignore = "breaking the discovery of one group needs the in-process test server"
)]
async fn a_crd_group_that_cannot_be_discovered_fails_the_backup_partially() {
    let cluster = cluster().await;
    let Some(faults) = cluster.faults() else {
        unsupported(
            "a_crd_group_that_cannot_be_discovered_fails_the_backup_partially",
            "breaking the discovery of one group needs the in-process test server",
        );
    };
    let client = cluster.client();
    let ns = cluster.namespace("objs-crdgone").await.expect("namespace");
    let widgets = widget_crd(&client).await;
    create(
        &client,
        &widgets,
        Some(&ns),
        json!({"apiVersion": widgets.api_version, "kind": "Widget", "metadata": {"name": "w"}}),
    )
    .await;
    faults.fail_matching(503, 1000, Some("GET"), &format!("/apis/{}/", widgets.group));
    let (_t, repo) = repository().await;
    let mut request = BackupRequest::from_spec(
        "crd-group-down",
        &BackupSpec {
            included_namespaces: vec![ns.clone()],
            ..BackupSpec::default()
        },
    )
    .expect("request");
    request.discovery.local = Duration::from_secs(3);
    let outcome = backup_request(&client, &repo, &request).await;
    let gv = format!("{}/v1", widgets.group);
    let e = outcome
        .errors
        .iter()
        .find(|e| e.item == gv)
        .unwrap_or_else(|| panic!("{gv} is an error: {:?}", outcome.errors));
    assert!(
        e.message
            .contains(&format!("custom resources of CRD widgets.{}", widgets.group)),
        "{e:?}"
    );
    assert_eq!(outcome.unreadable_groups, vec![gv]);
    assert!(outcome.skipped_groups.is_empty(), "{:?}", outcome.skipped_groups);
}

#[tokio::test]
async fn custom_resources_are_backed_up_and_restored_at_their_storage_version() {
    let cluster = cluster().await;
    let client = cluster.client();
    let src = cluster.namespace("objs-stored").await.expect("namespace");
    let dst = cluster.namespace("objs-stored-dst").await.expect("namespace");
    let group = test_group("sv");
    let schema = |legacy: bool| {
        let mut props = json!({"size": {"type": "integer"}});
        if legacy {
            props["legacyMode"] = json!({"type": "boolean"});
        }
        json!({"openAPIV3Schema": {"type": "object", "properties": {
            "spec": {"type": "object", "properties": props}}}})
    };
    custom_crd(
        &client,
        &group,
        "gadgets",
        "Gadget",
        json!([
            {"name": "v1alpha1", "served": true, "storage": true, "schema": schema(true)},
            {"name": "v1beta1", "served": true, "storage": false, "schema": schema(false)}
        ]),
    )
    .await;
    let alpha = ar(&group, "v1alpha1", "Gadget", "gadgets");
    create(
        &client,
        &alpha,
        Some(&src),
        json!({"apiVersion": format!("{group}/v1alpha1"), "kind": "Gadget",
               "metadata": {"name": "g"}, "spec": {"size": 2, "legacyMode": true}}),
    )
    .await;
    let (_t, repo) = repository().await;
    let outcome = backup_namespace(&client, &repo, "stored", &src).await;
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
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
    let back = get(&client, &alpha, &dst, "g").await.expect("restored");
    assert_eq!(back["spec"], json!({"size": 2, "legacyMode": true}));
    delete_crd_named(&client, &format!("gadgets.{group}")).await;
}
