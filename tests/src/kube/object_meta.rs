//! What kube-apiserver checks in every object's metadata, whatever its kind (apimachinery's
//! `ValidateObjectMeta`): label keys and values, annotation keys and the annotations' total
//! size. Messages are apimachinery's (`k8s.io/apimachinery/pkg/util/validation`).

use serde_json::Value;

use super::validate::Errors;

const NAME_PART: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const PREFIX_PART: &str = "prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_VALUE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
/// apimachinery's `TotalAnnotationSizeLimitB`.
const ANNOTATIONS_LIMIT: usize = 256 * 1024;

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, non-empty.
fn is_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    let inner = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.');
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(inner)
}

/// A lowercase RFC 1123 subdomain.
fn is_subdomain(s: &str) -> bool {
    s.split('.').all(|label| {
        let b = label.as_bytes();
        let inner = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-';
        !b.is_empty() && b[0] != b'-' && b[b.len() - 1] != b'-' && b.iter().all(inner)
    })
}

/// apimachinery's `IsQualifiedName`: `[prefix/]name`.
fn qualified_name(key: &str) -> Vec<String> {
    let (prefix, name) = match key.split('/').collect::<Vec<_>>()[..] {
        [name] => (None, name),
        [prefix, name] => (Some(prefix), name),
        _ => {
            return vec![format!(
                "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            )];
        }
    };
    let mut out = Vec::new();
    match prefix {
        Some("") => out.push("prefix part must be non-empty".to_string()),
        Some(p) if p.len() > 253 => out.push("prefix part must be no more than 253 characters".to_string()),
        Some(p) if !is_subdomain(p) => out.push(PREFIX_PART.to_string()),
        _ => {}
    }
    if name.is_empty() {
        out.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        out.push("name part must be no more than 63 characters".to_string());
    }
    if !name.is_empty() && !is_name_part(name) {
        out.push(NAME_PART.to_string());
    }
    out
}

/// Field errors of `obj.metadata`'s labels and annotations.
pub fn validate(obj: &Value) -> Errors {
    let mut errs = Errors::new();
    let meta = &obj["metadata"];
    let invalid = |errs: &mut Errors, field: &str, value: &str, why: String| {
        errs.push((field.to_string(), format!("Invalid value: {value:?}: {why}")));
    };
    if let Some(labels) = meta["labels"].as_object() {
        for (key, value) in labels {
            for why in qualified_name(key) {
                invalid(&mut errs, "metadata.labels", key, why);
            }
            let value = value.as_str().unwrap_or_default();
            if value.len() > 63 {
                invalid(
                    &mut errs,
                    "metadata.labels",
                    value,
                    "must be no more than 63 characters".into(),
                );
            }
            if !value.is_empty() && !is_name_part(value) {
                invalid(&mut errs, "metadata.labels", value, LABEL_VALUE.to_string());
            }
        }
    }
    if let Some(annotations) = meta["annotations"].as_object() {
        let mut total = 0;
        for (key, value) in annotations {
            for why in qualified_name(&key.to_lowercase()) {
                invalid(&mut errs, "metadata.annotations", key, why);
            }
            total += key.len() + value.as_str().map_or(0, str::len);
        }
        if total > ANNOTATIONS_LIMIT {
            errs.push((
                "metadata.annotations".to_string(),
                format!("Too long: may not be more than {ANNOTATIONS_LIMIT} bytes"),
            ));
        }
    }
    errs
}

/// A Secret's `stringData` as kube-apiserver stores it: each value base64-encoded into `data`
/// (overwriting a key both name), `stringData` itself never stored nor returned.
pub fn fold_string_data(obj: &mut Value) {
    use base64::Engine;
    let Some(Value::Object(strings)) = obj.as_object_mut().and_then(|o| o.remove("stringData")) else {
        return;
    };
    if !obj["data"].is_object() {
        obj["data"] = Value::Object(Default::default());
    }
    for (key, value) in strings {
        let text = value.as_str().unwrap_or_default();
        obj["data"][key] = Value::String(base64::engine::general_purpose::STANDARD.encode(text));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn labels_and_annotations_are_checked_as_apimachinery_checks_them() {
        let good = json!({"metadata": {"labels": {"app": "web", "app.kubernetes.io/name": "a_b-1.2",
            "empty": ""}, "annotations": {"Example.com/Free-Text": "anything at all: /\n"}}});
        assert_eq!(validate(&good), Errors::new());
        for (labels, says) in [
            (json!({"bad key": "x"}), "name part must consist"),
            (
                json!({"Example.COM/app": "x"}),
                "prefix part a lowercase RFC 1123",
            ),
            (json!({"a/b/c": "x"}), "a qualified name must consist"),
            (json!({"/app": "x"}), "prefix part must be non-empty"),
            (json!({"app": "-x"}), "a valid label must be an empty string"),
            (
                json!({"app": "x".repeat(64)}),
                "must be no more than 63 characters",
            ),
            (
                json!({"k".repeat(64): "x"}),
                "name part must be no more than 63 characters",
            ),
        ] {
            let errs = validate(&json!({"metadata": {"labels": labels}}));
            assert!(
                errs.iter()
                    .any(|(f, m)| f == "metadata.labels" && m.contains(says)),
                "{labels}: {errs:?}"
            );
        }
        let big = json!({"metadata": {"annotations": {"a": "x".repeat(ANNOTATIONS_LIMIT)}}});
        assert_eq!(validate(&big)[0].1, "Too long: may not be more than 262144 bytes");
    }

    #[test]
    fn string_data_goes_into_data() {
        let mut secret =
            json!({"data": {"a": "b2xk", "keep": "eA=="}, "stringData": {"a": "new", "b": "two"}});
        fold_string_data(&mut secret);
        assert_eq!(
            secret,
            json!({"data": {"a": "bmV3", "keep": "eA==", "b": "dHdv"}})
        );
    }
}
