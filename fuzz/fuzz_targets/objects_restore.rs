//! A Kubernetes objects restore from what a backup stored and what a user asked: a Restore
//! spec (globs, namespace and StorageClass mappings, labels), the backup's resource table,
//! its object paths, the claims and volumes deciding dependencies, and objects to rewrite. The
//! input is one JSON document of those parts. Plans and rewrites must not panic; a rewritten
//! object carries none of the metadata the API server owns, and a namespace the spec maps is
//! replaced everywhere the object names it as its own.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use lifeboat_backup::blob::Id;
use lifeboat_backup::snapshot::Node;
use lifeboat_controller::crd::RestoreSpec;
use lifeboat_controller::kube_objects::restore::listing::Listing;
use lifeboat_controller::kube_objects::restore::objects_plan::{dependencies, dependency_sources, plan};
use lifeboat_controller::kube_objects::restore::transform::{Rewrite, map_storage_class, prepare};
use lifeboat_controller::kube_objects::{ResourceRecord, RestoreOptions};
use lifeboat_fuzz as _;
use serde_json::Value;

#[derive(serde::Deserialize)]
struct Input {
    spec: RestoreSpec,
    #[serde(default)]
    resources: HashMap<String, ResourceRecord>,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    claims: Vec<Value>,
    #[serde(default)]
    volumes: Vec<Value>,
    #[serde(default)]
    objects: Vec<Value>,
}

const SERVER_OWNED: &[&str] = &["uid", "resourceVersion", "managedFields", "ownerReferences"];

fuzz_target!(|data: &[u8]| {
    let Ok(input) = serde_json::from_slice::<Input>(data) else {
        return;
    };
    let Ok(options) = RestoreOptions::from_spec(&input.spec) else {
        return;
    };
    let nodes: Vec<Node> = input
        .paths
        .iter()
        .map(|p| Node::stream(p, 1, vec![Id::of(p.as_bytes())], chrono_epoch()))
        .collect();
    let listing = Listing::of(&nodes);
    let _ = dependency_sources(&listing.objects, &input.resources, &options);
    let deps = dependencies(&input.claims, &input.volumes);
    let _ = plan(&listing.objects, &input.resources, &options, &deps);

    let rewrite = Rewrite {
        namespace_mapping: &options.namespace_mapping,
        labels: &options.labels,
        restore_status: options.restore_status,
    };
    for record in input.resources.values() {
        for obj in &input.objects {
            let own_ns = obj["metadata"]["namespace"].as_str().map(str::to_string);
            let (mut out, _status) = prepare(obj.clone(), record, &rewrite);
            if let Some(meta) = out.get("metadata").and_then(Value::as_object) {
                for field in SERVER_OWNED {
                    assert!(
                        !meta.contains_key(*field),
                        "metadata.{field} survived the rewrite"
                    );
                }
                if let Some(to) = own_ns.and_then(|ns| options.namespace_mapping.get(&ns)) {
                    assert_eq!(meta.get("namespace").and_then(Value::as_str), Some(to.as_str()));
                }
            }
            map_storage_class(&mut out, record, &options.storage_class_mapping);
        }
    }
});

fn chrono_epoch() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::UNIX_EPOCH
}
