//! Kubernetes objects benchmark: 10,000 objects in 50 namespaces (ConfigMaps, Secrets,
//! Deployments, Services and custom resources). In one run against the same API server:
//! a plain loop of creates (no Lifeboat logic, 32 in flight), `drctl backup create --direct`,
//! an unchanged second backup, deletion of everything, `drctl restore create --direct` (32 in
//! flight). Prints wall time, CPU, peak RSS and objects/s. Run it with
//! `scripts/bench-objects.sh`; set `KUBEBUILDER_ASSETS` or `USE_EXISTING_CLUSTER` for a real
//! API server.

use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use lifeboat_tests::bench::timed;
use lifeboat_tests::kube::TestCluster;
use lifeboat_tests::repos::make_identity;
use serde_json::{Value, json};

const NAMESPACES: usize = 50;
const PER_NAMESPACE: usize = 200;
const IN_FLIGHT: usize = 32;

fn ar(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    let api_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    ApiResource {
        group: group.to_string(),
        version: version.to_string(),
        api_version,
        kind: kind.to_string(),
        plural: plural.to_string(),
    }
}

/// Object `i` of a namespace: 80 ConfigMaps, 60 Secrets, 20 each of Deployments, Services, Widgets.
fn object(i: usize, widget: &ApiResource) -> (ApiResource, Value) {
    let name = format!("obj-{i:03}");
    let payload: String = (0..16).map(|n| format!("line {n} of object {i}\n")).collect();
    match i {
        0..80 => (
            ar("", "v1", "ConfigMap", "configmaps"),
            json!({"metadata": {"name": name, "labels": {"app": "bench"}}, "data": {"config.txt": payload}}),
        ),
        80..140 => (
            ar("", "v1", "Secret", "secrets"),
            json!({"metadata": {"name": name}, "type": "Opaque", "stringData": {"token": payload}}),
        ),
        140..160 => (
            ar("apps", "v1", "Deployment", "deployments"),
            json!({"metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}}),
        ),
        160..180 => (
            ar("", "v1", "Service", "services"),
            json!({"metadata": {"name": name}, "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}}),
        ),
        _ => (
            widget.clone(),
            json!({"apiVersion": widget.api_version, "kind": "Widget", "metadata": {"name": name}, "spec": {"size": i, "note": payload}}),
        ),
    }
}

async fn install_widget_crd(client: &kube::Client) -> ApiResource {
    let group = "bench.lifeboat-test.dev";
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": {"name": format!("widgets.{group}")},
        "spec": {"group": group, "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}]}
    }))
    .expect("crd");
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    match api.create(&PostParams::default(), &crd).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("create CRD: {e}"),
    }
    let widget = ar(group, "v1", "Widget", "widgets");
    let list: Api<DynamicObject> = Api::all_with(client.clone(), &widget);
    while list.list(&Default::default()).await.is_err() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    widget
}

fn namespaces() -> Vec<String> {
    (0..NAMESPACES).map(|n| format!("bench-objects-{n:02}")).collect()
}

async fn create_namespaces(client: &kube::Client) {
    let api: Api<Namespace> = Api::all(client.clone());
    for ns in namespaces() {
        let obj: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).expect("ns");
        api.create(&PostParams::default(), &obj)
            .await
            .expect("create namespace");
    }
}

/// The raw anchor: every object created with `IN_FLIGHT` requests in flight, nothing else.
async fn raw_creates(client: &kube::Client, widget: &ApiResource) -> f64 {
    let started = Instant::now();
    let jobs: Vec<(String, usize)> = namespaces()
        .into_iter()
        .flat_map(|ns| (0..PER_NAMESPACE).map(move |i| (ns.clone(), i)))
        .collect();
    futures::stream::iter(jobs)
        .for_each_concurrent(IN_FLIGHT, |(ns, i)| async move {
            let (res, value) = object(i, widget);
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &res);
            let obj: DynamicObject = serde_json::from_value(value).expect("object");
            api.create(&PostParams::default(), &obj)
                .await
                .expect("raw create");
        })
        .await;
    started.elapsed().as_secs_f64()
}

