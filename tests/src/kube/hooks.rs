//! What the server (and the controllers a real control plane runs inside it) does for
//! particular kinds: namespaces, services, persistent volumes, CRDs.

use serde_json::{Value, json};

use super::aggregator;
use super::crd;
use super::gc::{self, Propagation};
use super::managed::Write;
use super::object_meta;
use super::registry::ResourceType;
use super::schema;
use super::status::ApiError;
use super::store::{EventKind, Key, Store};
use super::validate;

fn is(rt: &ResourceType, group: &str, plural: &str) -> bool {
    rt.group == group && rt.plural == plural && rt.crd.is_none()
}

/// Defaults and validation on create.
pub fn on_create(store: &mut Store, rt: &ResourceType, obj: &mut Value) -> Result<(), ApiError> {
    custom_schema(rt, obj)?;
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    if is(rt, "", "secrets") {
        object_meta::fold_string_data(obj);
        if obj["type"].is_null() {
            obj["type"] = json!("Opaque");
        }
    }
    if is(rt, "batch", "jobs") {
        job_selector(&name, obj).map_err(|errs| ApiError::invalid(rt, &name, &errs))?;
    }
    let errs = validate::create(rt, obj);
    if !errs.is_empty() {
        return Err(ApiError::invalid(rt, &name, &errs));
    }
    if is(rt, "", "namespaces") {
        obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
        obj["spec"]["finalizers"] = json!(["kubernetes"]);
        obj["status"] = json!({"phase": "Active"});
    } else if is(rt, "", "services") {
        service_defaults(store, rt, &name, obj)?;
    } else if is(rt, "", "persistentvolumeclaims") || is(rt, "", "persistentvolumes") || is(rt, "", "pods") {
        obj["status"] = json!({"phase": "Pending"});
    } else if is(rt, "apiregistration.k8s.io", "apiservices") {
        obj["status"] = apiservice_status(store, obj);
    } else if is(rt, "apiextensions.k8s.io", "customresourcedefinitions") {
        let errs = crd::validate(obj);
        if !errs.is_empty() {
            return Err(ApiError::invalid(rt, &name, &errs));
        }
        let mut fins: Vec<Value> = obj["metadata"]["finalizers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !fins.contains(&json!(crd::CLEANUP_FINALIZER)) {
            fins.push(json!(crd::CLEANUP_FINALIZER));
        }
        obj["metadata"]["finalizers"] = json!(fins);
        obj["status"] = crd::status(obj, None);
    }
    Ok(())
}

