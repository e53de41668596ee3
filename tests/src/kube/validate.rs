//! The validation of built-in kinds that code creating or restoring objects runs into on a real
//! server: required fields, selectors matching templates, and immutable fields on update (and
//! every kind's labels and annotations, in `object_meta`).
//! Far from all of kube-apiserver's rules: the ones a backup/restore tool trips over.

use serde_json::{Value, json};

use super::registry::ResourceType;

/// `(field, message)` pairs, worded like kube-apiserver's field errors.
pub type Errors = Vec<(String, String)>;

fn required(errs: &mut Errors, v: &Value, field: &str) {
    let missing = match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    };
    if missing {
        errs.push((field.into(), "Required value".into()));
    }
}

fn pod_spec(errs: &mut Errors, spec: &Value, at: &str, job: bool) {
    let containers = spec["containers"].as_array().cloned().unwrap_or_default();
    if containers.is_empty() {
        errs.push((format!("{at}.containers"), "Required value".into()));
    }
    for (i, c) in containers.iter().enumerate() {
        required(errs, &c["name"], &format!("{at}.containers[{i}].name"));
        required(errs, &c["image"], &format!("{at}.containers[{i}].image"));
    }
    if job {
        match spec["restartPolicy"].as_str() {
            Some("OnFailure") | Some("Never") => {}
            None => errs.push((
                format!("{at}.restartPolicy"),
                "Required value: valid values: \"OnFailure\", \"Never\"".into(),
            )),
            Some(other) => errs.push((
                format!("{at}.restartPolicy"),
                format!("Unsupported value: \"{other}\": supported values: \"OnFailure\", \"Never\""),
            )),
        }
    }
}

/// A workload's selector must exist and match its template's labels.
fn selected_template(errs: &mut Errors, spec: &Value, at: &str, job: bool) {
    let sel = &spec["selector"]["matchLabels"];
    let has_exprs = spec["selector"]["matchExpressions"]
        .as_array()
        .is_some_and(|e| !e.is_empty());
    if sel.as_object().is_none_or(|m| m.is_empty()) && !has_exprs {
        errs.push((format!("{at}.selector"), "Required value".into()));
    }
    let labels = &spec["template"]["metadata"]["labels"];
    if let Some(m) = sel.as_object()
        && m.iter().any(|(k, v)| labels.get(k) != Some(v))
    {
        errs.push((
            format!("{at}.template.metadata.labels"),
            format!("Invalid value: {labels}: `selector` does not match template `labels`"),
        ));
    }
    pod_spec(
        errs,
        &spec["template"]["spec"],
        &format!("{at}.template.spec"),
        job,
    );
}

const PV_FIELDS: &[&str] = &[
    "capacity",
    "accessModes",
    "claimRef",
    "persistentVolumeReclaimPolicy",
    "storageClassName",
    "mountOptions",
    "volumeMode",
    "nodeAffinity",
    "volumeAttributesClassName",
];

/// Field errors for a new object: its metadata's (every kind), and a built-in kind's rules.
pub fn create(rt: &ResourceType, obj: &Value) -> Errors {
    let mut errs = super::object_meta::validate(obj);
    if rt.crd.is_some() {
        return errs;
    }
    let spec = &obj["spec"];
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("apps", "deployments" | "replicasets" | "daemonsets" | "statefulsets") => {
            selected_template(&mut errs, spec, "spec", false)
        }
        ("batch", "jobs") => pod_spec(&mut errs, &spec["template"]["spec"], "spec.template.spec", true),
        ("batch", "cronjobs") => {
            required(&mut errs, &spec["schedule"], "spec.schedule");
            let t = &spec["jobTemplate"]["spec"]["template"]["spec"];
            pod_spec(&mut errs, t, "spec.jobTemplate.spec.template.spec", true);
        }
        ("", "pods") => pod_spec(&mut errs, spec, "spec", false),
        ("", "persistentvolumeclaims") => {
            required(&mut errs, &spec["accessModes"], "spec.accessModes");
            required(
                &mut errs,
                &spec["resources"]["requests"]["storage"],
                "spec.resources[storage]",
            );
        }
        ("", "persistentvolumes") => {
            required(&mut errs, &spec["capacity"]["storage"], "spec.capacity");
            required(&mut errs, &spec["accessModes"], "spec.accessModes");
            let has_source = spec
                .as_object()
                .is_some_and(|m| m.keys().any(|k| !PV_FIELDS.contains(&k.as_str())));
            if !has_source {
                errs.push(("spec".into(), "Required value: must specify a volume type".into()));
            }
        }
        ("storage.k8s.io", "storageclasses") => required(&mut errs, &obj["provisioner"], "provisioner"),
        _ => {}
    }
    errs
}

fn immutable(errs: &mut Errors, old: &Value, new: &Value, field: &str) {
    let get = |o: &Value| field.split('.').fold(o.clone(), |v, k| v[k].clone());
    let (a, b) = (get(old), get(new));
    if a != b {
        errs.push((field.into(), format!("Invalid value: {b}: field is immutable")));
    }
}

fn without(v: &Value, keys: &[&str]) -> Value {
    let mut c = v.clone();
    if let Some(m) = c.as_object_mut() {
        for k in keys {
            m.remove(*k);
        }
    }
    c
}

/// Field errors for an update of a built-in kind (`new` already carries old's status).
pub fn update(rt: &ResourceType, old: &Value, new: &Value) -> Errors {
    let mut errs = create(rt, new);
    if rt.crd.is_some() {
        return errs;
    }
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("apps", "deployments" | "replicasets" | "daemonsets") => {
            immutable(&mut errs, old, new, "spec.selector")
        }
        ("apps", "statefulsets") => {
            let allowed = [
                "replicas",
                "ordinals",
                "template",
                "updateStrategy",
                "persistentVolumeClaimRetentionPolicy",
                "minReadySeconds",
            ];
            if without(&old["spec"], &allowed) != without(&new["spec"], &allowed) {
                errs.push(("spec".into(), "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden".into()));
            }
        }
        ("batch", "jobs") => {
            immutable(&mut errs, old, new, "spec.selector");
            if new["spec"]["suspend"] != json!(true) {
                immutable(&mut errs, old, new, "spec.template");
            }
        }
        ("", "persistentvolumeclaims") => {
            let keep = |s: &Value| {
                let mut c = without(s, &["volumeAttributesClassName"]);
                if let Some(r) = c["resources"].as_object_mut() {
                    r.remove("requests");
                }
                c
            };
            if keep(&old["spec"]) != keep(&new["spec"]) {
                errs.push(("spec".into(), "Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims".into()));
            }
        }
        ("", "services") => {
            let ip = new["spec"]["clusterIP"].as_str().unwrap_or("");
            if !ip.is_empty() && old["spec"]["clusterIP"] != json!(ip) {
                errs.push((
                    "spec.clusterIPs[0]".into(),
                    format!("Invalid value: \"{ip}\": field is immutable"),
                ));
            }
        }
        ("", "configmaps" | "secrets") => {
            if old["immutable"] == json!(true) {
                for f in ["data", "binaryData", "immutable"] {
                    if old[f] != new[f] {
                        errs.push((
                            f.into(),
                            "Forbidden: field is immutable when `immutable` is set".into(),
                        ));
                    }
                }
            }
            if rt.plural == "secrets" {
                immutable(&mut errs, old, new, "type");
            }
        }
        ("storage.k8s.io", "storageclasses") => {
            for f in ["provisioner", "parameters", "reclaimPolicy", "volumeBindingMode"] {
                immutable(&mut errs, old, new, f);
            }
        }
        _ => {}
    }
    errs
}
