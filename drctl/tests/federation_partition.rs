//! The partition scenario of issue 20, with each cluster a host of its own: two Kubernetes API
//! test servers, each inside its own network namespace, reached from the test's namespace
//! (the operator's laptop) through a veth pair, and the primary also from the standby's
//! namespace through a direct link. The primary runs the federation agent and, later, the
//! controller (both in this process, reaching it through its link, as they would from
//! inside it).
//!
//! Cut the primary's links → the standby's probes fail three times in a row, and it is only
//! Suspect → the laptop's failover is the second observer that confirms it Failed → the
//! standby takes the fencing lease (epoch bumped) and the application is restored from the
//! newest recovery point, the readiness gates waited on (the test plays the Deployment
//! controller, 2 s late) → the link heals → the old primary's agent reads the higher epoch and
//! fences it: workloads to zero, BackupRepository marked, its controller refuses the next
//! Backup, all in the audit log → fail back: what c2 wrote comes home, the mark is lifted and
//! backups run again.
//!
//! Needs root and `ip netns`; skips with the reason otherwise.
#![allow(clippy::unwrap_used)] // a test that cannot set up should panic loudly

mod federation_support;

use std::sync::Arc;
use std::time::Duration;

use federation_support::{
    Drctl, HostCluster, Net, cannot_partition, config_map, eventually, json_of, play_deployment_controller,
    ready_node, rpo_rto, set_link, text, timeline,
};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};
use lifeboat_controller::crd::{Backup, BackupPhase, BackupRepository};
use lifeboat_federation::crd::FailoverPlan;
use serde_json::{Value, json};

const SYSTEM: &str = lifeboat_controller::DEFAULT_NAMESPACE;
const APP: &str = "shop";

async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let all = lifeboat_controller::crd::all()
        .into_iter()
        .chain(lifeboat_federation::crd::all());
    for c in all {
        api.create(&PostParams::default(), &c).await.unwrap();
        let name = c.name_any();
        eventually(&format!("CRD {name} established"), 30, || {
            let api = api.clone();
            let name = name.clone();
            async move {
                let c = api.get(&name).await.ok()?;
                c.status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                    .then_some(())
            }
        })
        .await;
    }
}

async fn create_namespace(client: &Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

/// The application: `n` ConfigMaps and a Deployment of 2 replicas in namespace `shop`.
async fn application(client: &Client, n: usize) {
    create_namespace(client, APP).await;
    federation_support::application(client, APP, n).await;
}

fn plan_text(repo: &str) -> String {
    format!(
        "apiVersion: lifeboat.dev/v1alpha1
kind: FailoverPlan
metadata:
  name: shop
  namespace: {SYSTEM}
spec:
  applications:
    - name: {APP}
      namespaces: [{APP}]
  primary: c1
  standbys: [c2]
  repositories:
    - url: {repo}
  rpoSeconds: 300
  rtoSeconds: 60
  readiness:
    timeoutSeconds: 60
    workloads: true
    volumeClaims: true
  health:
    failureThreshold: 3
    confirmations: 2
    intervalSeconds: 1
"
    )
}

/// What the primary runs beside its workloads: its namespace, the repository's key Secret,
/// the BackupRepository `default` over the shared repository, and the FailoverPlan.
async fn lifeboat_on_primary(client: &Client, repo: &str, identity: &[u8], plan: &str) {
    install_crds(client).await;
    create_namespace(client, SYSTEM).await;
    let mut secret = Secret::default();
    secret.metadata.name = Some("repo-key".into());
    secret.data = Some([("identity".to_string(), ByteString(identity.to_vec()))].into());
    Api::<Secret>::namespaced(client.clone(), SYSTEM)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let r: BackupRepository = serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupRepository",
        "metadata": {"name": "default"},
        "spec": {"url": repo, "keySecret": {"name": "repo-key"}}
    }))
    .unwrap();
    Api::<BackupRepository>::namespaced(client.clone(), SYSTEM)
        .create(&PostParams::default(), &r)
        .await
        .unwrap();
    let fp = FailoverPlan::parse(plan, "plan").unwrap();
    Api::<FailoverPlan>::namespaced(client.clone(), SYSTEM)
        .create(&PostParams::default(), &fp)
        .await
        .unwrap();
}

