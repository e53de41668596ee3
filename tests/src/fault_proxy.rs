//! A fault-injecting HTTP/1.1 proxy on 127.0.0.1 in front of an object store on loopback (Ceph
//! RGW, Azurite), for testing what the engine does when the store or the network to it
//! misbehaves: the client's real HTTP stack, retries and backoff meet real failures, which a
//! trait-level wrapper ([`crate::faults::FailingStore`]) cannot give.
//!
//! The proxy reads each request's line and headers (enough to know its method, path and body
//! framing), then, by a seeded schedule, either forwards it and relays the answer or injects
//! one [`Fault`]: an HTTP 500 or 503 in the store's own error dialect, a slow answer, a
//! connection reset (before the store sees the request, halfway through its body, or after the
//! store acted on it) or a truncated answer body. It counts requests per method and injected
//! faults per kind and method ([`Tally`]).
//!
//! The schedule is a [`SeededRng`] stream: with the same seed, the n-th request to arrive gets
//! the same decision. Requests sent concurrently may arrive in another order on a replay, so a
//! replay repeats the faults, not always the same requests they hit.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use lifeboat_tests::fault_proxy::{Dialect, FaultConfig, FaultProxy};
//! let proxy = FaultProxy::in_front_of("http://127.0.0.1:7480", FaultConfig::new(42, Dialect::S3, 0.15)).await?;
//! let endpoint = proxy.endpoint(); // give this to the client instead of the store's
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::faults::SeededRng;

/// One kind of injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// `500 Internal Server Error` with the store's `InternalError` body; the request is not
    /// forwarded.
    ServerError,
    /// `503 Service Unavailable` with S3's `SlowDown` or Azure's `ServerBusy` body; the request
    /// is not forwarded.
    Throttle,
    /// The store's answer held back for a while (up to [`FaultConfig::max_delay`]), then
    /// relayed whole.
    Slow,
    /// The connection reset (RST) after the request line and headers and half of the request
    /// body (if it has one); nothing reaches the store.
    Reset,
    /// The request forwarded whole and answered by the store (which acted on it), then the
    /// connection reset instead of relaying the answer.
    ResetAfterForward,
    /// The store's answer relayed with its real `Content-Length` but only the first half of
    /// its body, then the connection closed. Only answers to `GET` with a body of 2 bytes or
    /// more are truncated; others pass and the fault waits for the next such answer.
    Truncate,
}

impl Fault {
    /// Every kind, in table order.
    pub const ALL: [Fault; 6] = [
        Fault::ServerError,
        Fault::Throttle,
        Fault::Slow,
        Fault::Reset,
        Fault::ResetAfterForward,
        Fault::Truncate,
    ];

    /// The failure kinds: every kind but [`Fault::Slow`] (whose request does get through).
    pub const FAILING: [Fault; 5] = [
        Fault::ServerError,
        Fault::Throttle,
        Fault::Reset,
        Fault::ResetAfterForward,
        Fault::Truncate,
    ];

    /// A short name for tables: `500`, `503`, `slow`, `reset`, `reset-after`, `truncated`.
    pub fn name(self) -> &'static str {
        match self {
            Fault::ServerError => "500",
            Fault::Throttle => "503",
            Fault::Slow => "slow",
            Fault::Reset => "reset",
            Fault::ResetAfterForward => "reset-after",
            Fault::Truncate => "truncated",
        }
    }

    fn applies_to(self, method: &str) -> bool {
        self != Fault::Truncate || method == "GET"
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which store's error bodies the proxy imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// S3 (Ceph RGW): `<Error><Code>SlowDown</Code>…`.
    S3,
    /// Azure Blob (Azurite): `x-ms-error-code: ServerBusy` and the same code in the XML body.
    Azure,
}

