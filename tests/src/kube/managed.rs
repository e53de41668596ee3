//! `metadata.managedFields`: which manager last wrote which fields, recorded approximately
//! (maps are tracked field by field, lists as a whole) so objects look like a real server's,
//! and so server-side apply can remove the fields a manager stops applying.

use serde_json::{Map, Value, json};

use super::names;

/// Who is writing and how: the `fieldManager` (or the user agent's product name), whether
/// it is a server-side apply (and its body), and `dryRun`.
#[derive(Debug, Clone, Default)]
pub struct Write {
    /// `dryRun=All`: validate and answer, but store nothing.
    pub dry_run: bool,
    /// The field manager recorded in `managedFields`.
    pub manager: String,
    /// The server-side apply body, for an apply.
    pub applied: Option<Value>,
}

impl Write {
    /// A write by the server's own controllers.
    pub fn system() -> Self {
        Self {
            manager: "kube-controller-manager".into(),
            ..Self::default()
        }
    }
}

fn field_set(v: &Value) -> Value {
    match v.as_object() {
        Some(m) if !m.is_empty() => {
            let mut out = Map::new();
            out.insert(".".into(), json!({}));
            for (k, c) in m {
                out.insert(format!("f:{k}"), field_set(c));
            }
            Value::Object(out)
        }
        _ => json!({}),
    }
}

/// The fields of `source` a manager owns: not apiVersion/kind, and of metadata only labels,
/// annotations, finalizers and owner references; only `status` on the status subresource.
fn owned(source: &Value, status_only: bool) -> Value {
    let mut out = Map::new();
    let Some(top) = source.as_object() else {
        return json!({});
    };
    for (k, v) in top {
        match k.as_str() {
            "apiVersion" | "kind" => {}
            "status" if status_only => {
                out.insert("f:status".into(), field_set(v));
            }
            _ if status_only => {}
            "metadata" => {
                let mut meta = Map::new();
                for f in ["labels", "annotations", "finalizers", "ownerReferences"] {
                    if let Some(x) = v.get(f).filter(|x| !x.is_null()) {
                        meta.insert(format!("f:{f}"), field_set(x));
                    }
                }
                if !meta.is_empty() {
                    out.insert("f:metadata".into(), Value::Object(meta));
                }
            }
            _ => {
                out.insert(format!("f:{k}"), field_set(v));
            }
        }
    }
    Value::Object(out)
}

type Path = Vec<String>;

/// The leaf paths of a `fieldsV1` set.
fn leaves(set: &Value, prefix: &mut Path, out: &mut Vec<Path>) {
    let children: Vec<(&String, &Value)> = set
        .as_object()
        .map(|m| m.iter().filter(|(k, _)| k.starts_with("f:")).collect())
        .unwrap_or_default();
    if children.is_empty() {
        if !prefix.is_empty() {
            out.push(prefix.clone());
        }
        return;
    }
    for (k, v) in children {
        prefix.push(k[2..].to_string());
        leaves(v, prefix, out);
        prefix.pop();
    }
}

fn leaf_paths(set: &Value) -> Vec<Path> {
    let mut out = Vec::new();
    leaves(set, &mut Vec::new(), &mut out);
    out
}

/// A `fieldsV1` set holding exactly `paths`.
fn set_of(paths: &[Path]) -> Value {
    let mut root = json!({});
    for p in paths {
        let mut node = &mut root;
        for (depth, k) in p.iter().enumerate() {
            if depth > 0 && node.get(".").is_none() {
                node["."] = json!({});
            }
            node = &mut node[format!("f:{k}")];
            if node.is_null() {
                *node = json!({});
            }
        }
    }
    root
}

fn at<'a>(v: &'a Value, p: &Path) -> Option<&'a Value> {
    p.iter().try_fold(v, |v, k| v.get(k))
}

/// Whether `a` is `b` or lies under it (or the reverse).
fn overlaps(a: &Path, b: &Path) -> bool {
    a.iter().zip(b).all(|(x, y)| x == y)
}

fn is_same_entry(e: &Value, manager: &str, operation: &str, status_only: bool) -> bool {
    e["manager"] == json!(manager)
        && e["operation"] == json!(operation)
        && (e["subresource"] == json!("status")) == status_only
}

/// Whether `manager` has applied to `obj` (on `status` when `status_only`) before: a first
/// apply changes the object (its managedFields) even when every value is already there.
pub fn has_applied(obj: &Value, manager: &str, status_only: bool) -> bool {
    obj["metadata"]["managedFields"]
        .as_array()
        .is_some_and(|es| es.iter().any(|e| is_same_entry(e, manager, "Apply", status_only)))
}

