//! The planner over three clusters: who is chosen, what is refused and why, and the order of
//! the steps (fence before restore, traffic only after readiness, nothing fenced in a drill).

use super::*;
use crate::crd::{Application, FailoverPlanSpec, PlanRepository, TrafficHook};

fn at(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + s, 0).expect("time")
}

fn plan_of_three() -> FailoverPlan {
    FailoverPlan::new(
        "shop",
        FailoverPlanSpec {
            applications: vec![Application {
                name: "shop".into(),
                namespaces: vec!["shop".into()],
                ..Application::default()
            }],
            primary: "c1".into(),
            standbys: vec!["c2".into(), "c3".into()],
            repositories: vec![PlanRepository {
                url: "/r".into(),
                ..PlanRepository::default()
            }],
            rpo_seconds: Some(30),
            rto_seconds: Some(60),
            traffic: vec![TrafficHook {
                name: "dns".into(),
                command: Some(vec!["true".into()]),
                ..TrafficHook::default()
            }],
            ..FailoverPlanSpec::default()
        },
    )
}

fn view(reachable: bool, verdict: Verdict) -> ClusterView {
    ClusterView {
        registered: true,
        reachable,
        verdict,
        ceph: false,
    }
}

fn failed() -> Verdict {
    Verdict::Failed {
        confirmed_by: vec!["agent@c2".into(), "drctl@laptop".into()],
        since: Some(at(-60)),
    }
}

/// c1 confirmed failed and unreachable, c2 and c3 healthy; a recovery point 10 s old.
fn observed(holder: Option<(&str, u64)>) -> Observed {
    Observed {
        now: at(0),
        clusters: BTreeMap::from([
            ("c1".to_string(), view(false, failed())),
            ("c2".to_string(), view(true, Verdict::Healthy)),
            ("c3".to_string(), view(true, Verdict::Healthy)),
        ]),
        holders: BTreeMap::from([("shop".to_string(), holder.map(|(h, e)| (h.to_string(), e)))]),
        recovery_points: BTreeMap::from([(
            "shop".to_string(),
            Some(RecoveryPoint {
                id: "ab".repeat(32),
                repository: "/r".into(),
                time: at(-10),
                cluster: Some("c1".into()),
            }),
        )]),
        namespaces: BTreeMap::new(),
        volumes: false,
    }
}

fn names(p: &Plan) -> Vec<&'static str> {
    p.steps
        .iter()
        .map(|s| match s {
            Step::Preflight { .. } => "preflight",
            Step::Quiesce { .. } => "quiesce",
            Step::FinalBackup { .. } => "finalBackup",
            Step::Fence { .. } => "fence",
            Step::StopSource { .. } => "stopSource",
            Step::Blocklist { .. } => "blocklist",
            Step::Unblocklist { .. } => "unblocklist",
            Step::RestoreObjects { .. } => "restoreObjects",
            Step::StartWorkloads { .. } => "startWorkloads",
            Step::WaitReady { .. } => "waitReady",
            Step::SwitchTraffic { .. } => "switchTraffic",
            Step::Unfence { .. } => "unfence",
            Step::VerifyVolumes { .. } => "verifyVolumes",
            Step::Verify { .. } => "verify",
            Step::Teardown { .. } => "teardown",
            Step::RestartSource { .. } => "restartSource",
        })
        .collect()
}

fn request(kind: Kind, to: Option<&str>) -> Request {
    Request {
        kind: Some(kind),
        to: to.map(str::to_string),
        ..Request::default()
    }
}

#[test]
fn a_failover_goes_to_the_first_healthy_standby_fences_first_and_switches_traffic_last() {
    let fp = plan_of_three();
    let p = plan(&request(Kind::Failover, None), &fp, &observed(None)).expect("plan");
    assert_eq!((p.from.as_deref(), p.to.as_str()), (Some("c1"), "c2"));
    assert_eq!(
        names(&p),
        [
            "preflight",
            "fence",
            "restoreObjects",
            "startWorkloads",
            "waitReady",
            "switchTraffic",
            "unfence"
        ],
        "the unreachable c1 gets no stopSource step (its agent stops it when it sees the epoch)"
    );
    assert!(
        p.warnings.iter().any(|w| w.contains("c1 is unreachable")),
        "{:?}",
        p.warnings
    );
    assert_eq!(p.recovery_points["shop"].as_ref().map(|r| r.time), Some(at(-10)));

    // c2 is down too: the next standby in order.
    let mut o = observed(None);
    o.clusters.insert("c2".into(), view(false, Verdict::Unknown));
    let p = plan(&request(Kind::Failover, None), &fp, &o).expect("plan");
    assert_eq!(p.to, "c3");
}

