//! The API aggregation layer (kube-aggregator inside kube-apiserver): `APIService` objects.
//!
//! - Local APIServices (built-in groups, registered at start with the label
//!   `kube-aggregator.kubernetes.io/automanaged: onstart`, and one per served CRD version with
//!   `automanaged: "true"`) are always Available.
//! - An APIService with `spec.service` puts its group/version in `/apis` whether or not its
//!   server answers. The test server proxies to no one, so such an API is never available:
//!   its status says why (`ServiceNotFound`, `MissingEndpoints`, `FailedDiscoveryCheck`, as the
//!   availability controller words them) and every request under `/apis/GROUP/VERSION`
//!   answers 503 `service unavailable` in plain text, as the aggregator's proxy does.
//!   [`Faults::hang_api`](super::Faults::hang_api) makes one look Available while its
//!   requests hang instead (a backend that accepts connections and never answers).

use serde_json::{Value, json};

use super::managed::Write;
use super::names;
use super::registry::version_order;
use super::store::{EventKind, Key, Store};

const GROUP: &str = "apiregistration.k8s.io";
const PLURAL: &str = "apiservices";
/// The label kube-apiserver puts on the APIServices it manages itself.
pub const AUTOMANAGED: &str = "kube-aggregator.kubernetes.io/automanaged";

/// An aggregated group version: served by another server through `spec.service`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregated {
    /// The APIService's name (`v1beta1.metrics.k8s.io`).
    pub name: String,
    /// API group.
    pub group: String,
    /// Version.
    pub version: String,
}

fn apiservice_name(group: &str, version: &str) -> String {
    format!("{version}.{group}")
}

fn key(name: &str) -> Key {
    (GROUP.into(), PLURAL.into(), String::new(), name.into())
}

fn body(group: &str, version: &str, automanaged: &str) -> Value {
    json!({
        "metadata": {"name": apiservice_name(group, version), "labels": {AUTOMANAGED: automanaged}},
        "spec": {"group": group, "version": version, "groupPriorityMinimum": 1000, "versionPriority": 15},
    })
}

/// Registers the local APIServices of the built-in group versions, as kube-apiserver does at
/// start.
pub fn register_local(store: &mut Store) {
    let Some(rt) = store.registry.builtin(GROUP, PLURAL).cloned() else {
        return;
    };
    let mut gvs: Vec<(String, String)> = vec![(String::new(), "v1".into())];
    for (g, vs) in store.registry.groups() {
        gvs.extend(vs.into_iter().map(|v| (g.clone(), v)));
    }
    for (g, v) in gvs {
        // Fresh names in a fresh store: nothing can collide.
        let _ = store.create(&rt, None, body(&g, &v, "onstart"), &Write::system());
    }
}

/// Keeps one local APIService per version of `group` that CRDs serve (the CRD registration
/// controller's job), removing those no CRD serves any more.
pub fn sync_crd_group(store: &mut Store, group: &str) {
    let Some(rt) = store.registry.builtin(GROUP, PLURAL).cloned() else {
        return;
    };
    let served: Vec<String> = store
        .registry
        .all()
        .filter(|r| r.crd.is_some() && r.group == group)
        .map(|r| r.version.clone())
        .collect();
    for v in &served {
        if !store.objects.contains_key(&key(&apiservice_name(group, v))) {
            let _ = store.create(&rt, None, body(group, v, "true"), &Write::system());
        }
    }
    let stale: Vec<(Key, Value)> = store
        .objects_of(GROUP, PLURAL)
        .filter(|(_, o)| {
            o["metadata"]["labels"][AUTOMANAGED] == json!("true")
                && o["spec"]["group"] == json!(group)
                && !served.iter().any(|v| o["spec"]["version"] == json!(v))
        })
        .map(|(k, o)| (k.clone(), o.clone()))
        .collect();
    for (k, o) in stale {
        store.commit(k, o, EventKind::Deleted);
    }
}

