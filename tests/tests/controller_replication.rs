//! Replication and backup sync through the controller: a BackupReplication copies each new
//! backup to two destinations (Ceph RGW and local disk, each with its own retention) and
//! reports lag in status and metrics; a second, fresh cluster given the RGW copy as a ReadOnly
//! BackupRepository lists the backup it never ran and restores it through its own controller.
//!
//! ```sh
//! cargo test -p lifeboat-tests --test controller_replication
//! ```

mod controller_support;

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use lifeboat_backup::Repository;
use lifeboat_controller::crd::{
    AccessMode, Backup, BackupPhase, BackupReplication, BackupReplicationSpec, BackupRepository,
    BackupRepositorySpec, BackupSpec, DeletionPolicy, ReplicationDestination, ReplicationPhase, Restore,
    RestorePhase, RestoreSpec, Retention, SecretKeyRef,
};
use lifeboat_tests::kube::TestCluster;
use lifeboat_tests::repos::{Backend, TestRepo};

use controller_support::*;

async fn secret(client: &kube::Client, ns: &str, name: &str, data: &[(&str, &[u8])]) {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let mut s = Secret::default();
    s.metadata.name = Some(name.into());
    s.data = Some(
        data.iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
            .collect(),
    );
    api.create(&PostParams::default(), &s)
        .await
        .expect("create Secret");
}

/// A BackupRepository `name` for `repo` (RGW: with a credentials Secret), opened by `repo-key`.
async fn repository(client: &kube::Client, ns: &str, name: &str, repo: &TestRepo, mode: AccessMode) {
    let mut spec = BackupRepositorySpec {
        url: repo.url.clone(),
        key_secret: SecretKeyRef {
            name: "repo-key".into(),
            key: None,
        },
        access_mode: mode,
        ..BackupRepositorySpec::default()
    };
    if let Some(endpoint) = &repo.options.s3_endpoint {
        let creds = format!("{name}-creds");
        let key = repo.options.access_key_id.clone().unwrap_or_default();
        let secret_key = repo
            .options
            .secret_access_key
            .as_ref()
            .map(|s| s.expose().to_string())
            .unwrap_or_default();
        secret(
            client,
            ns,
            &creds,
            &[
                ("AWS_ACCESS_KEY_ID", key.as_bytes()),
                ("AWS_SECRET_ACCESS_KEY", secret_key.as_bytes()),
            ],
        )
        .await;
        spec.s3_endpoint = Some(endpoint.clone());
        spec.s3_region = repo.options.s3_region.clone();
        spec.credentials_secret = Some(SecretKeyRef {
            name: creds,
            key: None,
        });
    }
    let api: Api<BackupRepository> = Api::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), &BackupRepository::new(name, spec))
        .await
        .expect("create BackupRepository");
}

async fn backup_done(api: &Api<Backup>, name: &str) -> String {
    eventually(&format!("Backup {name} to complete"), 90, || {
        let api = api.clone();
        async move {
            let s = api.get(name).await.ok()?.status?;
            (s.phase == BackupPhase::Completed).then_some(s.snapshot_id?)
        }
    })
    .await
}

/// Waits until every destination of `name` holds snapshot `id` as its newest and the run ended.
async fn replicated(api: &Api<BackupReplication>, name: &str, id: &str) -> BackupReplication {
    eventually(&format!("BackupReplication {name} to copy {id}"), 120, || {
        let api = api.clone();
        async move {
            let r = api.get(name).await.ok()?;
            let s = r.status.as_ref()?;
            let all = s.destinations.len() == 2
                && s.destinations
                    .iter()
                    .all(|d| d.newest_snapshot.as_deref() == Some(id));
            (all && s.phase == ReplicationPhase::Idle).then_some(r)
        }
    })
    .await
}