/// The federation agent of cluster `c1`, fencing every second.
fn agent(client: Client) -> tokio::sync::oneshot::Sender<()> {
    let mut config = lifeboat_federation::agent::AgentConfig::new("c1", SYSTEM, "agent-c1");
    config.leader_elect = false;
    config.fence_interval = Duration::from_secs(1);
    config.probe_interval = Duration::from_secs(30);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics = Arc::new(lifeboat_controller::metrics::Metrics::new());
    tokio::spawn(lifeboat_federation::agent::run(
        client,
        config,
        metrics,
        async move {
            let _ = stopped.await;
        },
    ));
    stop
}

/// The controller of cluster `c1`, watching Lifeboat's namespace.
fn controller(client: Client) -> tokio::sync::oneshot::Sender<()> {
    let mut config = lifeboat_controller::Config::new(Some(SYSTEM.to_string()), "controller-c1".into());
    config.watch_namespace = Some(SYSTEM.to_string());
    config.lease_duration = Duration::from_secs(3);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics = Arc::new(lifeboat_controller::metrics::Metrics::new());
    let health = Arc::new(lifeboat_controller::http::Health::default());
    tokio::spawn(async move {
        let _ = lifeboat_controller::run(client, config, metrics, health, async move {
            let _ = stopped.await;
        })
        .await;
    });
    stop
}

