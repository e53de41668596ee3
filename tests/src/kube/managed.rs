//! `metadata.managedFields`: which manager last wrote which fields, recorded approximately
//! (maps are tracked field by field, lists as a whole) so objects look like a real server's.

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

/// Records `w`'s write of `obj` (at `api_version`, on `status` when `status_only`).
pub fn record(obj: &mut Value, w: &Write, api_version: &str, status_only: bool) {
    if w.manager.is_empty() {
        return;
    }
    let operation = if w.applied.is_some() { "Apply" } else { "Update" };
    let source = w.applied.as_ref().unwrap_or(obj);
    let mut entry = json!({
        "manager": w.manager,
        "operation": operation,
        "apiVersion": api_version,
        "time": names::now_rfc3339(),
        "fieldsType": "FieldsV1",
        "fieldsV1": owned(source, status_only),
    });
    if status_only {
        entry["subresource"] = json!("status");
    }
    let mut entries: Vec<Value> = obj["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| {
            !(e["manager"] == entry["manager"]
                && e["operation"] == entry["operation"]
                && e["subresource"] == entry["subresource"])
        })
        .collect();
    entries.push(entry);
    obj["metadata"]["managedFields"] = json!(entries);
}
