//! Request routing: discovery documents, and the verbs on resource paths
//! (`/api/v1/...`, `/apis/GROUP/VERSION/...`, namespaced or not, with subresources).

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use serde_json::Value;

use super::aggregator;
use super::delete::Deleted;
use super::discovery;
use super::managed::{self, Write};
use super::ops::Part;
use super::patch::{self, PatchKind};
use super::registry::{Registry, ResourceType};
use super::scale;
use super::selectors::{FieldSelector, LabelSelector};
use super::server::Shared;
use super::status::{self, ApiError};
use super::store::{Filter, Store};
use super::watch::WatchParams;

/// A buffered request.
pub(crate) struct Req {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) query: HashMap<String, String>,
    pub(crate) content_type: String,
    pub(crate) body: Bytes,
    /// For the default field manager.
    pub(crate) user_agent: String,
    /// For aggregated discovery.
    pub(crate) accept: String,
}

/// What to answer.
pub(crate) enum Reply {
    Json(u16, Value),
    Text(String),
    Watch(Box<WatchParams>),
    /// JSON with a particular media type (aggregated discovery).
    Typed(&'static str, Value),
    /// A body that is not JSON (the aggregator's proxy errors are plain text).
    Raw(u16, &'static str, String),
    /// No answer until the client gives up or the request times out (a hanging backend).
    Hang,
}

pub(crate) fn dispatch(shared: &Shared, req: &Req) -> Result<Reply, ApiError> {
    let segs: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
    let mut store = shared.store.lock().map_err(|_| ApiError::injected(500, None))?;
    let get = req.method == Method::GET;
    let found = |v: Option<Value>| {
        v.map(|v| Reply::Json(200, v))
            .ok_or_else(|| ApiError::no_route(&req.path))
    };
    if let ["apis", g, v, ..] = segs.as_slice() {
        if store.hanging_apis.contains(&(g.to_string(), v.to_string())) {
            return Ok(Reply::Hang);
        }
        if aggregator::serving(&store, g, v) {
            // The aggregator's proxy, for an API whose server is unavailable.
            return Ok(Reply::Raw(
                503,
                "text/plain; charset=utf-8",
                "service unavailable\n".into(),
            ));
        }
    }
    let served = || aggregator::served_groups(&store);
    let reg = &store.registry;
    match segs.as_slice() {
        ["version"] if get => Ok(Reply::Json(200, discovery::version())),
        ["healthz" | "readyz" | "livez"] if get => Ok(Reply::Text("ok".into())),
        ["api"] if get && discovery::wants_aggregated(&req.accept) => Ok(Reply::Typed(
            discovery::AGGREGATED,
            discovery::aggregated(reg, true, &[], &[]),
        )),
        ["apis"] if get && discovery::wants_aggregated(&req.accept) => {
            let stale: Vec<_> = aggregator::aggregated(&store)
                .into_iter()
                .filter(|a| !store.hanging_apis.contains(&(a.group.clone(), a.version.clone())))
                .collect();
            Ok(Reply::Typed(
                discovery::AGGREGATED,
                discovery::aggregated(reg, false, &served(), &stale),
            ))
        }
        ["api"] if get => Ok(Reply::Json(
            200,
            discovery::core_versions(&shared.addr.to_string()),
        )),
        ["apis"] if get => Ok(Reply::Json(200, discovery::groups(&served()))),
        ["api", v] if get => found(discovery::resources(reg, "", v)),
        ["apis", g] if get => found(discovery::group(&served(), g)),
        ["apis", g, v] if get => found(discovery::resources(reg, g, v)),
        ["api", v, rest @ ..] if !rest.is_empty() => resource(&mut store, req, "", v, rest),
        ["apis", g, v, rest @ ..] if !rest.is_empty() => resource(&mut store, req, g, v, rest),
        _ => Err(ApiError::no_route(&req.path)),
    }
}

struct Target {
    rt: ResourceType,
    ns: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn target(reg: &Registry, path: &str, group: &str, version: &str, rest: &[&str]) -> Result<Target, ApiError> {
    let nested = rest.len() >= 3
        && rest[0] == "namespaces"
        && !(rest.len() == 3 && matches!(rest[2], "status" | "finalize"));
    let (ns, rest) = if nested {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    let no = || ApiError::no_route(path);
    let rt = reg.lookup(group, version, rest[0]).cloned().ok_or_else(no)?;
    if rest.len() > 3 || (ns.is_some() && !rt.namespaced) {
        return Err(no());
    }
    let sub = rest.get(2).map(|s| s.to_string());
    match sub.as_deref() {
        None => {}
        Some("status") if rt.status => {}
        Some("finalize") if rt.group.is_empty() && rt.plural == "namespaces" => {}
        Some("scale") if rt.scale.is_some() => {}
        Some(_) => return Err(no()),
    }
    Ok(Target {
        rt,
        ns,
        name: rest.get(1).map(|s| s.to_string()),
        sub,
    })
}

fn resource(
    store: &mut Store,
    req: &Req,
    group: &str,
    version: &str,
    rest: &[&str],
) -> Result<Reply, ApiError> {
    let q = |k: &str| req.query.get(k).map(String::as_str).unwrap_or("");
    let mut watch = matches!(q("watch"), "true" | "1");
    let rest = match rest.split_first() {
        Some((&"watch", r)) if !r.is_empty() => {
            watch = true;
            r
        }
        _ => rest,
    };
    let t = target(&store.registry, &req.path, group, version, rest)?;
    let rt = &t.rt;
    let ns = t.ns.as_deref();
    let dry_run = q("dryRun") == "All";
    let mut w = Write {
        dry_run,
        manager: match q("fieldManager") {
            "" => req.user_agent.split('/').next().unwrap_or("").to_string(),
            m => m.to_string(),
        },
        applied: None,
    };
    let no_ns = rt.namespaced && ns.is_none();
    let body_json = || -> Result<Value, ApiError> {
        serde_json::from_slice(&req.body)
            .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
    };
    let part = if t.sub.as_deref() == Some("status") {
        Part::Status
    } else {
        Part::Main
    };
    let Some(name) = t.name.as_deref() else {
        let filter = Filter {
            namespace: t.ns.clone(),
            labels: LabelSelector::parse(q("labelSelector"))?,
            fields: FieldSelector::parse(q("fieldSelector"), rt)?,
        };
        let is_namespaces = rt.group.is_empty() && rt.plural == "namespaces";
        return match req.method {
            Method::GET if watch => {
                let from = match q("resourceVersion") {
                    "" | "0" => None,
                    v => Some(
                        v.parse::<u64>()
                            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {v}")))?,
                    ),
                };
                let timeout = q("timeoutSeconds").parse::<u64>().ok().map(Duration::from_secs);
                Ok(Reply::Watch(Box::new(WatchParams {
                    rt: rt.clone(),
                    filter,
                    from,
                    bookmarks: q("allowWatchBookmarks") == "true",
                    send_initial: q("sendInitialEvents") == "true",
                    timeout,
                })))
            }
            Method::GET => {
                let limit = q("limit").parse::<usize>().ok().filter(|l| *l > 0);
                let cont = Some(q("continue")).filter(|c| !c.is_empty());
                // Only `resourceVersionMatch=Exact` pins a list to an old version; otherwise any
                // version not older than the one given is fine, and the latest is that.
                let at = match (q("resourceVersionMatch"), q("resourceVersion")) {
                    ("Exact", v) => Some(
                        v.parse::<u64>()
                            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {v}")))?,
                    ),
                    (_, "" | "0") => None,
                    (_, v) => {
                        // Not older than `v`: the server waited for it (see `server::handle`);
                        // still not there is "Too large resource version".
                        let v = v
                            .parse::<u64>()
                            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {v}")))?;
                        if v > store.current_rv() {
                            return Err(ApiError::too_large_resource_version(v, store.current_rv()));
                        }
                        None
                    }
                };
                store
                    .list(rt, &filter, limit, cont, at)
                    .map(|v| Reply::Json(200, v))
            }
            Method::POST if !no_ns => store
                .create(rt, ns, body_json()?, &w)
                .map(|v| Reply::Json(201, v)),
            // Namespaces have no deletecollection (nor does discovery offer it).
            Method::DELETE if !no_ns && !is_namespaces => {
                Ok(Reply::Json(200, store.delete_collection(rt, &filter, dry_run)))
            }
            _ => Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({})",
                req.path
            ))),
        };
    };
    if no_ns {
        return Err(ApiError::no_route(&req.path));
    }
    if let (Some("scale"), Some(paths)) = (t.sub.as_deref(), rt.scale.as_ref()) {
        return scale_request(store, req, rt, paths, ns, name, &w);
    }
    match req.method {
        Method::GET => store.get(rt, ns, name).map(|v| Reply::Json(200, v)),
        Method::PUT => store
            .update(rt, ns, name, body_json()?, part, &w)
            .map(|v| Reply::Json(200, v)),
        Method::PATCH => {
            let kind = PatchKind::from_content_type(&req.content_type)?;
            if kind == PatchKind::Apply && q("fieldManager").is_empty() {
                return Err(ApiError::bad_request(
                    "fieldManager: Required value: is required for apply patch",
                ));
            }
            let current = match store.get(rt, ns, name) {
                Ok(c) => c,
                Err(e) if kind == PatchKind::Apply && part == Part::Main => {
                    let mut body = body_json()?;
                    if body["metadata"]["name"].as_str().is_some_and(|n| n != name) {
                        return Err(e);
                    }
                    body["metadata"]["name"] = Value::from(name);
                    w.applied = Some(body.clone());
                    return store.create(rt, ns, body, &w).map(|v| Reply::Json(201, v));
                }
                Err(e) => return Err(e),
            };
            let mut new = patch::apply(kind, &current, &req.body)?;
            if kind == PatchKind::Apply {
                w.applied = serde_json::from_slice(&req.body).ok();
                if let Some(applied) = &w.applied {
                    if q("force") != "true" {
                        managed::apply_conflicts(&current, &w.manager, applied, part == Part::Status)
                            .map_err(|why| ApiError::conflict(rt, name, &why))?;
                    }
                    managed::prune_unapplied(&mut new, &w.manager, applied, part == Part::Status);
                }
            }
            store
                .update(rt, ns, name, new, part, &w)
                .map(|v| Reply::Json(200, v))
        }
        Method::DELETE => {
            let mut opts = if req.body.is_empty() {
                serde_json::json!({})
            } else {
                body_json()?
            };
            if opts["propagationPolicy"].is_null() && !q("propagationPolicy").is_empty() {
                opts["propagationPolicy"] = Value::from(q("propagationPolicy"));
            }
            match store.delete(rt, ns, name, &opts, dry_run)? {
                // kube-apiserver answers 202 only for the deprecated `orphanDependents: false`
                // on an object not deleted at once; Foreground and everything else get 200.
                Deleted::Pending(v) if opts["orphanDependents"] == Value::Bool(false) => {
                    Ok(Reply::Json(202, v))
                }
                Deleted::Pending(v) => Ok(Reply::Json(200, v)),
                // These registries return the deleted object rather than a Status.
                Deleted::Gone(v)
                    if rt.crd.is_some()
                        || (rt.group.is_empty() && matches!(rt.plural.as_str(), "pods" | "services")) =>
                {
                    Ok(Reply::Json(200, v))
                }
                Deleted::Gone(v) => {
                    let uid = v["metadata"]["uid"].as_str().unwrap_or("");
                    Ok(Reply::Json(200, status::success(rt, name, uid)))
                }
            }
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({})",
            req.path
        ))),
    }
}

