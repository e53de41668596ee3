//! Adding and removing our finalizer with the object's resourceVersion, so a concurrent
//! change of the list is a conflict, not a lost write.

use std::fmt::Debug;

use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::status::MANAGER;
use crate::error::{Error, Result};

async fn set<K>(api: &Api<K>, obj: &K, finalizers: Vec<String>) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let name = obj.name_any();
    let patch = json!({
        "metadata": {
            "finalizers": finalizers,
            "resourceVersion": obj.resource_version(),
        }
    });
    match api
        .patch(&name, &PatchParams::apply(MANAGER), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        // Already gone: nothing left to finalize.
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::kube(format!("update finalizers of {name}"), e)),
    }
}

/// Adds `finalizer` to `obj`.
pub async fn add<K>(api: &Api<K>, obj: &K, finalizer: &str) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let mut list = obj.finalizers().to_vec();
    if list.iter().any(|f| f == finalizer) {
        return Ok(());
    }
    list.push(finalizer.to_string());
    set(api, obj, list).await
}

/// Removes `finalizer` from `obj`.
pub async fn remove<K>(api: &Api<K>, obj: &K, finalizer: &str) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let list: Vec<String> = obj
        .finalizers()
        .iter()
        .filter(|f| *f != finalizer)
        .cloned()
        .collect();
    set(api, obj, list).await
}
