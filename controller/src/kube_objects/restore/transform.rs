//! Rewriting a backed-up object for the cluster it goes into: drop what the server owns,
//! move it to its mapped namespace everywhere the namespace appears, add labels.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::kube_objects::discover::ResourceRecord;

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

/// The label kube-apiserver sets on every Namespace to its name.
const NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// What to change while restoring.
#[derive(Debug, Clone)]
pub struct Rewrite<'a> {
    /// Old namespace → new.
    pub namespace_mapping: &'a BTreeMap<String, String>,
    /// Labels to add.
    pub labels: &'a BTreeMap<String, String>,
    /// Keep `status` (`restoreStatus`).
    pub restore_status: bool,
}

/// The object to create and, separately, the status to write afterwards through the status
/// subresource (where there is one, `status` in a create or update is ignored by the
/// server). Without `restore_status` the status goes; with it, a resource without a status
/// subresource keeps `status` in the object itself, where the server takes it.
pub fn prepare(mut obj: Value, record: &ResourceRecord, rewrite: &Rewrite<'_>) -> (Value, Option<Value>) {
    let map = |ns: &str| {
        rewrite
            .namespace_mapping
            .get(ns)
            .cloned()
            .unwrap_or_else(|| ns.to_string())
    };
    let in_body = rewrite.restore_status && !record.status_subresource;
    let status = if in_body {
        None
    } else {
        obj.as_object_mut().and_then(|o| o.remove("status"))
    };
    let moved = obj["metadata"]["namespace"]
        .as_str()
        .is_some_and(|ns| rewrite.namespace_mapping.contains_key(ns));
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
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
            // The API server keeps this label equal to the name; a mapped copy carries its new one.
            if let Some(labels) = meta.get_mut("labels").and_then(Value::as_object_mut)
                && labels.contains_key(NAME_LABEL)
            {
                labels.insert(NAME_LABEL.to_string(), Value::String(name.clone()));
            }
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
        ("", "services") => reset_cluster_ip(&mut obj, moved),
        ("", "persistentvolumes") => {
            if let Some(claim) = obj.pointer_mut("/spec/claimRef").and_then(Value::as_object_mut) {
                claim.remove("uid");
                claim.remove("resourceVersion");
                if let Some(ns) = claim.get("namespace").and_then(Value::as_str).map(map) {
                    claim.insert("namespace".to_string(), Value::String(ns));
                }
            }
        }
        ("", "pods") => strip_pod_bindings(&mut obj),
        ("batch", "jobs") => forget_job_selector(&mut obj),
        ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings") => {
            if let Some(subjects) = obj.get_mut("subjects").and_then(Value::as_array_mut) {
                for s in subjects {
                    if let Some(ns) = s["namespace"].as_str().map(map) {
                        s["namespace"] = Value::String(ns);
                    }
                }
            }
        }
        _ => {}
    }
    let status = status.filter(|_| rewrite.restore_status && record.status_subresource);
    (obj, status)
}

/// Renames the StorageClass of a PersistentVolumeClaim or PersistentVolume per `mapping`
/// (the class a cluster in another region or cloud offers instead); other objects and
/// unmapped classes are left as they are.
pub fn map_storage_class(obj: &mut Value, record: &ResourceRecord, mapping: &BTreeMap<String, String>) {
    if mapping.is_empty()
        || !record.group.is_empty()
        || !matches!(
            record.plural.as_str(),
            "persistentvolumeclaims" | "persistentvolumes"
        )
    {
        return;
    }
    if let Some(to) = obj["spec"]["storageClassName"]
        .as_str()
        .and_then(|c| mapping.get(c))
    {
        obj["spec"]["storageClassName"] = Value::String(to.clone());
    }
    // The beta annotation some old claims still carry wins over the field on old servers.
    let beta = "volume.beta.kubernetes.io/storage-class";
    if let Some(to) = obj["metadata"]["annotations"][beta]
        .as_str()
        .and_then(|c| mapping.get(c))
    {
        obj["metadata"]["annotations"][beta] = Value::String(to.clone());
    }
}

/// Binds a PersistentVolumeClaim to `volume`, the new PersistentVolume holding its restored
/// data: `spec.volumeName` names it (the PersistentVolume's `claimRef` names the claim, so the
/// PV controller binds the two and nothing is provisioned), and what tied the claim to its
/// old volume goes: the bind annotations, the node a `WaitForFirstConsumer` class had chosen,
/// and the data source it was first filled from (its data is already there).
pub fn bind_claim(obj: &mut Value, volume: &str) {
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("volumeName".to_string(), Value::String(volume.to_string()));
        spec.remove("dataSource");
        spec.remove("dataSourceRef");
    }
    forget_binding(obj);
}

