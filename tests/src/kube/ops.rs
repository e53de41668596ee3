//! Create, update and delete with kube-apiserver's semantics: names, preconditions,
//! generation, the status subresource, finalizers and graceful (pending) deletion.

use serde_json::{Value, json};

use super::admission::{self, Operation, Phase};
use super::events;
use super::hooks;
use super::managed::{self, Write};
use super::names;
use super::registry::ResourceType;
use super::status::ApiError;
use super::store::{EventKind, Store};

/// Which part of an object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The main resource: everything but `status` when a status subresource exists.
    Main,
    /// The `status` subresource: only `status`.
    Status,
}

fn meta_str<'a>(o: &'a Value, field: &str) -> &'a str {
    o["metadata"][field].as_str().unwrap_or("")
}

fn is_namespace(rt: &ResourceType) -> bool {
    rt.group.is_empty() && rt.plural == "namespaces" && rt.crd.is_none()
}

fn finalizers(o: &Value) -> Vec<String> {
    o["metadata"]["finalizers"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| f.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// The object without the fields the server owns, to compare two versions for a no-op.
fn comparable(o: &Value) -> Value {
    let mut c = o.clone();
    if let Some(m) = c["metadata"].as_object_mut() {
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    c
}

/// The part of an object whose change bumps `metadata.generation`.
fn spec_part(rt: &ResourceType, o: &Value) -> Value {
    let mut c = o.clone();
    if let Some(m) = c.as_object_mut() {
        for k in ["metadata", "apiVersion", "kind"] {
            m.remove(k);
        }
        if rt.status {
            m.remove("status");
        }
    }
    c
}

fn check_type(rt: &ResourceType, body: &Value) -> Result<(), ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request("the request body is not a JSON object"));
    }
    if let Some(av) = body["apiVersion"].as_str().filter(|s| !s.is_empty())
        && av != rt.api_version()
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            rt.api_version()
        )));
    }
    if let Some(k) = body["kind"].as_str().filter(|s| !s.is_empty())
        && k != rt.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({k}) does not match the expected kind ({})",
            rt.kind
        )));
    }
    Ok(())
}

fn check_namespace(rt: &ResourceType, ns: Option<&str>, body: &mut Value) -> Result<(), ApiError> {
    if !rt.namespaced {
        if let Some(m) = body["metadata"].as_object_mut() {
            m.remove("namespace");
        }
        return Ok(());
    }
    let url_ns = ns.unwrap_or("");
    match body["metadata"]["namespace"].as_str() {
        Some(b) if !b.is_empty() && b != url_ns => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => {
            body["metadata"]["namespace"] = json!(url_ns);
            Ok(())
        }
    }
}

impl Store {
    fn require_live_namespace(&self, rt: &ResourceType, ns: &str, name: &str) -> Result<(), ApiError> {
        let Some(ns_rt) = self.registry.builtin("", "namespaces") else {
            return Ok(());
        };
        match self.objects.get(&Store::key(ns_rt, None, ns)) {
            None => Err(ApiError::not_found(ns_rt, ns)),
            Some(n) if !n["metadata"]["deletionTimestamp"].is_null() => {
                Err(ApiError::namespace_terminating(rt, name, ns))
            }
            Some(_) => Ok(()),
        }
    }

