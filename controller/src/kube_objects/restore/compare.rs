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