fn scale_request(
    store: &mut Store,
    req: &Req,
    rt: &ResourceType,
    paths: &scale::ScalePaths,
    ns: Option<&str>,
    name: &str,
    w: &Write,
) -> Result<Reply, ApiError> {
    let current = store.get(rt, ns, name)?;
    let view = scale::view(rt, paths, &current);
    let wanted = match req.method {
        Method::GET => return Ok(Reply::Json(200, view)),
        Method::PUT => serde_json::from_slice(&req.body)
            .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))?,
        Method::PATCH => patch::apply(PatchKind::from_content_type(&req.content_type)?, &view, &req.body)?,
        _ => {
            return Err(ApiError::method_not_allowed(
                "scale supports get, update and patch",
            ));
        }
    };
    let rv = wanted["metadata"]["resourceVersion"].as_str().unwrap_or("");
    if !rv.is_empty() && rv != view["metadata"]["resourceVersion"].as_str().unwrap_or("") {
        return Err(ApiError::conflict(
            rt,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        ));
    }
    // `current` carries its resourceVersion: the write is conditional on what was read.
    let obj = scale::apply(paths, &current, &wanted)?;
    let out = store.update(rt, ns, name, obj, Part::Main, w)?;
    Ok(Reply::Json(200, scale::view(rt, paths, &out)))
}