    /// POST: creates an object (a `generateName` gets a random suffix).
    pub fn create(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        mut body: Value,
        w: &Write,
    ) -> Result<Value, ApiError> {
        check_type(rt, &body)?;
        if events::is_view(&rt.group) {
            body = events::to_core(&body);
        }
        if !body["metadata"].is_object() {
            body["metadata"] = json!({});
        }
        check_namespace(rt, ns, &mut body)?;
        if !meta_str(&body, "resourceVersion").is_empty() {
            // etcd3 storage refuses it with a plain error, which the server answers as 500.
            return Err(ApiError::internal(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        let mut name = meta_str(&body, "name").to_string();
        if name.is_empty() {
            let prefix = meta_str(&body, "generateName").to_string();
            if prefix.is_empty() {
                return Err(ApiError::invalid(
                    rt,
                    "",
                    &[(
                        "metadata.name".into(),
                        "Required value: name or generateName is required".into(),
                    )],
                ));
            }
            name = format!("{prefix}{}", names::generate_suffix());
        }
        if let Some(why) = names::validate(rt.names, &name) {
            return Err(ApiError::invalid(
                rt,
                &name,
                &[(
                    "metadata.name".into(),
                    format!("Invalid value: \"{name}\": {why}"),
                )],
            ));
        }
        if rt.namespaced {
            self.require_live_namespace(rt, ns.unwrap_or(""), &name)?;
        }
        admission::check(self, rt, ns, &body, Operation::Create, Phase::Mutating)?;
        let key = Store::key(rt, ns, &name);
        let m = &mut body["metadata"];
        m["name"] = json!(name);
        m["uid"] = json!(names::uuid());
        m["creationTimestamp"] = json!(names::now_rfc3339());
        if let Some(mo) = m.as_object_mut() {
            for k in [
                "resourceVersion",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
                mo.remove(k);
            }
        }
        if rt.generation {
            body["metadata"]["generation"] = json!(1);
        }
        if rt.status
            && let Some(o) = body.as_object_mut()
        {
            o.remove("status");
        }
        body["apiVersion"] = json!(rt.api_version());
        body["kind"] = json!(rt.kind);
        // As kube-apiserver does: defaults, allocation (Service addresses) and validation come
        // before storage, so a create whose name is taken can fail for those reasons first.
        hooks::on_create(self, rt, &mut body)?;
        admission::check(self, rt, ns, &body, Operation::Create, Phase::Validating)?;
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(rt, &name));
        }
        if let Some(m) = body["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
        managed::record(&mut body, None, w, &rt.api_version(), false);
        if w.dry_run {
            return Ok(body);
        }
        let out = self.commit(key, body, EventKind::Added);
        hooks::after_create(self, rt, &out);
        self.after_change(rt, &name);
        Ok(Store::render(rt, &out))
    }

    /// PUT (on the main resource or `status`).
    pub fn update(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        mut body: Value,
        part: Part,
        w: &Write,
    ) -> Result<Value, ApiError> {
        check_type(rt, &body)?;
        if events::is_view(&rt.group) {
            body = events::to_core(&body);
        }
        let key = Store::key(rt, ns, name);
        let old = self
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(rt, name))?;
        if !body["metadata"].is_object() {
            body["metadata"] = json!({});
        }
        match meta_str(&body, "name") {
            "" => body["metadata"]["name"] = json!(name),
            n if n != name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
            _ => {}
        }
        check_namespace(rt, ns, &mut body)?;
        let rv = meta_str(&body, "resourceVersion");
        // Custom resources (and CRDs) do not allow unconditional updates.
        let conditional_only = rt.crd.is_some() || rt.group == "apiextensions.k8s.io";
        if rv.is_empty() && conditional_only {
            return Err(ApiError::invalid(
                rt,
                name,
                &[(
                    "metadata.resourceVersion".into(),
                    "Invalid value: 0x0: must be specified for an update".into(),
                )],
            ));
        }
        if !rv.is_empty() && rv != meta_str(&old, "resourceVersion") {
            return Err(ApiError::conflict(
                rt,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        let uid = meta_str(&body, "uid");
        if !uid.is_empty() && uid != meta_str(&old, "uid") {
            return Err(ApiError::conflict(
                rt,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(&old, "uid")
                ),
            ));
        }
        let mut new = match part {
            Part::Status => {
                let mut n = old.clone();
                match body.get("status") {
                    Some(s) if !s.is_null() => n["status"] = s.clone(),
                    _ => {
                        if let Some(o) = n.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
                n
            }
            Part::Main => {
                let mut n = body;
                if rt.status {
                    match old.get("status") {
                        Some(s) => n["status"] = s.clone(),
                        None => {
                            if let Some(o) = n.as_object_mut() {
                                o.remove("status");
                            }
                        }
                    }
                }
                for f in [
                    "uid",
                    "creationTimestamp",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                    "generation",
                ] {
                    match old["metadata"].get(f) {
                        Some(v) => n["metadata"][f] = v.clone(),
                        None => {
                            if let Some(m) = n["metadata"].as_object_mut() {
                                m.remove(f);
                            }
                        }
                    }
                }
                n
            }
        };
        new["apiVersion"] = json!(rt.api_version());
        new["kind"] = json!(rt.kind);
        if !old["metadata"]["deletionTimestamp"].is_null() {
            let before = finalizers(&old);
            if let Some(added) = finalizers(&new).into_iter().find(|f| !before.contains(f)) {
                return Err(ApiError::forbidden(
                    rt,
                    name,
                    &format!(
                        "no new finalizers can be added if the object is being deleted, found new finalizers [\"{added}\"]"
                    ),
                ));
            }
        }
        if part == Part::Main {
            admission::check(self, rt, ns, &new, Operation::Update, Phase::Mutating)?;
        }
        hooks::on_update(self, rt, &old, &mut new)?;
        if part == Part::Main {
            admission::check(self, rt, ns, &new, Operation::Update, Phase::Validating)?;
        }
        if rt.generation && spec_part(rt, &old) != spec_part(rt, &new) {
            let g = old["metadata"]["generation"].as_i64().unwrap_or(0);
            new["metadata"]["generation"] = json!(g + 1);
        }
        let first_apply =
            w.applied.is_some() && !managed::has_applied(&old, &w.manager, part == Part::Status);
        if comparable(&old) == comparable(&new) && !first_apply {
            return Ok(Store::render(rt, &old));
        }
        match old["metadata"].get("managedFields") {
            Some(m) => new["metadata"]["managedFields"] = m.clone(),
            None => {
                if let Some(m) = new["metadata"].as_object_mut() {
                    m.remove("managedFields");
                }
            }
        }
        managed::record(&mut new, Some(&old), w, &rt.api_version(), part == Part::Status);
        if w.dry_run {
            return Ok(Store::render(rt, &new));
        }
        // A terminating namespace also waits for `spec.finalizers` (`kubernetes`), which only
        // the namespace reaper (`hooks::reap`) clears, once the content is gone.
        let spec_held = is_namespace(rt)
            && new["spec"]["finalizers"]
                .as_array()
                .is_some_and(|f| !f.is_empty());
        let done =
            !new["metadata"]["deletionTimestamp"].is_null() && finalizers(&new).is_empty() && !spec_held;
        let kind = if done {
            EventKind::Deleted
        } else {
            EventKind::Modified
        };
        let out = self.commit(key, new, kind);
        self.after_change(rt, name);
        Ok(Store::render(rt, &out))
    }

    /// Work after any change: CRD registration and finishing terminating namespaces/CRDs.
    pub(crate) fn after_change(&mut self, rt: &ResourceType, name: &str) {
        if rt.group == "apiextensions.k8s.io" && rt.plural == "customresourcedefinitions" {
            hooks::sync_crd(self, name);
        }
        hooks::reap(self);
    }
}
