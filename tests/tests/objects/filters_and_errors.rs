//! Bad input and partial failures: each names the object and the fix, and the rest goes on.

use std::collections::BTreeMap;

use lifeboat_controller::crd::{BackupSpec, RestoreSpec};
use lifeboat_controller::kube_objects::{RestoreOptions, restore_objects};
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn objects_the_server_rejects_are_reported_and_the_rest_restored() {
    let cluster = cluster().await;
    let client = cluster.client();
    let src = cluster.namespace("objs-err").await.expect("namespace");
    let dst = cluster.namespace("objs-err-dst").await.expect("namespace");
    for i in 0..5 {
        create(
            &client,
            &configmaps(),
            Some(&src),
            json!({"metadata": {"name": format!("c{i}")}, "data": {"i": i.to_string()}}),
        )
        .await;
    }
    let widgets = widget_crd(&client).await;
    create(
        &client,
        &widgets,
        Some(&src),
        json!({"apiVersion": widgets.api_version, "kind": "Widget", "metadata": {"name": "w"}}),
    )
    .await;
    let (_t, repo) = repository().await;
    let outcome = backup(
        &client,
        &repo,
        "b",
        BackupSpec {
            included_namespaces: vec![src.clone()],
            ..BackupSpec::default()
        },
    )
    .await;

    // The Widget type is gone from the target cluster and its CRD is not restored.
    delete_crd(&client, &widgets).await;
    let restored = restore(
        &client,
        &repo,
        &outcome.snapshot,
        RestoreSpec {
            namespace_mapping: BTreeMap::from([(src.clone(), dst.clone())]),
            excluded_resources: vec!["customresourcedefinitions.apiextensions.k8s.io".to_string()],
            ..RestoreSpec::default()
        },
    )
    .await;
    assert_eq!(restored.errors.len(), 1, "{:?}", restored.errors);
    let e = &restored.errors[0];
    assert!(
        e.item.contains(&format!("widgets.{}", widgets.group)) && e.item.ends_with("/w"),
        "{e:?}"
    );
    assert!(e.message.contains("install its CRD or exclude it"), "{e:?}");
    for i in 0..5 {
        assert!(
            get(&client, &configmaps(), &dst, &format!("c{i}"))
                .await
                .is_some(),
            "c{i} restored despite the failure"
        );
    }
}

#[tokio::test]
async fn a_bad_namespace_mapping_is_refused_before_anything_changes() {
    let cluster = cluster().await;
    let client = cluster.client();
    let src = cluster.namespace("objs-map").await.expect("namespace");
    create(
        &client,
        &configmaps(),
        Some(&src),
        json!({"metadata": {"name": "c"}}),
    )
    .await;
    let (_t, repo) = repository().await;
    let outcome = backup(
        &client,
        &repo,
        "b",
        BackupSpec {
            included_namespaces: vec![src.clone()],
            ..BackupSpec::default()
        },
    )
    .await;
    let options = RestoreOptions::from_spec(&RestoreSpec {
        namespace_mapping: BTreeMap::from([(src.clone(), "Not_Valid".to_string())]),
        ..RestoreSpec::default()
    })
    .expect("options");
    let err = restore_objects(&client, &repo, &outcome.snapshot, &options, Default::default())
        .await
        .expect_err("refused");
    let msg = err.to_string();
    assert!(
        msg.contains("Not_Valid") && msg.contains("not a valid namespace name"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_backup_that_matches_nothing_says_so_and_bad_globs_name_the_field() {
    let cluster = cluster().await;
    let client = cluster.client();
    let (_t, repo) = repository().await;
    let outcome = backup(
        &client,
        &repo,
        "empty",
        BackupSpec {
            included_namespaces: vec!["no-such-namespace-*".to_string()],
            ..BackupSpec::default()
        },
    )
    .await;
    assert_eq!(outcome.items, 0);
    let bad = lifeboat_controller::kube_objects::BackupRequest::from_spec(
        "b",
        &BackupSpec {
            excluded_resources: vec!["[oops".to_string()],
            ..BackupSpec::default()
        },
    )
    .expect_err("bad glob");
    assert!(bad.to_string().contains("excludedResources"), "{bad}");
}
