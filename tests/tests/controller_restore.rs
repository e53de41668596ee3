//! The Restore controller: from a Backup into a mapped namespace, and a dry run.
//!
//! ```sh
//! cargo test -p lifeboat-tests --test controller_restore
//! ```

mod controller_support;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use lifeboat_controller::crd::{Restore, RestorePhase, RestoreSpec};

use controller_support::*;

async fn restored(api: &Api<Restore>, name: &str) -> Restore {
    eventually(&format!("Restore {name} to finish"), 60, || {
        let api = api.clone();
        async move {
            let r = api.get(name).await.ok()?;
            r.status.as_ref()?.phase.is_finished().then_some(r)
        }
    })
    .await
}

#[tokio::test]
async fn a_restore_puts_objects_into_a_mapped_namespace_and_a_dry_run_changes_nothing() {
    let env = env("ctl-restore").await;
    env.config_maps(3).await;
    let target = env
        .cluster
        .namespace("ctl-target")
        .await
        .expect("target namespace");
    let ctl = env.controller("a").await;
    env.backup_config_maps("source").await;

    let restores: Api<Restore> = env.api();
    let dry = Restore::new(
        "dry",
        RestoreSpec {
            backup_name: Some("source".into()),
            namespace_mapping: [(env.ns.clone(), target.clone())].into(),
            dry_run: true,
            ..RestoreSpec::default()
        },
    );
    restores
        .create(&PostParams::default(), &dry)
        .await
        .expect("create dry run");
    let s = restored(&restores, "dry").await.status.expect("status");
    assert_eq!(s.phase, RestorePhase::Completed, "{s:?}");
    assert!(
        s.changes.iter().filter(|c| c.contains("cm-")).count() >= 3,
        "dry run lists the creates: {:?}",
        s.changes
    );
    let in_target: Api<ConfigMap> = Api::namespaced(env.client(), &target);
    let names =
        |l: Vec<ConfigMap>| -> Vec<String> { l.into_iter().filter_map(|c| c.metadata.name).collect() };
    let before = names(in_target.list(&ListParams::default()).await.expect("list").items);
    assert!(
        !before.iter().any(|n| n.starts_with("cm-")),
        "a dry run created {before:?}"
    );

    let real = Restore::new(
        "real",
        RestoreSpec {
            backup_name: Some("source".into()),
            namespace_mapping: [(env.ns.clone(), target.clone())].into(),
            ..RestoreSpec::default()
        },
    );
    restores
        .create(&PostParams::default(), &real)
        .await
        .expect("create restore");
    let s = restored(&restores, "real").await.status.expect("status");
    assert_eq!(s.phase, RestorePhase::Completed, "{s:?}");
    assert!(s.items_restored >= 3, "{s:?}");
    assert!(s.snapshot_id.is_some());
    let after = names(in_target.list(&ListParams::default()).await.expect("list").items);
    for i in 0..3 {
        assert!(
            after.contains(&format!("cm-{i}")),
            "cm-{i} missing from {after:?}"
        );
    }

    // A mapping to an invalid namespace name fails validation, naming the mapping.
    let bad = Restore::new(
        "bad-mapping",
        RestoreSpec {
            backup_name: Some("source".into()),
            namespace_mapping: [(env.ns.clone(), "Not_A_Namespace".to_string())].into(),
            ..RestoreSpec::default()
        },
    );
    restores
        .create(&PostParams::default(), &bad)
        .await
        .expect("create");
    let s = restored(&restores, "bad-mapping").await.status.expect("status");
    assert_eq!(s.phase, RestorePhase::Failed, "{s:?}");
    let valid = s
        .conditions
        .iter()
        .find(|c| c.type_ == "Valid")
        .expect("Valid condition");
    assert_eq!(valid.status, "False");
    assert!(valid.message.contains("Not_A_Namespace"), "{}", valid.message);

    // A Restore from a Backup that does not exist fails naming it.
    let missing = Restore::new(
        "missing",
        RestoreSpec {
            backup_name: Some("nope".into()),
            ..RestoreSpec::default()
        },
    );
    restores
        .create(&PostParams::default(), &missing)
        .await
        .expect("create");
    let s = restored(&restores, "missing").await.status.expect("status");
    assert_eq!(s.phase, RestorePhase::Failed);
    assert!(
        s.message
            .unwrap_or_default()
            .contains(&format!("Backup {}/nope", env.ns))
    );
    ctl.stop().await;
}

#[tokio::test]
#[cfg_attr(
    not(kube_backend = "in_process"),
    ignore = "rejecting chosen objects needs the in-process test server's faults"
)]
async fn objects_the_server_rejects_are_listed_and_the_rest_restored() {
    let env = env("ctl-partial").await;
    let Some(faults) = env.cluster.faults() else {
        lifeboat_tests::kube::unsupported(
            "objects_the_server_rejects_are_listed_and_the_rest_restored",
            "needs the test server's faults",
        );
    };
    env.config_maps(3).await;
    let target = env
        .cluster
        .namespace("ctl-partial-to")
        .await
        .expect("target namespace");
    let ctl = env.controller("a").await;
    env.backup_config_maps("source").await;
    // The server refuses the first ConfigMap created in the target namespace.
    faults.fail_matching(403, 1, Some("POST"), &format!("/namespaces/{target}/configmaps"));
    let restores: Api<Restore> = env.api();
    let r = Restore::new(
        "partial",
        RestoreSpec {
            backup_name: Some("source".into()),
            namespace_mapping: [(env.ns.clone(), target.clone())].into(),
            ..RestoreSpec::default()
        },
    );
    restores.create(&PostParams::default(), &r).await.expect("create");
    let s = restored(&restores, "partial").await.status.expect("status");
    assert_eq!(s.phase, RestorePhase::PartiallyFailed, "{s:?}");
    assert_eq!(s.items_failed, 1, "{s:?}");
    assert_eq!(s.errors.len(), 1);
    assert!(s.errors[0].item.starts_with("configmaps/"), "{:?}", s.errors);
    assert!(!s.errors[0].message.is_empty());
    assert!(s.message.unwrap_or_default().contains("status.errors"));
    let in_target: Api<ConfigMap> = Api::namespaced(env.client(), &target);
    let restored_cms = in_target
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .filter(|c| c.metadata.name.as_deref().is_some_and(|n| n.starts_with("cm-")))
        .count();
    assert_eq!(restored_cms, 2, "the other objects were restored");
    ctl.stop().await;
}
