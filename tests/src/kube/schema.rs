//! What kube-apiserver does with a custom resource's OpenAPI v3 schema: prunes unknown fields
//! (unless `x-kubernetes-preserve-unknown-fields`), drops nulls that are not `nullable`, fills
//! `default`s, and rejects wrong types, missing `required` fields and values outside `enum`.

use serde_json::Value;

use super::validate::Errors;

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_ok(v: &Value, s: &Value) -> Option<&'static str> {
    if s["x-kubernetes-int-or-string"] == Value::Bool(true) {
        return (!matches!(type_name(v), "integer" | "string")).then_some("integer or string");
    }
    let want = s["type"].as_str()?;
    let ok = match (want, type_name(v)) {
        ("number", "integer") => true,
        (w, t) => w == t,
    };
    let name = match want {
        "object" => "object",
        "array" => "array",
        "string" => "string",
        "integer" => "integer",
        "number" => "number",
        "boolean" => "boolean",
        _ => "the schema's type",
    };
    (!ok).then_some(name)
}

fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    }
}

fn walk(v: &mut Value, s: &Value, path: &str, root: bool, errs: &mut Errors) {
    if let Some(want) = type_ok(v, s) {
        errs.push((
            path.to_string(),
            format!(
                "Invalid value: \"{}\": {path} in body must be of type {want}: {}",
                type_name(v),
                describe(v)
            ),
        ));
        return;
    }
    if let Some(allowed) = s["enum"].as_array()
        && !allowed.contains(v)
    {
        let list: Vec<String> = allowed.iter().map(describe).collect();
        errs.push((
            path.to_string(),
            format!(
                "Unsupported value: {}: supported values: {}",
                describe(v),
                list.join(", ")
            ),
        ));
    }
    match v {
        Value::Object(map) => {
            let props = s["properties"].as_object();
            let extra = &s["additionalProperties"];
            let preserve = s["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true);
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                if root && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let child_schema = props
                    .and_then(|p| p.get(&k))
                    .or(extra.is_object().then_some(extra));
                let Some(cs) = child_schema else {
                    if !preserve && extra != &Value::Bool(true) {
                        map.remove(&k);
                    }
                    continue;
                };
                let child_path = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match map.get_mut(&k) {
                    Some(c) if c.is_null() && cs["nullable"] != Value::Bool(true) => {
                        map.remove(&k);
                    }
                    Some(c) => walk(c, cs, &child_path, false, errs),
                    None => {}
                }
            }
            if let Some(p) = props {
                for (k, ps) in p {
                    if !map.contains_key(k)
                        && let Some(d) = ps.get("default")
                    {
                        map.insert(k.clone(), d.clone());
                    }
                }
            }
            for r in s["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !map.contains_key(r) {
                    let field = if path.is_empty() {
                        r.to_string()
                    } else {
                        format!("{path}.{r}")
                    };
                    errs.push((field, "Required value".into()));
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, &s["items"], &format!("{path}[{i}]"), false, errs);
            }
        }
        _ => {}
    }
}

/// Prunes and defaults `obj` in place by `schema` (a CRD version's `openAPIV3Schema`);
/// returns the validation errors.
pub fn apply(obj: &mut Value, schema: &Value) -> Errors {
    let mut errs = Errors::new();
    if schema.is_object() {
        walk(obj, schema, "", true, &mut errs);
    }
    errs
}

/// Prunes and defaults `obj` by `schema` and ignores what does not validate: what a real
/// server does to an object it reads or converts (validation happens on writes only).
pub fn prune(obj: &mut Value, schema: &Value) {
    let _ = apply(obj, schema);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prune_default_validate() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "required": ["size"],
            "properties": {"size": {"type": "integer"}, "mode": {"type": "string", "default": "fast", "enum": ["fast", "slow"]}}}}});
        let mut o = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a"}, "spec": {"size": 1, "junk": true}, "top": 1});
        assert!(apply(&mut o, &schema).is_empty());
        assert_eq!(o["spec"], json!({"size": 1, "mode": "fast"}));
        assert!(o.get("top").is_none());
        let mut bad = json!({"spec": {"size": "big", "mode": "odd"}});
        assert_eq!(apply(&mut bad, &schema).len(), 2);
        let mut missing = json!({"spec": {}});
        assert_eq!(apply(&mut missing, &schema).len(), 1);
    }
}
