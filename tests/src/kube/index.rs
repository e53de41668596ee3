//! Indexes over the stored objects, kept up to date by every commit, so that the work a
//! write triggers (garbage collection, finishing deletions) costs what the write touches,
//! not a scan of every object: the test server must stay fast with 100,000 objects.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

use super::store::Key;

/// What the server's controllers look up after each change.
#[derive(Debug, Default)]
pub(crate) struct Index {
    /// uid → the object's key.
    by_uid: HashMap<String, Key>,
    /// Owner uid → keys of the objects naming it in `ownerReferences`.
    dependents: HashMap<String, BTreeSet<Key>>,
    /// Objects with a `deletionTimestamp`.
    pub(crate) deleting: BTreeSet<Key>,
    /// Namespaced objects per namespace.
    per_namespace: HashMap<String, usize>,
    /// Objects per stored `(group, plural)`.
    per_type: HashMap<(String, String), usize>,
    /// Objects whose owners may all be gone; the collector looks at each once.
    gc_candidates: BTreeSet<Key>,
}

fn uid(o: &Value) -> Option<&str> {
    o["metadata"]["uid"].as_str().filter(|u| !u.is_empty())
}

/// The uids in `o`'s `ownerReferences`.
pub(crate) fn owner_uids(o: &Value) -> Vec<&str> {
    o["metadata"]["ownerReferences"]
        .as_array()
        .map(|refs| refs.iter().filter_map(|r| r["uid"].as_str()).collect())
        .unwrap_or_default()
}

impl Index {
    /// Records that `old` (stored under `key`) is being replaced or removed.
    pub(crate) fn remove(&mut self, key: &Key, old: &Value) {
        if let Some(u) = uid(old) {
            self.by_uid.remove(u);
        }
        for owner in owner_uids(old) {
            if let Some(set) = self.dependents.get_mut(owner) {
                set.remove(key);
                if set.is_empty() {
                    self.dependents.remove(owner);
                }
            }
        }
        self.deleting.remove(key);
        if !key.2.is_empty()
            && let Some(n) = self.per_namespace.get_mut(&key.2)
        {
            *n = n.saturating_sub(1);
        }
        if let Some(n) = self.per_type.get_mut(&(key.0.clone(), key.1.clone())) {
            *n = n.saturating_sub(1);
        }
    }

    /// Records that `new` is now stored under `key`.
    pub(crate) fn add(&mut self, key: &Key, new: &Value) {
        if let Some(u) = uid(new) {
            self.by_uid.insert(u.to_string(), key.clone());
        }
        let owners = owner_uids(new);
        for owner in &owners {
            self.dependents
                .entry(owner.to_string())
                .or_default()
                .insert(key.clone());
        }
        if !owners.is_empty() {
            self.gc_candidates.insert(key.clone());
        }
        if !new["metadata"]["deletionTimestamp"].is_null() {
            self.deleting.insert(key.clone());
        }
        if !key.2.is_empty() {
            *self.per_namespace.entry(key.2.clone()).or_default() += 1;
        }
        *self.per_type.entry((key.0.clone(), key.1.clone())).or_default() += 1;
    }

    /// After the object with `uid` is gone, its dependents may be orphans.
    pub(crate) fn owner_gone(&mut self, uid: &str) {
        if let Some(deps) = self.dependents.get(uid) {
            self.gc_candidates.extend(deps.iter().cloned());
        }
    }

    /// Whether an object with this uid exists.
    pub(crate) fn has_uid(&self, uid: &str) -> bool {
        self.by_uid.contains_key(uid)
    }

    /// Keys of the objects that name `uid` as an owner.
    pub(crate) fn dependents_of(&self, uid: &str) -> Vec<Key> {
        self.dependents
            .get(uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether anything names `uid` as an owner.
    pub(crate) fn has_dependents(&self, uid: &str) -> bool {
        self.dependents.get(uid).is_some_and(|s| !s.is_empty())
    }

    /// Whether namespace `ns` holds no objects.
    pub(crate) fn namespace_empty(&self, ns: &str) -> bool {
        self.per_namespace.get(ns).is_none_or(|n| *n == 0)
    }

    /// Whether no object of `group/plural` is stored.
    pub(crate) fn type_empty(&self, group: &str, plural: &str) -> bool {
        self.per_type
            .get(&(group.to_string(), plural.to_string()))
            .is_none_or(|n| *n == 0)
    }

    /// The next object whose owners may all be gone.
    pub(crate) fn next_gc_candidate(&mut self) -> Option<Key> {
        self.gc_candidates.pop_first()
    }
}
