//! A plan over three clusters fails over twice — a → b, then b → c — each cluster an API test
//! server in its own network namespace, the repository (backups and federation state) on the
//! harness's Ceph RGW (S3) in one run and on Azurite (Azure Blob) in the other. No `--to`:
//! each failover picks the first healthy standby in the plan's order, so the second one,
//! with a still cut off and b just cut, must pick c. Every failover is confirmed by two
//! observers (an operator's bastion and the laptop running it), restores the newest recovery
//! point its source's holder took (the second one holds what was written on b), and waits for
//! readiness (the test plays the Deployment controller, 1 s late).
//!
//! Needs root and `ip netns`; skips with the reason otherwise.
#![allow(clippy::unwrap_used)] // a test that cannot set up should panic loudly

mod federation_support;

use std::time::Duration;

use federation_support::{
    Drctl, HostCluster, Net, cannot_partition, json_of, play_deployment_controller, ready_node, rpo_rto,
    set_link, text, timeline,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Api;
use kube::api::PostParams;
use lifeboat_tests::repos::{Backend, TestRepo};
use serde_json::{Value, json};

const OBJECTS: usize = 100;

fn verdict(status: &Value, cluster: &str) -> String {
    status
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["cluster"] == cluster)
        .and_then(|r| r["verdict"]["phase"].as_str())
        .unwrap_or_else(|| panic!("no verdict for {cluster}: {status}"))
        .to_string()
}