/// Unbinds a PersistentVolumeClaim whose volume is not restored: no `spec.volumeName`, no bind
/// annotations or chosen node, so its class provisions a new (empty) volume for it.
pub fn unbind_claim(obj: &mut Value) {
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        spec.remove("volumeName");
    }
    forget_binding(obj);
}

/// Drops the annotations that record a claim's binding and the node its volume was made for.
/// Reads through `get_mut`/`pointer_mut`, never `obj["…"]` for a mutable borrow: serde_json's
/// `IndexMut` inserts a missing key as `null`, and a restored object would then differ from
/// its backup (`metadata.annotations: null`), so a rerun never finds it unchanged.
fn forget_binding(obj: &mut Value) {
    if let Some(annotations) = obj
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        for a in [
            "pv.kubernetes.io/bind-completed",
            "pv.kubernetes.io/bound-by-controller",
            "volume.kubernetes.io/selected-node",
        ] {
            annotations.remove(a);
        }
    }
}

/// Pods lose what tied them to their old cluster: the node they ran on (let the scheduler
/// choose) and the projected service-account token volume, which the API server's admission
/// adds afresh (a restored copy names a token that no longer exists).
fn strip_pod_bindings(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    spec.remove("nodeName");
    let is_token = |name: &str| name.starts_with("kube-api-access-");
    if let Some(volumes) = spec.get_mut("volumes").and_then(Value::as_array_mut) {
        volumes.retain(|v| !v["name"].as_str().is_some_and(is_token));
    }
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for c in spec
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if let Some(mounts) = c.get_mut("volumeMounts").and_then(Value::as_array_mut) {
                mounts.retain(|m| !m["name"].as_str().is_some_and(is_token));
            }
        }
    }
}

/// A Job's generated selector names its old uid, and kube-apiserver refuses a selector it did
/// not generate ("`selector` not auto-generated"): unless `manualSelector`, the selector and
/// the controller-uid labels it selects go, for the server to generate them anew (as Velero's
/// Job restore action does).
fn forget_job_selector(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if spec.get("manualSelector") == Some(&Value::Bool(true)) {
        return;
    }
    spec.remove("selector");
    if let Some(labels) = spec
        .get_mut("template")
        .and_then(|t| t.pointer_mut("/metadata/labels"))
        .and_then(Value::as_object_mut)
    {
        labels.remove("controller-uid");
        labels.remove("batch.kubernetes.io/controller-uid");
    }
}

