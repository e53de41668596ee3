//! Whether the backup takes what recreates an owned object. Pods, ReplicaSets, Jobs and
//! ControllerRevisions with a controlling owner are left out when the owner comes back with
//! the backup (restoring both would run the workload twice: restores drop owner
//! references); when the selection leaves the owner out (`--include-resources pods`, a label
//! selector the owner does not match), the object is the only copy and is kept.

use std::collections::HashMap;

use kube::Client;
use kube::api::{Api, DynamicObject};
use serde_json::Value;
use tokio::sync::Mutex;

use super::super::discover::ResourceRecord;
use super::super::filter::ObjectFilter;
use super::super::skip::skipped_resource;
use crate::volumes::LabelSelector;

/// How far up an ownership chain to look (Pod → ReplicaSet → Deployment → an operator's
/// resource).
const MAX_DEPTH: usize = 4;

/// A controlling owner reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerRef {
    /// `group/version`, or `version` for the core group.
    pub api_version: String,
    /// Its kind.
    pub kind: String,
    /// Its name (in the owned object's namespace, or cluster-scoped).
    pub name: String,
}

impl OwnerRef {
    /// The controlling owner (`controller: true`) of an object's `metadata`, if any.
    pub fn of(meta: &Value) -> Option<Self> {
        meta["ownerReferences"]
            .as_array()?
            .iter()
            .find(|o| o["controller"] == Value::Bool(true))
            .map(|o| Self {
                api_version: o["apiVersion"].as_str().unwrap_or_default().to_string(),
                kind: o["kind"].as_str().unwrap_or("?").to_string(),
                name: o["name"].as_str().unwrap_or("?").to_string(),
            })
    }

    fn group(&self) -> &str {
        self.api_version.split_once('/').map_or("", |(g, _)| g)
    }
}

/// Answers, per owner and cached, whether the backup brings back what recreates an object.
pub struct Owners<'a> {
    client: &'a Client,
    filter: &'a ObjectFilter,
    /// Every discovered type by `(group, kind)`.
    types: HashMap<(String, String), ResourceRecord>,
    /// The backup's label selector; `Some(None)` for one that does not parse (refused
    /// earlier), which no owner matches.
    selector: Option<Option<LabelSelector>>,
    known: Mutex<HashMap<String, bool>>,
}

impl<'a> Owners<'a> {
    /// For a backup with `filter` of a cluster serving `types`.
    pub fn new(client: &'a Client, filter: &'a ObjectFilter, types: &[ResourceRecord]) -> Self {
        let selector = filter
            .label_selector
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .map(|s| LabelSelector::parse(s).ok());
        Self {
            client,
            filter,
            types: types
                .iter()
                .map(|t| ((t.group.clone(), t.kind.clone()), t.clone()))
                .collect(),
            selector,
            known: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the backup takes `owner` (of an object in `namespace`) or an owner above it:
    /// its type is selected and, with a label selector, the object matches it. A mirror
    /// Pod's Node counts as taken (the kubelet recreates it; restoring it never helps). An
    /// owner that cannot be read, or whose type is unknown, does not.
    pub async fn recreates(&self, namespace: Option<&str>, owner: OwnerRef) -> bool {
        let mut owner = owner;
        let mut visited = Vec::new();
        let mut answer = false;
        for _ in 0..MAX_DEPTH {
            let key = format!(
                "{}/{}/{}/{}",
                namespace.unwrap_or_default(),
                owner.group(),
                owner.kind,
                owner.name
            );
            if let Some(known) = self.known.lock().await.get(&key) {
                answer = *known;
                break;
            }
            visited.push(key);
            if owner.group().is_empty() && owner.kind == "Node" {
                answer = true;
                break;
            }
            let Some(record) = self.types.get(&(owner.group().to_string(), owner.kind.clone())) else {
                break;
            };
            // As the backup takes types: cluster-scoped ones only when it takes them wholesale.
            let selected = self.filter.resources.matches(&record.plural, &record.group)
                && skipped_resource(&record.plural, &record.group).is_none()
                && (record.namespaced || self.filter.all_cluster_scoped());
            if selected && self.selector.is_none() {
                answer = true;
                break;
            }
            let api: Api<DynamicObject> = match namespace {
                Some(ns) if record.namespaced => {
                    Api::namespaced_with(self.client.clone(), ns, &record.api_resource())
                }
                _ => Api::all_with(self.client.clone(), &record.api_resource()),
            };
            let Ok(Some(found)) = api.get_opt(&owner.name).await else {
                break;
            };
            let labels = found.metadata.labels.clone().unwrap_or_default();
            if selected
                && self
                    .selector
                    .as_ref()
                    .is_some_and(|s| s.as_ref().is_some_and(|s| s.matches(&labels)))
            {
                answer = true;
                break;
            }
            let meta = serde_json::to_value(&found.metadata).unwrap_or(Value::Null);
            let Some(next) = OwnerRef::of(&meta) else {
                break;
            };
            owner = next;
        }
        let mut known = self.known.lock().await;
        for key in visited {
            known.insert(key, answer);
        }
        answer
    }
}
