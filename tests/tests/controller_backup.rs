//! The Backup controller against the Kubernetes API test server (or a real API server, see
//! docs/testing.md) with a local-disk repository:
//!
//! ```sh
//! cargo test -p lifeboat-tests --test controller_backup
//! ```

mod controller_support;

use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use lifeboat_controller::BACKUP_FINALIZER;
use lifeboat_controller::crd::{
    Backup, BackupPhase, BackupRepository, BackupRepositorySpec, BackupSpec, EtcdSource, SecretKeyRef,
};
use lifeboat_tests::kube::apiservice;
use lifeboat_tests::services::etcd::Etcd;
use serde_json::json;

use controller_support::*;

fn objects_backup(name: &str, ns: &str) -> Backup {
    Backup::new(
        name,
        BackupSpec {
            repository: REPO.into(),
            included_namespaces: vec![ns.to_string()],
            ..BackupSpec::default()
        },
    )
}

async fn finished(api: &Api<Backup>, name: &str, secs: u64) -> Backup {
    eventually(&format!("Backup {name} to finish"), secs, || {
        let api = api.clone();
        let name = name.to_string();
        async move {
            let b = api.get(&name).await.ok()?;
            b.status.as_ref()?.phase.is_finished().then_some(b)
        }
    })
    .await
}

#[tokio::test]
async fn backup_completes_with_items_and_a_snapshot() {
    let env = env("ctl-backup").await;
    env.config_maps(5).await;
    let ctl = env.controller("a").await;
    let api: Api<Backup> = env.api();
    api.create(&PostParams::default(), &objects_backup("first", &env.ns))
        .await
        .expect("create Backup");
    let b = finished(&api, "first", 60).await;
    let status = b.status.clone().expect("status");
    assert_eq!(status.phase, BackupPhase::Completed, "{status:?}");
    assert!(status.items_backed_up >= 5, "{status:?}");
    assert_eq!(status.attempts, 1);
    assert!(status.start_time.is_some() && status.completion_time.is_some());
    assert!(
        b.metadata
            .finalizers
            .unwrap_or_default()
            .contains(&BACKUP_FINALIZER.to_string())
    );
    let id = status.snapshot_id.expect("snapshot id");

    // Events tell the story, and carry nothing from the key Secret.
    let events: Api<Event> = env.api();
    let key = std::fs::read_to_string(&env.repo.identity).expect("identity");
    let secret_line = key
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY"))
        .expect("secret key line");
    let reasons = eventually("BackupStarted and BackupCompleted events", 30, || {
        let events = events.clone();
        async move {
            let list = events.list(&ListParams::default()).await.ok()?.items;
            let mine: Vec<Event> = list
                .into_iter()
                .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("first"))
                .collect();
            let reasons: Vec<String> = mine.iter().filter_map(|e| e.reason.clone()).collect();
            (reasons.iter().any(|r| r == "BackupStarted") && reasons.iter().any(|r| r == "BackupCompleted"))
                .then_some(mine)
        }
    })
    .await;
    for e in reasons {
        assert!(
            !e.note.unwrap_or_default().contains(secret_line),
            "key material in an Event"
        );
    }
    let snap = env
        .open()
        .await
        .find_snapshot(&id)
        .await
        .expect("snapshot in the repository");
    assert_eq!(snap.tags.get("backup").map(String::as_str), Some("first"));

    // The repository check reports it reachable with the snapshot counted.
    let repos: Api<BackupRepository> = env.api();
    eventually("the BackupRepository to be Ready with 1 snapshot", 30, || {
        let repos = repos.clone();
        async move {
            let s = repos.get(REPO).await.ok()?.status?;
            (s.reachable
                && s.snapshots == 1
                && s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True"))
            .then_some(())
        }
    })
    .await;

    // A Backup that matches nothing completes, and says so.
    api.create(
        &PostParams::default(),
        &objects_backup("empty", "no-such-namespace-here"),
    )
    .await
    .expect("create Backup");
    let empty = finished(&api, "empty", 60).await.status.expect("status");
    assert_eq!(empty.items_backed_up, 0);
    let matched = empty
        .conditions
        .iter()
        .find(|c| c.type_ == "MatchedObjects")
        .expect("MatchedObjects condition");
    assert_eq!(matched.status, "False");
    assert!(matched.message.contains("spec.includedNamespaces"), "{matched:?}");
    ctl.stop().await;
}