#[test]
fn a_second_failover_over_three_clusters_moves_from_the_new_holder() {
    let fp = plan_of_three();
    // c2 took over at epoch 2; now c2 is confirmed failed and c1 is back (but fenced).
    let mut o = observed(Some(("c2", 2)));
    o.clusters.insert("c1".into(), view(true, Verdict::Healthy));
    o.clusters.insert("c2".into(), view(false, failed()));
    let p = plan(&request(Kind::Failover, None), &fp, &o).expect("plan");
    assert_eq!(
        (p.from.as_deref(), p.to.as_str()),
        (Some("c2"), "c3"),
        "standbys first, in order"
    );
    let to_primary = plan(&request(Kind::Failover, Some("c1")), &fp, &o).expect("plan");
    assert_eq!(to_primary.to, "c1");
}

#[test]
fn a_failover_from_a_cluster_not_confirmed_failed_is_refused_unless_forced() {
    let fp = plan_of_three();
    let mut o = observed(None);
    o.clusters.insert(
        "c1".into(),
        view(
            false,
            Verdict::Suspect {
                failing: vec![("agent@c2".into(), 3)],
                need: 1,
            },
        ),
    );
    let e = plan(&request(Kind::Failover, None), &fp, &o).expect_err("one observer is not enough");
    assert!(matches!(e, PlanError::SourceNotFailed { .. }), "{e}");
    assert!(
        e.to_string().contains("relocate") && e.to_string().contains("forced"),
        "{e}"
    );
    assert!(
        matches!(e.advice(), Some(crate::advice::Advice::RelocateOrForce { .. })),
        "{e}"
    );
    let forced = Request {
        force: true,
        ..request(Kind::Failover, None)
    };
    let p = plan(&forced, &fp, &o).expect("forced");
    assert!(
        p.warnings.iter().any(|w| w.contains("the run is forced")),
        "{:?}",
        p.warnings
    );
}

#[test]
fn a_drill_fences_nothing_switches_no_traffic_and_tears_down() {
    let fp = plan_of_three();
    let mut o = observed(None);
    o.clusters.insert("c1".into(), view(true, Verdict::Healthy));
    let r = Request {
        namespace_suffix: Some("-drill".into()),
        ..request(Kind::Drill, Some("c2"))
    };
    let p = plan(&r, &fp, &o).expect("plan");
    assert_eq!(
        names(&p),
        [
            "preflight",
            "restoreObjects",
            "startWorkloads",
            "waitReady",
            "verify",
            "teardown"
        ]
    );
    assert_eq!(p.namespace_mapping["shop"], "shop-drill");
    // With volume data, it is read back before anything starts on it.
    o.volumes = true;
    assert_eq!(
        names(&plan(&r, &fp, &o).expect("plan")),
        [
            "preflight",
            "restoreObjects",
            "verifyVolumes",
            "startWorkloads",
            "waitReady",
            "verify",
            "teardown"
        ]
    );
    o.volumes = false;
    // The drill namespace already exists there: refused, naming the fix.
    o.namespaces
        .insert("c2".into(), BTreeSet::from(["shop-drill".to_string()]));
    let e = plan(&r, &fp, &o).expect_err("clash");
    assert!(
        e.to_string().contains("already has namespace(s) shop-drill"),
        "{e}"
    );
    assert_eq!(
        e.advice(),
        Some(crate::advice::Advice::DrillBesideTheApplications)
    );
    // Without a suffix into the holder itself: refused.
    let e = plan(&request(Kind::Drill, Some("c1")), &fp, &o).expect_err("holder");
    assert!(
        matches!(&e, PlanError::DrillIntoHolder { cluster } if cluster == "c1"),
        "{e}"
    );
    assert_eq!(
        e.advice(),
        Some(crate::advice::Advice::DrillBesideTheApplications)
    );
}