fn verdict_of(status: &Value, cluster: &str) -> String {
    status
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["cluster"] == cluster)
        .map(|r| r["verdict"]["phase"].as_str().unwrap_or_default().to_string())
        .unwrap_or_else(|| panic!("no row for {cluster}: {status}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root and network namespaces (ip netns); scripts/test.sh runs it with --ignored as root"]
async fn partitioned_primary_is_confirmed_failed_failed_over_and_stays_fenced_after_healing() {
    if let Some(why) = cannot_partition() {
        panic!("run explicitly (it is ignored by default), so network namespaces were expected: {why}");
    }
    lifeboat_tests::kube::kubeconfig::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let mut net = Net::new();
    let ns1 = net.namespace("c1");
    let ns2 = net.namespace("c2");
    let (_, c1_end) = net.link_from_host(&ns1);
    let (_, c2_end) = net.link_from_host(&ns2);
    let (_, c1_from_c2) = net.link(&ns2, &ns1);
    let c1 = HostCluster::start("c1", &ns1, &[&c1_end.address, &c1_from_c2.address], dir.path()).await;
    let c2 = HostCluster::start("c2", &ns2, &[&c2_end.address], dir.path()).await;
    let k1_from_c2 = c1.kubeconfig_via(&c1_from_c2.address, dir.path());
    let cut = |up: bool| {
        set_link(&c1_end, up);
        set_link(&c1_from_c2, up);
    };

    let (identity, public) = lifeboat_tests::repos::make_identity(dir.path(), "me").unwrap();
    let repo_dir = dir.path().join("repo");
    std::fs::create_dir(&repo_dir).unwrap();
    let repo = repo_dir.to_str().unwrap().to_string();
    let drctl = Drctl {
        identity: identity.clone(),
        home: dir.path().to_path_buf(),
        env: Vec::new(),
    };
    let init = drctl
        .run(None, &["repo", "init", "--recipient", &public, "--repo", &repo])
        .await;
    assert!(init.status.success(), "{}", text(&init));
    ready_node(&c1.client, "node-1", &c1_end.address).await;
    ready_node(&c2.client, "node-1", &c2_end.address).await;
    let players = [
        play_deployment_controller(c1.client.clone(), Duration::from_secs(1)),
        play_deployment_controller(c2.client.clone(), Duration::from_secs(2)),
    ];
    for (c, role) in [(&c1, "primary"), (&c2, "standby")] {
        let extra = ["--region", &c.name, "--cloud", "netns", "--repo", &repo];
        drctl.register(&c.name, &c.kubeconfig, role, &extra).await;
    }
    let plan = plan_text(&repo);
    let plan_file = dir.path().join("plan.yaml");
    std::fs::write(&plan_file, &plan).unwrap();
    let plan_arg = plan_file.to_str().unwrap().to_string();
    lifeboat_on_primary(&c1.client, &repo, &std::fs::read(&identity).unwrap(), &plan).await;
    let stop_agent = agent(c1.client.clone());

    // The application on c1 and two backups: the newest holds `late`, written after the first.
    application(&c1.client, 30).await;
    let on_repo = ["--repo", repo.as_str()];
    let backup = |name: &'static str| drctl.backup(&c1.kubeconfig, name, APP, &on_repo);
    backup("first").await;
    config_map(&c1.client, APP, "late", "written after the first backup").await;
    backup("second").await;

    // Before the cut: healthy from the laptop and from the standby's network.
    let laptop = drctl
        .run(None, &["cluster", "status", "-o", "json", "--repo", &repo])
        .await;
    assert!(laptop.status.success(), "{}", text(&laptop));
    let st = json_of(&laptop);
    assert_eq!(verdict_of(&st, "c1"), "Healthy", "{st}");
    assert_eq!(verdict_of(&st, "c2"), "Healthy", "{st}");
    let from_standby = |probes: &'static str| {
        let (drctl, ns2, k1v, repo) = (&drctl, ns2.clone(), k1_from_c2.clone(), repo.clone());
        async move {
            drctl
                .run(
                    Some(&ns2),
                    &[
                        "cluster",
                        "status",
                        "c1",
                        "--observer",
                        "standby@c2",
                        "--kubeconfig-for",
                        &format!("c1={}", k1v.display()),
                        "--probes",
                        probes,
                        "--interval",
                        "1",
                        "-o",
                        "json",
                        "--repo",
                        &repo,
                    ],
                )
                .await
        }
    };
    let seen = from_standby("1").await;
    assert!(seen.status.success(), "{}", text(&seen));
    assert_eq!(
        verdict_of(&json_of(&seen), "c1"),
        "Healthy",
        "the standby reaches c1 through its own link: {}",
        text(&seen)
    );

    // Cut the primary's links.
    cut(false);
    let t_cut = std::time::Instant::now();
    let seen = from_standby("3").await;
    assert!(seen.status.success(), "{}", text(&seen));
    let st = json_of(&seen);
    assert_eq!(
        verdict_of(&st, "c1"),
        "Suspect",
        "three failed probes from one observer make it Suspect, not Failed: {st}"
    );
    let row = st
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["cluster"] == "c1")
        .unwrap();
    assert!(
        row["observers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o[0] == "standby@c2" && o[1] == false && o[2].as_u64() >= Some(3)),
        "{st}"
    );

    // The laptop fails over with no --force: its own probes are the second observer.
    let run = drctl
        .run(
            None,
            &[
                "failover", "--plan", &plan_arg, "--to", "c2", "-o", "json", "--repo", &repo,
            ],
        )
        .await;
    assert!(run.status.success(), "{}", text(&run));
    let r = json_of(&run);
    assert_eq!(r["phase"], "Succeeded", "{r}");
    eprintln!(
        "failover after the cut, {:.1} s after it:",
        t_cut.elapsed().as_secs_f64()
    );
    for (step, state, secs) in timeline(&r) {
        eprintln!("  {step:<24} {state:<12} {secs:>6.2} s");
    }
    let (rpo, rto) = rpo_rto(&r);
    eprintln!("  RPO {rpo:.2} s (recovery point's age at the start), RTO {rto:.2} s (start → ready)");
    assert!(
        rto >= 2.0,
        "RTO includes the 2 s the Deployment took to become available: {r}"
    );
    let steps = r["steps"].as_array().unwrap();
    let output_of = |name: &str| {
        steps
            .iter()
            .find(|s| s["step"].to_string().contains(name))
            .map(|s| s["output"].clone())
            .unwrap_or_else(|| panic!("no step {name}: {r}"))
    };
    let epoch = output_of("fence")["epoch"].as_u64().unwrap();
    assert!(epoch >= 2, "the failover bumped the epoch over c1's: {r}");
    let restored = output_of("restore");
    eprintln!("restored: {restored}");
    let status = drctl
        .run(
            None,
            &[
                "cluster", "status", "c1", "--probes", "1", "-o", "json", "--repo", &repo,
            ],
        )
        .await;
    assert_eq!(
        verdict_of(&json_of(&status), "c1"),
        "Failed",
        "two observers confirmed it: {}",
        text(&status)
    );

    // The application runs on c2 from the newest recovery point, and is available.
    let cms: Api<ConfigMap> = Api::namespaced(c2.client.clone(), APP);
    for i in 0..30 {
        assert_eq!(
            cms.get(&format!("cm-{i}")).await.unwrap().data.unwrap()["v"],
            i.to_string()
        );
    }
    assert!(
        cms.get("late").await.is_ok(),
        "restored from the newest recovery point, which holds `late`"
    );
    let web = Api::<Deployment>::namespaced(c2.client.clone(), APP)
        .get("web")
        .await
        .unwrap();
    assert_eq!(web.status.unwrap().available_replicas, Some(2));

    // Heal the link: c1 comes back, reads the higher epoch and stays fenced.
    cut(true);
    let deployments: Api<Deployment> = Api::namespaced(c1.client.clone(), APP);
    let old = eventually("c1's agent to scale the application to zero", 60, || {
        let deployments = deployments.clone();
        async move {
            let d = deployments.get("web").await.ok()?;
            (d.spec.as_ref()?.replicas == Some(0)).then_some(d)
        }
    })
    .await;
    assert!(
        old.annotations()
            .contains_key("lifeboat.dev/scaled-down-replicas"),
        "the former replica count is recorded: {:?}",
        old.annotations()
    );
    let repos: Api<BackupRepository> = Api::namespaced(c1.client.clone(), SYSTEM);
    let marked = repos.get("default").await.unwrap();
    let mark = marked
        .annotations()
        .get(&format!("fenced.lifeboat.dev/shop.{APP}"))
        .unwrap_or_else(|| panic!("the BackupRepository is marked: {:?}", marked.annotations()))
        .clone();
    assert!(
        mark.contains("\"c2\"") && mark.contains(&format!("\"epoch\":{epoch}")),
        "{mark}"
    );

    // Its controller refuses to back the application up into the shared repository.
    let stop_controller = controller(c1.client.clone());
    let b: Backup = serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "Backup",
        "metadata": {"name": "after-heal"},
        "spec": {"repository": "default", "includedNamespaces": [APP]}
    }))
    .unwrap();
    let backups: Api<Backup> = Api::namespaced(c1.client.clone(), SYSTEM);
    backups.create(&PostParams::default(), &b).await.unwrap();
    let refused = eventually("the controller to refuse the fenced backup", 60, || {
        let backups = backups.clone();
        async move {
            let s = backups.get("after-heal").await.ok()?.status?;
            (s.phase == BackupPhase::Failed).then_some(s)
        }
    })
    .await;
    let why = refused.message.unwrap_or_default();
    assert!(why.contains("fenced") && why.contains("c2"), "{why}");
    // So does drctl, run by hand against it.
    let by_hand = drctl
        .run(
            None,
            &[
                "--kubeconfig",
                c1.kubeconfig.to_str().unwrap(),
                "backup",
                "create",
                "by-hand",
                "--include-namespaces",
                APP,
                "--repo",
                &repo,
            ],
        )
        .await;
    assert_eq!(by_hand.status.code(), Some(1), "{}", text(&by_hand));
    let why = String::from_utf8_lossy(&by_hand.stderr);
    assert!(
        why.contains("fenced") && why.contains("drctl failback"),
        "{}",
        text(&by_hand)
    );
    let snapshots = drctl
        .run(None, &["snapshots", "-o", "json", "--repo", &repo])
        .await;
    assert!(snapshots.status.success(), "{}", text(&snapshots));
    let list = json_of(&snapshots);
    assert_eq!(
        list.as_array().map(Vec::len),
        Some(2),
        "nothing new reached the shared repository from the fenced primary: {list}"
    );

    // It stays fenced: a few fencing rounds later the application is still at zero.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let d = deployments.get("web").await.unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(0), "c1 did not resume");

    // Recorded: the failover (by the laptop) and the enforcement (by c1's agent).
    let audit = drctl.run(None, &["audit", "-o", "json", "--repo", &repo]).await;
    let log = json_of(&audit);
    let entries = log.as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|a| a["action"] == "failover" && a["to"] == "c2"),
        "{log}"
    );
    let enforced = entries
        .iter()
        .find(|a| a["action"] == "fence" && a["outcome"] == "enforced" && a["from"] == "c1")
        .unwrap_or_else(|| panic!("c1's agent recorded its fencing: {log}"));
    assert_eq!(enforced["epoch"].as_u64(), Some(epoch), "{enforced}");
    assert_eq!(enforced["to"], "c2");
    assert!(
        enforced["actor"].as_str().is_some_and(|a| a.contains("c1")),
        "recorded by c1's own agent: {enforced}"
    );

    // Fail back: what was written on c2 meanwhile comes home, c1 holds the lease again (its
    // agent stops fencing it, its controller backs it up again) and c2 is stopped.
    config_map(&c2.client, APP, "written-on-c2", "while failed over").await;
    let back = drctl
        .run(
            None,
            &["failback", "--plan", &plan_arg, "-o", "json", "--repo", &repo],
        )
        .await;
    assert!(back.status.success(), "{}", text(&back));
    let b = json_of(&back);
    assert_eq!(b["phase"], "Succeeded", "{b}");
    let (_, rto_back) = rpo_rto(&b);
    eprintln!("failback c2 → c1: RTO {rto_back:.2} s; steps:");
    for (step, state, secs) in timeline(&b) {
        eprintln!("  {step:<24} {state:<12} {secs:>6.2} s");
    }
    let home: Api<ConfigMap> = Api::namespaced(c1.client.clone(), APP);
    assert!(
        home.get("written-on-c2").await.is_ok(),
        "no data loss on the way home"
    );
    let d = deployments.get("web").await.unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(2), "started again at home");
    let unmarked = repos.get("default").await.unwrap();
    assert!(
        !unmarked
            .annotations()
            .keys()
            .any(|k| k.starts_with("fenced.lifeboat.dev/")),
        "the failback lifted the mark: {:?}",
        unmarked.annotations()
    );
    let b: Backup = serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "Backup",
        "metadata": {"name": "after-failback"},
        "spec": {"repository": "default", "includedNamespaces": [APP]}
    }))
    .unwrap();
    backups.create(&PostParams::default(), &b).await.unwrap();
    eventually("the controller to back the application up again", 60, || {
        let backups = backups.clone();
        async move {
            let s = backups.get("after-failback").await.ok()?.status?;
            assert_ne!(s.phase, BackupPhase::Failed, "{:?}", s.message);
            (s.phase == BackupPhase::Completed).then_some(())
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let d = deployments.get("web").await.unwrap();
    assert_eq!(
        d.spec.unwrap().replicas,
        Some(2),
        "c1's agent holds the lease again, fences nothing"
    );
    let away = Api::<Deployment>::namespaced(c2.client.clone(), APP)
        .get("web")
        .await
        .unwrap();
    assert_eq!(away.spec.unwrap().replicas, Some(0), "c2 is stopped");

    let _ = stop_controller.send(());
    let _ = stop_agent.send(());
    for p in players {
        p.abort();
    }
    drop(c1);
    drop(c2);
    drop(net);
}