#[tokio::test]
async fn deleting_a_backup_forgets_its_snapshot_unless_retained() {
    let env = env("ctl-finalizer").await;
    env.config_maps(2).await;
    let ctl = env.controller("a").await;
    let api: Api<Backup> = env.api();
    api.create(&PostParams::default(), &objects_backup("doomed", &env.ns))
        .await
        .expect("create");
    let mut kept = objects_backup("kept", &env.ns);
    kept.spec.deletion_policy = lifeboat_controller::crd::DeletionPolicy::Retain;
    api.create(&PostParams::default(), &kept).await.expect("create");
    let doomed = finished(&api, "doomed", 60)
        .await
        .status
        .and_then(|s| s.snapshot_id)
        .expect("id");
    let retained = finished(&api, "kept", 60)
        .await
        .status
        .and_then(|s| s.snapshot_id)
        .expect("id");

    for name in ["doomed", "kept"] {
        api.delete(name, &DeleteParams::default()).await.expect("delete");
    }
    for name in ["doomed", "kept"] {
        eventually(&format!("Backup {name} to be gone"), 30, || {
            let api = api.clone();
            async move { api.get_opt(name).await.ok()?.is_none().then_some(()) }
        })
        .await;
    }
    let repo = env.open().await;
    assert!(
        repo.find_snapshot(&doomed).await.is_err(),
        "snapshot of a Delete backup remains"
    );
    repo.find_snapshot(&retained)
        .await
        .expect("snapshot of a Retain backup is kept");
    ctl.stop().await;
}