/// What the proxy injects, and how often.
#[derive(Debug, Clone)]
pub struct FaultConfig {
    /// The schedule's seed (0 is replaced by 1: the generator needs a non-zero state).
    pub seed: u64,
    /// Error bodies to imitate.
    pub dialect: Dialect,
    /// Fraction of requests faulted, 0.0 to 1.0.
    pub rate: f64,
    /// The kinds injected. The first faults take each kind once, in a seeded order (so every
    /// kind shows up once a few requests have been faulted); later ones draw at random.
    pub kinds: Vec<Fault>,
    /// Only requests with these methods are faulted (`None`: all).
    pub methods: Option<Vec<String>>,
    /// At most this many faults are injected, then everything passes (`None`: no limit).
    pub limit: Option<u64>,
    /// The first `skip` requests pass untouched (they draw nothing from the schedule), so a
    /// test can fail everything from the k-th request of an operation on.
    pub skip: u64,
    /// Longest delay of a [`Fault::Slow`] answer; each draws uniformly up to it.
    pub max_delay: Duration,
}

impl FaultConfig {
    /// Every kind of fault at `rate`, slow answers up to 1.5 s, no method filter, no limit.
    pub fn new(seed: u64, dialect: Dialect, rate: f64) -> Self {
        Self {
            seed,
            dialect,
            rate,
            kinds: Fault::ALL.to_vec(),
            methods: None,
            limit: None,
            skip: 0,
            max_delay: Duration::from_millis(1500),
        }
    }
}

/// Requests seen and faults injected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Requests seen, by HTTP method (faulted ones included).
    pub requests: BTreeMap<String, u64>,
    /// Faults injected, by kind and HTTP method.
    pub injected: BTreeMap<(Fault, String), u64>,
}

impl Tally {
    /// All requests seen.
    pub fn requests_total(&self) -> u64 {
        self.requests.values().sum()
    }

    /// All faults injected.
    pub fn injected_total(&self) -> u64 {
        self.injected.values().sum()
    }

