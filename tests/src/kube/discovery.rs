//! `/version` and API discovery documents, generated from the registry.

use serde_json::{Value, json};

use super::aggregator::Aggregated;
use super::registry::{Registry, ResourceType};

/// What `/version` reports: a Kubernetes 1.30 server.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "30",
        "gitVersion": "v1.30.0-lifeboat-test",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2024-04-17T00:00:00Z",
        "goVersion": "go1.22.2",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

/// `/api`: the core group's versions.
pub fn core_versions(server: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server}]
    })
}

fn group_doc(group: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({
        "name": group,
        "versions": vs,
        "preferredVersion": vs.first().cloned().unwrap_or(Value::Null),
    })
}

/// `/apis`: every served group (see [`aggregator::served_groups`](super::aggregator::served_groups))
/// and its versions.
pub fn groups(served: &[(String, Vec<String>)]) -> Value {
    let groups: Vec<Value> = served.iter().map(|(g, vs)| group_doc(g, vs)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/GROUP`.
pub fn group(served: &[(String, Vec<String>)], name: &str) -> Option<Value> {
    served.iter().find(|(g, _)| g == name).map(|(g, vs)| {
        let mut d = group_doc(g, vs);
        d["kind"] = json!("APIGroup");
        d["apiVersion"] = json!("v1");
        d
    })
}

/// The verbs of a resource: all eight, but Namespaces have no `deletecollection`.
fn verbs(r: &ResourceType) -> Value {
    if r.group.is_empty() && r.plural == "namespaces" && r.crd.is_none() {
        return json!(["create", "delete", "get", "list", "patch", "update", "watch"]);
    }
    json!([
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch"
    ])
}

fn resource_doc(r: &ResourceType) -> Value {
    let mut d = json!({
        "name": r.plural,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": verbs(r),
    });
    if !r.short_names.is_empty() {
        d["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        d["categories"] = json!(r.categories);
    }
    d
}

/// `/api/v1` or `/apis/GROUP/VERSION`: the resources (and subresources) of one group version.
pub fn resources(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let mut list = Vec::new();
    for r in reg.all().filter(|r| r.group == group && r.version == version) {
        list.push(resource_doc(r));
        if r.status {
            list.push(json!({
                "name": format!("{}/status", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        if r.scale.is_some() {
            list.push(json!({
                "name": format!("{}/scale", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "group": "autoscaling",
                "version": "v1",
                "kind": "Scale",
                "verbs": ["get", "patch", "update"],
            }));
        }
        if r.group.is_empty() && r.plural == "namespaces" {
            list.push(
                json!({"name": "namespaces/finalize", "singularName": "", "namespaced": false,
                             "kind": "Namespace", "verbs": ["update"]}),
            );
        }
    }
    if list.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list}))
}

/// The media type of aggregated discovery (apidiscovery.k8s.io/v2), stable since 1.30.
pub const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether an `Accept` header asks for aggregated discovery.
pub fn wants_aggregated(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=APIGroupDiscoveryList") && first.contains("v=v2;"))
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "version": version, "kind": kind})
}

fn aggregated_resource(r: &ResourceType) -> Value {
    let mut subs = Vec::new();
    if r.status {
        subs.push(
            json!({"subresource": "status", "responseKind": gvk(&r.group, &r.version, &r.kind),
                         "verbs": ["get", "patch", "update"]}),
        );
    }
    if r.scale.is_some() {
        subs.push(
            json!({"subresource": "scale", "responseKind": gvk("autoscaling", "v1", "Scale"),
                         "verbs": ["get", "patch", "update"]}),
        );
    }
    let mut d = json!({
        "resource": r.plural,
        "responseKind": gvk(&r.group, &r.version, &r.kind),
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": verbs(r),
    });
    if !r.short_names.is_empty() {
        d["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        d["categories"] = json!(r.categories);
    }
    if !subs.is_empty() {
        d["subresources"] = json!(subs);
    }
    d
}

fn aggregated_group(reg: &Registry, group: &str, versions: &[String], stale: &[Aggregated]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| {
            // An aggregated API whose server does not answer is listed, without resources,
            // as "Stale".
            if stale.iter().any(|a| a.group == group && &a.version == v) {
                return json!({"version": v, "resources": [], "freshness": "Stale"});
            }
            let resources: Vec<Value> = reg
                .all()
                .filter(|r| r.group == group && &r.version == v)
                .map(aggregated_resource)
                .collect();
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    let mut g = json!({"metadata": {}, "versions": versions});
    if !group.is_empty() {
        g["metadata"]["name"] = json!(group);
    }
    g
}

/// Aggregated discovery: `/api` (`core`) or `/apis` as one APIGroupDiscoveryList.
pub fn aggregated(
    reg: &Registry,
    core: bool,
    served: &[(String, Vec<String>)],
    stale: &[Aggregated],
) -> Value {
    let items: Vec<Value> = if core {
        vec![aggregated_group(reg, "", &["v1".to_string()], stale)]
    } else {
        served
            .iter()
            .map(|(g, vs)| aggregated_group(reg, g, vs, stale))
            .collect()
    };
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}