#[tokio::test]
async fn a_backup_whose_repository_is_gone_is_still_deleted() {
    let env = env("ctl-orphan").await;
    env.config_maps(1).await;
    let ctl = env.controller("a").await;
    let api: Api<Backup> = env.api();
    api.create(&PostParams::default(), &objects_backup("orphan", &env.ns))
        .await
        .expect("create");
    finished(&api, "orphan", 60).await;
    let repos: Api<BackupRepository> = env.api();
    repos
        .delete(REPO, &DeleteParams::default())
        .await
        .expect("delete repo");
    api.delete("orphan", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("the orphaned Backup to be gone", 30, || {
        let api = api.clone();
        async move { api.get_opt("orphan").await.ok()?.is_none().then_some(()) }
    })
    .await;
    ctl.stop().await;
}

#[tokio::test]
async fn invalid_backups_fail_with_a_condition_naming_the_object_and_the_fix() {
    let env = env("ctl-invalid").await;
    let repos: Api<BackupRepository> = env.api();
    let no_key = BackupRepository::new(
        "no-key",
        BackupRepositorySpec {
            url: env.repo.url.clone(),
            key_secret: SecretKeyRef {
                name: "absent".into(),
                key: None,
            },
            ..BackupRepositorySpec::default()
        },
    );
    repos.create(&PostParams::default(), &no_key).await.expect("repo");
    let mut read_only = no_key.clone();
    read_only.metadata.name = Some("read-only".into());
    read_only.spec.key_secret.name = "repo-key".into();
    read_only.spec.access_mode = lifeboat_controller::crd::AccessMode::ReadOnly;
    repos
        .create(&PostParams::default(), &read_only)
        .await
        .expect("repo");

    let ctl = env.controller("a").await;
    let api: Api<Backup> = env.api();
    let cases = [
        (
            "unknown-repo",
            "missing",
            None,
            format!("BackupRepository {}/missing not found", env.ns),
        ),
        (
            "missing-secret",
            "no-key",
            None,
            format!("Secret {}/absent", env.ns),
        ),
        ("read-only", "read-only", None, "ReadOnly".to_string()),
        ("bad-glob", REPO, Some("[oops"), "[oops".to_string()),
    ];
    for (name, repo, glob, _) in &cases {
        let mut b = objects_backup(name, &env.ns);
        b.spec.repository = repo.to_string();
        if let Some(g) = glob {
            b.spec.included_namespaces = vec![g.to_string()];
        }
        api.create(&PostParams::default(), &b).await.expect("create");
    }
    // The repository whose key Secret is missing is reported not Ready, naming the Secret.
    let cond = eventually("BackupRepository no-key to be not Ready", 30, || {
        let repos = repos.clone();
        async move {
            let s = repos.get("no-key").await.ok()?.status?;
            s.conditions
                .into_iter()
                .find(|c| c.type_ == "Ready" && c.status == "False")
        }
    })
    .await;
    assert!(cond.message.contains("absent"), "{}", cond.message);
    for (name, _, _, want) in &cases {
        let b = finished(&api, name, 30).await;
        let status = b.status.expect("status");
        assert_eq!(status.phase, BackupPhase::Failed, "{name}: {status:?}");
        let valid = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Valid")
            .unwrap_or_else(|| panic!("{name}: no Valid condition: {status:?}"));
        assert_eq!(valid.status, "False", "{name}");
        assert!(
            valid.message.contains(want.as_str()),
            "{name}: {:?} lacks {want:?}",
            valid.message
        );
        assert!(
            status.message.unwrap_or_default().contains(want.as_str()),
            "{name}"
        );
    }
    ctl.stop().await;
}

#[tokio::test]
async fn a_controller_restart_mid_backup_runs_it_again() {
    let env = env("ctl-resume").await;
    env.config_maps(3).await;
    let api: Api<Backup> = env.api();
    if let Some(faults) = env.cluster.faults() {
        // A slow API server keeps the first run going long enough to stop its controller.
        faults.set_latency(Duration::from_millis(60));
        let first = env.controller("first").await;
        api.create(&PostParams::default(), &objects_backup("resumed", &env.ns))
            .await
            .expect("create");
        // Progress is written to status while the run goes.
        eventually("the first run to report progress", 60, || {
            let api = api.clone();
            async move {
                let s = api.get("resumed").await.ok()?.status?;
                (s.phase == BackupPhase::InProgress && s.progress.is_some_and(|p| p.total_items > 0))
                    .then_some(())
            }
        })
        .await;
        first.stop().await;
        faults.set_latency(Duration::ZERO);
        let s = api.get("resumed").await.expect("get").status.expect("status");
        assert_eq!(
            s.phase,
            BackupPhase::InProgress,
            "the first run must not have finished: {s:?}"
        );
    } else {
        // A real API server cannot be slowed down: leave the Backup as a controller that died
        // mid-run would.
        let b = objects_backup("resumed", &env.ns);
        api.create(&PostParams::default(), &b).await.expect("create");
        let mut with_finalizer = json!({"metadata": {"finalizers": [BACKUP_FINALIZER]}});
        api.patch("resumed", &PatchParams::default(), &Patch::Merge(&with_finalizer))
            .await
            .expect("finalizer");
        with_finalizer = json!({"status": {"phase": "InProgress", "attempts": 1}});
        api.patch_status("resumed", &PatchParams::default(), &Patch::Merge(&with_finalizer))
            .await
            .expect("status");
    }
    let second = env.controller("second").await;
    let b = finished(&api, "resumed", 90).await;
    let s = b.status.expect("status");
    assert_eq!(s.phase, BackupPhase::Completed, "{s:?}");
    assert_eq!(s.attempts, 2, "the resumed run is the second attempt");
    assert!(s.snapshot_id.is_some());
    second.stop().await;
}

#[tokio::test]
async fn an_etcd_backup_snapshots_a_real_etcd_over_mutual_tls() {
    let env = env("ctl-etcd").await;
    let etcd = Etcd::start_tls().expect("etcd starts (needs the etcd package)");
    let mut put = etcd.etcdctl();
    put.args(["put", "/registry/demo", "hello"]);
    assert!(put.status().expect("etcdctl").success());
    let tls = etcd.tls().expect("TLS material").clone();
    let read = |p: &std::path::Path| ByteString(std::fs::read(p).expect("read TLS file"));
    let mut secret = Secret::default();
    secret.metadata.name = Some("etcd-client".into());
    secret.data = Some(
        [
            ("ca.crt".to_string(), read(&tls.ca)),
            ("tls.crt".to_string(), read(&tls.cert)),
            ("tls.key".to_string(), read(&tls.key)),
        ]
        .into(),
    );
    let secrets: Api<Secret> = env.api();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("Secret");

    let ctl = env.controller("a").await;
    let api: Api<Backup> = env.api();
    let b = Backup::new(
        "etcd",
        BackupSpec {
            repository: REPO.into(),
            etcd: Some(EtcdSource {
                endpoints: vec![etcd.endpoint()],
                tls_secret: Some(SecretKeyRef {
                    name: "etcd-client".into(),
                    key: None,
                }),
            }),
            ..BackupSpec::default()
        },
    );
    api.create(&PostParams::default(), &b).await.expect("create");
    let s = finished(&api, "etcd", 60).await.status.expect("status");
    assert_eq!(s.phase, BackupPhase::Completed, "{s:?}");
    let snap = env
        .open()
        .await
        .find_snapshot(s.snapshot_id.as_deref().expect("id"))
        .await
        .expect("snapshot");
    assert_eq!(snap.kind(), "etcd");
    assert_eq!(snap.tags.get("backup").map(String::as_str), Some("etcd"));
    assert!(s.bytes_added > 0);
    ctl.stop().await;
}

#[tokio::test]
async fn an_etcd_backup_with_namespaces_is_one_recovery_point_forgotten_together() {
    let env = env("ctl-etcd-point").await;
    env.config_maps(2).await;
    let etcd = Etcd::start().expect("etcd starts (needs the etcd package)");
    let mut put = etcd.etcdctl();
    put.args(["put", "/registry/demo", "hello"]);
    assert!(put.status().expect("etcdctl").success());
    let ctl = env.controller("a").await;
    let api: Api<Backup> = env.api();
    let with_etcd = |name: &str, endpoint: String| {
        let mut b = objects_backup(name, &env.ns);
        b.spec.etcd = Some(EtcdSource {
            endpoints: vec![endpoint],
            tls_secret: None,
        });
        b
    };
    api.create(&PostParams::default(), &with_etcd("point", etcd.endpoint()))
        .await
        .expect("create");
    let s = finished(&api, "point", 90).await.status.expect("status");
    assert_eq!(s.phase, BackupPhase::Completed, "{s:?}");
    assert!(s.items_backed_up >= 2, "{s:?}");

    // The objects' snapshot's catalog names the etcd snapshot taken with it.
    let repo = env.open().await;
    let objects = repo
        .find_snapshot(s.snapshot_id.as_deref().expect("id"))
        .await
        .expect("objects snapshot");
    let catalog = lifeboat_controller::volumes::read_catalog(&repo, &objects)
        .await
        .expect("catalog read")
        .expect("a catalog");
    let point = catalog.point.expect("a recovery point");
    let taken = point.etcd.expect("the recovery point names its etcd snapshot");
    let snap = repo
        .find_snapshot(&taken.snapshot_id)
        .await
        .expect("etcd snapshot");
    assert_eq!(snap.kind(), "etcd");
    assert_eq!(snap.tags.get("backup").map(String::as_str), Some("point"));
    match &snap.details {
        lifeboat_backup::snapshot::SnapshotDetails::EtcdFull(f) => {
            assert_eq!(f.revision, taken.revision);
            assert!(f.revision >= 2, "the put is in it: {f:?}");
        }
        other => panic!("not a full etcd snapshot: {other:?}"),
    }
    assert!(
        taken.taken_at >= point.objects_from,
        "{taken:?} {:?}",
        point.objects_from
    );

    // An etcd that cannot be reached fails the Backup, and nothing of it is kept.
    api.create(
        &PostParams::default(),
        &with_etcd("no-etcd", "http://127.0.0.1:1".to_string()),
    )
    .await
    .expect("create");
    let failed = finished(&api, "no-etcd", 120).await.status.expect("status");
    assert_eq!(failed.phase, BackupPhase::Failed, "{failed:?}");
    let said = format!("{failed:?}");
    assert!(said.contains("etcd") && said.contains("127.0.0.1:1"), "{said}");
    let kept: Vec<_> = env
        .open()
        .await
        .snapshots()
        .await
        .expect("list")
        .into_iter()
        .filter(|s| s.tags.get("backup").map(String::as_str) == Some("no-etcd"))
        .collect();
    assert!(kept.is_empty(), "a failed backup kept {kept:?}");

    // Deleting the Backup forgets both snapshots.
    let deleted = |name: &'static str| {
        let api = api.clone();
        async move {
            api.delete(name, &DeleteParams::default()).await.expect("delete");
            eventually("the Backup to be deleted", 60, || {
                let api = api.clone();
                async move { api.get_opt(name).await.ok()?.is_none().then_some(()) }
            })
            .await;
        }
    };
    deleted("point").await;
    let repo = env.open().await;
    assert!(
        repo.find_snapshot(&taken.snapshot_id).await.is_err(),
        "etcd snapshot kept"
    );
    assert!(
        repo.find_snapshot(s.snapshot_id.as_deref().expect("id"))
            .await
            .is_err(),
        "objects snapshot kept"
    );

    // A watcher that chained deltas on a Backup's etcd snapshot (the newest full one of its
    // cluster) keeps it past the Backup: forgetting it would lose the chain.
    api.create(&PostParams::default(), &with_etcd("based", etcd.endpoint()))
        .await
        .expect("create");
    let based = finished(&api, "based", 90).await.status.expect("status");
    assert_eq!(based.phase, BackupPhase::Completed, "{based:?}");
    let full = based.etcd.expect("status.etcd").snapshot_id;
    let mut put = etcd.etcdctl();
    put.args(["put", "/registry/after", "backup"]);
    assert!(put.status().expect("etcdctl").success());
    let (_stop, never) = tokio::sync::watch::channel(false);
    let options = lifeboat_etcd::DeltaOptions {
        interval: Duration::from_millis(200),
        max_deltas: Some(1),
        ..Default::default()
    };
    let endpoints = lifeboat_etcd::EtcdEndpoints {
        urls: vec![etcd.endpoint()],
        tls: None,
    };
    let repo = env.open().await;
    let streamed = lifeboat_etcd::stream_deltas(&repo, &endpoints, &options, never, Default::default())
        .await
        .expect("a delta");
    assert!(
        matches!(streamed, lifeboat_etcd::DeltaOutcome::Stopped { deltas: 1, .. }),
        "{streamed:?}"
    );
    deleted("based").await;
    let repo = env.open().await;
    assert!(
        repo.find_snapshot(&full).await.is_ok(),
        "the base of a delta chain was forgotten with its Backup"
    );
    assert!(
        repo.find_snapshot(based.snapshot_id.as_deref().expect("id"))
            .await
            .is_err(),
        "objects snapshot kept"
    );
    ctl.stop().await;
}

