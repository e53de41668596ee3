//! `drctl cluster`, `drctl drill`, `drctl failover` and `drctl audit` with no controller
//! anywhere: two clusters (two Kubernetes API test servers on loopback) and one local
//! repository holding the backups and the federation state. The test plays the workload
//! controllers' part: it marks Deployments available a realistic delay after they appear, so
//! the readiness gates are waited on, not skipped.
#![allow(clippy::unwrap_used)] // a test that cannot set up should panic loudly

mod federation_support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use federation_support::{json_of, play_deployment_controller, ready_node, text};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::{Api, ResourceExt};
use lifeboat_tests::kube::TestCluster;
use serde_json::Value;

struct Env {
    repo: PathBuf,
    identity: PathBuf,
    dir: tempfile::TempDir,
}

impl Env {
    fn drctl(&self, kubeconfig: Option<&PathBuf>, args: &[&str]) -> Command {
        let mut c = Command::cargo_bin("drctl").unwrap();
        c.env_remove("KUBECONFIG")
            .env_remove("DRCTL_REPO")
            .env("HOME", self.dir.path())
            .env("DRCTL_IDENTITY", &self.identity)
            .arg("--quiet");
        if let Some(k) = kubeconfig {
            c.arg("--kubeconfig").arg(k);
        }
        c.args(args).arg("--repo").arg(&self.repo);
        c
    }
}

async fn run(mut c: Command) -> Output {
    tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap()
}

async fn application(c1: &TestCluster, n: usize) -> String {
    let ns = c1.namespace("shop").await.unwrap();
    federation_support::application(&c1.client(), &ns, n).await;
    ns
}

fn write_plan(dir: &Path, ns: &str, repo: &Path) -> PathBuf {
    let plan = format!(
        "apiVersion: lifeboat.dev/v1alpha1
kind: FailoverPlan
metadata:
  name: shop
spec:
  applications:
    - name: shop
      namespaces: [{ns}]
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
",
        repo = repo.display()
    );
    let path = dir.join("plan.yaml");
    std::fs::write(&path, plan).unwrap();
    path
}