fn condition(ok: bool, reason: &str, message: &str) -> Value {
    json!({"type": "Available", "status": if ok { "True" } else { "False" }, "reason": reason,
           "message": message, "lastTransitionTime": names::now_rfc3339()})
}

/// The status the availability controller gives `obj` (an APIService), `hanging` for one
/// made to look available by a fault.
pub fn status(store: &Store, obj: &Value, hanging: bool) -> Value {
    let spec = &obj["spec"];
    let Some(svc) = spec["service"].as_object() else {
        return json!({"conditions": [condition(true, "Local", "Local APIServices are always available")]});
    };
    if hanging {
        return json!({"conditions": [condition(true, "Passed", "all checks passed")]});
    }
    let name = svc.get("name").and_then(Value::as_str).unwrap_or("");
    let ns = svc.get("namespace").and_then(Value::as_str).unwrap_or("");
    let service = store
        .objects_of("", "services")
        .find(|(k, _)| k.2 == ns && k.3 == name)
        .map(|(_, o)| o);
    let Some(service) = service else {
        return json!({"conditions": [condition(false, "ServiceNotFound",
            &format!("service/{name} in \"{ns}\" is not present"))]});
    };
    let port = svc.get("port").and_then(Value::as_u64).unwrap_or(443);
    let port_name = service["spec"]["ports"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["port"].as_u64() == Some(port)))
        .and_then(|p| p["name"].as_str())
        .unwrap_or("")
        .to_string();
    let addresses = store
        .objects_of("", "endpoints")
        .find(|(k, _)| k.2 == ns && k.3 == name)
        .and_then(|(_, e)| e["subsets"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .find_map(|s| {
            s["addresses"].as_array()?.first()?["ip"]
                .as_str()
                .map(String::from)
        });
    match addresses {
        None => json!({"conditions": [condition(false, "MissingEndpoints",
            &format!("endpoints for service/{name} in \"{ns}\" have no addresses with port name \"{port_name}\""))]}),
        Some(ip) => json!({"conditions": [condition(false, "FailedDiscoveryCheck",
            &format!("failing or missing response from https://{ip}:{port}/apis/{}/{}: the test API server does not proxy to aggregated API servers",
                spec["group"].as_str().unwrap_or(""), spec["version"].as_str().unwrap_or("")))]}),
    }
}

/// Every group version served through `spec.service`.
pub fn aggregated(store: &Store) -> Vec<Aggregated> {
    store
        .objects_of(GROUP, PLURAL)
        .filter(|(_, o)| o["spec"]["service"].is_object())
        .map(|(k, o)| Aggregated {
            name: k.3.clone(),
            group: o["spec"]["group"].as_str().unwrap_or("").to_string(),
            version: o["spec"]["version"].as_str().unwrap_or("").to_string(),
        })
        .filter(|a| !a.group.is_empty())
        .collect()
}

/// Every served group and its versions (preferred first): the registry's, and the
/// aggregated ones after them.
pub fn served_groups(store: &Store) -> Vec<(String, Vec<String>)> {
    let mut out = store.registry.groups();
    for a in aggregated(store) {
        match out.iter_mut().find(|(g, _)| *g == a.group) {
            Some((_, vs)) if !vs.contains(&a.version) => vs.push(a.version),
            Some(_) => {}
            None => out.push((a.group, vec![a.version])),
        }
    }
    for (_, vs) in &mut out {
        vs.sort_by(|a, b| version_order(a, b));
    }
    out
}

/// Whether an aggregated API serves `group/version` (asked on every request under
/// `/apis/GROUP/VERSION`, so it allocates nothing).
pub fn serving(store: &Store, group: &str, version: &str) -> bool {
    store.objects_of(GROUP, PLURAL).any(|(_, o)| {
        let spec = &o["spec"];
        spec["service"].is_object() && spec["group"] == group && spec["version"] == version
    })
}