#[tokio::test]
async fn a_backup_past_its_ttl_is_deleted_with_its_snapshot() {
    let env = env("ctl-ttl").await;
    env.config_maps(1).await;
    let ctl = env.controller("a").await;
    let api: Api<Backup> = env.api();
    let mut b = objects_backup("short-lived", &env.ns);
    b.spec.ttl = Some("3s".into());
    api.create(&PostParams::default(), &b).await.expect("create");
    let done = finished(&api, "short-lived", 60).await.status.expect("status");
    assert_eq!(done.phase, BackupPhase::Completed);
    assert!(done.expiration.is_some(), "{done:?}");
    let id = done.snapshot_id.expect("id");
    eventually("the expired Backup to be deleted", 30, || {
        let api = api.clone();
        async move { api.get_opt("short-lived").await.ok()?.is_none().then_some(()) }
    })
    .await;
    assert!(
        env.open().await.find_snapshot(&id).await.is_err(),
        "expired snapshot kept"
    );

    let mut bad = objects_backup("bad-ttl", &env.ns);
    bad.spec.ttl = Some("forever".into());
    api.create(&PostParams::default(), &bad).await.expect("create");
    let s = finished(&api, "bad-ttl", 30).await.status.expect("status");
    assert_eq!(s.phase, BackupPhase::Failed);
    assert!(s.message.unwrap_or_default().contains("spec.ttl"));
    ctl.stop().await;
}

