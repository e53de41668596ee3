//! The `scale` subresource (autoscaling/v1 `Scale`), as `kubectl scale` and fencing code use
//! it: for Deployments, StatefulSets, ReplicaSets and CRDs that declare it.

use serde_json::{Value, json};

use super::registry::ResourceType;
use super::status::ApiError;

/// Where an object keeps its replica counts (dotted paths, e.g. `spec.replicas`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalePaths {
    /// Desired replicas.
    pub spec: String,
    /// Observed replicas.
    pub status: String,
    /// The label selector: a string, or a `LabelSelector` object (built-ins).
    pub selector: Option<String>,
}

impl ScalePaths {
    /// The built-in workload layout.
    pub fn workload() -> Self {
        Self {
            spec: "spec.replicas".into(),
            status: "status.replicas".into(),
            selector: Some("spec.selector".into()),
        }
    }

    /// From a CRD's `subresources.scale` (`.spec.replicas` style JSON paths).
    pub fn from_crd(v: &Value) -> Option<Self> {
        let path = |k: &str| v[k].as_str().map(|p| p.trim_start_matches('.').to_string());
        Some(Self {
            spec: path("specReplicasPath")?,
            status: path("statusReplicasPath")?,
            selector: path("labelSelectorPath"),
        })
    }
}

fn get<'a>(obj: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(obj, |v, k| &v[k])
}

fn selector_string(v: &Value) -> Option<String> {
    if let Some(s) = v.as_str() {
        return Some(s.to_string());
    }
    let labels = v["matchLabels"].as_object()?;
    Some(
        labels
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// The `Scale` view of `obj`.
pub fn view(rt: &ResourceType, paths: &ScalePaths, obj: &Value) -> Value {
    let m = &obj["metadata"];
    let mut status = json!({ "replicas": get(obj, &paths.status).as_i64().unwrap_or(0) });
    if let Some(sel) = paths.selector.as_ref().and_then(|p| selector_string(get(obj, p))) {
        status["selector"] = json!(sel);
    }
    let mut meta = json!({
        "name": m["name"], "uid": m["uid"], "resourceVersion": m["resourceVersion"],
        "creationTimestamp": m["creationTimestamp"],
    });
    if rt.namespaced {
        meta["namespace"] = m["namespace"].clone();
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": meta,
        "spec": { "replicas": get(obj, &paths.spec).as_i64().unwrap_or(0) },
        "status": status,
    })
}

/// `obj` with the replicas a written `Scale` asks for.
pub fn apply(paths: &ScalePaths, obj: &Value, scale: &Value) -> Result<Value, ApiError> {
    let replicas = scale["spec"]["replicas"].as_i64().unwrap_or(0);
    if replicas < 0 {
        return Err(ApiError::bad_request(
            "spec.replicas: must be greater than or equal to 0",
        ));
    }
    let mut out = obj.clone();
    let mut target = &mut out;
    for k in paths.spec.split('.') {
        target = &mut target[k];
    }
    *target = json!(replicas);
    Ok(out)
}
