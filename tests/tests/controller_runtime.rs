//! The controller process: leader election between two controllers, and `/metrics`,
//! `/healthz`, `/readyz`.
//!
//! ```sh
//! cargo test -p lifeboat-tests --test controller_runtime
//! ```

mod controller_support;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use lifeboat_controller::LEASE_NAME;
use lifeboat_controller::crd::{Backup, BackupPhase, BackupSpec};

use controller_support::*;

fn backup(name: &str, ns: &str) -> Backup {
    Backup::new(
        name,
        BackupSpec {
            repository: REPO.into(),
            included_namespaces: vec![ns.to_string()],
            ..BackupSpec::default()
        },
    )
}

async fn completed(api: &Api<Backup>, name: &str) {
    eventually(&format!("Backup {name} to complete"), 60, || {
        let api = api.clone();
        async move {
            let s = api.get(name).await.ok()?.status?;
            (s.phase == BackupPhase::Completed).then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn only_the_leader_reconciles_and_a_successor_takes_over() {
    let env = env("ctl-leader").await;
    env.config_maps(1).await;
    let a = env.controller("ctl-a").await;
    let b = env.controller("ctl-b").await;
    eventually("both to know who leads", 30, || async {
        (a.health.is_ready() && b.health.is_ready()).then_some(())
    })
    .await;
    assert!(
        a.health.is_leading() ^ b.health.is_leading(),
        "exactly one leads (a: {}, b: {})",
        a.health.is_leading(),
        b.health.is_leading()
    );
    let (leader, follower, leader_id, follower_id) = if a.health.is_leading() {
        (a, b, "ctl-a", "ctl-b")
    } else {
        (b, a, "ctl-b", "ctl-a")
    };
    let leases: Api<Lease> = env.api();
    let lease = leases.get(LEASE_NAME).await.expect("the Lease exists");
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some(leader_id)
    );

    let api: Api<Backup> = env.api();
    api.create(&PostParams::default(), &backup("one", &env.ns))
        .await
        .expect("create");
    completed(&api, "one").await;
    let (_, leader_metrics) = leader.get("/metrics").await;
    let (_, follower_metrics) = follower.get("/metrics").await;
    assert!(
        leader_metrics.contains(r#"lifeboat_attempts_total{operation="backup"} 1"#),
        "{leader_metrics}"
    );
    assert!(
        follower_metrics.contains(r#"lifeboat_attempts_total{operation="backup"} 0"#),
        "the follower reconciled: {follower_metrics}"
    );
    assert!(
        follower_metrics.contains("lifeboat_leader 0"),
        "{follower_metrics}"
    );

    // The leader steps down (releasing the Lease); the follower takes over and reconciles.
    leader.stop().await;
    eventually("the follower to lead", 30, || async {
        follower.health.is_leading().then_some(())
    })
    .await;
    let lease = leases.get(LEASE_NAME).await.expect("the Lease");
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some(follower_id)
    );
    api.create(&PostParams::default(), &backup("two", &env.ns))
        .await
        .expect("create");
    completed(&api, "two").await;
    follower.stop().await;
}

#[tokio::test]
async fn metrics_and_health_endpoints_answer() {
    let env = env("ctl-metrics").await;
    env.config_maps(2).await;
    let ctl = env.controller("a").await;
    assert_eq!(ctl.get("/healthz").await.0, 200);
    eventually("/readyz to answer 200", 30, || async {
        (ctl.get("/readyz").await.0 == 200).then_some(())
    })
    .await;
    let api: Api<Backup> = env.api();
    api.create(&PostParams::default(), &backup("measured", &env.ns))
        .await
        .expect("create");
    completed(&api, "measured").await;
    let (code, text) = ctl.get("/metrics").await;
    assert_eq!(code, 200);
    for want in [
        r#"lifeboat_attempts_total{operation="backup"} 1"#,
        r#"lifeboat_duration_seconds_count{operation="backup",result="Completed"} 1"#,
        r#"lifeboat_items_total{operation="backup"}"#,
        r#"lifeboat_bytes_total{operation="backup"}"#,
        "lifeboat_leader 1",
    ] {
        assert!(text.contains(want), "/metrics lacks {want:?}:\n{text}");
    }
    assert!(!text.contains("AGE-SECRET-KEY"), "key material in metrics");
    assert_eq!(ctl.get("/nope").await.0, 404);
    ctl.stop().await;
}

#[tokio::test]
async fn a_leader_whose_lease_is_taken_stops_reconciling() {
    let env = env("ctl-lost").await;
    let ctl = env.controller("holder").await;
    eventually("the controller to lead", 30, || async {
        ctl.health.is_leading().then_some(())
    })
    .await;
    // Another process takes the Lease (as after a partition): the holder must step down.
    let leases: Api<Lease> = env.api();
    let mut lease = leases.get(LEASE_NAME).await.expect("Lease");
    if let Some(spec) = lease.spec.as_mut() {
        spec.holder_identity = Some("intruder".into());
        spec.lease_duration_seconds = Some(60);
        spec.renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
            k8s_openapi::jiff::Timestamp::now(),
        ));
    }
    leases
        .replace(LEASE_NAME, &PostParams::default(), &lease)
        .await
        .expect("take the Lease");
    eventually("the old holder to step down", 10, || async {
        (!ctl.health.is_leading()).then_some(())
    })
    .await;
    let (_, text) = ctl.get("/metrics").await;
    assert!(text.contains("lifeboat_leader 0"), "{text}");
    // While it does not lead, nothing is reconciled.
    let api: Api<Backup> = env.api();
    api.create(&PostParams::default(), &backup("unattended", &env.ns))
        .await
        .expect("create");
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let b = api.get("unattended").await.expect("get");
    assert!(
        b.status.is_none() && b.metadata.finalizers.is_none(),
        "a follower reconciled: {b:?}"
    );
    ctl.stop().await;
}
