//! Before a planned move stops anything: every claim of the application on the source can be
//! taken (an RBD image or a lifeboat-csi NFS directory), and the StorageClass each goes into
//! on the target (after the plan's mapping) exists. Otherwise the move would quiesce the
//! source, take a final backup that cannot hold the data, and stop with the application down.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::storage::v1::StorageClass;
use kube::Client;
use kube::api::Api;
use lifeboat_controller::kube_objects::NamespaceFilter;
use lifeboat_controller::volumes::{Decision, VolumeSelector, read_plans};

use crate::crd::Application;

/// What stands in the way of moving `app`'s volume data from `source` to `target`, one line
/// each (empty: nothing). `mapping` is the plan's StorageClass mapping for this target.
pub async fn problems(
    source: &Client,
    target: &Client,
    app: &Application,
    mapping: &BTreeMap<String, String>,
) -> Result<Vec<String>, String> {
    let namespaces = NamespaceFilter::new(&app.namespaces, &[]).map_err(|e| e.to_string())?;
    let selector = VolumeSelector::new(namespaces, None).map_err(|e| e.to_string())?;
    let plans = read_plans(source, &selector)
        .await
        .map_err(|e| format!("read the source's claims: {e}"))?;
    let mut out = Vec::new();
    let mut classes = BTreeSet::new();
    for p in &plans {
        match &p.decision {
            Decision::NotTaken(why) => out.push(format!("{}/{}: {why}", p.namespace, p.claim)),
            Decision::Rbd(_) | Decision::Nfs(_) => {
                if let Some(class) = &p.storage_class {
                    classes.insert(mapping.get(class).unwrap_or(class).clone());
                }
            }
            Decision::Excluded(_) => {}
        }
    }
    let api: Api<StorageClass> = Api::all(target.clone());
    for class in classes {
        match api.get_opt(&class).await {
            Ok(Some(_)) => {}
            Ok(None) => out.push(format!(
                "StorageClass {class} does not exist on the target: create it there, or map the \
                 class to one that exists (the plan's storageClassMapping)"
            )),
            Err(e) => return Err(format!("read StorageClass {class} on the target: {e}")),
        }
    }
    Ok(out)
}
