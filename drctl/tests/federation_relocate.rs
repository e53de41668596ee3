//! The planned directions: `drctl relocate` (quiesce the source, final incremental backup,
//! fence it, restore on the target, start, wait ready, unfence) loses nothing — objects
//! written and changed just before it, in no scheduled backup, are on the target. A move
//! whose final backup fails restarts the source (nothing was fenced), and its `--resume`
//! stops and backs it up again. `drctl failback` brings the application, with what was
//! written meanwhile, home to the plan's primary, after a first attempt whose restore failed
//! once the lease had moved, which leaves the source stopped. Two API test servers on
//! loopback; the test plays the Deployment controller (1.5 s late), so the readiness gates
//! and the quiesce are waited on.
#![allow(clippy::unwrap_used)] // a test that cannot set up should panic loudly

mod federation_support;

use std::time::Duration;

use federation_support::{Drctl, json_of, play_deployment_controller, ready_node, rpo_rto, text, timeline};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use lifeboat_tests::kube::TestCluster;
use serde_json::{Value, json};

/// Creates or changes ConfigMap `name`'s `data.v`.
async fn put(client: &Client, ns: &str, name: &str, value: &str) {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    if api.get_opt(name).await.unwrap().is_some() {
        let change = json!({"data": {"v": value}});
        api.patch(name, &PatchParams::default(), &Patch::Merge(change))
            .await
            .unwrap();
    } else {
        federation_support::config_map(client, ns, name, value).await;
    }
}

async fn value(client: &Client, ns: &str, name: &str) -> Option<String> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    api.get_opt(name)
        .await
        .unwrap()
        .and_then(|c| c.data)
        .and_then(|d| d.get("v").cloned())
}

async fn replicas(client: &Client, ns: &str) -> (Option<i32>, Option<i32>) {
    let d = Api::<Deployment>::namespaced(client.clone(), ns)
        .get("web")
        .await
        .unwrap();
    (
        d.spec.and_then(|s| s.replicas),
        d.status.and_then(|s| s.available_replicas),
    )
}

fn step_names(v: &Value) -> Vec<String> {
    v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| match &s["step"] {
            Value::String(x) => x.clone(),
            o => o["step"].as_str().unwrap_or_default().to_string(),
        })
        .collect()
}

