//! PATCH bodies: JSON merge patch, JSON patch, strategic merge (approximated as merge
//! patch) and server-side apply (approximated as a merge of the applied fields).

use serde_json::Value;

use super::status::ApiError;

/// The patch flavours, by `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/strategic-merge-patch+json`, treated as a merge patch.
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply), JSON bodies only.
    Apply,
}

impl PatchKind {
    /// The kind for a request's content type; a 415 for anything else.
    pub fn from_content_type(ct: &str) -> Result<Self, ApiError> {
        let base = ct.split(';').next().unwrap_or("").trim();
        match base {
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/json-patch+json" => Ok(Self::Json),
            "application/strategic-merge-patch+json" => Ok(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(Self::Apply),
            other => Err(ApiError::unsupported_media_type(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {other:?})"
            ))),
        }
    }
}

/// Applies an apply-patch's fields onto `target`: objects merge, everything else replaces;
/// unlike a merge patch, `null` is a value, not a deletion.
fn apply_merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                match t.get_mut(k) {
                    Some(tv) if tv.is_object() && v.is_object() => apply_merge(tv, v),
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

/// `current` with `body` applied.
pub fn apply(kind: PatchKind, current: &Value, body: &[u8]) -> Result<Value, ApiError> {
    let bad = |e: String| ApiError::bad_request(format!("error decoding patch: {e}"));
    let mut out = current.clone();
    match kind {
        PatchKind::Merge | PatchKind::Strategic => {
            let p: Value = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
            if !p.is_object() {
                return Err(bad("the patch is not a JSON object".into()));
            }
            json_patch::merge(&mut out, &p);
        }
        PatchKind::Json => {
            let p: json_patch::Patch = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
            json_patch::patch(&mut out, &p).map_err(|e| {
                ApiError::invalid_patch(format!(
                    "the server rejected our request due to an error in our request: {e}"
                ))
            })?;
        }
        PatchKind::Apply => {
            let p: Value = serde_json::from_slice(body)
                .map_err(|e| bad(format!("{e} (only JSON apply bodies are supported)")))?;
            if !p.is_object() {
                return Err(bad("the apply body is not an object".into()));
            }
            apply_merge(&mut out, &p);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patches() {
        let cur = json!({"a": {"b": 1, "c": 2}, "d": [1]});
        let m = apply(PatchKind::Merge, &cur, br#"{"a":{"b":null},"d":[2]}"#).ok();
        assert_eq!(m, Some(json!({"a": {"c": 2}, "d": [2]})));
        let j = apply(
            PatchKind::Json,
            &cur,
            br#"[{"op":"replace","path":"/a/b","value":5}]"#,
        )
        .ok();
        assert_eq!(j, Some(json!({"a": {"b": 5, "c": 2}, "d": [1]})));
        let a = apply(PatchKind::Apply, &cur, br#"{"a":{"e":3}}"#).ok();
        assert_eq!(a, Some(json!({"a": {"b": 1, "c": 2, "e": 3}, "d": [1]})));
        assert!(
            apply(
                PatchKind::Json,
                &cur,
                br#"[{"op":"test","path":"/a/b","value":9}]"#
            )
            .is_err()
        );
    }
}
