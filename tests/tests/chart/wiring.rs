//! What the schemas cannot see: names a cluster accepts, objects in the release namespace
//! (so `helm template | kubectl apply -f -` puts them where `helm install` does), and every
//! reference — selectors, ServiceAccounts, ConfigMaps, Roles, named ports — resolving to an
//! object the same release renders.

use std::collections::{BTreeMap, HashSet};

use anyhow::{Result, ensure};
use serde_json::Value;

use crate::{Case, NAMESPACE, string_map};

const CLUSTER_SCOPED: &[&str] = &[
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "CSIDriver",
    "StorageClass",
    "VolumeSnapshotClass",
    "VolumeGroupSnapshotClass",
];

/// A DNS-1123 subdomain: what most kinds' names must be.
fn is_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

/// A label value: at most 63 characters, alphanumerics with `-_.` inside.
fn is_label_value(s: &str) -> bool {
    s.len() <= 63
        && (s.is_empty()
            || (s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                && s.as_bytes()[0].is_ascii_alphanumeric()
                && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()))
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn str_of<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field].as_str().unwrap_or_default()
}

pub(crate) fn check(case: &Case) -> Result<()> {
    let objects = &case.rendered.objects;
    let mut seen = HashSet::new();
    for o in objects {
        let kind = str_of(o, "kind");
        let meta = &o["metadata"];
        let name = str_of(meta, "name");
        ensure!(
            is_subdomain(name),
            "{kind} name {name:?} is not a DNS-1123 subdomain"
        );
        let namespace = meta["namespace"].as_str();
        if CLUSTER_SCOPED.contains(&kind) {
            ensure!(
                namespace.is_none(),
                "{kind} {name} is cluster-scoped but names a namespace"
            );
        } else {
            let dashboard_elsewhere = kind == "ConfigMap"
                && case.values["monitoring"]["dashboard"]["namespace"].is_string()
                && name.ends_with("-dashboard");
            ensure!(
                namespace == Some(NAMESPACE) || dashboard_elsewhere,
                "{kind} {name} is in namespace {namespace:?}, not the release's {NAMESPACE}"
            );
        }
        ensure!(
            seen.insert((kind, namespace, name)),
            "{kind} {name} is rendered twice"
        );
        for (k, v) in string_map::<BTreeMap<_, _>>(&meta["labels"]) {
            ensure!(
                is_label_value(&v),
                "{kind} {name}: label {k}={v:?} is not a valid label value"
            );
        }
    }
    workloads(case)?;
    services(case)?;
    bindings(case)?;
    Ok(())
}

/// The ServiceAccount names a release may refer to without rendering them.
fn external_service_accounts(case: &Case) -> Vec<String> {
    match case.values["controller"]["serviceAccount"]["name"].as_str() {
        Some(n) if case.values["controller"]["serviceAccount"]["create"] == false => vec![n.to_string()],
        _ => vec![],
    }
}

