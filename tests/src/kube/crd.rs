//! CustomResourceDefinitions: validating them, their status, and the resource types they add.

use std::sync::Arc;

use serde_json::{Value, json};

use super::names;
use super::registry::{NameRule, ResourceType};
use super::scale::ScalePaths;

/// The finalizer the server puts on CRDs so their custom resources are removed first.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// Validation failures of a CRD, as `(field, message)` pairs.
pub fn validate(crd: &Value) -> Vec<(String, String)> {
    let mut errs = Vec::new();
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or("");
    let plural = spec["names"]["plural"].as_str().unwrap_or("");
    let name = crd["metadata"]["name"].as_str().unwrap_or("");
    if group.is_empty() || names::validate(NameRule::Subdomain, group).is_some() || !group.contains('.') {
        errs.push((
            "spec.group".into(),
            format!("Invalid value: \"{group}\": should be a domain with at least one dot"),
        ));
    }
    if plural.is_empty() || names::validate(NameRule::Label, plural).is_some() {
        errs.push(("spec.names.plural".into(), format!("Invalid value: \"{plural}\"")));
    }
    if spec["names"]["kind"].as_str().unwrap_or("").is_empty() {
        errs.push(("spec.names.kind".into(), "Required value".into()));
    }
    if name != format!("{plural}.{group}") {
        errs.push((
            "metadata.name".into(),
            format!("Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    match spec["scope"].as_str() {
        Some("Namespaced") | Some("Cluster") => {}
        other => errs.push((
            "spec.scope".into(),
            format!(
                "Unsupported value: {:?}: supported values: \"Cluster\", \"Namespaced\"",
                other.unwrap_or("")
            ),
        )),
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions.is_empty() || versions.iter().filter(|v| v["storage"] == json!(true)).count() != 1 {
        errs.push((
            "spec.versions".into(),
            "Invalid value: must have exactly one version marked as storage version".into(),
        ));
    }
    errs
}

/// The accepted names a CRD's status reports, with the server's defaults filled in.
fn accepted_names(crd: &Value) -> Value {
    let n = &crd["spec"]["names"];
    let kind = n["kind"].as_str().unwrap_or("");
    let mut out = json!({
        "plural": n["plural"],
        "singular": n["singular"].as_str().map(String::from).unwrap_or_else(|| kind.to_lowercase()),
        "kind": kind,
        "listKind": n["listKind"].as_str().map(String::from).unwrap_or_else(|| format!("{kind}List")),
    });
    for f in ["shortNames", "categories"] {
        if n[f].is_array() {
            out[f] = n[f].clone();
        }
    }
    out
}

/// The status the server maintains: names accepted, Established, stored versions.
pub fn status(crd: &Value, old_status: Option<&Value>) -> Value {
    let now = names::now_rfc3339();
    let cond = |t: &str, reason: &str, msg: &str| {
        let prev = old_status
            .and_then(|s| s["conditions"].as_array())
            .and_then(|cs| cs.iter().find(|c| c["type"] == json!(t)))
            .and_then(|c| c["lastTransitionTime"].as_str())
            .map(String::from);
        json!({"type": t, "status": "True", "reason": reason, "message": msg,
               "lastTransitionTime": prev.unwrap_or_else(|| now.clone())})
    };
    let storage: Vec<Value> = crd["spec"]["versions"]
        .as_array()
        .map(|vs| {
            vs.iter()
                .filter(|v| v["storage"] == json!(true))
                .map(|v| v["name"].clone())
                .collect()
        })
        .unwrap_or_default();
    let mut stored = old_status
        .map(|s| strings(&s["storedVersions"]))
        .unwrap_or_default();
    for v in storage.iter().filter_map(Value::as_str) {
        if !stored.iter().any(|s| s == v) {
            stored.push(v.to_string());
        }
    }
    json!({
        "conditions": [
            cond("NamesAccepted", "NoConflicts", "no conflicts found"),
            cond("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "acceptedNames": accepted_names(crd),
        "storedVersions": stored,
    })
}

/// The resource types a CRD serves (one per served version).
pub fn types(crd: &Value) -> Vec<ResourceType> {
    let spec = &crd["spec"];
    let n = accepted_names(crd);
    let name = crd["metadata"]["name"].as_str().unwrap_or("").to_string();
    let schema_of = |v: &Value| {
        let s = &v["schema"]["openAPIV3Schema"];
        s.is_object().then(|| Arc::new(s.clone()))
    };
    let storage_schema = spec["versions"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v["storage"] == json!(true)))
        .and_then(schema_of);
    spec["versions"]
        .as_array()
        .map(|vs| {
            vs.iter()
                .filter(|v| v["served"] != json!(false))
                .map(|v| ResourceType {
                    group: spec["group"].as_str().unwrap_or("").into(),
                    storage_group: spec["group"].as_str().unwrap_or("").into(),
                    version: v["name"].as_str().unwrap_or("").into(),
                    plural: n["plural"].as_str().unwrap_or("").into(),
                    singular: n["singular"].as_str().unwrap_or("").into(),
                    kind: n["kind"].as_str().unwrap_or("").into(),
                    namespaced: spec["scope"] == json!("Namespaced"),
                    short_names: strings(&n["shortNames"]),
                    categories: strings(&n["categories"]),
                    status: v["subresources"]["status"].is_object(),
                    generation: true,
                    names: NameRule::Subdomain,
                    fields: Vec::new(),
                    crd: Some(name.clone()),
                    scale: ScalePaths::from_crd(&v["subresources"]["scale"]),
                    schema: schema_of(v),
                    storage_schema: storage_schema.clone(),
                })
                .collect()
        })
        .unwrap_or_default()
}
