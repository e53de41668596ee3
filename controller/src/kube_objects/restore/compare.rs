//! Comparing a backed-up object with what the cluster has: the server adds defaults, so
//! "unchanged" means every field the backup sets has the same value in the cluster.

use serde_json::Value;

/// True when every field of `desired` is present with the same value in `existing`
/// (lists compare whole).
pub fn is_subset(desired: &Value, existing: &Value) -> bool {
    match (desired, existing) {
        (Value::Object(d), Value::Object(e)) => {
            d.iter().all(|(k, v)| e.get(k).is_some_and(|ev| is_subset(v, ev)))
        }
        _ => desired == existing,
    }
}

/// Resources whose `spec` the API server neither defaults after the backup read it nor
/// mutates later (unlike Pods, whose admission adds tolerations and tokens, or claims and
/// volumes, which the binder fills in): a field there that the backup lacks was added
/// since, and an update removes it.
const USER_OWNED_SPECS: &[&str] = &[
    "deployments.apps",
    "statefulsets.apps",
    "daemonsets.apps",
    "cronjobs.batch",
];

/// Annotation prefixes controllers write on objects they manage (a revision, a binding):
/// not drift.
const CONTROLLER_ANNOTATIONS: &[&str] = &[
    "deployment.kubernetes.io/",
    "pv.kubernetes.io/",
    "volume.kubernetes.io/",
    "volume.beta.kubernetes.io/",
    "control-plane.alpha.kubernetes.io/",
    "endpoints.kubernetes.io/",
];

/// Fields the cluster's object has and `desired` (an object of resource `key`, e.g.
/// `deployments.apps`) lacks, where only users put them: labels and annotations (but
/// [`CONTROLLER_ANNOTATIONS`]), `data` and `binaryData`, and the `spec` of
/// [`USER_OWNED_SPECS`]; as `path: value → (unset)` lines. Lists compare whole in
/// [`is_subset`], so they are not walked.
pub fn extra_fields(key: &str, desired: &Value, existing: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for (path, controllers) in [("/metadata/labels", false), ("/metadata/annotations", true)] {
        let (Some(want), Some(have)) = (
            desired.pointer(path).or(Some(&Value::Null)),
            existing.pointer(path).and_then(Value::as_object),
        ) else {
            continue;
        };
        for (k, v) in have {
            let managed = controllers && CONTROLLER_ANNOTATIONS.iter().any(|p| k.starts_with(p));
            if !managed && want.get(k).is_none() {
                out.push(format!("{path}/{k}: {} → (unset)", short(v)));
            }
        }
    }
    let mut sections = vec!["data", "binaryData"];
    if USER_OWNED_SPECS.contains(&key) {
        sections.push("spec");
    }
    for section in sections {
        if let Some(have) = existing.get(section) {
            extras(
                desired.get(section).unwrap_or(&Value::Null),
                have,
                format!("/{section}"),
                &mut out,
            );
        }
    }
    out
}

fn extras(desired: &Value, existing: &Value, path: String, out: &mut Vec<String>) {
    let Value::Object(e) = existing else {
        return;
    };
    for (k, v) in e {
        let p = format!("{path}/{k}");
        match desired.get(k) {
            None => out.push(format!("{p}: {} → (unset)", short(v))),
            Some(d) => extras(d, v, p, out),
        }
    }
}

/// The fields an update would change, as `path: old → new` lines.
pub fn changed_fields(desired: &Value, existing: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(desired, existing, String::new(), &mut out);
    out
}

fn walk(desired: &Value, existing: &Value, path: String, out: &mut Vec<String>) {
    match (desired, existing) {
        (Value::Object(d), Value::Object(e)) => {
            for (k, v) in d {
                let p = format!("{path}/{k}");
                match e.get(k) {
                    Some(ev) => walk(v, ev, p, out),
                    None => out.push(format!("{p}: (unset) → {}", short(v))),
                }
            }
        }
        _ if desired != existing => out.push(format!("{path}: {} → {}", short(existing), short(desired))),
        _ => {}
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 80 {
        format!("{}…", &s[..s.char_indices().nth(77).map_or(s.len(), |(i, _)| i)])
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn fields_added_since_the_backup_are_extra_where_users_own_them() {
        let desired = json!({
            "metadata": {"labels": {"app": "web"}, "annotations": {"team": "a"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "c"}]}}},
            "data": {"k": "v"}
        });
        let existing = json!({
            "metadata": {"labels": {"app": "web", "added": "x"},
                         "annotations": {"team": "a", "deployment.kubernetes.io/revision": "3"},
                         "resourceVersion": "7"},
            "spec": {"replicas": 2, "paused": true,
                     "template": {"spec": {"containers": [{"name": "c"}], "hostNetwork": true}}},
            "data": {"k": "v", "extra": "y"},
            "status": {"replicas": 2}
        });
        let found = extra_fields("deployments.apps", &desired, &existing);
        assert_eq!(
            found,
            vec![
                "/metadata/labels/added: \"x\" → (unset)".to_string(),
                "/data/extra: \"y\" → (unset)".to_string(),
                "/spec/paused: true → (unset)".to_string(),
                "/spec/template/spec/hostNetwork: true → (unset)".to_string(),
            ]
        );
        // A Pod's spec is the server's too (admission adds to it): not walked.
        assert_eq!(extra_fields("pods", &desired, &existing).len(), 2);
        // Nothing added: nothing extra.
        let same = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"replicas": 2}});
        assert!(extra_fields("deployments.apps", &same, &same).is_empty());
    }

    #[test]
    fn defaults_added_by_the_server_do_not_count_as_changes() {
        let desired = json!({"spec": {"replicas": 2}});
        let existing = json!({"spec": {"replicas": 2, "strategy": {"type": "RollingUpdate"}}});
        assert!(is_subset(&desired, &existing));
        let changed = json!({"spec": {"replicas": 3}});
        assert!(!is_subset(&changed, &existing));
        assert_eq!(
            changed_fields(&changed, &existing),
            vec!["/spec/replicas: 2 → 3".to_string()]
        );
    }
}