/// A Job's selector, as kube-apiserver's Job strategy makes it: unless `manualSelector`,
/// a selector given is refused ("`selector` not auto-generated") and one is generated from
/// the Job's uid, with the labels it selects added to the pod template (v1.27+ names:
/// `batch.kubernetes.io/controller-uid`, beside the older `controller-uid` and `job-name`).
fn job_selector(name: &str, obj: &mut Value) -> Result<(), validate::Errors> {
    if obj["spec"]["manualSelector"] == json!(true) {
        return Ok(());
    }
    if !obj["spec"]["selector"].is_null() {
        return Err(vec![(
            "spec.selector".to_string(),
            format!(
                "Invalid value: {}: `selector` not auto-generated",
                obj["spec"]["selector"]
            ),
        )]);
    }
    let uid = obj["metadata"]["uid"].as_str().unwrap_or_default().to_string();
    obj["spec"]["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
    for (k, v) in [
        ("batch.kubernetes.io/controller-uid", uid.as_str()),
        ("controller-uid", uid.as_str()),
        ("batch.kubernetes.io/job-name", name),
        ("job-name", name),
    ] {
        obj["spec"]["template"]["metadata"]["labels"][k] = json!(v);
    }
    Ok(())
}

/// Prunes, defaults and validates a custom resource by its CRD version's schema, then prunes
/// it by the storage version's schema, as it is stored at that version.
fn custom_schema(rt: &ResourceType, obj: &mut Value) -> Result<(), ApiError> {
    if rt.crd.is_none() {
        return Ok(());
    }
    let errs = rt
        .schema
        .as_deref()
        .map(|s| schema::apply(obj, s))
        .unwrap_or_default();
    if errs.is_empty() {
        if let Some(s) = &rt.storage_schema {
            schema::prune(obj, s);
        }
        return Ok(());
    }
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    Err(ApiError::invalid(rt, &name, &errs))
}

/// A placeholder CA bundle for the `kube-root-ca.crt` ConfigMap (nothing verifies it).
const ROOT_CA: &str =
    "-----BEGIN CERTIFICATE-----\nbGlmZWJvYXQgdGVzdCBzZXJ2ZXIgcGxhY2Vob2xkZXI=\n-----END CERTIFICATE-----\n";

/// What a real control plane's controllers add to a new namespace: the `default`
/// ServiceAccount and the `kube-root-ca.crt` ConfigMap (code that backs up or lists a
/// namespace meets them on real clusters, so it meets them here too).
pub fn after_create(store: &mut Store, rt: &ResourceType, obj: &Value) {
    if !is(rt, "", "namespaces") {
        return;
    }
    let ns = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    let extra = [
        ("serviceaccounts", json!({"metadata": {"name": "default"}})),
        (
            "configmaps",
            json!({"metadata": {"name": "kube-root-ca.crt",
                   "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
                   "data": {"ca.crt": ROOT_CA}}),
        ),
    ];
    for (plural, body) in extra {
        if let Some(t) = store.registry.builtin("", plural).cloned() {
            // Fresh names in a fresh namespace: nothing can collide.
            let _ = store.create(&t, Some(&ns), body, &Write::system());
        }
    }
}

/// Immutable fields and server-maintained status on update.
pub fn on_update(store: &mut Store, rt: &ResourceType, old: &Value, new: &mut Value) -> Result<(), ApiError> {
    custom_schema(rt, new)?;
    if is(rt, "", "secrets") {
        object_meta::fold_string_data(new);
        if new["type"].is_null() {
            new["type"] = json!("Opaque");
        }
    }
    let errs = validate::update(rt, old, new);
    if !errs.is_empty() {
        let name = new["metadata"]["name"].as_str().unwrap_or("").to_string();
        return Err(ApiError::invalid(rt, &name, &errs));
    }
    if is(rt, "", "services") {
        for f in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            if !old["spec"][f].is_null() {
                new["spec"][f] = old["spec"][f].clone();
            }
        }
        let name = new["metadata"]["name"].as_str().unwrap_or("").to_string();
        store.addresses.assign(rt, &name, new, Some(old))?;
    } else if is(rt, "apiregistration.k8s.io", "apiservices") {
        // The availability controller owns the status.
        new["status"] = apiservice_status(store, new);
    } else if is(rt, "", "namespaces") && new["spec"]["finalizers"].is_null() {
        // Only the namespace controller empties spec.finalizers (through /finalize).
        new["spec"]["finalizers"] = old["spec"]["finalizers"].clone();
    } else if is(rt, "apiextensions.k8s.io", "customresourcedefinitions") {
        let name = new["metadata"]["name"].as_str().unwrap_or("").to_string();
        let errs = crd::validate(new);
        if !errs.is_empty() {
            return Err(ApiError::invalid(rt, &name, &errs));
        }
        new["status"] = crd::status(new, old.get("status"));
    }
    Ok(())
}

fn service_defaults(
    store: &mut Store,
    rt: &ResourceType,
    name: &str,
    obj: &mut Value,
) -> Result<(), ApiError> {
    let spec = &mut obj["spec"];
    if spec["type"].is_null() {
        spec["type"] = json!("ClusterIP");
    }
    let external = spec["type"] == json!("ExternalName");
    let headless = spec["clusterIP"] == json!("None");
    let no_ports = spec["ports"].as_array().is_none_or(|p| p.is_empty());
    if no_ports && !external && !headless {
        return Err(ApiError::invalid(
            rt,
            name,
            &[("spec.ports".into(), "Required value".into())],
        ));
    }
    if let Some(ports) = spec["ports"].as_array_mut() {
        for p in ports {
            if p["protocol"].is_null() {
                p["protocol"] = json!("TCP");
            }
            if p["targetPort"].is_null() {
                p["targetPort"] = p["port"].clone();
            }
        }
    }
    if spec["sessionAffinity"].is_null() {
        spec["sessionAffinity"] = json!("None");
    }
    if !external {
        spec["ipFamilies"] = json!(["IPv4"]);
        spec["ipFamilyPolicy"] = json!("SingleStack");
        spec["internalTrafficPolicy"] = json!("Cluster");
    }
    store.addresses.assign(rt, name, obj, None)?;
    if !external && obj["spec"]["clusterIP"] == json!("None") {
        obj["spec"]["clusterIPs"] = json!(["None"]);
    }
    obj["status"] = json!({"loadBalancer": {}});
    Ok(())
}

/// Deletes what a terminating namespace or CRD contains.
pub fn cascade(store: &mut Store, key: &Key, obj: &Value) {
    let victims: Vec<(Key, Value)> = if key.0.is_empty() && key.1 == "namespaces" {
        // Keys start with the type, then the namespace: one range per stored type.
        let mut types: Vec<(String, String)> = store
            .registry
            .all()
            .filter(|r| r.namespaced)
            .map(|r| (r.storage_group.clone(), r.plural.clone()))
            .collect();
        types.sort();
        types.dedup();
        types
            .into_iter()
            .flat_map(|(g, p)| {
                let start: Key = (g.clone(), p.clone(), key.3.clone(), String::new());
                store
                    .objects
                    .range(start..)
                    .take_while(move |(k, _)| k.0 == g && k.1 == p && k.2 == key.3)
                    .map(|(k, o)| (k.clone(), o.clone()))
            })
            .collect()
    } else {
        let group = obj["spec"]["group"].as_str().unwrap_or("");
        let plural = obj["spec"]["names"]["plural"].as_str().unwrap_or("");
        store
            .objects
            .iter()
            .filter(|(k, _)| k.0 == group && k.1 == plural)
            .map(|(k, o)| (k.clone(), o.clone()))
            .collect()
    };
    for (k, o) in victims {
        let rt = store
            .registry
            .all()
            .find(|r| r.group == k.0 && r.plural == k.1)
            .cloned();
        if let Some(rt) = rt {
            let _ = store.delete_key(&rt, k, o, Propagation::Background);
        }
    }
}

fn apiservice_status(store: &Store, obj: &Value) -> Value {
    let gv = (
        obj["spec"]["group"].as_str().unwrap_or("").to_string(),
        obj["spec"]["version"].as_str().unwrap_or("").to_string(),
    );
    aggregator::status(store, obj, store.hanging_apis.contains(&gv))
}

/// Recomputes the status of the APIService for `group/version`, if it exists.
pub fn refresh_apiservice(store: &mut Store, group: &str, version: &str) {
    let key: Key = (
        "apiregistration.k8s.io".into(),
        "apiservices".into(),
        String::new(),
        format!("{version}.{group}"),
    );
    if let Some(mut obj) = store.objects.get(&key).cloned() {
        obj["status"] = apiservice_status(store, &obj);
        store.commit(key, obj, EventKind::Modified);
    }
}

/// Registers (or unregisters) the resource types of CRD `name`, and their APIServices.
pub fn sync_crd(store: &mut Store, name: &str) {
    let key: Key = (
        "apiextensions.k8s.io".into(),
        "customresourcedefinitions".into(),
        String::new(),
        name.into(),
    );
    let types = store.objects.get(&key).map(crd::types).unwrap_or_default();
    store.registry.set_custom(name, types);
    if let Some((_, group)) = name.split_once('.') {
        aggregator::sync_crd_group(store, group);
    }
}

/// Finishes deletions whose content is gone: namespaces and CRDs.
pub fn reap(store: &mut Store) {
    loop {
        if gc::sweep(store) {
            continue;
        }
        let mut done: Option<(Key, Value)> = None;
        for (k, o) in store
            .index
            .deleting
            .iter()
            .filter_map(|k| store.objects.get(k).map(|o| (k, o)))
        {
            if k.0.is_empty() && k.1 == "namespaces" {
                let empty = store.index.namespace_empty(&k.3);
                if empty && o["spec"]["finalizers"].as_array().is_some_and(|f| !f.is_empty()) {
                    let mut n = o.clone();
                    n["spec"]["finalizers"] = json!([]);
                    done = Some((k.clone(), n));
                    break;
                }
                if empty
                    && o["metadata"]["finalizers"]
                        .as_array()
                        .is_none_or(|f| f.is_empty())
                {
                    done = Some((k.clone(), o.clone()));
                    break;
                }
            } else if k.0 == "apiextensions.k8s.io" && k.1 == "customresourcedefinitions" {
                let group = o["spec"]["group"].as_str().unwrap_or("");
                let plural = o["spec"]["names"]["plural"].as_str().unwrap_or("");
                let empty = store.index.type_empty(group, plural);
                let fins = o["metadata"]["finalizers"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                if empty && fins.contains(&json!(crd::CLEANUP_FINALIZER)) {
                    let mut n = o.clone();
                    n["metadata"]["finalizers"] = json!(
                        fins.into_iter()
                            .filter(|f| *f != json!(crd::CLEANUP_FINALIZER))
                            .collect::<Vec<_>>()
                    );
                    done = Some((k.clone(), n));
                    break;
                }
            }
        }
        let Some((key, obj)) = done else { return };
        let meta_fins_empty = obj["metadata"]["finalizers"]
            .as_array()
            .is_none_or(|f| f.is_empty());
        let spec_fins_empty = obj["spec"]["finalizers"].as_array().is_none_or(|f| f.is_empty());
        let kind = if meta_fins_empty && spec_fins_empty {
            EventKind::Deleted
        } else {
            EventKind::Modified
        };
        let crd_name = (key.1 == "customresourcedefinitions").then(|| key.3.clone());
        store.commit(key, obj, kind);
        if let Some(name) = crd_name {
            sync_crd(store, &name);
        }
    }
}