    /// Faults of one kind injected, over all methods.
    pub fn injected_of(&self, kind: Fault) -> u64 {
        self.injected
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|(_, n)| n)
            .sum()
    }

    /// Adds `other`'s counts to this one's.
    pub fn add(&mut self, other: &Tally) {
        for (m, n) in &other.requests {
            *self.requests.entry(m.clone()).or_default() += n;
        }
        for (k, n) in &other.injected {
            *self.injected.entry(k.clone()).or_default() += n;
        }
    }

    /// Per method, `METHOD n` with its faults in brackets: `GET 12 [503 1, truncated 2]`.
    pub fn by_method(&self) -> String {
        self.requests
            .iter()
            .map(|(m, n)| {
                let faults: Vec<String> = self
                    .injected
                    .iter()
                    .filter(|((_, method), _)| method == m)
                    .map(|((k, _), c)| format!("{k} {c}"))
                    .collect();
                if faults.is_empty() {
                    format!("{m} {n}")
                } else {
                    format!("{m} {n} [{}]", faults.join(", "))
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The running proxy. Dropping it stops accepting connections (those in flight finish).
pub struct FaultProxy {
    addr: SocketAddr,
    base_path: String,
    seed: u64,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

struct State {
    upstream: SocketAddr,
    dialect: Dialect,
    schedule: Mutex<Schedule>,
    tally: Mutex<Tally>,
}

struct Schedule {
    rng: SeededRng,
    rate: f64,
    kinds: Vec<Fault>,
    methods: Option<Vec<String>>,
    left: Option<u64>,
    skip: u64,
    max_delay: Duration,
    /// Kinds not injected yet since the schedule was set, in a seeded order.
    first: VecDeque<Fault>,
}

impl Schedule {
    fn new(rng: SeededRng, config: &FaultConfig) -> Self {
        let mut s = Self {
            rng,
            rate: config.rate.clamp(0.0, 1.0),
            kinds: config.kinds.clone(),
            methods: config.methods.clone(),
            left: config.limit,
            skip: config.skip,
            max_delay: config.max_delay,
            first: VecDeque::new(),
        };
        // Fisher–Yates over the kinds.
        let mut order = s.kinds.clone();
        for i in (1..order.len()).rev() {
            let j = (s.rng.next_u64() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        s.first = order.into();
        s
    }

    /// The fault for the next request (and, for a slow one, its delay), or `None`.
    fn decide(&mut self, method: &str) -> Option<(Fault, Duration)> {
        if self.skip > 0 {
            self.skip -= 1;
            return None;
        }
        if self.left == Some(0) || self.kinds.is_empty() {
            return None;
        }
        if let Some(methods) = &self.methods
            && !methods.iter().any(|m| m == method)
        {
            return None;
        }
        if self.rng.unit() >= self.rate {
            return None;
        }
        let fault = match self.first.iter().position(|f| f.applies_to(method)) {
            Some(i) => self.first.remove(i)?,
            None => {
                let choices: Vec<Fault> = self
                    .kinds
                    .iter()
                    .copied()
                    .filter(|f| f.applies_to(method))
                    .collect();
                if choices.is_empty() {
                    return None;
                }
                choices[(self.rng.next_u64() % choices.len() as u64) as usize]
            }
        };
        if let Some(left) = &mut self.left {
            *left -= 1;
        }
        let delay = self.max_delay.mul_f64(self.rng.unit());
        Some((fault, delay))
    }

    /// A fault decided on but not applicable after all (a truncation of an empty answer):
    /// it goes first next time.
    fn unused(&mut self, fault: Fault) {
        self.first.push_front(fault);
        if let Some(left) = &mut self.left {
            *left += 1;
        }
    }
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl FaultProxy {
    /// Starts a proxy in front of the store at `endpoint` (`http://127.0.0.1:PORT[/path]`).
    /// Fails with [`io::ErrorKind::InvalidInput`] for an endpoint that is not plain HTTP on a
    /// loopback address: the proxy never sends anything elsewhere.
    pub async fn in_front_of(endpoint: &str, config: FaultConfig) -> io::Result<Self> {
        let invalid = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{endpoint}: {why}"));
        let rest = endpoint
            .strip_prefix("http://")
            .ok_or_else(|| invalid("not an http:// endpoint"))?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let authority = authority.replace("localhost", "127.0.0.1");
        let upstream: SocketAddr = authority
            .parse()
            .map_err(|_| invalid("not an IP address and port"))?;
        if !upstream.ip().is_loopback() {
            return Err(invalid("not a loopback address"));
        }
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let seed = config.seed.max(1);
        let state = Arc::new(State {
            upstream,
            dialect: config.dialect,
            schedule: Mutex::new(Schedule::new(SeededRng(seed), &config)),
            tally: Mutex::new(Tally::default()),
        });
        let serving = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let state = serving.clone();
                tokio::spawn(async move {
                    // A client that goes away mid-request is not the proxy's concern.
                    let _ = serve(client, &state).await;
                });
            }
        });
        Ok(Self {
            addr,
            base_path: path.trim_end_matches('/').to_string(),
            seed,
            state,
            task,
        })
    }

    /// The endpoint to give the client: the store's, with the proxy's address
    /// (`http://127.0.0.1:PORT[/path]`).
    pub fn endpoint(&self) -> String {
        format!("http://{}{}", self.addr, self.base_path)
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The seed the schedule started from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Replaces the schedule (rate, kinds, filter, limit); the random stream continues, and
    /// every kind is again injected once before kinds are drawn at random.
    pub fn set_schedule(&self, config: &FaultConfig) {
        let mut schedule = locked(&self.state.schedule);
        let rng = SeededRng(schedule.rng.0);
        *schedule = Schedule::new(rng, config);
    }

    /// The counts so far.
    pub fn tally(&self) -> Tally {
        locked(&self.state.tally).clone()
    }

    /// The counts so far, and starts counting from zero.
    pub fn take_tally(&self) -> Tally {
        std::mem::take(&mut *locked(&self.state.tally))
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl State {
    fn count_request(&self, method: &str) {
        *locked(&self.tally)
            .requests
            .entry(method.to_string())
            .or_default() += 1;
    }

    fn count_fault(&self, fault: Fault, method: &str) {
        *locked(&self.tally)
            .injected
            .entry((fault, method.to_string()))
            .or_default() += 1;
    }

    fn error_response(&self, fault: Fault, method: &str) -> Vec<u8> {
        let (status, code, message) = match (fault, self.dialect) {
            (Fault::Throttle, Dialect::S3) => {
                ("503 Slow Down", "SlowDown", "Please reduce your request rate.")
            }
            (Fault::Throttle, Dialect::Azure) => (
                "503 Service Unavailable",
                "ServerBusy",
                "The server is currently unable to receive requests. Please retry your request.",
            ),
            (_, Dialect::S3) => (
                "500 Internal Server Error",
                "InternalError",
                "We encountered an internal error. Please try again.",
            ),
            (_, Dialect::Azure) => (
                "500 Internal Server Error",
                "InternalError",
                "The server encountered an internal error. Please retry the request.",
            ),
        };
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{message} (injected by FaultProxy)</Message></Error>"
        );
        let azure_code = match self.dialect {
            Dialect::Azure => format!("x-ms-error-code: {code}\r\n"),
            Dialect::S3 => String::new(),
        };
        // A HEAD answer carries no body.
        let body = if method == "HEAD" { String::new() } else { body };
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\n{azure_code}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }
}

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// `Content-Length` bytes (0: none).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// An answer without length: until the connection closes.
    UntilClose,
}

/// A message's start line and headers.
struct Head {
    raw: Vec<u8>,
    start: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn parse(raw: Vec<u8>) -> io::Result<Self> {
        let text = String::from_utf8_lossy(&raw).into_owned();
        let mut lines = text.split("\r\n");
        let start = lines.next().unwrap_or_default().to_string();
        let headers = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                l.split_once(':')
                    .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
                    .ok_or_else(|| {
                        io::Error::new(io::ErrorKind::InvalidData, format!("bad header line {l:?}"))
                    })
            })
            .collect::<io::Result<_>>()?;
        Ok(Self { raw, start, headers })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.header(name)
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }

    fn length(&self) -> io::Result<Option<u64>> {
        self.header("content-length")
            .map(|v| {
                v.parse().map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidData, format!("bad Content-Length {v:?}"))
                })
            })
            .transpose()
    }

    fn request_body(&self) -> io::Result<Body> {
        if self.has_token("transfer-encoding", "chunked") {
            return Ok(Body::Chunked);
        }
        Ok(Body::Length(self.length()?.unwrap_or(0)))
    }

    fn status(&self) -> u16 {
        self.start
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    fn response_body(&self, method: &str) -> io::Result<Body> {
        let status = self.status();
        if method == "HEAD" || (100..200).contains(&status) || status == 204 || status == 304 {
            return Ok(Body::Length(0));
        }
        if self.has_token("transfer-encoding", "chunked") {
            return Ok(Body::Chunked);
        }
        Ok(self.length()?.map_or(Body::UntilClose, Body::Length))
    }
}

/// A connection with what has been read from it but not consumed.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

const MAX_HEAD: usize = 64 * 1024;

impl Conn {
    fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    async fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// The next message head, or `None` at a clean end of the connection.
    async fn read_head(&mut self) -> io::Result<Option<Head>> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let raw: Vec<u8> = self.buf.drain(..end + 4).collect();
                return Head::parse(raw).map(Some);
            }
            if self.buf.len() > MAX_HEAD {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "message head over 64 KiB",
                ));
            }
            if self.fill().await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(io::ErrorKind::UnexpectedEof.into())
                };
            }
        }
    }

    async fn read_line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n") {
                return Ok(self.buf.drain(..end + 2).collect());
            }
            if self.buf.len() > MAX_HEAD {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "line over 64 KiB"));
            }
            if self.fill().await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Copies exactly `n` bytes to `to`.
    async fn copy_exact<W: AsyncWrite + Unpin>(&mut self, mut n: u64, to: &mut W) -> io::Result<()> {
        while n > 0 {
            if self.buf.is_empty() && self.fill().await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let k = self.buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
            to.write_all(&self.buf[..k]).await?;
            self.buf.drain(..k);
            n -= k as u64;
        }
        Ok(())
    }

    /// Copies a chunked body, framing included, to `to`.
    async fn copy_chunked<W: AsyncWrite + Unpin>(&mut self, to: &mut W) -> io::Result<()> {
        loop {
            let line = self.read_line().await?;
            to.write_all(&line).await?;
            let text = String::from_utf8_lossy(&line);
            let hex = text.trim().split(';').next().unwrap_or_default().trim();
            let size = u64::from_str_radix(hex, 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("bad chunk size {hex:?}")))?;
            if size == 0 {
                loop {
                    let trailer = self.read_line().await?;
                    to.write_all(&trailer).await?;
                    if trailer == b"\r\n" {
                        return Ok(());
                    }
                }
            }
            self.copy_exact(size + 2, to).await?;
        }
    }

    async fn copy_body<W: AsyncWrite + Unpin>(&mut self, body: Body, to: &mut W) -> io::Result<()> {
        match body {
            Body::Length(n) => self.copy_exact(n, to).await,
            Body::Chunked => self.copy_chunked(to).await,
            Body::UntilClose => {
                to.write_all(&self.buf).await?;
                self.buf.clear();
                tokio::io::copy(&mut self.stream, to).await.map(|_| ())
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Resets a connection: the peer reads `ECONNRESET`, not an end of stream.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// Serves one client connection: request after request (keep-alive), each forwarded on a
/// fresh upstream connection unless a fault stops it.
async fn serve(client: TcpStream, state: &State) -> io::Result<()> {
    let mut client = Conn::new(client);
    while let Some(request) = client.read_head().await? {
        let method = request.start.split(' ').next().unwrap_or_default().to_string();
        state.count_request(&method);
        let body = request.request_body()?;
        if request.has_token("expect", "100-continue") {
            // Not sent by the clients under test; relayed as a tunnel, never faulted.
            let mut upstream = TcpStream::connect(state.upstream).await?;
            upstream.write_all(&request.raw).await?;
            upstream.write_all(&client.buf).await?;
            let mut stream = client.stream;
            tokio::io::copy_bidirectional(&mut stream, &mut upstream).await?;
            return Ok(());
        }
        let decision = locked(&state.schedule).decide(&method);
        match decision {
            Some((fault @ (Fault::ServerError | Fault::Throttle), _)) => {
                state.count_fault(fault, &method);
                client.copy_body(body, &mut tokio::io::sink()).await?;
                client
                    .stream
                    .write_all(&state.error_response(fault, &method))
                    .await?;
                client.stream.shutdown().await?;
                return Ok(());
            }
            Some((Fault::Reset, _)) => {
                state.count_fault(Fault::Reset, &method);
                if let Body::Length(n) = body {
                    client.copy_exact(n / 2, &mut tokio::io::sink()).await?;
                }
                reset(client.stream);
                return Ok(());
            }
            _ => {}
        }

        let mut upstream = Conn::new(TcpStream::connect(state.upstream).await?);
        upstream.stream.write_all(&request.raw).await?;
        client.copy_body(body, &mut upstream.stream).await?;
        let response = loop {
            let head = upstream.read_head().await?.ok_or(io::ErrorKind::UnexpectedEof)?;
            // Interim answers (100 Continue) go straight through.
            if (100..200).contains(&head.status()) && head.status() != 101 {
                client.stream.write_all(&head.raw).await?;
                continue;
            }
            break head;
        };
        let answer = response.response_body(&method)?;
        match decision {
            Some((Fault::ResetAfterForward, _)) => {
                // Let the store finish its answer, so it has surely acted on the request.
                upstream.copy_body(answer, &mut tokio::io::sink()).await?;
                state.count_fault(Fault::ResetAfterForward, &method);
                reset(client.stream);
                return Ok(());
            }
            Some((Fault::Truncate, _)) => match answer {
                Body::Length(n) if n >= 2 => {
                    state.count_fault(Fault::Truncate, &method);
                    client.stream.write_all(&response.raw).await?;
                    upstream.copy_exact(n / 2, &mut client.stream).await?;
                    client.stream.shutdown().await?;
                    return Ok(());
                }
                _ => locked(&state.schedule).unused(Fault::Truncate),
            },
            Some((Fault::Slow, delay)) => {
                state.count_fault(Fault::Slow, &method);
                tokio::time::sleep(delay).await;
            }
            _ => {}
        }
        client.stream.write_all(&response.raw).await?;
        upstream.copy_body(answer, &mut client.stream).await?;
        if answer == Body::UntilClose
            || response.has_token("connection", "close")
            || request.has_token("connection", "close")
        {
            client.stream.shutdown().await?;
            return Ok(());
        }
    }
    Ok(())
}
