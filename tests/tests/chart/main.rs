//! The Helm chart (`charts/lifeboat`), linted and rendered by the real helm
//! (`scripts/install-deps.sh` installs it; `LIFEBOAT_HELM` points at another) for every values
//! combination that changes what is rendered, and every rendered object checked: against the
//! Kubernetes schemas (schema.rs), for references that resolve (wiring.rs), for RBAC that
//! grants only what the code uses (rbac.rs), for CSI objects the driver's own parsers accept
//! (csi.rs), and for dashboards and alerts that name only metrics the controller exports
//! (monitoring.rs).

mod csi;
mod monitoring;
mod rbac;
mod schema;
mod wiring;

use std::path::PathBuf;
use std::sync::OnceLock;

use anyhow::{Context, Result, bail, ensure};
use lifeboat_tests::helm::{Helm, Rendered};
use serde_json::{Value, json};

/// The release namespace every case is rendered into.
const NAMESPACE: &str = "lifeboat-system";
/// The release name every case is rendered as.
const RELEASE: &str = "lb";

/// One values combination and what it renders.
struct Case {
    name: &'static str,
    values: Value,
    rendered: Rendered,
}

impl Case {
    /// The rendered objects of one kind.
    fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.rendered.objects.iter().filter(move |o| o["kind"] == kind)
    }

    /// The kinds rendered, with repeats, in order.
    fn kinds(&self) -> Vec<&str> {
        self.rendered
            .objects
            .iter()
            .filter_map(|o| o["kind"].as_str())
            .collect()
    }

    /// The one object of `kind` named `name`.
    fn object(&self, kind: &str, name: &str) -> Result<&Value> {
        self.rendered
            .objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .with_context(|| format!("case {}: no {kind} {name}", self.name))
    }
}

/// The string values of a JSON object (labels, selectors, parameters); others are left out.
fn string_map<M: FromIterator<(String, String)>>(v: &Value) -> M {
    v.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}

fn chart_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/lifeboat")
}

/// The values combinations that change what the chart renders: each switch on its own, and
/// the values that take other template paths (`with`, `toYaml`, `default`, `ternary`).
fn combinations() -> Vec<(&'static str, Value)> {
    vec![
        ("defaults", json!({})),
        ("csi-off", json!({"csi": {"enabled": false}})),
        (
            "csi-without-storageclasses",
            json!({"csi": {"storageClasses": {"create": false}}}),
        ),
        (
            "csi-nfs-only",
            json!({"csi": {
                "config": {"rbd": [], "nfs": [{"server": "nfs.example.internal", "share": "/exports/k8s", "baseDirs": ["tenants"]}]},
                "storageClasses": {"nfs": {"server": "nfs.example.internal", "share": "/exports/k8s", "baseDir": "tenants", "onDelete": "retain"}}
            }}),
        ),
        (
            "csi-rbd-two-clusters",
            json!({"csi": {
                "mapper": "fuse",
                "kubeletDir": "/var/lib/k0s/kubelet",
                "config": {"rbd": [
                    {"clusterID": "ceph-1", "monitors": ["10.0.0.1:6789", "10.0.0.2:6789"], "user": "csi-ro", "keyFile": "/etc/lifeboat-csi/keys/readonly.key", "pools": ["kubernetes"]},
                    {"clusterID": "ceph-2", "monitors": ["[fd00::1]:3300"], "pools": ["rbd", "ssd"]}
                ]},
                "storageClasses": {"rbd": {"clusterID": "ceph-2", "pool": "ssd", "fsType": "xfs", "secretName": "ceph-2-csi"}}
            }}),
        ),
        (
            "csi-group-snapshots-and-attributes-classes",
            json!({"csi": {"groupSnapshots": true, "volumeAttributesClasses": true}}),
        ),
        ("controller-off", json!({"controller": {"enabled": false}})),
        (
            "everything-off",
            json!({"controller": {"enabled": false}, "csi": {"enabled": false}}),
        ),
        (
            "controller-backup-only",
            json!({"controller": {"allowRestore": false, "leaderElect": false, "replicas": 1, "watchNamespace": "apps"}}),
        ),
        (
            "controller-existing-serviceaccount",
            json!({"controller": {"serviceAccount": {"create": false, "name": "lifeboat-sa"}}}),
        ),
        (
            "controller-scheduling",
            json!({
                "image": {"repository": "registry.example.internal/lifeboat", "tag": "1.2.3", "pullPolicy": "Always"},
                "controller": {
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "backup", "effect": "NoSchedule"}],
                    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64", "arm64"]}]}
                    ]}}},
                    "podAnnotations": {"example.com/team": "platform"},
                    "metricsPort": 9090,
                    "logLevel": "debug,kube=info"
                }
            }),
        ),
        ("monitoring", json!({"monitoring": {"enabled": true}})),
        (
            "monitoring-custom",
            json!({"monitoring": {
                "enabled": true,
                "serviceMonitor": {"enabled": false},
                "dashboard": {"namespace": "grafana", "labels": {"grafana_dashboard": "lifeboat"}, "folder": "Storage"},
                "rules": {"labels": {"release": "kube-prometheus-stack"}, "scheduleMaxAgeHours": 8, "replicationMaxLagHours": 8, "severity": {"warning": "ticket", "critical": "page"}}
            }}),
        ),
        (
            "monitoring-without-controller",
            json!({"controller": {"enabled": false}, "monitoring": {"enabled": true}}),
        ),
    ]
}