/// Server-side apply's conflicts: fields `applied` would change that another manager owns.
/// `Err` lists them as kube-apiserver does (`conflict with "mgr": .data.a`).
pub fn apply_conflicts(
    current: &Value,
    manager: &str,
    applied: &Value,
    status_only: bool,
) -> Result<(), String> {
    let entries = current["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut conflicts = Vec::new();
    for p in leaf_paths(&owned(applied, status_only)) {
        if at(current, &p).is_none_or(|v| Some(v) == at(applied, &p)) {
            continue;
        }
        for e in entries
            .iter()
            .filter(|e| !is_same_entry(e, manager, "Apply", status_only))
        {
            if leaf_paths(&e["fieldsV1"]).iter().any(|q| overlaps(q, &p)) {
                let mgr = e["manager"].as_str().unwrap_or("");
                let dotted: String = p.iter().map(|k| format!(".{k}")).collect();
                conflicts.push(format!("conflict with \"{mgr}\": {dotted}"));
            }
        }
    }
    if conflicts.is_empty() {
        return Ok(());
    }
    Err(format!(
        "Apply failed with {} conflict{}: {}",
        conflicts.len(),
        if conflicts.len() == 1 { "" } else { "s" },
        conflicts.join("\n")
    ))
}

/// Takes the fields of `obj` that differ from `old` away from every other manager's entry
/// (what an update, or a forced apply, does to ownership).
fn transfer(entries: &mut [Value], obj: &Value, old: &Value, status_only: bool) {
    let changed: Vec<Path> = leaf_paths(&owned(obj, status_only))
        .into_iter()
        .filter(|p| at(obj, p) != at(old, p))
        .collect();
    if changed.is_empty() {
        return;
    }
    for e in entries.iter_mut() {
        let left: Vec<Path> = leaf_paths(&e["fieldsV1"])
            .into_iter()
            .filter(|q| !changed.iter().any(|c| overlaps(c, q)))
            .collect();
        e["fieldsV1"] = set_of(&left);
    }
}

/// Server-side apply's removal rule: fields `manager` applied before but leaves out of
/// `applied` now are removed from `obj`, unless another manager also owns them.
pub fn prune_unapplied(obj: &mut Value, manager: &str, applied: &Value, status_only: bool) {
    let entries = obj["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let Some(before) = entries
        .iter()
        .find(|e| is_same_entry(e, manager, "Apply", status_only))
    else {
        return;
    };
    let now = leaf_paths(&owned(applied, status_only));
    let others: Vec<Path> = entries
        .iter()
        .filter(|e| !is_same_entry(e, manager, "Apply", status_only))
        .flat_map(|e| leaf_paths(&e["fieldsV1"]))
        .collect();
    for gone in leaf_paths(&before["fieldsV1"]) {
        if now.iter().any(|p| overlaps(p, &gone)) || others.iter().any(|p| overlaps(p, &gone)) {
            continue;
        }
        let Some((last, parent)) = gone.split_last() else {
            continue;
        };
        let mut node = &mut *obj;
        for k in parent {
            node = &mut node[k.as_str()];
        }
        if let Some(m) = node.as_object_mut() {
            m.remove(last);
        }
    }
}

/// Records `w`'s write of `obj` (at `api_version`, on `status` when `status_only`): an apply
/// owns what it applied; an update adds the fields it changed from `old` to what it owned.
pub fn record(obj: &mut Value, old: Option<&Value>, w: &Write, api_version: &str, status_only: bool) {
    if w.manager.is_empty() {
        return;
    }
    let operation = if w.applied.is_some() { "Apply" } else { "Update" };
    let entries: Vec<Value> = obj["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let fields = match (&w.applied, old) {
        (Some(applied), _) => owned(applied, status_only),
        (None, None) => owned(obj, status_only),
        (None, Some(old)) => {
            let mut paths: Vec<Path> = entries
                .iter()
                .filter(|e| is_same_entry(e, &w.manager, operation, status_only))
                .flat_map(|e| leaf_paths(&e["fieldsV1"]))
                .collect();
            for p in leaf_paths(&owned(obj, status_only)) {
                if at(obj, &p) != at(old, &p) && !paths.contains(&p) {
                    paths.push(p);
                }
            }
            paths.retain(|p| at(obj, p).is_some());
            if paths.is_empty() {
                return;
            }
            set_of(&paths)
        }
    };
    let mut entry = json!({
        "manager": w.manager,
        "operation": operation,
        "apiVersion": api_version,
        "time": names::now_rfc3339(),
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
    });
    if status_only {
        entry["subresource"] = json!("status");
    }
    let mut entries: Vec<Value> = entries
        .into_iter()
        .filter(|e| !is_same_entry(e, &w.manager, operation, status_only))
        .collect();
    if let Some(old) = old {
        transfer(&mut entries, obj, old, status_only);
        // A manager whose every field went elsewhere no longer appears.
        entries.retain(|e| !leaf_paths(&e["fieldsV1"]).is_empty());
    }
    entries.push(entry);
    obj["metadata"]["managedFields"] = json!(entries);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_removes_what_it_no_longer_applies() {
        let w = Write {
            manager: "m".into(),
            applied: Some(json!({"spec": {"a": 1, "b": 2}})),
            ..Write::default()
        };
        let mut obj = json!({"metadata": {}, "spec": {"a": 1, "b": 2, "c": 3}});
        record(&mut obj, None, &w, "v1", false);
        prune_unapplied(&mut obj, "m", &json!({"spec": {"a": 1}}), false);
        assert_eq!(obj["spec"], json!({"a": 1, "c": 3}));
        let paths = leaf_paths(&set_of(&[vec!["spec".into(), "a".into()], vec!["x".into()]]));
        assert_eq!(paths.len(), 2);
    }
}