#[tokio::test]
async fn an_unavailable_aggregated_api_is_a_warning_and_a_condition() {
    let env = env("ctl-aggr").await;
    env.config_maps(2).await;
    let group = format!("ctl{}.lifeboat-test.dev", std::process::id());
    let name = apiservice::register_unavailable(&env.cluster.client(), &group, &env.ns).await;
    let ctl = env.controller("a").await;
    let api: Api<Backup> = env.api();
    api.create(&PostParams::default(), &objects_backup("aggr", &env.ns))
        .await
        .expect("create Backup");
    let b = finished(&api, "aggr", 90).await;
    apiservice::unregister(&env.cluster.client(), &name).await;
    let status = b.status.expect("status");
    assert_eq!(status.phase, BackupPhase::Completed, "{status:?}");
    let gv = format!("{group}/v1beta1");
    assert!(
        status.warnings.iter().any(|w| w.item == gv),
        "{:?}",
        status.warnings
    );
    let cond = status
        .conditions
        .iter()
        .find(|c| c.type_ == "APIGroupsDiscovered")
        .expect("APIGroupsDiscovered condition");
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_str()),
        ("False", "AggregatedAPIUnavailable"),
        "{cond:?}"
    );
    assert!(cond.message.contains(&gv), "{cond:?}");
    ctl.stop().await;
}