/// Every combination, rendered once per test process (helm takes ~0.2 s a call).
fn cases() -> &'static [Case] {
    static CASES: OnceLock<Vec<Case>> = OnceLock::new();
    CASES.get_or_init(|| {
        let helm = Helm::find().unwrap_or_else(|e| panic!("{e}"));
        eprintln!("helm {}", helm.version().unwrap_or_else(|e| panic!("{e}")));
        combinations()
            .into_iter()
            .map(|(name, values)| {
                let rendered = helm
                    .render(&chart_dir(), RELEASE, NAMESPACE, &values)
                    .unwrap_or_else(|e| panic!("case {name}: {e}"));
                Case {
                    name,
                    values,
                    rendered,
                }
            })
            .collect()
    })
}

fn each_case(check: impl Fn(&Case) -> Result<()>) -> Result<()> {
    let mut failures = Vec::new();
    for case in cases() {
        if let Err(e) = check(case) {
            failures.push(format!("case {}: {e:#}", case.name));
        }
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("\n\n"));
    }
    Ok(())
}

#[test]
fn helm_lint_is_clean_for_every_combination() -> Result<()> {
    each_case(|case| {
        let complaints: Vec<&str> = case
            .rendered
            .lint
            .lines()
            .filter(|l| l.contains("[WARNING]") || l.contains("[ERROR]"))
            .collect();
        ensure!(complaints.is_empty(), "helm lint: {complaints:?}");
        Ok(())
    })
}

#[test]
fn every_rendered_object_matches_its_kubernetes_schema() -> Result<()> {
    each_case(|case| {
        let mut errors = Vec::new();
        for obj in &case.rendered.objects {
            if let Err(e) = schema::check(obj) {
                errors.push(format!("{e:#}"));
            }
        }
        ensure!(errors.is_empty(), "{}", errors.join("\n"));
        Ok(())
    })?;
    let checked: usize = cases().iter().map(|c| c.rendered.objects.len()).sum();
    eprintln!(
        "{checked} objects in {} combinations match their schemas",
        cases().len()
    );
    Ok(())
}

#[test]
fn rendered_objects_are_named_and_placed_as_a_cluster_needs() -> Result<()> {
    each_case(wiring::check)
}

/// Words YAML 1.1 (the go-yaml kubectl and helm read manifests with) takes as booleans while
/// YAML 1.2 (this test's parser) keeps them strings: unquoted, they would reach the API
/// server as `true`/`false` and fail a string field such as a StorageClass parameter.
#[test]
fn no_unquoted_scalar_changes_meaning_between_yaml_versions() -> Result<()> {
    const YAML11_BOOLS: &[&str] = &["y", "yes", "n", "no", "on", "off"];
    each_case(|case| {
        for (i, line) in case.rendered.manifests.lines().enumerate() {
            let line = line.split(" #").next().unwrap_or(line).trim_end();
            let scalar = match line.rsplit_once(": ") {
                Some((_, v)) => v,
                None => line.trim_start().strip_prefix("- ").unwrap_or(""),
            };
            ensure!(
                !YAML11_BOOLS.contains(&scalar.to_ascii_lowercase().as_str()),
                "line {}: {line:?} is a boolean to YAML 1.1 readers: quote it",
                i + 1
            );
        }
        Ok(())
    })
}