#[test]
fn a_relocate_quiesces_and_backs_up_last_and_needs_the_source() {
    let fp = plan_of_three();
    let mut o = observed(None);
    o.clusters.insert("c1".into(), view(true, Verdict::Healthy));
    let p = plan(&request(Kind::Relocate, Some("c3")), &fp, &o).expect("plan");
    assert_eq!(
        names(&p),
        [
            "preflight",
            "quiesce",
            "finalBackup",
            "fence",
            "stopSource",
            "restoreObjects",
            "startWorkloads",
            "waitReady",
            "switchTraffic",
            "unfence",
            "restartSource"
        ],
        "restartSource runs only if the move fails before the lease moves"
    );
    assert!(
        p.steps.iter().any(|s| matches!(
            s,
            Step::RestoreObjects {
                recovery_point: RecoveryPointRef::FinalBackup,
                ..
            }
        )),
        "a planned move restores the final backup, so nothing is lost"
    );
    o.clusters.insert("c1".into(), view(false, failed()));
    let e = plan(&request(Kind::Relocate, Some("c3")), &fp, &o).expect_err("source gone");
    assert!(matches!(e, PlanError::SourceUnreachable { .. }), "{e}");
}

#[test]
fn bad_requests_name_the_fix() {
    let fp = plan_of_three();
    let e = plan(&request(Kind::Failover, Some("c9")), &fp, &observed(None)).expect_err("unknown");
    assert!(e.to_string().contains("c1, c2, c3"), "{e}");
    let e = plan(
        &request(Kind::Failover, Some("c2")),
        &fp,
        &observed(Some(("c2", 2))),
    )
    .expect_err("holder");
    assert!(matches!(e, PlanError::AlreadyHolder { epoch: 2, .. }), "{e}");
    let mut o = observed(None);
    o.recovery_points.insert("shop".into(), None);
    let e = plan(&request(Kind::Failover, None), &fp, &o).expect_err("no backup");
    assert!(e.to_string().contains("back it up and try again"), "{e}");
    assert_eq!(e.advice(), Some(crate::advice::Advice::BackUpApplication));
    // A recovery point older than the RPO is used, with a warning.
    let mut o = observed(None);
    if let Some(Some(rp)) = o.recovery_points.get_mut("shop") {
        rp.time = at(-120);
    }
    let p = plan(&request(Kind::Failover, None), &fp, &o).expect("plan");
    assert!(
        p.warnings.iter().any(|w| w.contains("beyond the RPO of 30 s")),
        "{:?}",
        p.warnings
    );
}

#[test]
fn errors_carry_advice_and_name_no_command() {
    let fp = plan_of_three();
    // A failback goes to the primary only: relocate to anywhere else.
    let e = plan(
        &request(Kind::Failback, Some("c3")),
        &fp,
        &observed(Some(("c2", 2))),
    )
    .expect_err("not primary");
    assert!(
        matches!(&e, PlanError::NotThePrimary { cluster, .. } if cluster == "c3"),
        "{e}"
    );
    assert!(
        matches!(e.advice(), Some(crate::advice::Advice::RelocateTo { ref to, .. }) if to == "c3"),
        "{e}"
    );
    // A target the federation does not know: register it.
    let mut o = observed(None);
    if let Some(v) = o.clusters.get_mut("c2") {
        v.registered = false;
    }
    let e = plan(&request(Kind::Failover, Some("c2")), &fp, &o).expect_err("unregistered");
    assert_eq!(
        e.advice(),
        Some(crate::advice::Advice::RegisterClusters {
            clusters: vec!["c2".into()]
        })
    );
    for e in [
        e,
        plan(
            &request(Kind::Failback, Some("c3")),
            &fp,
            &observed(Some(("c2", 2))),
        )
        .expect_err("x"),
    ] {
        assert!(
            !e.to_string().contains("drctl") && !e.to_string().contains("--"),
            "{e}"
        );
    }
}