/// A claim bound to a volume of a driver Lifeboat cannot read, in the Backup's namespace.
async fn foreign_claim(env: &Env) {
    let pv = format!("{}-ebs", env.ns);
    let pvs: Api<k8s_openapi::api::core::v1::PersistentVolume> = Api::all(env.client());
    let volume = serde_json::from_value(json!({
        "metadata": {"name": pv},
        "spec": {
            "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "gp3",
            "csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "vol-0a1b2c3d"},
        },
    }))
    .expect("a PV");
    pvs.create(&PostParams::default(), &volume)
        .await
        .expect("create PV");
    let claims: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> = env.api();
    let claim = serde_json::from_value(json!({
        "metadata": {"name": "cache"},
        "spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
            "storageClassName": "gp3", "volumeName": pv,
        },
    }))
    .expect("a PVC");
    claims
        .create(&PostParams::default(), &claim)
        .await
        .expect("create PVC");
    claims
        .patch_status(
            "cache",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Bound"}})),
        )
        .await
        .expect("bind PVC");
}

#[tokio::test]
async fn a_claim_whose_data_cannot_be_taken_is_reported_and_partially_fails() {
    let env = env("ctl-vols").await;
    foreign_claim(&env).await;
    let ctl = env.controller("a").await;
    let api: Api<Backup> = env.api();
    api.create(&PostParams::default(), &objects_backup("with-volumes", &env.ns))
        .await
        .expect("create Backup");
    let b = finished(&api, "with-volumes", 60).await;
    let status = b.status.clone().expect("status");
    assert_eq!(status.phase, BackupPhase::PartiallyFailed, "{status:?}");
    let item = format!("persistentvolumeclaims/{}/cache", env.ns);
    assert!(
        status
            .errors
            .iter()
            .any(|e| e.item == item && e.message.contains("ebs.csi.aws.com")),
        "{status:?}"
    );
    assert_eq!(status.volumes.len(), 1, "{status:?}");
    assert_eq!(status.volumes[0].claim, "cache");
    assert_eq!(status.volumes[0].driver.as_deref(), Some("ebs.csi.aws.com"));

    // Leaving its StorageClass out of spec.volumes is a choice, not a failure.
    let mut spec = objects_backup("x", &env.ns).spec;
    spec.volumes = Some(lifeboat_controller::crd::VolumeSelection {
        excluded_storage_classes: vec!["gp*".to_string()],
        ..Default::default()
    });
    api.create(&PostParams::default(), &Backup::new("objects-only", spec))
        .await
        .expect("create Backup");
    let b = finished(&api, "objects-only", 60).await;
    let status = b.status.clone().expect("status");
    assert_eq!(status.phase, BackupPhase::Completed, "{status:?}");
    assert!(
        status.volumes.is_empty(),
        "excluded claims are in the catalog only: {status:?}"
    );
    ctl.stop().await;
}