async fn three_clusters_fail_over_twice(backend: Backend) {
    if let Some(why) = cannot_partition() {
        panic!("run explicitly (it is ignored by default), so network namespaces were expected: {why}");
    }
    lifeboat_tests::kube::kubeconfig::install_crypto_provider();
    let t = TestRepo::new(backend).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut net = Net::new();
    let mut clusters = Vec::new();
    let mut links = Vec::new();
    for name in ["a", "b", "c"] {
        let ns = net.namespace(name);
        let (_, end) = net.link_from_host(&ns);
        clusters.push(HostCluster::start(name, &ns, &[&end.address], dir.path()).await);
        ready_node(&clusters.last().unwrap().client, "node-1", &end.address).await;
        links.push(end);
    }
    let players: Vec<_> = clusters
        .iter()
        .map(|c| play_deployment_controller(c.client.clone(), Duration::from_secs(1)))
        .collect();
    let drctl = Drctl {
        identity: t.identity.clone(),
        home: dir.path().to_path_buf(),
        env: t.drctl_env(),
    };
    let init = drctl
        .run(None, &["repo", "init", "--recipient", &t.recipient])
        .await;
    assert!(init.status.success(), "{}", text(&init));
    for (c, (role, region, cloud)) in clusters.iter().zip([
        ("primary", "eu-west", "aws"),
        ("standby", "us-east", "gcp"),
        ("standby", "ap-south", "azure"),
    ]) {
        let extra = ["--region", region, "--cloud", cloud];
        drctl.register(&c.name, &c.kubeconfig, role, &extra).await;
    }
    let endpoint = match backend {
        Backend::Azurite => format!("azureEndpoint: {}", t.options.azure_endpoint.clone().unwrap()),
        _ => format!("s3Endpoint: {}", t.options.s3_endpoint.clone().unwrap()),
    };
    let plan = format!(
        "apiVersion: lifeboat.dev/v1alpha1
kind: FailoverPlan
metadata: {{name: shop}}
spec:
  applications: [{{name: shop, namespaces: [shop]}}]
  primary: a
  standbys: [b, c]
  repositories: [{{url: \"{url}\", {endpoint}}}]
  rpoSeconds: 300
  rtoSeconds: 60
  readiness: {{timeoutSeconds: 60, workloads: true, volumeClaims: true}}
  health: {{failureThreshold: 3, confirmations: 2, intervalSeconds: 1}}
",
        url = t.url
    );
    let plan_file = dir.path().join("plan.yaml");
    std::fs::write(&plan_file, plan).unwrap();
    let plan_arg = plan_file.to_str().unwrap();

    // The application on a, backed up.
    let a = &clusters[0].client;
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "shop"}})).unwrap();
    Api::<Namespace>::all(a.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    federation_support::application(a, "shop", OBJECTS).await;
    drctl.backup(&clusters[0].kubeconfig, "on-a", "shop", &[]).await;

    let mut epochs = Vec::new();
    let mut extra = 0;
    for (round, (from, to)) in [(0usize, 1usize), (1, 2)].into_iter().enumerate() {
        let (source, target) = (&clusters[from], &clusters[to]);
        set_link(&links[from], false);
        // A second vantage point (an operator's bastion) sees it fail three times: Suspect.
        let bastion = drctl
            .run(
                None,
                &[
                    "cluster",
                    "status",
                    &source.name,
                    "--observer",
                    "ops@bastion",
                    "--probes",
                    "3",
                    "--interval",
                    "1",
                    "-o",
                    "json",
                ],
            )
            .await;
        assert!(bastion.status.success(), "{}", text(&bastion));
        assert_eq!(
            verdict(&json_of(&bastion), &source.name),
            "Suspect",
            "{}",
            text(&bastion)
        );
        // The laptop's failover confirms it and picks the first healthy standby itself.
        let run = drctl
            .run(None, &["failover", "--plan", plan_arg, "-o", "json"])
            .await;
        assert!(run.status.success(), "{}", text(&run));
        let r = json_of(&run);
        assert_eq!(r["phase"], "Succeeded", "{r}");
        assert_eq!(r["plan"]["to"], target.name.as_str(), "{r}");
        let (rpo, rto) = rpo_rto(&r);
        eprintln!(
            "{backend:?} failover {} → {}: RPO {rpo:.2} s, RTO {rto:.2} s; steps:",
            source.name, target.name
        );
        for (step, state, secs) in timeline(&r) {
            eprintln!("  {step:<24} {state:<12} {secs:>6.2} s");
        }
        let epoch = r["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"].to_string().contains("\"fence\""))
            .and_then(|s| s["output"]["epoch"].as_u64())
            .unwrap_or_else(|| panic!("no fence epoch: {r}"));
        epochs.push(epoch);

        // Everything of the newest recovery point is on the target, and it is available.
        let cms: Api<ConfigMap> = Api::namespaced(target.client.clone(), "shop");
        let names: Vec<String> = cms
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|c| c.metadata.name)
            .collect();
        for i in 0..OBJECTS {
            assert!(names.contains(&format!("cm-{i}")), "cm-{i} on {}", target.name);
        }
        for j in 0..extra {
            let name = format!("written-on-b-{j}");
            assert!(names.contains(&name), "{name} on {} (round {round})", target.name);
        }
        let web = Api::<Deployment>::namespaced(target.client.clone(), "shop")
            .get("web")
            .await
            .unwrap();
        assert_eq!(web.status.and_then(|s| s.available_replicas), Some(2));

        if round == 0 {
            // Life goes on at b, and b's backup is the next recovery point.
            extra = 10;
            for j in 0..extra {
                federation_support::config_map(&target.client, "shop", &format!("written-on-b-{j}"), "b")
                    .await;
            }
            drctl.backup(&target.kubeconfig, "on-b", "shop", &[]).await;
        }
    }
    assert_eq!(epochs.len(), 2);
    assert_eq!(
        epochs[1],
        epochs[0] + 1,
        "each failover bumps the epoch once: {epochs:?}"
    );

    // Both failovers, with their epochs, are in the audit log in the repository.
    let audit = drctl.run(None, &["audit", "-o", "json"]).await;
    let log = json_of(&audit);
    let failovers: Vec<(String, String, u64)> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "failover" && a["outcome"] != "started")
        .map(|a| {
            (
                a["from"].as_str().unwrap_or_default().to_string(),
                a["to"].as_str().unwrap_or_default().to_string(),
                a["epoch"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    for ((from, to), epoch) in [("a", "b"), ("b", "c")].into_iter().zip(&epochs) {
        assert!(
            failovers
                .iter()
                .any(|(f, t, e)| f == from && t == to && e == epoch),
            "{from} → {to} at epoch {epoch} in {failovers:?} ({log})"
        );
    }

    for l in &links {
        set_link(l, true);
    }
    for p in players {
        p.abort();
    }
    drop(clusters);
    drop(net);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root and network namespaces (ip netns); scripts/test.sh runs it with --ignored as root"]
async fn three_clusters_fail_over_twice_with_the_repository_on_rgw() {
    three_clusters_fail_over_twice(Backend::Rgw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root and network namespaces (ip netns); scripts/test.sh runs it with --ignored as root"]
async fn three_clusters_fail_over_twice_with_the_repository_on_azurite() {
    three_clusters_fail_over_twice(Backend::Azurite).await;
}
