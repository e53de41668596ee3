//! A restore's label selector, applied to a backup's objects before the restore is planned:
//! the planner then brings along what the matching objects need as it does for a restore
//! narrowed to some namespaces.

use std::collections::{BTreeMap, HashMap};

use futures::StreamExt;
use lifeboat_backup::SnapshotReader;

use super::RestoreOptions;
use super::listing::Listed;
use crate::kube_objects::discover::ResourceRecord;
use crate::kube_objects::needs::dependency_order;
use crate::label_selector::LabelSelector;

/// Only what the selector looks at.
#[derive(serde::Deserialize, Default)]
struct Labelled {
    #[serde(default)]
    metadata: Metadata,
}

#[derive(serde::Deserialize, Default)]
struct Metadata {
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

/// Reads the labels of every object the restore's other filters take and drops those
/// `selector` does not match. A cluster-scoped object of a kind the restored objects may need
/// (Namespace, CRD, PersistentVolume, StorageClass) stays, marked [`Listed::unselected`], for
/// the planner to restore only if a matching object needs it. An object whose content cannot
/// be read or parsed stays, for the restore to report. Returns how many were dropped.
pub async fn keep_selected(
    reader: &SnapshotReader<'_>,
    listing: &mut Vec<Listed>,
    records: &HashMap<String, ResourceRecord>,
    options: &RestoreOptions,
    selector: &LabelSelector,
) -> u64 {
    let candidates: Vec<usize> = listing
        .iter()
        .enumerate()
        .filter(|(_, l)| {
            records.get(&*l.key).is_some_and(|r| {
                options.resources.matches(&r.plural, &r.group)
                    && l.namespace
                        .as_deref()
                        .is_none_or(|ns| options.namespaces.matches(ns))
            })
        })
        .map(|(i, _)| i)
        .collect();
    let mut unmatched = Vec::new();
    {
        let blobs = candidates.iter().map(|&i| (i, listing[i].blob));
        let mut read = std::pin::pin!(reader.read_items(blobs, 2));
        while let Some((i, content)) = read.next().await {
            let parsed = content
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Labelled>(&bytes).ok());
            let Some(object) = parsed else {
                continue;
            };
            if !selector.matches(&object.metadata.labels.unwrap_or_default()) {
                unmatched.push(i);
            }
        }
    }
    let mut drop = vec![false; listing.len()];
    for i in unmatched {
        let needed_kind = listing[i].namespace.is_none()
            && records
                .get(&*listing[i].key)
                .is_some_and(|r| dependency_order(&r.group, &r.plural).is_some());
        match needed_kind {
            true => listing[i].unselected = true,
            false => drop[i] = true,
        }
    }
    let dropped = drop.iter().filter(|d| **d).count() as u64;
    let mut keep = drop.iter().map(|d| !d);
    listing.retain(|_| keep.next().unwrap_or(true));
    dropped
}
