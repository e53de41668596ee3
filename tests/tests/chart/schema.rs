//! Every rendered object checked against its kind's schema, strictly: it is read into the
//! typed struct (k8s-openapi for built-in kinds, the structs below for the CRDs of the
//! external-snapshotter and prometheus-operator), written back, and compared with what helm
//! rendered. A field the schema does not have is dropped on the way and shows up as a
//! difference, as does a wrong type (`"8080"` for a port fails to read at all) — what
//! `kubectl apply --validate=strict` reports against a real server's OpenAPI.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Checks one object; the error names the kind, the name and every offending field.
pub(crate) fn check(obj: &Value) -> Result<()> {
    let api_version = obj["apiVersion"].as_str().unwrap_or_default();
    let kind = obj["kind"].as_str().unwrap_or_default();
    let name = obj["metadata"]["name"].as_str().unwrap_or("<no name>");
    roundtrip_by_kind(api_version, kind, obj).with_context(|| format!("{kind} {name} ({api_version})"))
}

fn roundtrip_by_kind(api_version: &str, kind: &str, obj: &Value) -> Result<()> {
    use k8s_openapi::api::apps::v1 as apps;
    use k8s_openapi::api::core::v1 as core;
    use k8s_openapi::api::rbac::v1 as rbac;
    use k8s_openapi::api::storage::v1 as storage;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
    match (api_version, kind) {
        ("v1", "ConfigMap") => roundtrip::<core::ConfigMap>(obj),
        ("v1", "Service") => roundtrip::<core::Service>(obj),
        ("v1", "ServiceAccount") => roundtrip::<core::ServiceAccount>(obj),
        ("apps/v1", "Deployment") => roundtrip::<apps::Deployment>(obj),
        ("apps/v1", "DaemonSet") => roundtrip::<apps::DaemonSet>(obj),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => roundtrip::<rbac::ClusterRole>(obj),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => roundtrip::<rbac::ClusterRoleBinding>(obj),
        ("rbac.authorization.k8s.io/v1", "Role") => roundtrip::<rbac::Role>(obj),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => roundtrip::<rbac::RoleBinding>(obj),
        ("storage.k8s.io/v1", "CSIDriver") => roundtrip::<storage::CSIDriver>(obj),
        ("storage.k8s.io/v1", "StorageClass") => roundtrip::<storage::StorageClass>(obj),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
            roundtrip::<apiextensions::CustomResourceDefinition>(obj)
        }
        ("snapshot.storage.k8s.io/v1", "VolumeSnapshotClass") => roundtrip::<VolumeSnapshotClass>(obj),
        ("groupsnapshot.storage.k8s.io/v1beta1", "VolumeGroupSnapshotClass") => {
            roundtrip::<VolumeSnapshotClass>(obj)
        }
        ("monitoring.coreos.com/v1", "PrometheusRule") => roundtrip::<PrometheusRule>(obj),
        ("monitoring.coreos.com/v1", "ServiceMonitor") => roundtrip::<ServiceMonitor>(obj),
        _ => bail!("no schema for {kind} ({api_version}) in this test: add its type to schema.rs"),
    }
}

fn roundtrip<K: DeserializeOwned + Serialize>(obj: &Value) -> Result<()> {
    let typed: K = serde_json::from_value(obj.clone()).context("does not match the schema")?;
    let back = serde_json::to_value(&typed)?;
    let mut differences = Vec::new();
    diff("", &without_nulls(obj), &back, &mut differences);
    if !differences.is_empty() {
        bail!(
            "not in the schema or changed by it:\n  {}",
            differences.join("\n  ")
        );
    }
    Ok(())
}

/// `null` fields mean "absent" to the API server, as they do to the typed structs.
fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

fn diff(path: &str, rendered: &Value, typed: &Value, out: &mut Vec<String>) {
    match (rendered, typed) {
        (Value::Object(r), Value::Object(t)) => {
            for (k, rv) in r {
                let p = format!("{path}.{k}");
                match t.get(k) {
                    Some(tv) => diff(&p, rv, tv, out),
                    None => out.push(format!("{p}: unknown field")),
                }
            }
            for k in t.keys().filter(|k| !r.contains_key(*k)) {
                out.push(format!("{path}.{k}: added by the schema's type"));
            }
        }
        (Value::Array(r), Value::Array(t)) if r.len() == t.len() => {
            for (i, (rv, tv)) in r.iter().zip(t).enumerate() {
                diff(&format!("{path}[{i}]"), rv, tv, out);
            }
        }
        (r, t) if r == t => {}
        (Value::Number(r), Value::Number(t)) if r.as_f64() == t.as_f64() => {}
        (r, t) => out.push(format!("{path}: rendered {r}, reads as {t}")),
    }
}

/// `snapshot.storage.k8s.io/v1` VolumeSnapshotClass, as the external-snapshotter's CRD
/// (client/config/crd/snapshot.storage.k8s.io_volumesnapshotclasses.yaml) declares it; the
/// v8 `groupsnapshot.storage.k8s.io/v1beta1` VolumeGroupSnapshotClass has the same fields.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct VolumeSnapshotClass {
    api_version: String,
    kind: String,
    metadata: ObjectMeta,
    driver: String,
    deletion_policy: DeletionPolicy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parameters: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Serialize, Deserialize)]
enum DeletionPolicy {
    Delete,
    Retain,
}

/// `monitoring.coreos.com/v1` PrometheusRule (prometheus-operator's CRD), the fields a chart
/// uses.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PrometheusRule {
    api_version: String,
    kind: String,
    metadata: ObjectMeta,
    spec: PrometheusRuleSpec,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrometheusRuleSpec {
    groups: Vec<RuleGroup>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleGroup {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    interval: Option<String>,
    rules: Vec<Rule>,
}

/// One alerting or recording rule; `expr` is PromQL (checked in monitoring.rs).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) alert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) record: Option<String>,
    pub(crate) expr: String,
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub(crate) for_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) annotations: Option<BTreeMap<String, String>>,
}

/// `monitoring.coreos.com/v1` ServiceMonitor (prometheus-operator's CRD), the fields a chart
/// uses.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ServiceMonitor {
    api_version: String,
    kind: String,
    metadata: ObjectMeta,
    spec: ServiceMonitorSpec,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ServiceMonitorSpec {
    selector: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    namespace_selector: Option<NamespaceSelector>,
    endpoints: Vec<Endpoint>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NamespaceSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    match_names: Option<Vec<String>>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Endpoint {
    port: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scrape_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    honor_labels: Option<bool>,
}

/// The rules of a rendered PrometheusRule, typed.
pub(crate) fn prometheus_rules(obj: &Value) -> Result<Vec<Rule>> {
    let rule: PrometheusRule = serde_json::from_value(obj.clone())?;
    Ok(rule.spec.groups.into_iter().flat_map(|g| g.rules).collect())
}