#[tokio::test]
async fn a_backup_takes_the_data_of_an_rbd_claim_from_the_storage_class_secret() {
    use lifeboat_backup::snapshot::SnapshotDetails;
    use lifeboat_tests::volumes::{bound_claim, ceph_secret, make_image, object};

    let env = env("ctl-rbd").await;
    let ceph = lifeboat_tests::ceph().expect("Ceph from the harness");
    let pool_name = ceph.new_pool("ctlvol").expect("a pool");
    let pool = ceph
        .connect()
        .expect("connect")
        .pool(&pool_name)
        .expect("open pool");
    let image = format!("csi-vol-{:032x}", 0xc0ffee);
    make_image(&pool, &image, 7);
    let key = ceph.admin_key().expect("admin key");
    let secrets: Api<Secret> = env.api();
    secrets
        .create(&PostParams::default(), &ceph_secret("admin", &key))
        .await
        .expect("create Secret");
    let config = json!({"rbd": [{"clusterID": "harness", "monitors": [ceph.mon_addr()]}]}).to_string();
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = env.api();
    cms.create(
        &PostParams::default(),
        &object(json!({"metadata": {"name": "lifeboat-csi-config"}, "data": {"config.json": config}})),
    )
    .await
    .expect("create ConfigMap");
    let class = format!("{}-rbd", env.ns);
    let classes: Api<k8s_openapi::api::storage::v1::StorageClass> = Api::all(env.client());
    classes
        .create(
            &PostParams::default(),
            &object(json!({
                "metadata": {"name": class}, "provisioner": "csi.lifeboat.dev",
                "parameters": {"clusterID": "harness", "pool": pool_name,
                               "csi.storage.k8s.io/provisioner-secret-name": "ceph-provisioner",
                               "csi.storage.k8s.io/provisioner-secret-namespace": env.ns},
            })),
        )
        .await
        .expect("create StorageClass");
    let handle = format!("rbd:harness:{pool_name}:{image}");
    bound_claim(
        &env.client(),
        &env.ns,
        "db",
        &format!("{}-pv", env.ns),
        &class,
        json!({"driver": "csi.lifeboat.dev", "volumeHandle": handle}),
    )
    .await;

    let ctl = env.controller("a").await;
    let api: Api<Backup> = env.api();
    api.create(&PostParams::default(), &objects_backup("with-data", &env.ns))
        .await
        .expect("create Backup");
    let b = finished(&api, "with-data", 120).await;
    let status = b.status.clone().expect("status");
    assert_eq!(status.phase, BackupPhase::Completed, "{status:?}");
    let shown = serde_json::to_string(&b).expect("json");
    assert!(!shown.contains(&key), "the cephx key is in the Backup: {shown}");
    assert_eq!(status.volumes.len(), 1, "{status:?}");
    let v = &status.volumes[0];
    assert_eq!(v.image.as_deref(), Some(image.as_str()), "{v:?}");
    assert_eq!(v.read.as_deref(), Some("full"));
    let id = v.snapshot_id.clone().expect("a volume snapshot");

    let repo = env.open().await;
    let snap = repo
        .find_snapshot(&id)
        .await
        .expect("the volume snapshot is in the repository");
    assert!(matches!(&snap.details, SnapshotDetails::Volume(d) if d.image == image && d.pool == pool_name));
    assert_eq!(
        snap.tags.get("persistentvolumeclaim").map(String::as_str),
        Some(format!("{}/db", env.ns).as_str())
    );

    assert!(
        status.volume_progress.is_empty(),
        "cleared once complete: {status:?}"
    );

    // A Restore into another namespace writes the claim's data into a new image of the
    // class and binds the restored claim to a new volume for it.
    use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
    use lifeboat_controller::crd::{Restore, RestorePhase, RestoreSpec};
    use lifeboat_controller::volumes::RestoredOutcome;
    let copy = format!("{}-copy", env.ns);
    let restores: Api<Restore> = env.api();
    let restore = Restore::new(
        "with-data",
        RestoreSpec {
            backup_name: Some("with-data".into()),
            included_namespaces: vec![env.ns.clone()],
            namespace_mapping: [(env.ns.clone(), copy.clone())].into(),
            ..RestoreSpec::default()
        },
    );
    restores
        .create(&PostParams::default(), &restore)
        .await
        .expect("create Restore");
    let done = eventually("Restore with-data to finish", 120, || {
        let api = restores.clone();
        async move {
            let r = api.get("with-data").await.ok()?;
            r.status.filter(|s| s.phase.is_finished())
        }
    })
    .await;
    assert_eq!(done.phase, RestorePhase::Completed, "{done:?}");
    assert!(done.volume_progress.is_empty(), "{done:?}");
    assert_eq!(done.volumes.len(), 1, "{done:?}");
    let v = &done.volumes[0];
    assert_eq!(v.outcome, RestoredOutcome::Restored, "{v:?}");
    let claim: Api<PersistentVolumeClaim> = Api::namespaced(env.client(), &copy);
    let bound = claim.get("db").await.expect("the restored claim");
    let volume = bound
        .spec
        .and_then(|s| s.volume_name)
        .expect("bound to its new volume");
    assert_eq!(Some(&volume), v.persistent_volume.as_ref());
    let pv: Api<PersistentVolume> = Api::all(env.client());
    pv.get(&volume).await.expect("the new volume");
    let restored = v.image.clone().expect("its image");
    assert!(
        lifeboat_tests::volumes::read_image(&pool, &restored)
            == lifeboat_tests::volumes::read_image(&pool, &image),
        "{restored} differs from {image}"
    );
    let shown = serde_json::to_string(&done).expect("json");
    assert!(!shown.contains(&key), "the cephx key is in the Restore: {shown}");

    // Deleting the Backup (as retention does) forgets its volume snapshot with its objects.
    let objects = status.snapshot_id.clone().expect("an objects snapshot");
    api.delete("with-data", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("Backup with-data to be gone", 60, || {
        let api = api.clone();
        async move { api.get_opt("with-data").await.ok()?.is_none().then_some(()) }
    })
    .await;
    let repo = env.open().await;
    assert!(
        repo.find_snapshot(&objects).await.is_err(),
        "objects snapshot remains"
    );
    assert!(
        repo.find_snapshot(&id).await.is_err(),
        "the Backup's volume snapshot remains after it was deleted"
    );
    ctl.stop().await;
    ceph.delete_pool(&pool_name).expect("delete pool");
}
