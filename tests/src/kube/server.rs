//! The HTTP side: an accept loop on 127.0.0.1 that can be partitioned, and request routing
//! to discovery, the store and watches.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
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
use super::addresses::{AddressRanges, Addresses};
use super::faults::{FaultState, Faults, Injected};
use super::registry::ResourceType;
use super::routes::{Reply, Req, dispatch};
use super::status::ApiError;
use super::store::Store;
use super::tls::{self, ServerTls};
use super::watch::{self as watching, WatchParams};

type Body = BoxBody<Bytes, std::io::Error>;

/// kube-apiserver's `--request-timeout` default.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) struct Shared {
    pub(crate) store: Arc<Mutex<Store>>,
    faults: Arc<FaultState>,
    pub(crate) addr: SocketAddr,
    bookmark_every: Duration,
    tls: Option<ServerTls>,
}

/// An in-process Kubernetes API server on a loopback port, one "cluster".
#[derive(Debug)]
pub struct TestServer {
    addr: SocketAddr,
    faults: Faults,
    shutdown: watch::Sender<bool>,
    ca_pem: Option<String>,
}

impl TestServer {
    /// Starts serving HTTPS (a fresh CA, see [`ca_pem`](Self::ca_pem)) on 127.0.0.1 on a free
    /// port, on a thread of its own with its own Tokio runtime (so a test that blocks its
    /// runtime does not stall the server); dropping the handle stops it.
    pub async fn start() -> Result<Self, KubeTestError> {
        Self::start_with(Some(tls::generate()?)).await
    }

    /// Like [`start`](Self::start) but plain HTTP (handy with curl).
    pub async fn start_plain() -> Result<Self, KubeTestError> {
        Self::start_with(None).await
    }

    /// Like [`start`](Self::start) on a given loopback port (0 for any).
    pub async fn start_on(port: u16) -> Result<Self, KubeTestError> {
        Self::start_configured(port, AddressRanges::default()).await
    }

    /// Like [`start`](Self::start) on a given loopback port (0 for any), giving Services
    /// addresses from `ranges` (kube-apiserver's `--service-cluster-ip-range` and
    /// `--service-node-port-range`).
    pub async fn start_configured(port: u16, ranges: AddressRanges) -> Result<Self, KubeTestError> {
        Self::spawn(Some(tls::generate()?), Ipv4Addr::LOCALHOST.into(), port, ranges)
    }

    /// Like [`start_configured`](Self::start_configured), listening on `bind` (kube-apiserver's
    /// `--bind-address`; `0.0.0.0` for every address, as inside a network namespace that
    /// plays a host) with a serving certificate that also names `sans`.
    pub fn start_bound(
        bind: IpAddr,
        port: u16,
        ranges: AddressRanges,
        sans: &[String],
    ) -> Result<Self, KubeTestError> {
        Self::spawn(Some(tls::generate_for(sans)?), bind, port, ranges)
    }

    async fn start_with(tls: Option<ServerTls>) -> Result<Self, KubeTestError> {
        Self::spawn(tls, Ipv4Addr::LOCALHOST.into(), 0, AddressRanges::default())
    }

    /// Binds, then serves from a thread of its own with its own runtime: a test that blocks
    /// its runtime (running a CLI and waiting for it, say) must not stall "the cluster".
    fn spawn(
        tls: Option<ServerTls>,
        bind: IpAddr,
        port: u16,
        ranges: AddressRanges,
    ) -> Result<Self, KubeTestError> {
        let listener = std::net::TcpListener::bind((bind, port))
            .map_err(|e| KubeTestError::io("bind the test API server", e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| KubeTestError::io("set the listener non-blocking", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| KubeTestError::io("read the test API server's address", e))?;
        let store = Arc::new(Mutex::new(Store::new(Addresses::new(ranges))));
        let faults = Arc::new(FaultState::default());
        let shared = Arc::new(Shared {
            store: store.clone(),
            faults: faults.clone(),
            addr,
            bookmark_every: Duration::from_secs(1),
            tls: tls.clone(),
        });
        let (shutdown, rx) = watch::channel(false);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| KubeTestError::io("build the test API server's runtime", e))?;
        std::thread::Builder::new()
            .name(format!("kube-testserver-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    if let Ok(listener) = TcpListener::from_std(listener) {
                        accept_loop(listener, shared, rx).await;
                    }
                });
            })
            .map_err(|e| KubeTestError::io("start the test API server's thread", e))?;
        Ok(Self {
            addr,
            faults: Faults { state: faults, store },
            shutdown,
            ca_pem: tls.map(|t| t.ca_pem),
        })
    }

    /// `https://127.0.0.1:PORT` (or `http://` for a plain server).
    pub fn url(&self) -> String {
        let scheme = if self.ca_pem.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The CA certificate (PEM) that signed the serving certificate; `None` for plain HTTP.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
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
            shared.faults.set_listening(false);
            tokio::select! {
                _ = partitioned.changed() => continue,
                _ = shutdown.changed() => return,
            }
        }
        let Some(l) = listener.as_ref() else {
            match TcpListener::bind(shared.addr).await {
                Ok(l) => {
                    listener = Some(l);
                    shared.faults.set_listening(true);
                }
                // The port may be taken meanwhile: retry, but stop when the server is dropped.
                Err(_) => tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = shutdown.changed() => return,
                },
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
    let serve = async {
        match shared.tls.clone() {
            Some(tls) => {
                if let Ok(s) = tls.acceptor.accept(stream).await {
                    serve_http(s, shared.clone()).await;
                }
            }
            None => serve_http(stream, shared.clone()).await,
        }
    };
    tokio::select! {
        _ = serve => {}
        _ = partitioned.wait_for(|p| *p) => {}
        _ = shutdown.changed() => {}
    }
}

