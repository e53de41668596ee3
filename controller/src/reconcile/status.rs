//! Writing status: a merge patch on the status subresource that also clears fields the new
//! status no longer has (a merge patch alone would keep a stale `message` forever).

use std::fmt::Debug;

use kube::Api;
use kube::api::{Patch, PatchParams};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The field manager of every write the controller makes.
pub const MANAGER: &str = "lifeboat-controller";

/// The merge patch that turns `old` into `new` at the top level of `status`.
pub fn status_patch<S: Serialize>(old: Option<&S>, new: &S) -> Value {
    let new = serde_json::to_value(new).unwrap_or(Value::Null);
    let old = old.and_then(|o| serde_json::to_value(o).ok());
    let mut out = match new {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    if let Some(Value::Object(old)) = old {
        for key in old.keys() {
            if !out.contains_key(key) {
                out.insert(key.clone(), Value::Null);
            }
        }
    }
    serde_json::json!({ "status": out })
}

/// Patches the status of `name` from `old` to `new`.
pub async fn write_status<K, S>(api: &Api<K>, name: &str, old: Option<&S>, new: &S) -> Result<()>
where
    K: kube::Resource + Clone + DeserializeOwned + Debug,
    S: Serialize,
{
    let patch = status_patch(old, new);
    api.patch_status(name, &PatchParams::apply(MANAGER), &Patch::Merge(&patch))
        .await
        .map_err(|e| Error::kube(format!("write status of {name}"), e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn clears_fields_that_went_away() {
        let old = json!({"phase": "Failed", "message": "boom"});
        let new = json!({"phase": "InProgress"});
        assert_eq!(
            status_patch(Some(&old), &new),
            json!({"status": {"phase": "InProgress", "message": null}})
        );
        assert_eq!(
            status_patch(None, &new),
            json!({"status": {"phase": "InProgress"}})
        );
    }
}