/// The HTML report as a browser shows it: headless Chromium (no host name resolves) renders
/// the page; its DOM has the result, both targets met, one timeline row and one table row per
/// step, and the verification; the screenshot is kept in the target directory.
async fn open_in_chromium(reports: &Path, r: &Value) {
    let chromium = match federation_support::chromium() {
        Ok(c) => c,
        // scripts/install-deps.sh installs Chromium: its absence is a broken setup, not a pass.
        Err(why) => panic!("the Chromium check of the drill report: {why}"),
    };
    let page = reports.join("report.html");
    let png = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("drill-report.png");
    let (dom, png) = tokio::task::spawn_blocking(move || {
        let dom = federation_support::headless(&chromium, &page, &png, (1280, 1000));
        (dom, png)
    })
    .await
    .unwrap();
    let steps = r["steps"].as_array().unwrap().len();
    assert!(
        dom.contains("<span id=\"result\" class=\"badge ok\">Succeeded</span>"),
        "{dom}"
    );
    for card in ["rpo", "rto"] {
        let at = dom
            .find(&format!("id=\"{card}\""))
            .unwrap_or_else(|| panic!("{card} card: {dom}"));
        assert!(
            dom[at..]
                .split("</div></div>")
                .next()
                .unwrap()
                .contains("badge met"),
            "{card} met: {dom}"
        );
    }
    assert_eq!(
        dom.matches("class=\"row step\"").count(),
        steps,
        "one timeline row per step: {dom}"
    );
    let table = &dom[dom.find("id=\"steps\"").unwrap()..];
    assert_eq!(
        table.split("</table>").next().unwrap().matches("<tr>").count(),
        steps + 1,
        "a header and one row per step"
    );
    assert!(dom.contains("objects present"), "{dom}");
    assert!(dom.contains(r["run"].as_str().unwrap()), "the run is named");
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(federation_support::png_size(&bytes), (1280, 1000));
    assert!(
        bytes.len() > 20_000,
        "the screenshot shows the page ({} bytes; a blank one is a few kB)",
        bytes.len()
    );
    eprintln!("drill report screenshot: {}", png.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_drill_and_fail_over_between_two_clusters_with_no_controller() {
    let c1 = TestCluster::in_process().await.unwrap();
    let c2 = TestCluster::in_process().await.unwrap();
    let k1 = c1.kubeconfig_path().unwrap().to_path_buf();
    let k2 = c2.kubeconfig_path().unwrap().to_path_buf();
    let dir = tempfile::tempdir().unwrap();
    let (identity, public) = lifeboat_tests::repos::make_identity(dir.path(), "me").unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    let env = Env { repo, identity, dir };
    let init = run(env.drctl(None, &["repo", "init", "--recipient", &public])).await;
    assert!(init.status.success(), "{}", text(&init));
    ready_node(&c1.client(), "node-1", "10.0.1.1").await;
    ready_node(&c2.client(), "node-1", "10.0.2.1").await;
    let controllers = [
        play_deployment_controller(c1.client(), Duration::from_secs(1)),
        play_deployment_controller(c2.client(), Duration::from_secs(1)),
    ];

    // Registry: two clusters, the kubeconfig never printed.
    for (name, k, role, region) in [
        ("c1", &k1, "primary", "eu-west"),
        ("c2", &k2, "standby", "us-east"),
    ] {
        let added = run(env.drctl(
            Some(k),
            &[
                "cluster", "add", name, "--role", role, "--region", region, "--cloud", "test",
            ],
        ))
        .await;
        assert!(added.status.success(), "{}", text(&added));
    }
    let listed = run(env.drctl(None, &["cluster", "list", "-o", "json"])).await;
    assert!(listed.status.success(), "{}", text(&listed));
    let list = json_of(&listed);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["c1", "c2"], "{list}");
    assert_eq!(list[0]["role"], "primary");
    assert_eq!(list[1]["region"], "us-east");
    assert!(
        list[0]["clusterId"].as_str().is_some_and(|s| !s.is_empty()),
        "the kube-system uid identifies the cluster's backups: {list}"
    );
    let printed = String::from_utf8_lossy(&listed.stdout).to_string();
    assert!(
        !printed.contains("lifeboat-test"),
        "no bearer token in the registry listing"
    );

    // Bad input: a cluster name that is not a DNS label, an unreachable cluster.
    let bad = run(env.drctl(Some(&k1), &["cluster", "add", "Bad_Name"])).await;
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("cluster name"),
        "{}",
        text(&bad)
    );

    // Health from here: both reachable, neither failed.
    let status = run(env.drctl(None, &["cluster", "status", "-o", "json"])).await;
    assert!(status.status.success(), "{}", text(&status));
    let st = json_of(&status);
    for row in st.as_array().unwrap() {
        assert_eq!(row["verdict"]["phase"], "Healthy", "{st}");
        let nodes = row["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "nodes")
            .unwrap();
        assert_eq!(nodes["ok"], true, "{st}");
    }

    // The application on c1, backed up directly (no controller).
    let ns = application(&c1, 50).await;
    let backup = run(env.drctl(
        Some(&k1),
        &["backup", "create", "shop", "--include-namespaces", &ns],
    ))
    .await;
    assert!(backup.status.success(), "{}", text(&backup));
    let plan = write_plan(env.dir.path(), &ns, &env.repo);
    let plan_arg = plan.to_str().unwrap();

    // A drill's dry run prints the plan and changes nothing.
    let dry = run(env.drctl(
        None,
        &[
            "drill",
            "--plan",
            plan_arg,
            "--to",
            "c2",
            "--dry-run",
            "-o",
            "json",
        ],
    ))
    .await;
    assert!(dry.status.success(), "{}", text(&dry));
    let p = json_of(&dry);
    assert_eq!(p["kind"], "drill", "{p}");
    assert_eq!(p["to"], "c2");
    let steps: Vec<&str> = p["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert!(
        steps.contains(&"restoreObjects") && steps.contains(&"waitReady") && steps.contains(&"teardown"),
        "{p}"
    );
    assert!(
        !steps
            .iter()
            .any(|s| ["fence", "switchTraffic", "stopSource"].contains(s)),
        "a drill fences nothing and switches no traffic: {p}"
    );
    assert!(
        p["recoveryPoints"]["shop"]["id"]
            .as_str()
            .is_some_and(|s| s.len() == 64),
        "{p}"
    );
    // Another application's backup of the same cluster, newer: it does not hold `shop`'s
    // namespace, so it is not shop's recovery point (the plan sets no snapshotTags; it was).
    let web = c1.namespace("web").await.unwrap();
    federation_support::application(&c1.client(), &web, 3).await;
    let other = run(env.drctl(
        Some(&k1),
        &["backup", "create", "web", "--include-namespaces", &web],
    ))
    .await;
    assert!(other.status.success(), "{}", text(&other));
    let again = run(env.drctl(
        None,
        &[
            "drill",
            "--plan",
            plan_arg,
            "--to",
            "c2",
            "--dry-run",
            "-o",
            "json",
        ],
    ))
    .await;
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(
        json_of(&again)["recoveryPoints"]["shop"]["id"],
        p["recoveryPoints"]["shop"]["id"],
        "the newer backup of namespace {web} became shop's recovery point"
    );
    let c2_namespaces = |c: kube::Client| async move {
        Api::<Namespace>::all(c)
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .map(|n| n.name_any())
            .collect::<Vec<_>>()
    };
    let before = c2_namespaces(c2.client()).await;

    // The drill: restored in isolation, waited for, verified, measured, torn down.
    let reports = env.dir.path().join("drill");
    let drilled = run(env.drctl(
        None,
        &[
            "drill",
            "--plan",
            plan_arg,
            "--to",
            "c2",
            "--namespace-suffix",
            "-drill",
            "--report-dir",
            reports.to_str().unwrap(),
            "-o",
            "json",
        ],
    ))
    .await;
    assert!(drilled.status.success(), "{}", text(&drilled));
    let r = json_of(&drilled);
    assert_eq!(r["success"], true, "{r}");
    let rpo = r["rpo"]["measuredSeconds"].as_f64().unwrap();
    let rto = r["rto"]["measuredSeconds"].as_f64().unwrap();
    assert!(rpo > 0.0 && rpo < 300.0 && r["rpo"]["met"] == true, "{r}");
    assert!(
        rto >= 1.0,
        "RTO includes the 1 s the Deployment took to become available: {r}"
    );
    assert!(rto < 60.0 && r["rto"]["met"] == true, "{r}");
    eprintln!("drill: RPO {rpo:.2} s, RTO {rto:.2} s");
    let v = &r["verification"][0][1];
    assert!(
        v["expected"].as_u64().unwrap() >= 51
            && v["found"] == v["expected"]
            && v["dataCompared"].as_u64().unwrap() >= 50,
        "every object of the recovery point (50 ConfigMaps and the Deployment) was found: {r}"
    );
    for f in ["report.json", "report.md", "report.html"] {
        let body = std::fs::read_to_string(reports.join(f)).unwrap();
        assert!(body.contains(r["run"].as_str().unwrap()), "{f} names the run");
    }
    let html = std::fs::read_to_string(reports.join("report.html")).unwrap();
    assert!(
        html.contains("RPO") && html.contains("RTO") && !html.contains("<script src"),
        "self-contained"
    );
    open_in_chromium(&reports, &r).await;
    // Teardown deletes the drill's namespaces (the namespace controller finishes it).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = c2_namespaces(c2.client()).await;
        if now == before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the drill left namespaces behind: {now:?} vs {before:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let web = Api::<Deployment>::namespaced(c1.client(), &ns)
        .get("web")
        .await
        .unwrap();
    assert_eq!(
        web.spec.unwrap().replicas,
        Some(2),
        "the primary is untouched by a drill"
    );

    // Failover: c1 is reachable, so it is refused without --force and names the fix.
    let refused = run(env.drctl(None, &["failover", "--plan", plan_arg, "--to", "c2"])).await;
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("relocate"),
        "{}",
        text(&refused)
    );

    let failed_over = run(env.drctl(
        None,
        &[
            "failover", "--plan", plan_arg, "--to", "c2", "--force", "-o", "json",
        ],
    ))
    .await;
    assert!(failed_over.status.success(), "{}", text(&failed_over));
    let cms: Api<ConfigMap> = Api::namespaced(c2.client(), &ns);
    for i in 0..50 {
        let cm = cms.get(&format!("cm-{i}")).await.unwrap();
        assert_eq!(cm.data.unwrap()["v"], i.to_string());
    }
    let old = Api::<Deployment>::namespaced(c1.client(), &ns)
        .get("web")
        .await
        .unwrap();
    assert_eq!(
        old.spec.unwrap().replicas,
        Some(0),
        "the old primary is fenced: scaled to zero"
    );
    assert!(
        old.metadata
            .annotations
            .unwrap_or_default()
            .keys()
            .any(|k| k.contains("lifeboat")),
        "its former replica count is recorded for a failback"
    );

    // The target now holds the lease: failing over to it again has nothing to move.
    let again = run(env.drctl(None, &["failover", "--plan", plan_arg, "--to", "c2", "--force"])).await;
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already runs"),
        "{}",
        text(&again)
    );

    // Every DR action is in the audit log.
    let audit = run(env.drctl(None, &["audit", "-o", "json"])).await;
    assert!(audit.status.success(), "{}", text(&audit));
    let log = json_of(&audit);
    let actions: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["action"].as_str())
        .collect();
    for want in ["cluster-add", "drill", "failover"] {
        assert!(actions.contains(&want), "{want} in {actions:?}");
    }
    for c in controllers {
        c.abort();
    }
}
