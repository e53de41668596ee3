//! Kubernetes objects benchmark at one or more sizes (default 10,000 objects in 50
//! namespaces; `--sizes 10000:50,100000:500` for the side-by-side table), each on a fresh API
//! server: 40 % ConfigMaps, 30 % Secrets, 10 % each Deployments, Services and custom resources,
//! 200 per namespace. In one run against the same server, per size:
//!
//! 1. the anchor: a plain loop of creates into fresh namespaces (no Lifeboat logic, 32 in
//!    flight);
//! 2. `drctl backup create --direct` of those namespaces, then again unchanged;
//! 3. the namespaces are deleted without waiting (an API server without controllers, as
//!    envtest starts, never finishes deleting a namespace);
//! 4. `drctl restore create --direct` into fresh namespaces (`--namespace-mapping`, 32 in
//!    flight), so it creates exactly what the anchor created;
//! 5. the anchor again, into fresh namespaces: the restore is bracketed by two anchors, so
//!    a shared, noisy machine shows in the anchors' spread rather than in the ratio.
//!
//! Prints wall time, CPU, peak RSS and objects/s per step and size, and the restore rate as
//! a ratio of the anchors' mean rate. Run it with `scripts/bench-objects.sh`; set `KUBEBUILDER_ASSETS`
//! or `USE_EXISTING_CLUSTER` for a real API server.

use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use lifeboat_tests::bench::{Measure, timed};
use lifeboat_tests::kube::TestCluster;
use lifeboat_tests::repos::make_identity;
use serde_json::{Value, json};

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

/// One size of the benchmark.
#[derive(Debug, Clone, Copy)]
struct Size {
    objects: usize,
    namespaces: usize,
}

impl Size {
    fn parse(s: &str) -> Option<Self> {
        let (objects, namespaces) = s.split_once(':')?;
        let size = Self {
            objects: objects.trim().parse().ok()?,
            namespaces: namespaces.trim().parse().ok()?,
        };
        (size.namespaces > 0 && size.objects == size.namespaces * PER_NAMESPACE).then_some(size)
    }

    /// Namespace names for a phase (`src`, `dst`) of this run.
    fn namespaces(&self, run: &str, phase: &str) -> Vec<String> {
        (0..self.namespaces)
            .map(|n| format!("bench-{run}-{phase}-{n:03}"))
            .collect()
    }
}

async fn create_namespaces(client: &kube::Client, names: &[String]) {
    let api: Api<Namespace> = Api::all(client.clone());
    for ns in names {
        let obj: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).expect("ns");
        api.create(&PostParams::default(), &obj)
            .await
            .expect("create namespace");
    }
}

/// Deletes namespaces without waiting for them to go.
async fn delete_namespaces(client: &kube::Client, names: &[String]) {
    let api: Api<Namespace> = Api::all(client.clone());
    for ns in names {
        let _ = api.delete(ns, &Default::default()).await;
    }
}

/// The raw anchor: every object created with `IN_FLIGHT` requests in flight, nothing else.
async fn raw_creates(client: &kube::Client, widget: &ApiResource, namespaces: &[String]) -> f64 {
    let started = Instant::now();
    let jobs: Vec<(String, usize)> = namespaces
        .iter()
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

/// ConfigMaps in `namespaces` carrying the benchmark's label.
async fn count_configmaps(client: &kube::Client, namespaces: &[String]) -> usize {
    let mut n = 0;
    for ns in namespaces {
        let cms: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), ns, &ar("", "v1", "ConfigMap", "configmaps"));
        n += cms
            .list(&ListParams::default().labels("app=bench"))
            .await
            .map(|l| l.items.len())
            .unwrap_or(0);
    }
    n
}

/// What one size measured.
struct SizeResult {
    size: Size,
    backend: &'static str,
    /// The anchor's wall seconds, before and after the restore.
    raw: [f64; 2],
    backup: Measure,
    again: Measure,
    restore: Measure,
    restored: usize,
}