async fn serve_http<S>(io: S, shared: Arc<Shared>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| handle(shared.clone(), req));
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .await;
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

/// An error's `Status`, with `Retry-After` from its `details.retryAfterSeconds` for 429 and
/// 503, as kube-apiserver's error writer sets it (1 s when the details give none).
fn error_response(e: &ApiError) -> Response<Body> {
    let mut r = json_response(e.code, &e.to_status());
    if matches!(e.code, 429 | 503) {
        let after = e
            .details
            .as_ref()
            .and_then(|d| d["retryAfterSeconds"].as_u64())
            .filter(|s| *s > 0)
            .unwrap_or(1);
        if let Ok(v) = header::HeaderValue::from_str(&after.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    r
}

/// The resource type and object name a request addresses (the name from the body for a
/// create), so an injected 409 names them as a real `Conflict` does.
fn injected_target(store: &Store, path: &str, body: &[u8]) -> Option<(ResourceType, String)> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest: &[&str] = match parts.as_slice() {
        ["api", _version, rest @ ..] => rest,
        ["apis", _group, _version, rest @ ..] => rest,
        _ => return None,
    };
    let (group, version) = match parts.as_slice() {
        ["api", v, ..] => ("", *v),
        ["apis", g, v, ..] => (*g, *v),
        _ => return None,
    };
    let rest = match rest {
        ["namespaces", _ns, more @ ..] if !more.is_empty() && !matches!(more, ["status" | "finalize"]) => {
            more
        }
        r => r,
    };
    let (plural, name) = match rest {
        [plural] => {
            let v: Value = serde_json::from_slice(body).ok()?;
            (*plural, v["metadata"]["name"].as_str()?.to_string())
        }
        [plural, name, ..] => (*plural, (*name).to_string()),
        _ => return None,
    };
    let rt = store.registry.lookup(group, version, plural)?.clone();
    Some((rt, name))
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, std::io::Error> {
    let method = req.method().as_str().to_string();
    let target = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string());
    let mut note = Noted::default();
    let answer = answer(&shared, req, &target, &mut note).await;
    if let Ok(r) = &answer {
        shared
            .faults
            .record(&method, &target, note.name, note.injected, r.status().as_u16());
    }
    answer
}

/// What [`answer`] notes of a request for the request log.
#[derive(Default)]
struct Noted {
    /// The fault it met.
    injected: Option<Injected>,
    /// The object a create names in its body.
    name: Option<String>,
}

/// Answers one request, noting what the request log keeps in `note`.
async fn answer(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    target: &str,
    note: &mut Noted,
) -> Result<Response<Body>, std::io::Error> {
    if *shared.faults.partitioned.borrow() {
        // An error from the service makes hyper drop the connection without an answer.
        return Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "partitioned",
        ));
    }
    let latency = shared.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let injected = shared.faults.take_failure(req.method().as_str(), target);
    note.injected = injected;
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Ok(error_response(&ApiError::bad_request(format!(
                "reading the body: {e}"
            ))));
        }
    };
    if parts.method == http::Method::POST && shared.faults.logging() {
        note.name = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["metadata"]["name"].as_str().map(String::from));
    }
    match injected {
        Some(Injected::Answer(code)) => {
            let rt = shared
                .store
                .lock()
                .ok()
                .and_then(|s| injected_target(&s, parts.uri.path(), &body));
            return Ok(error_response(&ApiError::injected(code, rt.as_ref())));
        }
        Some(Injected::Compact) => super::faults::compact(&shared.store),
        None => {}
    }
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
    let user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let accept = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    // A list not older than a version the server has not reached waits for it, as the
    // watch cache does (then answers 504 if it is still ahead).
    let wanted = query
        .get("resourceVersion")
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|v| *v > 0);
    let exact = query.get("resourceVersionMatch").map(String::as_str) == Some("Exact");
    let watching =
        query.get("watch").is_some_and(|w| w == "true" || w == "1") || parts.uri.path().contains("/watch/");
    if let Some(v) = wanted
        && parts.method == http::Method::GET
        && !exact
        && !watching
    {
        watching::wait_for_rv(&shared.store, v).await;
    }
    let req = Req {
        accept,
        user_agent,
        method: parts.method,
        path: parts.uri.path().to_string(),
        query,
        content_type,
        body,
    };
    Ok(match dispatch(shared, &req) {
        Ok(Reply::Json(code, v)) => json_response(code, &v),
        Ok(Reply::Typed(media, v)) => full(200, media, serde_json::to_vec(&v).unwrap_or_default()),
        Ok(Reply::Text(t)) => full(200, "text/plain", t.into_bytes()),
        Ok(Reply::Raw(code, media, text)) => full(code, media, text.into_bytes()),
        Ok(Reply::Watch(p)) => start_watch(shared, *p),
        Ok(Reply::Hang) => {
            // Until the client gives up, or kube-apiserver's default request timeout (60 s).
            tokio::time::sleep(REQUEST_TIMEOUT).await;
            error_response(&ApiError::request_timeout())
        }
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
