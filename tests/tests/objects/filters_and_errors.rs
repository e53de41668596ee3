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
    let outcome = backup_namespace(&client, &repo, "b", &src).await;

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
    let outcome = backup_namespace(&client, &repo, "b", &src).await;
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
    // A name that could never be a Backup resource (a controller syncs them from the
    // repository) is refused, naming it.
    for name in ["", "Bad_Name", "a/b"] {
        let bad = lifeboat_controller::kube_objects::BackupRequest::from_spec(name, &BackupSpec::default())
            .expect_err("a bad name");
        assert!(bad.to_string().contains(&format!("{name:?}")), "{bad}");
    }
}

/// Resource filters take the names kubectl takes (short names, kinds, singulars, with or
/// without `.group`), on backup and on restore; they once matched only `plural[.group]`, so
/// `--include-resources cm` took nothing and `--exclude-resources Secret` excluded nothing,
/// both with exit 0. A name that names no type is an error to include (before anything is
/// read or written) and a warning to exclude.
#[tokio::test]
async fn resource_filters_take_kubectl_names_and_refuse_unknown_ones() {
    let cluster = cluster().await;
    let client = cluster.client();
    let src = cluster.namespace("objs-names").await.expect("namespace");
    create(
        &client,
        &configmaps(),
        Some(&src),
        json!({"metadata": {"name": "c"}, "data": {"k": "v"}}),
    )
    .await;
    let secrets = ar("", "v1", "Secret", "secrets");
    create(
        &client,
        &secrets,
        Some(&src),
        json!({"metadata": {"name": "s"}, "stringData": {"k": "v"}}),
    )
    .await;
    let (_t, repo) = repository().await;
    let spec = |include: &[&str], exclude: &[&str]| BackupSpec {
        included_namespaces: vec![src.clone()],
        included_resources: include.iter().map(|s| s.to_string()).collect(),
        excluded_resources: exclude.iter().map(|s| s.to_string()).collect(),
        ..BackupSpec::default()
    };
    let has = |paths: &[String], plural: &str, name: &str| {
        paths.contains(&format!("resources/{plural}/namespaces/{src}/{name}.json"))
    };
    for (include, exclude) in [
        (&["cm"][..], &[][..]),
        (&["ConfigMap"], &[]),
        (&["configmap"], &[]),
        (&[], &["Secret"]),
        (&[], &["secret"]),
    ] {
        let outcome = backup(&client, &repo, "named", spec(include, exclude)).await;
        let paths = snapshot_paths(&repo, &outcome.snapshot).await;
        assert!(
            has(&paths, "configmaps", "c") && !has(&paths, "secrets", "s"),
            "include {include:?} exclude {exclude:?}: {paths:?}"
        );
    }
    // A typo to include: refused, naming it.
    let request =
        lifeboat_controller::kube_objects::BackupRequest::from_spec("typo", &spec(&["cofnigmaps"], &[]))
            .expect("a valid spec");
    let err = lifeboat_controller::kube_objects::backup_objects(&client, &repo, &request, Default::default())
        .await
        .expect_err("an unknown resource name");
    assert!(
        matches!(
            &err,
            lifeboat_controller::kube_objects::ObjectsError::UnknownResource { name, .. } if name == "cofnigmaps"
        ),
        "{err}"
    );
    // A typo to exclude: a warning, and nothing excluded.
    let outcome = backup(&client, &repo, "all", spec(&[], &["sercrets"])).await;
    assert!(
        outcome.warnings.iter().any(|w| w.message.contains("sercrets")),
        "{:?}",
        outcome.warnings
    );

    // Restore: only the ConfigMap, by its short name, into another namespace.
    let dst = format!("{src}-cm");
    let restored = restore(
        &client,
        &repo,
        &outcome.snapshot,
        RestoreSpec {
            namespace_mapping: BTreeMap::from([(src.clone(), dst.clone())]),
            included_resources: vec!["cm".to_string()],
            ..RestoreSpec::default()
        },
    )
    .await;
    assert!(restored.errors.is_empty(), "{:?}", restored.errors);
    assert!(get(&client, &configmaps(), &dst, "c").await.is_some());
    assert!(get(&client, &secrets, &dst, "s").await.is_none());
    let options = RestoreOptions::from_spec(&RestoreSpec {
        included_resources: vec!["cofnigmaps".to_string()],
        ..RestoreSpec::default()
    })
    .expect("options");
    let err = restore_objects(&client, &repo, &outcome.snapshot, &options, Default::default())
        .await
        .expect_err("an unknown resource name");
    assert!(err.to_string().contains("cofnigmaps"), "{err}");
}

/// A restore into a server that cannot be reached fails once, naming it, before any object
/// (it once reported every object failed, thousands of lines, exit 3).
#[tokio::test]
async fn a_restore_into_an_unreachable_server_fails_once() {
    let cluster = cluster().await;
    let client = cluster.client();
    let src = cluster.namespace("objs-gone").await.expect("namespace");
    create(
        &client,
        &configmaps(),
        Some(&src),
        json!({"metadata": {"name": "c"}}),
    )
    .await;
    let (_t, repo) = repository().await;
    let outcome = backup_namespace(&client, &repo, "b", &src).await;
    let port = lifeboat_tests::process::free_port().expect("a free port");
    let config = kube::Config::new(format!("http://127.0.0.1:{port}").parse().expect("url"));
    let gone = kube::Client::try_from(config).expect("client");
    let options = RestoreOptions::from_spec(&RestoreSpec::default()).expect("options");
    let err = restore_objects(&gone, &repo, &outcome.snapshot, &options, Default::default())
        .await
        .expect_err("unreachable");
    assert!(err.to_string().contains("reach the API server"), "{err}");
}
