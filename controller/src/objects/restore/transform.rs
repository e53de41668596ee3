//! Rewriting a backed-up object for the cluster it goes into: drop what the server owns,
//! move it to its mapped namespace everywhere the namespace appears, add labels.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::objects::discover::ResourceRecord;

/// Metadata the API server sets; sending it back would fail or lie.
const SERVER_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "managedFields",
    "selfLink",
    "ownerReferences",
];

/// What to change while restoring.
#[derive(Debug, Clone)]
pub struct Rewrite<'a> {
    /// Old namespace → new.
    pub namespace_mapping: &'a BTreeMap<String, String>,
    /// Labels to add.
    pub labels: &'a BTreeMap<String, String>,
}

/// The object to create and, separately, the status to write afterwards (when the
/// resource has a status subresource, `status` in a create is ignored by the server).
pub fn prepare(mut obj: Value, record: &ResourceRecord, rewrite: &Rewrite<'_>) -> (Value, Option<Value>) {
    let map = |ns: &str| {
        rewrite
            .namespace_mapping
            .get(ns)
            .cloned()
            .unwrap_or_else(|| ns.to_string())
    };
    let status = obj.as_object_mut().and_then(|o| o.remove("status"));
    if let Some(meta) = obj["metadata"].as_object_mut() {
        for field in SERVER_METADATA {
            meta.remove(*field);
        }
        if let Some(ns) = meta.get("namespace").and_then(Value::as_str).map(map) {
            meta.insert("namespace".to_string(), Value::String(ns));
        }
        if record.group.is_empty()
            && record.plural == "namespaces"
            && let Some(name) = meta.get("name").and_then(Value::as_str).map(map)
        {
            meta.insert("name".to_string(), Value::String(name));
        }
        if !rewrite.labels.is_empty() {
            let labels = meta.entry("labels").or_insert_with(|| Value::Object(Map::new()));
            if let Some(labels) = labels.as_object_mut() {
                for (k, v) in rewrite.labels {
                    labels.insert(k.clone(), Value::String(v.clone()));
                }
            }
        }
    }
    match (record.group.as_str(), record.plural.as_str()) {
        ("", "services") => reset_cluster_ip(&mut obj),
        ("", "persistentvolumes") => {
            if let Some(claim) = obj["spec"]["claimRef"].as_object_mut() {
                claim.remove("uid");
                claim.remove("resourceVersion");
                if let Some(ns) = claim.get("namespace").and_then(Value::as_str).map(map) {
                    claim.insert("namespace".to_string(), Value::String(ns));
                }
            }
        }
        ("", "pods") => {
            // The node it ran on may be gone; let the scheduler choose.
            if let Some(spec) = obj["spec"].as_object_mut() {
                spec.remove("nodeName");
            }
        }
        ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings") => {
            if let Some(subjects) = obj["subjects"].as_array_mut() {
                for s in subjects {
                    if let Some(ns) = s["namespace"].as_str().map(map) {
                        s["namespace"] = Value::String(ns);
                    }
                }
            }
        }
        _ => {}
    }
    let status = status.filter(|_| record.status_subresource);
    (obj, status)
}

/// Services get a new cluster IP unless headless (`None`), as the old one may be taken.
fn reset_cluster_ip(obj: &mut Value) {
    let Some(spec) = obj["spec"].as_object_mut() else {
        return;
    };
    let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
    if !headless {
        spec.remove("clusterIP");
        spec.remove("clusterIPs");
    }
    spec.remove("healthCheckNodePort");
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn record(group: &str, plural: &str) -> ResourceRecord {
        ResourceRecord {
            group: group.to_string(),
            version: "v1".to_string(),
            kind: "X".to_string(),
            plural: plural.to_string(),
            namespaced: true,
            status_subresource: true,
        }
    }

    #[test]
    fn server_fields_go_and_namespaces_move() {
        let mapping = BTreeMap::from([("a".to_string(), "b".to_string())]);
        let labels = BTreeMap::from([("restored".to_string(), "yes".to_string())]);
        let rw = Rewrite {
            namespace_mapping: &mapping,
            labels: &labels,
        };
        let obj = json!({"metadata": {"name": "x", "namespace": "a", "uid": "u", "resourceVersion": "9",
            "creationTimestamp": "t", "managedFields": []}, "spec": {"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"]},
            "status": {"loadBalancer": {}}});
        let (out, status) = prepare(obj, &record("", "services"), &rw);
        assert_eq!(
            out["metadata"],
            json!({"name": "x", "namespace": "b", "labels": {"restored": "yes"}})
        );
        assert_eq!(out["spec"], json!({}));
        assert!(status.is_some());

        let headless = json!({"metadata": {"name": "h", "namespace": "a"}, "spec": {"clusterIP": "None"}});
        let (out, _) = prepare(headless, &record("", "services"), &rw);
        assert_eq!(out["spec"]["clusterIP"], "None");

        let rb = json!({"metadata": {"name": "r", "namespace": "a"},
            "subjects": [{"kind": "ServiceAccount", "name": "s", "namespace": "a"}, {"kind": "User", "name": "u"}]});
        let (out, _) = prepare(rb, &record("rbac.authorization.k8s.io", "rolebindings"), &rw);
        assert_eq!(out["subjects"][0]["namespace"], "b");
        assert!(out["subjects"][1].get("namespace").is_none());

        let pv = json!({"metadata": {"name": "pv1"}, "spec": {"claimRef": {"namespace": "a", "name": "c", "uid": "u"}}});
        let (out, _) = prepare(pv, &record("", "persistentvolumes"), &rw);
        assert_eq!(out["spec"]["claimRef"], json!({"namespace": "b", "name": "c"}));

        let ns = json!({"metadata": {"name": "a"}});
        let (out, _) = prepare(ns, &record("", "namespaces"), &rw);
        assert_eq!(out["metadata"]["name"], "b");
    }
}
