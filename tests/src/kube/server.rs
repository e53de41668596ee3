//! The HTTP side: an accept loop on 127.0.0.1 that can be partitioned, and request routing
//! to discovery, the store and watches.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use super::KubeTestError;
use super::discovery;
use super::faults::{FaultState, Faults};
use super::ops::{Deleted, Part};
use super::patch::{self, PatchKind};
use super::registry::{Registry, ResourceType};
use super::selectors::{FieldSelector, LabelSelector};
use super::status::{self, ApiError};
use super::store::{Filter, Store};
use super::watch::{self as watching, WatchParams};

type Body = BoxBody<Bytes, std::io::Error>;

struct Shared {
    store: Arc<Mutex<Store>>,
    faults: Arc<FaultState>,
    addr: SocketAddr,
    bookmark_every: Duration,
}

/// An in-process Kubernetes API server on a loopback port (plain HTTP), one "cluster".
#[derive(Debug)]
pub struct TestServer {
    addr: SocketAddr,
    faults: Faults,
    shutdown: watch::Sender<bool>,
}

impl TestServer {
    /// Starts serving on 127.0.0.1 on a free port, in a task of the current Tokio runtime.
    pub async fn start() -> Result<Self, KubeTestError> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| KubeTestError::io("bind the test API server", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| KubeTestError::io("read the test API server's address", e))?;
        let store = Arc::new(Mutex::new(Store::new()));
        let faults = Arc::new(FaultState::default());
        let shared = Arc::new(Shared {
            store: store.clone(),
            faults: faults.clone(),
            addr,
            bookmark_every: Duration::from_secs(1),
        });
        let (shutdown, rx) = watch::channel(false);
        tokio::spawn(accept_loop(listener, shared, rx));
        Ok(Self {
            addr,
            faults: Faults { state: faults, store },
            shutdown,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The fault-injection handle.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut listener = Some(listener);
    let mut partitioned = shared.faults.partitioned.subscribe();
    loop {
        if *partitioned.borrow_and_update() {
            // Closing the listener makes connects fail with "connection refused".
            listener = None;
            tokio::select! {
                _ = partitioned.changed() => continue,
                _ = shutdown.changed() => return,
            }
        }
        let Some(l) = listener.as_ref() else {
            match TcpListener::bind(shared.addr).await {
                Ok(l) => listener = Some(l),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
            continue;
        };
        tokio::select! {
            r = l.accept() => {
                if let Ok((stream, _)) = r {
                    tokio::spawn(serve_connection(stream, shared.clone(), shutdown.clone()));
                }
            }
            _ = partitioned.changed() => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut partitioned = shared.faults.partitioned.subscribe();
    let svc = service_fn(move |req| handle(shared.clone(), req));
    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
    tokio::select! {
        _ = conn => {}
        _ = partitioned.wait_for(|p| *p) => {}
        _ = shutdown.changed() => {}
    }
}

fn full(code: u16, content_type: &str, body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

fn json_response(code: u16, v: &Value) -> Response<Body> {
    full(
        code,
        "application/json",
        serde_json::to_vec(v).unwrap_or_default(),
    )
}

fn error_response(e: &ApiError) -> Response<Body> {
    let mut r = json_response(e.code, &e.to_status());
    if matches!(e.code, 429 | 503) {
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    r
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let latency = shared.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(code) = shared.faults.take_failure() {
        return Ok(error_response(&ApiError::injected(code)));
    }
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Ok(error_response(&ApiError::bad_request(format!(
                "reading the body: {e}"
            ))));
        }
    };
    let query: HashMap<String, String> = parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let req = Req {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query,
        content_type,
        body,
    };
    Ok(match dispatch(&shared, &req) {
        Ok(Reply::Json(code, v)) => json_response(code, &v),
        Ok(Reply::Text(t)) => full(200, "text/plain", t.into_bytes()),
        Ok(Reply::Watch(p)) => start_watch(&shared, *p),
        Err(e) => error_response(&e),
    })
}

fn start_watch(shared: &Shared, p: WatchParams) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<watching::Chunk>(64);
    tokio::spawn(watching::run(
        shared.store.clone(),
        shared.faults.clone(),
        p,
        shared.bookmark_every,
        tx,
    ));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|c| (c.map(Frame::data), rx))
    });
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

struct Req {
    method: Method,
    path: String,
    query: HashMap<String, String>,
    content_type: String,
    body: Bytes,
}

enum Reply {
    Json(u16, Value),
    Text(String),
    Watch(Box<WatchParams>),
}

fn dispatch(shared: &Shared, req: &Req) -> Result<Reply, ApiError> {
    let segs: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
    let mut store = shared.store.lock().map_err(|_| ApiError::injected(500))?;
    let reg = &store.registry;
    let get = req.method == Method::GET;
    let found = |v: Option<Value>| {
        v.map(|v| Reply::Json(200, v))
            .ok_or_else(|| ApiError::no_route(&req.path))
    };
    match segs.as_slice() {
        ["version"] if get => Ok(Reply::Json(200, discovery::version())),
        ["healthz" | "readyz" | "livez"] if get => Ok(Reply::Text("ok".into())),
        ["api"] if get => Ok(Reply::Json(
            200,
            discovery::core_versions(&shared.addr.to_string()),
        )),
        ["apis"] if get => Ok(Reply::Json(200, discovery::groups(reg))),
        ["api", v] if get => found(discovery::resources(reg, "", v)),
        ["apis", g] if get => found(discovery::group(reg, g)),
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
                store.list(rt, &filter, limit, cont).map(|v| Reply::Json(200, v))
            }
            Method::POST if !no_ns => store
                .create(rt, ns, body_json()?, dry_run)
                .map(|v| Reply::Json(201, v)),
            Method::DELETE if !no_ns || !rt.namespaced => {
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
    match req.method {
        Method::GET => store.get(rt, ns, name).map(|v| Reply::Json(200, v)),
        Method::PUT => store
            .update(rt, ns, name, body_json()?, part, dry_run)
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
                    return store.create(rt, ns, body, dry_run).map(|v| Reply::Json(201, v));
                }
                Err(e) => return Err(e),
            };
            let new = patch::apply(kind, &current, &req.body)?;
            store
                .update(rt, ns, name, new, part, dry_run)
                .map(|v| Reply::Json(200, v))
        }
        Method::DELETE => {
            let opts = if req.body.is_empty() {
                Value::Null
            } else {
                body_json()?
            };
            match store.delete(rt, ns, name, &opts, dry_run)? {
                Deleted::Pending(v) => Ok(Reply::Json(202, v)),
                Deleted::Gone(v) if rt.crd.is_some() || rt.plural == "pods" => Ok(Reply::Json(200, v)),
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