fn workloads(case: &Case) -> Result<()> {
    let config_maps: HashSet<&str> = case
        .of_kind("ConfigMap")
        .map(|c| str_of(&c["metadata"], "name"))
        .collect();
    let accounts: Vec<String> = case
        .of_kind("ServiceAccount")
        .map(|s| str_of(&s["metadata"], "name").to_string())
        .chain(external_service_accounts(case))
        .collect();
    for w in case.of_kind("Deployment").chain(case.of_kind("DaemonSet")) {
        let name = str_of(&w["metadata"], "name");
        let selector = string_map(&w["spec"]["selector"]["matchLabels"]);
        let labels = string_map(&w["spec"]["template"]["metadata"]["labels"]);
        ensure!(
            selects(&selector, &labels),
            "{name}: selector {selector:?} does not select its pods' labels {labels:?}"
        );
        let pod = &w["spec"]["template"]["spec"];
        let sa = str_of(pod, "serviceAccountName");
        ensure!(
            accounts.iter().any(|a| a == sa),
            "{name}: ServiceAccount {sa:?} is neither rendered nor given in values"
        );
        for v in pod["volumes"].as_array().into_iter().flatten() {
            if let Some(cm) = v["configMap"]["name"].as_str() {
                ensure!(
                    config_maps.contains(cm),
                    "{name}: volume uses ConfigMap {cm} the chart does not render"
                );
            }
        }
        let volumes: HashSet<&str> = pod["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| str_of(v, "name"))
            .collect();
        let mut container_names = HashSet::new();
        for c in pod["containers"].as_array().into_iter().flatten() {
            let cname = str_of(c, "name");
            ensure!(container_names.insert(cname), "{name}: container {cname} twice");
            let ports: HashSet<&str> = c["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["name"].as_str())
                .collect();
            for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
                if let Some(port) = c[probe]["httpGet"]["port"].as_str() {
                    ensure!(
                        ports.contains(port),
                        "{name}/{cname}: {probe} uses port {port:?} it does not declare"
                    );
                }
            }
            for m in c["volumeMounts"].as_array().into_iter().flatten() {
                let v = str_of(m, "name");
                ensure!(
                    volumes.contains(v),
                    "{name}/{cname}: mounts volume {v:?} the pod does not have"
                );
            }
        }
    }
    Ok(())
}

fn services(case: &Case) -> Result<()> {
    let pods: Vec<(BTreeMap<String, String>, &Value)> = case
        .of_kind("Deployment")
        .chain(case.of_kind("DaemonSet"))
        .map(|w| {
            (
                string_map(&w["spec"]["template"]["metadata"]["labels"]),
                &w["spec"]["template"]["spec"],
            )
        })
        .collect();
    for s in case.of_kind("Service") {
        let name = str_of(&s["metadata"], "name");
        let selector = string_map(&s["spec"]["selector"]);
        let (_, pod) = pods
            .iter()
            .find(|(labels, _)| selects(&selector, labels))
            .ok_or_else(|| {
                anyhow::anyhow!("Service {name}: selector {selector:?} selects no rendered pods")
            })?;
        for p in s["spec"]["ports"].as_array().into_iter().flatten() {
            if let Some(target) = p["targetPort"].as_str() {
                let declared = pod["containers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|c| c["ports"].as_array().into_iter().flatten())
                    .any(|cp| cp["name"] == target);
                ensure!(
                    declared,
                    "Service {name}: targetPort {target:?} is no container port"
                );
            }
        }
    }
    for m in case.of_kind("ServiceMonitor") {
        let name = str_of(&m["metadata"], "name");
        let selector = string_map(&m["spec"]["selector"]["matchLabels"]);
        let service = case
            .of_kind("Service")
            .find(|s| selects(&selector, &string_map(&s["metadata"]["labels"])))
            .ok_or_else(|| anyhow::anyhow!("ServiceMonitor {name}: selects no rendered Service"))?;
        for e in m["spec"]["endpoints"].as_array().into_iter().flatten() {
            let port = str_of(e, "port");
            ensure!(
                service["spec"]["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| p["name"] == port),
                "ServiceMonitor {name}: port {port:?} is not a port of its Service"
            );
        }
    }
    Ok(())
}

fn bindings(case: &Case) -> Result<()> {
    let accounts: Vec<String> = case
        .of_kind("ServiceAccount")
        .map(|s| str_of(&s["metadata"], "name").to_string())
        .chain(external_service_accounts(case))
        .collect();
    for b in case
        .of_kind("ClusterRoleBinding")
        .chain(case.of_kind("RoleBinding"))
    {
        let name = str_of(&b["metadata"], "name");
        let role_kind = str_of(&b["roleRef"], "kind");
        let role = str_of(&b["roleRef"], "name");
        ensure!(
            case.object(role_kind, role).is_ok(),
            "{name}: roleRef {role_kind} {role} is not rendered"
        );
        if b["kind"] == "RoleBinding" {
            ensure!(
                role_kind == "Role",
                "RoleBinding {name} grants a ClusterRole in one namespace: make it a Role"
            );
        }
        for s in b["subjects"].as_array().into_iter().flatten() {
            ensure!(
                s["kind"] == "ServiceAccount",
                "{name}: subject {s} is not a ServiceAccount"
            );
            let sa = str_of(s, "name");
            ensure!(
                accounts.iter().any(|a| a == sa) && s["namespace"] == NAMESPACE,
                "{name}: subject {sa} in {} is not the release's ServiceAccount",
                s["namespace"]
            );
        }
    }
    Ok(())
}
