//! Deletion: preconditions, finalizers and graceful (pending) deletion, cascades for
//! namespaces and CRDs, and deleting collections.

use serde_json::{Value, json};

use super::gc::{self, Propagation};
use super::hooks;
use super::registry::ResourceType;
use super::status::ApiError;
use super::store::{EventKind, Filter, Key, Store};

fn meta_str<'a>(o: &'a Value, field: &str) -> &'a str {
    o["metadata"][field].as_str().unwrap_or("")
}

fn has_finalizers(o: &Value) -> bool {
    o["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty())
}

/// The result of a delete.
#[derive(Debug, Clone)]
pub enum Deleted {
    /// Finalizers hold it: it now has a `deletionTimestamp`.
    Pending(Value),
    /// Gone; its last state.
    Gone(Value),
}

impl Store {
    /// DELETE: removes the object, or marks it for deletion while finalizers remain.
    pub fn delete(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        options: &Value,
        dry_run: bool,
    ) -> Result<Deleted, ApiError> {
        let key = Store::key(rt, ns, name);
        let old = self
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(rt, name))?;
        if rt.group.is_empty()
            && rt.plural == "namespaces"
            && matches!(name, "default" | "kube-system" | "kube-public")
        {
            return Err(ApiError::forbidden(rt, name, "this namespace may not be deleted"));
        }
        let pre = &options["preconditions"];
        if let Some(rv) = pre["resourceVersion"].as_str()
            && rv != meta_str(&old, "resourceVersion")
        {
            return Err(ApiError::conflict(
                rt,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    meta_str(&old, "resourceVersion")
                ),
            ));
        }
        if let Some(uid) = pre["uid"].as_str()
            && uid != meta_str(&old, "uid")
        {
            return Err(ApiError::conflict(
                rt,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(&old, "uid")
                ),
            ));
        }
        if dry_run {
            return Ok(Deleted::Pending(Store::render(rt, &old)));
        }
        let policy = Propagation::parse(options["propagationPolicy"].as_str().unwrap_or(""));
        let out = self.delete_key(rt, key, old, policy);
        self.after_change(rt, name);
        Ok(out)
    }

    /// Deletes one stored object (no preconditions), cascading for namespaces and CRDs.
    pub(crate) fn delete_key(
        &mut self,
        rt: &ResourceType,
        key: Key,
        old: Value,
        policy: Propagation,
    ) -> Deleted {
        let old = gc::before_delete(self, policy, &key, old);
        let cascades = rt.group.is_empty() && rt.plural == "namespaces"
            || rt.group == "apiextensions.k8s.io" && rt.plural == "customresourcedefinitions";
        if !has_finalizers(&old) && !cascades {
            return Deleted::Gone(Store::render(rt, &self.commit(key, old, EventKind::Deleted)));
        }
        let mut obj = old.clone();
        if obj["metadata"]["deletionTimestamp"].is_null() {
            gc::mark_deleted(&mut obj);
            if key.0.is_empty() && key.1 == "namespaces" {
                obj["status"]["phase"] = json!("Terminating");
            }
            obj = self.commit(key.clone(), obj, EventKind::Modified);
        }
        if cascades {
            hooks::cascade(self, &key, &obj);
        }
        match self.objects.get(&key) {
            Some(o) => Deleted::Pending(Store::render(rt, o)),
            None => Deleted::Gone(Store::render(rt, &obj)),
        }
    }
}

impl Store {
    /// DELETE on a collection: deletes every matching object, answering the list of them.
    pub fn delete_collection(&mut self, rt: &ResourceType, filter: &Filter, dry_run: bool) -> Value {
        let victims: Vec<(Key, Value)> = self
            .matching(rt, filter)
            .map(|(k, o)| (k.clone(), o.clone()))
            .collect();
        let mut items = Vec::new();
        for (k, o) in victims {
            if dry_run {
                items.push(Store::render(rt, &o));
                continue;
            }
            let name = k.3.clone();
            match self.delete_key(rt, k, o, Propagation::Background) {
                Deleted::Pending(v) | Deleted::Gone(v) => items.push(v),
            }
            self.after_change(rt, &name);
        }
        json!({"kind": rt.list_kind(), "apiVersion": rt.api_version(),
               "metadata": {"resourceVersion": self.rv.to_string()}, "items": items})
    }
}