#[test]
fn components_follow_their_switches() -> Result<()> {
    each_case(|case| {
        let values = &case.values;
        let off = |path: &[&str]| {
            let mut v = values;
            for p in path {
                v = &v[p];
            }
            v == &json!(false)
        };
        let controller = !off(&["controller", "enabled"]);
        let csi = !off(&["csi", "enabled"]);
        let monitoring = values["monitoring"]["enabled"] == json!(true);
        let kinds = case.kinds();
        let count = |k: &str| kinds.iter().filter(|x| **x == k).count();
        // The CRDs ship with every release: drctl and controllers elsewhere need them — the
        // controller's and the federation's.
        ensure!(
            count("CustomResourceDefinition")
                == lifeboat_controller::crd::all().len() + lifeboat_federation::crd::all().len(),
            "CRDs: {kinds:?}"
        );
        let has_controller = case
            .object("Deployment", &format!("{RELEASE}-controller"))
            .is_ok();
        ensure!(
            has_controller == controller,
            "controller Deployment present: {has_controller}"
        );
        ensure!((count("CSIDriver") == 1) == csi, "CSIDriver: {kinds:?}");
        ensure!((count("DaemonSet") == 1) == csi, "DaemonSet: {kinds:?}");
        let classes = csi && !off(&["csi", "storageClasses", "create"]);
        ensure!(
            count("StorageClass") == if classes { 3 } else { 0 },
            "StorageClasses: {kinds:?}"
        );
        ensure!(
            count("VolumeSnapshotClass") == usize::from(classes),
            "VolumeSnapshotClass: {kinds:?}"
        );
        let group_snapshots = csi && values["csi"]["groupSnapshots"] == json!(true);
        ensure!(
            count("VolumeGroupSnapshotClass") == usize::from(classes && group_snapshots),
            "VolumeGroupSnapshotClass: {kinds:?}"
        );
        if csi {
            let args = sidecar_args(case)?;
            let gate = |container: &str, gate: &str| {
                args.iter()
                    .any(|(c, a)| c == container && a.starts_with("--feature-gates=") && a.contains(gate))
            };
            ensure!(
                gate("csi-snapshotter", "CSIVolumeGroupSnapshot=true") == group_snapshots,
                "csi-snapshotter group snapshot gate: {args:?}"
            );
            let attributes = values["csi"]["volumeAttributesClasses"] == json!(true);
            for sidecar in ["csi-provisioner", "csi-resizer"] {
                ensure!(
                    gate(sidecar, "VolumeAttributesClass=true") == attributes,
                    "{sidecar} VolumeAttributesClass gate: {args:?}"
                );
            }
        }
        let rules = monitoring && controller;
        ensure!(
            count("PrometheusRule") == usize::from(rules),
            "PrometheusRule: {kinds:?}"
        );
        let service_monitor = rules && !off(&["monitoring", "serviceMonitor", "enabled"]);
        ensure!(
            count("ServiceMonitor") == usize::from(service_monitor),
            "ServiceMonitor: {kinds:?}"
        );
        let dashboards = case
            .of_kind("ConfigMap")
            .filter(|c| c["metadata"]["name"] == format!("{RELEASE}-dashboard"))
            .count();
        ensure!(
            dashboards == usize::from(rules),
            "dashboard ConfigMaps: {dashboards}"
        );
        let sa_created = controller && !off(&["controller", "serviceAccount", "create"]);
        ensure!(
            case.object("ServiceAccount", &format!("{RELEASE}-controller"))
                .is_ok()
                == sa_created,
            "controller ServiceAccount"
        );
        Ok(())
    })
}

/// `(container name, argument)` for every container of the CSI controller Deployment.
fn sidecar_args(case: &Case) -> Result<Vec<(String, String)>> {
    let deployment = case
        .of_kind("Deployment")
        .find(|d| {
            d["spec"]["template"]["spec"]["containers"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| c["name"] == "csi-provisioner"))
        })
        .ok_or_else(|| anyhow::anyhow!("no CSI controller Deployment"))?;
    let mut out = Vec::new();
    for c in deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let name = c["name"].as_str().unwrap_or_default().to_string();
        for a in c["args"].as_array().into_iter().flatten() {
            out.push((name.clone(), a.as_str().unwrap_or_default().to_string()));
        }
    }
    Ok(out)
}