#[tokio::test]
async fn replication_follows_each_backup_and_a_fresh_cluster_syncs_and_restores_the_copy() {
    // Cluster A runs backups into its local repository and replicates them.
    let env = env("ctl-repl").await;
    env.config_maps(3).await;
    let client = env.client();
    let rgw = TestRepo::new(Backend::Rgw).expect("RGW destination");
    let disk = TestRepo::new(Backend::Local).expect("local destination");
    repository(&client, &env.ns, "dr-rgw", &rgw, AccessMode::ReadWrite).await;
    repository(&client, &env.ns, "dr-disk", &disk, AccessMode::ReadWrite).await;
    let replications: Api<BackupReplication> = env.api();
    let spec = BackupReplicationSpec {
        source_repository: REPO.into(),
        destinations: vec![
            ReplicationDestination {
                name: "rgw".into(),
                repository: "dr-rgw".into(),
                ..Default::default()
            },
            ReplicationDestination {
                name: "disk".into(),
                repository: "dr-disk".into(),
                retention: Some(Retention {
                    keep_last: Some(1),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ],
        after_each_backup: true,
        ..Default::default()
    };
    replications
        .create(&PostParams::default(), &BackupReplication::new("offsite", spec))
        .await
        .expect("create BackupReplication");
    let ctl = env.controller("a").await;

    let backups: Api<Backup> = env.api();
    let backup = |name: &str| {
        Backup::new(
            name,
            BackupSpec {
                repository: REPO.into(),
                included_namespaces: vec![env.ns.clone()],
                included_resources: vec!["configmaps".into()],
                ..BackupSpec::default()
            },
        )
    };
    backups
        .create(&PostParams::default(), &backup("first"))
        .await
        .expect("create Backup");
    let first = backup_done(&backups, "first").await;
    let r = replicated(&replications, "offsite", &first).await;
    let s = r.status.expect("status");
    let rgw_status = &s.destinations[0];
    assert!(
        rgw_status.bytes_copied > 0 && rgw_status.snapshots_copied == 1,
        "{s:?}"
    );
    assert!(
        rgw_status.last_success_time.is_some() && rgw_status.message.is_none(),
        "{s:?}"
    );
    let lock = rgw_status.object_lock.as_deref().unwrap_or_default();
    assert!(
        lock.contains("not requested") && lock.contains("not enabled"),
        "{lock}"
    );
    assert!(
        s.destinations[1]
            .object_lock
            .as_deref()
            .unwrap_or_default()
            .contains("local disk"),
        "{s:?}"
    );

    // A second backup follows; each destination keeps what its retention says.
    let api_cm: Api<ConfigMap> = env.api();
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("cm-late".into());
    api_cm
        .create(&PostParams::default(), &cm)
        .await
        .expect("ConfigMap");
    backups
        .create(&PostParams::default(), &backup("second"))
        .await
        .expect("create Backup");
    let second = backup_done(&backups, "second").await;
    let r = replicated(&replications, "offsite", &second).await;
    let s = r.status.expect("status");
    assert_eq!(s.destinations[0].snapshots, 2, "rgw keeps both: {s:?}");
    assert_eq!(s.destinations[1].snapshots, 1, "disk keeps the last one: {s:?}");
    // `snapshots_forgotten` counts the last run only: a second reconcile (seen on a loaded
    // machine) finds nothing left to forget and reports 0, so the repository itself is what
    // is checked below.
    let disk_repo = Repository::open(&disk.store(), &[env.repo.user_key()])
        .await
        .expect("open the disk copy");
    let there = disk_repo.snapshots().await.expect("snapshots");
    assert_eq!(there.len(), 1);
    assert_eq!(there[0].id.map(|i| i.to_hex()), Some(second.clone()));

    // Lag is exported, per destination, computed at scrape time.
    let (code, metrics) = ctl.get("/metrics").await;
    assert_eq!(code, 200);
    for d in ["rgw", "disk"] {
        let needle = format!("destination=\"{d}\"");
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("lifeboat_replication_lag_seconds{") && l.contains(&needle)),
            "no lag for {d}:\n{metrics}"
        );
    }
    assert!(metrics.contains("lifeboat_replication_bytes_total{"), "{metrics}");
    ctl.stop().await;

    // Cluster B has never seen these backups: only the RGW copy, ReadOnly.
    let cluster_b = TestCluster::in_process().await.expect("second cluster");
    install_crds(&cluster_b.client()).await;
    let ns_b = cluster_b.namespace("dr-site").await.expect("namespace");
    let identity = std::fs::read(&env.repo.identity).expect("identity");
    secret(&cluster_b.client(), &ns_b, "repo-key", &[("identity", &identity)]).await;
    repository(&cluster_b.client(), &ns_b, "dr", &rgw, AccessMode::ReadOnly).await;
    let env_b = Env {
        cluster: cluster_b,
        ns: ns_b.clone(),
        repo: TestRepo::new(Backend::Local).expect("scratch"),
    };
    let ctl_b = env_b.controller("b").await;
    let backups_b: Api<Backup> = env_b.api();
    let synced = eventually("backup sync to create Backups", 60, || {
        let api = backups_b.clone();
        async move {
            let list = api
                .list(&ListParams::default().labels("lifeboat.dev/synced=true"))
                .await
                .ok()?;
            let done: BTreeMap<String, Backup> = list
                .items
                .into_iter()
                .filter(|b| b.status.as_ref().is_some_and(|s| s.snapshot_id.is_some()))
                .filter_map(|b| Some((b.metadata.name.clone()?, b)))
                .collect();
            (done.len() == 2).then_some(done)
        }
    })
    .await;
    let first_b = &synced["first"];
    let status = first_b.status.clone().expect("status");
    assert_eq!(status.phase, BackupPhase::Completed);
    assert_eq!(status.snapshot_id.as_deref(), Some(first.as_str()));
    assert_eq!(first_b.spec.repository, "dr");
    assert_eq!(first_b.spec.deletion_policy, DeletionPolicy::Retain);
    assert!(status.items_backed_up >= 3, "{status:?}");

    // A Restore through cluster B's controller, into a namespace of cluster B.
    let target = env_b
        .cluster
        .namespace("restored")
        .await
        .expect("target namespace");
    let restores: Api<Restore> = env_b.api();
    restores
        .create(
            &PostParams::default(),
            &Restore::new(
                "from-dr",
                RestoreSpec {
                    backup_name: Some("second".into()),
                    namespace_mapping: [(env.ns.clone(), target.clone())].into(),
                    ..RestoreSpec::default()
                },
            ),
        )
        .await
        .expect("create Restore");
    let restored = eventually("the Restore in cluster B to finish", 90, || {
        let api = restores.clone();
        async move {
            let r = api.get("from-dr").await.ok()?;
            r.status.filter(|s| s.phase.is_finished())
        }
    })
    .await;
    assert_eq!(restored.phase, RestorePhase::Completed, "{restored:?}");
    let in_target: Api<ConfigMap> = Api::namespaced(env_b.client(), &target);
    for name in ["cm-0", "cm-1", "cm-2", "cm-late"] {
        assert!(
            in_target.get_opt(name).await.expect("get").is_some(),
            "{name} restored in cluster B"
        );
    }

    // Deleting a synced Backup keeps its data (deletionPolicy Retain); as with Velero, the
    // next sync finds the snapshot again and brings the Backup back (with a new uid).
    let uid = first_b.metadata.uid.clone();
    backups_b
        .delete("first", &DeleteParams::default())
        .await
        .expect("delete synced Backup");
    eventually("the synced Backup to go", 30, || {
        let api = backups_b.clone();
        let uid = uid.clone();
        async move {
            match api.get_opt("first").await.ok()? {
                None => Some(()),
                Some(b) => (b.metadata.uid != uid).then_some(()),
            }
        }
    })
    .await;
    let copy = Repository::open(&rgw.store(), &[env.repo.user_key()])
        .await
        .expect("open the RGW copy");
    assert!(
        copy.find_snapshot(&first).await.is_ok(),
        "the snapshot is still there"
    );
    ctl_b.stop().await;
}