fn fence_epoch(run: &Value) -> u64 {
    run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"].to_string().contains("fence") && !s["step"].to_string().contains("unfence"))
        .and_then(|s| s["output"]["epoch"].as_u64())
        .unwrap_or_else(|| panic!("no fence step with an epoch: {run}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relocate_loses_nothing_and_failback_brings_it_home() {
    let c1 = TestCluster::in_process().await.unwrap();
    let c2 = TestCluster::in_process().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (identity, public) = lifeboat_tests::repos::make_identity(dir.path(), "me").unwrap();
    let repo_dir = dir.path().join("repo");
    std::fs::create_dir(&repo_dir).unwrap();
    let repo = repo_dir.to_str().unwrap().to_string();
    let drctl = Drctl {
        identity,
        home: dir.path().to_path_buf(),
        env: Vec::new(),
    };
    let init = drctl
        .run(None, &["repo", "init", "--recipient", &public, "--repo", &repo])
        .await;
    assert!(init.status.success(), "{}", text(&init));
    ready_node(&c1.client(), "node-1", "10.0.1.1").await;
    ready_node(&c2.client(), "node-1", "10.0.2.1").await;
    let players = [
        play_deployment_controller(c1.client(), Duration::from_millis(1500)),
        play_deployment_controller(c2.client(), Duration::from_millis(1500)),
    ];
    let k1 = c1.kubeconfig_path().unwrap();
    let k2 = c2.kubeconfig_path().unwrap();
    drctl.register("c1", k1, "primary", &["--repo", &repo]).await;
    drctl.register("c2", k2, "standby", &["--repo", &repo]).await;

    // The application on c1, and the scheduled backup of it.
    let ns = c1.namespace("shop").await.unwrap();
    federation_support::application(&c1.client(), &ns, 40).await;
    drctl.backup(k1, "scheduled", &ns, &["--repo", &repo]).await;
    let plan = format!(
        "apiVersion: lifeboat.dev/v1alpha1
kind: FailoverPlan
metadata: {{name: shop}}
spec:
  applications: [{{name: shop, namespaces: [{ns}]}}]
  primary: c1
  standbys: [c2]
  repositories: [{{url: {repo}}}]
  rpoSeconds: 300
  rtoSeconds: 60
  readiness: {{timeoutSeconds: 60, workloads: true, volumeClaims: true}}
"
    );
    let plan_file = dir.path().join("plan.yaml");
    std::fs::write(&plan_file, plan).unwrap();
    let plan_arg = plan_file.to_str().unwrap();

    // Bad input: an unregistered target, and failback while the primary already holds it.
    let nowhere = drctl
        .run(None, &["relocate", "--plan", plan_arg, "--to", "c9"])
        .await;
    assert_eq!(nowhere.status.code(), Some(1), "{}", text(&nowhere));
    assert!(
        String::from_utf8_lossy(&nowhere.stderr).contains("c9"),
        "{}",
        text(&nowhere)
    );
    let home = drctl.run(None, &["failback", "--plan", plan_arg]).await;
    assert_eq!(home.status.code(), Some(1), "{}", text(&home));
    assert!(
        String::from_utf8_lossy(&home.stderr).contains("c1"),
        "{}",
        text(&home)
    );

    // The dry run: quiesce and the final backup come before the fence and the restore.
    let dry = drctl
        .run(
            None,
            &[
                "relocate",
                "--plan",
                plan_arg,
                "--to",
                "c2",
                "--dry-run",
                "-o",
                "json",
            ],
        )
        .await;
    assert!(dry.status.success(), "{}", text(&dry));
    let steps = step_names(&json_of(&dry));
    let at = |s: &str| {
        steps
            .iter()
            .position(|x| x == s)
            .unwrap_or_else(|| panic!("{s} in {steps:?}"))
    };
    assert!(
        at("quiesce") < at("finalBackup")
            && at("finalBackup") < at("restoreObjects")
            && at("fence") < at("startWorkloads")
            && at("waitReady") < at("unfence"),
        "{steps:?}"
    );

    // The application runs on c1 (its pods up), and is written to just before the relocate:
    // those writes are in no backup but the final one.
    federation_support::eventually("web available on c1", 30, || async {
        (replicas(&c1.client(), &ns).await == (Some(2), Some(2))).then_some(())
    })
    .await;
    for i in 0..5 {
        put(&c1.client(), &ns, &format!("just-before-{i}"), "late").await;
    }
    put(&c1.client(), &ns, "cm-0", "changed just before").await;

    // A move whose final backup cannot be taken (c1 answers every ConfigMap read with 500)
    // fails before the lease moves, and starts the application on c1 again: nothing was
    // fenced or moved, so the application is not left down.
    let faults = c1.faults().unwrap();
    faults.fail_matching(500, 100_000, Some("GET"), "/configmaps");
    let failed = drctl
        .run(
            None,
            &["relocate", "--plan", plan_arg, "--to", "c2", "-o", "json"],
        )
        .await;
    faults.clear_failures();
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    assert!(
        text(&failed).contains("runs on c1 again"),
        "the restart is reported: {}",
        text(&failed)
    );
    federation_support::eventually("web running on c1 again", 30, || async {
        (replicas(&c1.client(), &ns).await == (Some(2), Some(2))).then_some(())
    })
    .await;
    assert!(
        value(&c2.client(), &ns, "cm-0").await.is_none(),
        "nothing was restored on c2"
    );
    // The application writes again; the resumed move stops it and backs it up once more.
    put(&c1.client(), &ns, "after-restart", "late too").await;
    let moved = drctl
        .run(
            None,
            &[
                "relocate", "--plan", plan_arg, "--to", "c2", "--resume", "-o", "json",
            ],
        )
        .await;
    assert!(moved.status.success(), "{}", text(&moved));
    let r = json_of(&moved);
    assert_eq!(r["phase"], "Succeeded", "{r}");
    let (rpo, rto) = rpo_rto(&r);
    eprintln!("relocate c1 → c2: RPO {rpo:.2} s, RTO {rto:.2} s; steps:");
    for (step, state, secs) in timeline(&r) {
        eprintln!("  {step:<24} {state:<12} {secs:>6.2} s");
    }
    let quiesce = timeline(&r)
        .into_iter()
        .find(|(s, _, _)| s == "quiesce")
        .map(|(_, _, secs)| secs)
        .unwrap();
    assert!(
        quiesce >= 1.2,
        "the quiesce waited for the pods to stop (1.5 s) before the final backup: {r}"
    );
    // The planned RPO is the final backup's: it is restored, not the scheduled one.
    let final_backup = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"].to_string().contains("finalBackup"))
        .map(|s| s["output"]["snapshot"].as_str().unwrap().to_string())
        .unwrap();
    let restored = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"].to_string().contains("restoreObjects"))
        .map(|s| s["output"]["restored"]["snapshot"].as_str().unwrap().to_string())
        .unwrap();
    assert_eq!(
        restored, final_backup,
        "the final backup is what is restored: {r}"
    );
    assert!(
        rpo == 0.0,
        "a planned relocate restores a backup taken after quiescing: {r}"
    );

    // No data loss: every object, including those written just before, as last written.
    for i in 0..40 {
        let want = if i == 0 {
            "changed just before".to_string()
        } else {
            i.to_string()
        };
        assert_eq!(
            value(&c2.client(), &ns, &format!("cm-{i}")).await,
            Some(want),
            "cm-{i}"
        );
    }
    for i in 0..5 {
        assert_eq!(
            value(&c2.client(), &ns, &format!("just-before-{i}"))
                .await
                .as_deref(),
            Some("late"),
            "just-before-{i} was written just before the relocate"
        );
    }
    assert_eq!(
        value(&c2.client(), &ns, "after-restart").await.as_deref(),
        Some("late too"),
        "written after the failed move restarted c1: the resumed move backed it up again"
    );
    assert_eq!(
        replicas(&c2.client(), &ns).await,
        (Some(2), Some(2)),
        "ready on c2"
    );
    let (spec, _) = replicas(&c1.client(), &ns).await;
    assert_eq!(spec, Some(0), "the source is quiesced and fenced");
    let relocate_epoch = fence_epoch(&r);

    // Life goes on at c2; then failback brings it home with what was written there.
    put(&c2.client(), &ns, "written-on-c2", "while relocated").await;
    put(&c2.client(), &ns, "cm-1", "changed on c2").await;
    // A failback whose restore fails at home (c1 answers ConfigMap calls with 500) fails
    // after the lease moved to c1: c2 is not started again (that would be two holders), and
    // the run says so; --resume finishes it once c1 answers.
    let faults = c1.faults().unwrap();
    faults.fail_matching(500, 100_000, None, "/configmaps");
    let stuck = drctl
        .run(None, &["failback", "--plan", plan_arg, "-o", "json"])
        .await;
    faults.clear_failures();
    assert_eq!(stuck.status.code(), Some(1), "{}", text(&stuck));
    assert!(
        text(&stuck).contains("c1 holds the lease of shop now: shop stays stopped on c2"),
        "{}",
        text(&stuck)
    );
    assert_eq!(replicas(&c2.client(), &ns).await.0, Some(0), "c2 stays stopped");
    let back = drctl
        .run(None, &["failback", "--plan", plan_arg, "--resume", "-o", "json"])
        .await;
    assert!(back.status.success(), "{}", text(&back));
    let b = json_of(&back);
    assert_eq!(b["phase"], "Succeeded", "{b}");
    let (_, rto_back) = rpo_rto(&b);
    eprintln!("failback c2 → c1: RTO {rto_back:.2} s; steps:");
    for (step, state, secs) in timeline(&b) {
        eprintln!("  {step:<24} {state:<12} {secs:>6.2} s");
    }
    assert_eq!(
        fence_epoch(&b),
        relocate_epoch + 1,
        "each direction takes the lease over once"
    );
    assert_eq!(
        value(&c1.client(), &ns, "written-on-c2").await.as_deref(),
        Some("while relocated")
    );
    assert_eq!(
        value(&c1.client(), &ns, "cm-1").await.as_deref(),
        Some("changed on c2")
    );
    assert_eq!(
        value(&c1.client(), &ns, "just-before-4").await.as_deref(),
        Some("late")
    );
    assert_eq!(
        replicas(&c1.client(), &ns).await,
        (Some(2), Some(2)),
        "the former replica count is restored at home and available"
    );
    let (spec, _) = replicas(&c2.client(), &ns).await;
    assert_eq!(spec, Some(0), "c2 is quiesced and fenced now");
    let web = Api::<Deployment>::namespaced(c1.client(), &ns)
        .get("web")
        .await
        .unwrap();
    assert!(
        !web.annotations()
            .contains_key("lifeboat.dev/scaled-down-replicas"),
        "started again, the note is gone: {:?}",
        web.annotations()
    );

    let audit = drctl.run(None, &["audit", "-o", "json", "--repo", &repo]).await;
    let log = json_of(&audit);
    let actions: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["action"].as_str())
        .collect();
    for want in ["relocate", "failback"] {
        assert!(actions.contains(&want), "{want} in {actions:?}");
    }
    for p in players {
        p.abort();
    }
}
