//! The garbage collector a real control plane runs: dependents whose owners are all gone are
//! deleted (background propagation), `Foreground` deletion waits for dependents, and
//! `Orphan` deletion releases them.

use serde_json::{Value, json};

use super::index::owner_uids;
use super::names;
use super::registry::ResourceType;
use super::store::{EventKind, Key, Store};

/// The finalizer that holds an owner until its dependents are gone.
pub const FOREGROUND: &str = "foregroundDeletion";

fn dependents(store: &Store, uid: &str) -> Vec<Key> {
    store.index.dependents_of(uid)
}

fn type_of(store: &Store, key: &Key) -> Option<ResourceType> {
    store
        .registry
        .all()
        .find(|r| r.group == key.0 && r.plural == key.1)
        .cloned()
}

/// How a delete treats dependents (`propagationPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// Delete the owner now; the collector removes dependents afterwards (the default).
    Background,
    /// Keep the owner (with a `foregroundDeletion` finalizer) until dependents are gone.
    Foreground,
    /// Remove the owner references from dependents and leave them.
    Orphan,
}

impl Propagation {
    /// From `DeleteOptions.propagationPolicy` or the query parameter.
    pub fn parse(s: &str) -> Self {
        match s {
            "Foreground" => Self::Foreground,
            "Orphan" => Self::Orphan,
            _ => Self::Background,
        }
    }
}

/// Sets `deletionTimestamp` (grace period 0) and, as kube-apiserver does, bumps a positive
/// `metadata.generation`, so controllers filtering on generation changes see the deletion.
pub fn mark_deleted(obj: &mut Value) {
    obj["metadata"]["deletionTimestamp"] = json!(names::now_rfc3339());
    obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
    if let Some(g) = obj["metadata"]["generation"].as_i64().filter(|g| *g > 0) {
        obj["metadata"]["generation"] = json!(g + 1);
    }
}

/// Prepares `old` for deletion under `policy`; returns the object to delete (for Foreground,
/// with the finalizer added) after releasing or deleting dependents as the policy says.
pub fn before_delete(store: &mut Store, policy: Propagation, key: &Key, mut old: Value) -> Value {
    let uid = old["metadata"]["uid"].as_str().unwrap_or("").to_string();
    let deps = dependents(store, &uid);
    if deps.is_empty() {
        return old;
    }
    match policy {
        Propagation::Background => {}
        Propagation::Orphan => {
            for d in deps {
                if let Some(mut o) = store.objects.get(&d).cloned() {
                    let refs: Vec<Value> = o["metadata"]["ownerReferences"]
                        .as_array()
                        .map(|r| r.iter().filter(|r| r["uid"] != json!(uid)).cloned().collect())
                        .unwrap_or_default();
                    o["metadata"]["ownerReferences"] = json!(refs);
                    store.commit(d, o, EventKind::Modified);
                }
            }
        }
        Propagation::Foreground => {
            let mut fins: Vec<Value> = old["metadata"]["finalizers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if !fins.contains(&json!(FOREGROUND)) {
                fins.push(json!(FOREGROUND));
            }
            old["metadata"]["finalizers"] = json!(fins);
            if old["metadata"]["deletionTimestamp"].is_null() {
                mark_deleted(&mut old);
            }
            old = store.commit(key.clone(), old, EventKind::Modified);
            for d in deps {
                if let (Some(rt), Some(o)) = (type_of(store, &d), store.objects.get(&d).cloned()) {
                    store.delete_key(&rt, d, o, Propagation::Foreground);
                }
            }
        }
    }
    old
}

/// One collection pass: deletes one orphaned dependent or releases one foreground owner.
/// Returns whether it changed anything (the caller loops until it did not). Only objects the
/// index marks as candidates are looked at, so a pass costs what the last change touched.
pub fn sweep(store: &mut Store) -> bool {
    while let Some(k) = store.index.next_gc_candidate() {
        let Some(o) = store.objects.get(&k) else {
            continue;
        };
        let owners = owner_uids(o);
        let orphan = !owners.is_empty()
            && o["metadata"]["deletionTimestamp"].is_null()
            && owners.iter().all(|u| !store.index.has_uid(u));
        if orphan && let Some(rt) = type_of(store, &k) {
            let o = o.clone();
            store.delete_key(&rt, k, o, Propagation::Background);
            return true;
        }
    }
    let released = store.index.deleting.iter().find(|k| {
        store.objects.get(*k).is_some_and(|o| {
            let fins = o["metadata"]["finalizers"].as_array();
            fins.is_some_and(|f| f.contains(&json!(FOREGROUND)))
                && o["metadata"]["uid"]
                    .as_str()
                    .is_some_and(|u| !store.index.has_dependents(u))
        })
    });
    let released = released.and_then(|k| store.objects.get(k).map(|o| (k.clone(), o.clone())));
    if let Some((k, mut o)) = released {
        let fins: Vec<Value> = o["metadata"]["finalizers"]
            .as_array()
            .map(|f| f.iter().filter(|f| **f != json!(FOREGROUND)).cloned().collect())
            .unwrap_or_default();
        let gone = fins.is_empty();
        o["metadata"]["finalizers"] = json!(fins);
        store.commit(
            k,
            o,
            if gone {
                EventKind::Deleted
            } else {
                EventKind::Modified
            },
        );
        return true;
    }
    false
}