/// Services get a new cluster IP unless headless (`None`), as the old one may be taken. A
/// copy restored into another namespace also gives up its node ports, which the original
/// still holds.
fn reset_cluster_ip(obj: &mut Value, copy: bool) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if copy && let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            if let Some(p) = p.as_object_mut() {
                p.remove("nodePort");
            }
        }
    }
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
            singular: String::new(),
            short_names: Vec::new(),
        }
    }

    #[test]
    fn server_fields_go_and_namespaces_move() {
        let mapping = BTreeMap::from([("a".to_string(), "b".to_string())]);
        let labels = BTreeMap::from([("restored".to_string(), "yes".to_string())]);
        let rw = Rewrite {
            namespace_mapping: &mapping,
            labels: &labels,
            restore_status: true,
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

        let np = json!({"metadata": {"name": "np", "namespace": "a"}, "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}});
        let (out, _) = prepare(np.clone(), &record("", "services"), &rw);
        assert!(
            out["spec"]["ports"][0].get("nodePort").is_none(),
            "a copy gives up the node port"
        );
        let same = Rewrite {
            namespace_mapping: &BTreeMap::new(),
            labels: &labels,
            restore_status: false,
        };
        let (out, _) = prepare(np, &record("", "services"), &same);
        assert_eq!(
            out["spec"]["ports"][0]["nodePort"], 30080,
            "in place, it keeps it"
        );

        let pod = json!({"metadata": {"name": "p", "namespace": "a"}, "spec": {"nodeName": "n1",
            "volumes": [{"name": "kube-api-access-x1"}, {"name": "data"}],
            "containers": [{"name": "c", "volumeMounts": [{"name": "kube-api-access-x1"}, {"name": "data"}]}]}});
        let (out, _) = prepare(pod, &record("", "pods"), &rw);
        assert!(out["spec"].get("nodeName").is_none());
        assert_eq!(out["spec"]["volumes"], json!([{"name": "data"}]));
        assert_eq!(
            out["spec"]["containers"][0]["volumeMounts"],
            json!([{"name": "data"}])
        );

        let ns =
            json!({"metadata": {"name": "a", "labels": {"kubernetes.io/metadata.name": "a", "team": "x"}}});
        let (out, _) = prepare(ns, &record("", "namespaces"), &rw);
        assert_eq!(out["metadata"]["name"], "b");
        assert_eq!(out["metadata"]["labels"]["kubernetes.io/metadata.name"], "b");
        assert_eq!(out["metadata"]["labels"]["team"], "x");
    }

    #[test]
    fn status_goes_in_the_body_where_there_is_no_status_subresource() {
        let none = BTreeMap::new();
        let with = |restore_status| Rewrite {
            namespace_mapping: &none,
            labels: &none,
            restore_status,
        };
        let obj =
            json!({"metadata": {"name": "w", "namespace": "a"}, "spec": {"x": 1}, "status": {"ready": true}});
        let mut plain = record("example.com", "widgets");
        plain.status_subresource = false;
        let (out, status) = prepare(obj.clone(), &plain, &with(true));
        assert_eq!(out["status"], json!({"ready": true}));
        assert_eq!(status, None);
        let (out, status) = prepare(obj.clone(), &plain, &with(false));
        assert!(out.get("status").is_none());
        assert_eq!(status, None);
        let sub = record("example.com", "widgets");
        let (out, status) = prepare(obj.clone(), &sub, &with(true));
        assert!(out.get("status").is_none());
        assert_eq!(status, Some(json!({"ready": true})));
        let (_, status) = prepare(obj, &sub, &with(false));
        assert_eq!(status, None);
    }

    #[test]
    fn a_bound_claim_names_its_new_volume_and_forgets_the_old() {
        let mut pvc = json!({
            "metadata": {"name": "data", "annotations": {
                "pv.kubernetes.io/bind-completed": "yes",
                "volume.kubernetes.io/selected-node": "node-7",
                "team": "db"}},
            "spec": {"volumeName": "pvc-old", "storageClassName": "fast",
                     "dataSource": {"kind": "VolumeSnapshot", "name": "s"}}
        });
        let mut unbound = pvc.clone();
        bind_claim(&mut pvc, "pvc-new");
        assert_eq!(pvc["spec"]["volumeName"], "pvc-new");
        assert_eq!(pvc["spec"]["storageClassName"], "fast");
        assert!(pvc["spec"].get("dataSource").is_none());
        assert_eq!(pvc["metadata"]["annotations"], json!({"team": "db"}));
        unbind_claim(&mut unbound);
        assert!(unbound["spec"].get("volumeName").is_none());
        assert_eq!(unbound["spec"]["storageClassName"], "fast");
        assert_eq!(unbound["metadata"]["annotations"], json!({"team": "db"}));
    }

    #[test]
    fn absent_fields_stay_absent() {
        // serde_json's IndexMut would insert them as null: the restored object would then
        // differ from its backup, and a rerun never converge.
        let bare = json!({"metadata": {"name": "data"}});
        let mut claim = json!({"metadata": {"name": "data"}, "spec": {"volumeName": "pvc-old"}});
        bind_claim(&mut claim, "pvc-new");
        assert_eq!(
            claim,
            json!({"metadata": {"name": "data"}, "spec": {"volumeName": "pvc-new"}})
        );
        for plural in ["persistentvolumeclaims", "persistentvolumes", "pods", "services"] {
            let mut obj = bare.clone();
            unbind_claim(&mut obj);
            let map = BTreeMap::new();
            let rw = Rewrite {
                namespace_mapping: &map,
                labels: &map,
                restore_status: false,
            };
            let (out, _) = prepare(obj, &record("", plural), &rw);
            assert_eq!(out, bare, "{plural}");
        }
        let map = BTreeMap::new();
        let rw = Rewrite {
            namespace_mapping: &map,
            labels: &map,
            restore_status: false,
        };
        let (out, _) = prepare(
            bare.clone(),
            &record("rbac.authorization.k8s.io", "rolebindings"),
            &rw,
        );
        assert_eq!(out, bare);
    }

    #[test]
    fn storage_classes_are_mapped_on_claims_and_volumes_only() {
        let mapping = BTreeMap::from([("fast-eu".to_string(), "fast-us".to_string())]);
        let mut pvc = json!({"metadata": {"name": "d", "annotations": {"volume.beta.kubernetes.io/storage-class": "fast-eu"}},
            "spec": {"storageClassName": "fast-eu"}});
        map_storage_class(&mut pvc, &record("", "persistentvolumeclaims"), &mapping);
        assert_eq!(pvc["spec"]["storageClassName"], "fast-us");
        assert_eq!(
            pvc["metadata"]["annotations"]["volume.beta.kubernetes.io/storage-class"],
            "fast-us"
        );
        let mut pv = json!({"metadata": {"name": "v"}, "spec": {"storageClassName": "slow"}});
        map_storage_class(&mut pv, &record("", "persistentvolumes"), &mapping);
        assert_eq!(pv["spec"]["storageClassName"], "slow", "unmapped classes stay");
        let mut other = json!({"metadata": {"name": "x"}, "spec": {"storageClassName": "fast-eu"}});
        map_storage_class(&mut other, &record("example.com", "widgets"), &mapping);
        assert_eq!(other["spec"]["storageClassName"], "fast-eu");
    }
}