async fn delete_namespaces(client: &kube::Client) {
    let api: Api<Namespace> = Api::all(client.clone());
    for ns in namespaces() {
        let _ = api.delete(&ns, &Default::default()).await;
    }
    for ns in namespaces() {
        while api.get_opt(&ns).await.ok().flatten().is_some() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn main() {
    let drctl = std::env::var("DRCTL_BIN").unwrap_or_else(|_| "target/release/drctl".to_string());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cluster = rt.block_on(TestCluster::start()).expect("a cluster");
    let client = cluster.client();
    let kubeconfig = cluster.kubeconfig_path().expect("kubeconfig").to_path_buf();
    let work = tempfile::Builder::new()
        .prefix("lifeboat-bench-objects-")
        .tempdir()
        .expect("tmp");
    let (identity, public) = make_identity(work.path(), "me").expect("identity");
    let repo = work.path().join("repo");
    std::fs::create_dir(&repo).expect("repo dir");
    let env = vec![
        ("KUBECONFIG".to_string(), kubeconfig.display().to_string()),
        ("DRCTL_IDENTITY".to_string(), identity.display().to_string()),
        ("DRCTL_REPO".to_string(), repo.display().to_string()),
    ];
    let drctl_cmd = |args: &[&str]| {
        let mut c = Command::new(&drctl);
        c.args(["--quiet"]).args(args);
        c
    };
    timed(drctl_cmd(&["repo", "init", "--recipient", &public]), &env);

    println!("cluster: {}", cluster.backend_name());
    let widget = rt.block_on(install_widget_crd(&client));
    rt.block_on(delete_namespaces(&client));
    rt.block_on(create_namespaces(&client));
    let raw = rt.block_on(raw_creates(&client, &widget));
    let objects = (NAMESPACES * PER_NAMESPACE) as f64;

    let backup_args = [
        "backup",
        "create",
        "bench",
        "--direct",
        "--include-namespaces",
        "bench-objects-*",
    ];
    let backup = timed(drctl_cmd(&backup_args), &env);
    let again = timed(
        drctl_cmd(&[
            "backup",
            "create",
            "bench-2",
            "--direct",
            "--include-namespaces",
            "bench-objects-*",
        ]),
        &env,
    );
    rt.block_on(delete_namespaces(&client));
    let parallel = IN_FLIGHT.to_string();
    let restore = timed(
        drctl_cmd(&[
            "restore",
            "create",
            "--direct",
            "--from-backup",
            "bench",
            "--parallelism",
            &parallel,
        ]),
        &env,
    );
    // Every object came back.
    let restored: usize = rt.block_on(async {
        let mut n = 0;
        for ns in namespaces() {
            let cms: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), &ns, &ar("", "v1", "ConfigMap", "configmaps"));
            n += cms
                .list(&Default::default())
                .await
                .map(|l| l.items.len())
                .unwrap_or(0);
        }
        n
    });
    rt.block_on(delete_namespaces(&client));

    println!(
        "\n{} objects in {NAMESPACES} namespaces, {IN_FLIGHT} requests in flight\n",
        objects as usize
    );
    println!("| step | wall s | CPU s | peak RSS MiB | objects/s | vs raw creates |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| raw creates (plain loop) | {raw:.2} | - | - | {:.0} | 1.00 |",
        objects / raw
    );
    println!(
        "| drctl backup (full) | {:.2} | {:.2} | {:.0} | {:.0} | |",
        backup.wall,
        backup.cpu,
        backup.rss_mib,
        objects / backup.wall
    );
    println!(
        "| drctl backup (unchanged) | {:.2} | {:.2} | {:.0} | {:.0} | |",
        again.wall,
        again.cpu,
        again.rss_mib,
        objects / again.wall
    );
    println!(
        "| drctl restore | {:.2} | {:.2} | {:.0} | {:.0} | {:.2} |",
        restore.wall,
        restore.cpu,
        restore.rss_mib,
        objects / restore.wall,
        (objects / restore.wall) / (objects / raw)
    );
    println!(
        "\nConfigMaps back after restore: {restored} of {}",
        NAMESPACES * 80
    );
    println!("targets: restore ≥ 0.80 of the raw create rate; backup < 10 s; peak RSS < 200 MiB");
}