fn run_size(drctl: &str, size: Size, run: &str) -> SizeResult {
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
        let mut c = Command::new(drctl);
        c.args(["--quiet"]).args(args);
        c
    };
    timed(drctl_cmd(&["repo", "init", "--recipient", &public]), &env);

    eprintln!(
        "{} objects in {} namespaces on the {}…",
        size.objects,
        size.namespaces,
        cluster.backend_name()
    );
    let widget = rt.block_on(install_widget_crd(&client));
    let src = size.namespaces(run, "src");
    let dst = size.namespaces(run, "dst");
    rt.block_on(create_namespaces(&client, &src));
    let raw = rt.block_on(raw_creates(&client, &widget, &src));
    eprintln!("  raw creates: {raw:.1} s");
    let raw_after = size.namespaces(run, "raw");

    let selection = format!("bench-{run}-src-*");
    let backup = timed(
        drctl_cmd(&[
            "backup",
            "create",
            "bench",
            "--direct",
            "--include-namespaces",
            &selection,
        ]),
        &env,
    );
    eprintln!("  backup: {:.1} s", backup.wall);
    let again = timed(
        drctl_cmd(&[
            "backup",
            "create",
            "bench-2",
            "--direct",
            "--include-namespaces",
            &selection,
        ]),
        &env,
    );
    rt.block_on(delete_namespaces(&client, &src));
    let mapping: Vec<String> = src.iter().zip(&dst).map(|(s, d)| format!("{s}:{d}")).collect();
    let mapping = mapping.join(",");
    let parallel = IN_FLIGHT.to_string();
    let restore = timed(
        drctl_cmd(&[
            "restore",
            "create",
            "--direct",
            "--from-backup",
            "bench",
            "--namespace-mapping",
            &mapping,
            "--parallelism",
            &parallel,
        ]),
        &env,
    );
    eprintln!("  restore: {:.1} s", restore.wall);
    let restored = rt.block_on(count_configmaps(&client, &dst));
    rt.block_on(delete_namespaces(&client, &dst));
    rt.block_on(create_namespaces(&client, &raw_after));
    let raw_again = rt.block_on(raw_creates(&client, &widget, &raw_after));
    eprintln!("  raw creates again: {raw_again:.1} s");
    rt.block_on(delete_namespaces(&client, &raw_after));
    SizeResult {
        size,
        backend: cluster.backend_name(),
        raw: [raw, raw_again],
        backup,
        again,
        restore,
        restored,
    }
}

fn main() {
    let drctl = std::env::var("DRCTL_BIN").unwrap_or_else(|_| "target/release/drctl".to_string());
    let args: Vec<String> = std::env::args().skip(1).collect();
    let sizes_arg = match args.as_slice() {
        [] => "10000:50".to_string(),
        [flag, sizes] if flag == "--sizes" => sizes.clone(),
        _ => {
            eprintln!(
                "usage: bench-objects [--sizes OBJECTS:NAMESPACES[,…]] (e.g. 10000:50,100000:500; {PER_NAMESPACE} objects per namespace)"
            );
            std::process::exit(2);
        }
    };
    let sizes: Vec<Size> = match sizes_arg.split(',').map(Size::parse).collect::<Option<_>>() {
        Some(s) => s,
        None => {
            eprintln!(
                "--sizes {sizes_arg}: each size is OBJECTS:NAMESPACES with OBJECTS = {PER_NAMESPACE} × NAMESPACES"
            );
            std::process::exit(2);
        }
    };
    let run = format!("{:x}", std::process::id());
    let results: Vec<SizeResult> = sizes.iter().map(|s| run_size(&drctl, *s, &run)).collect();

    let header: Vec<String> = results
        .iter()
        .map(|r| format!("{} objects / {} ns", r.size.objects, r.size.namespaces))
        .collect();
    println!(
        "\n{}, {IN_FLIGHT} requests in flight; each cell: wall s · CPU s · peak RSS MiB · objects/s\n",
        results.first().map_or("", |r| r.backend)
    );
    println!("| step | {} |", header.join(" | "));
    println!("|---|{}", "---|".repeat(results.len()));
    let cell = |m: &Measure, n: usize| {
        format!(
            "{:.2} · {:.2} · {:.0} · {:.0}",
            m.wall,
            m.cpu,
            m.rss_mib,
            n as f64 / m.wall
        )
    };
    let row = |label: &str, f: &dyn Fn(&SizeResult) -> String| {
        let cells: Vec<String> = results.iter().map(f).collect();
        println!("| {label} | {} |", cells.join(" | "));
    };
    let raw_rate = |r: &SizeResult| r.size.objects as f64 / ((r.raw[0] + r.raw[1]) / 2.0);
    row("raw creates (plain loop), before / after", &|r| {
        format!("{:.2} / {:.2} · - · - · {:.0}", r.raw[0], r.raw[1], raw_rate(r))
    });
    row("drctl backup (full)", &|r| cell(&r.backup, r.size.objects));
    row("drctl backup (unchanged)", &|r| cell(&r.again, r.size.objects));
    row("drctl restore", &|r| cell(&r.restore, r.size.objects));
    row("restore rate / raw create rate", &|r| {
        format!("{:.2}", (r.size.objects as f64 / r.restore.wall) / raw_rate(r))
    });
    row("ConfigMaps back after restore", &|r| {
        format!("{} of {}", r.restored, r.size.namespaces * 80)
    });
    println!(
        "\ntargets: restore ≥ 0.80 of the raw create rate; at 100,000 objects backup < 20 s and peak RSS < 256 MiB"
    );
}
