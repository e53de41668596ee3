//! Watch streams: newline-delimited JSON events replayed from the history, then live, with
//! bookmarks, timeouts, 410 Gone for compacted versions, and injected drops.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::faults::FaultState;
use super::registry::ResourceType;
use super::status::ApiError;
use super::store::{Event, EventKind, Filter, Store};

/// One watch request's parameters.
#[derive(Debug, Clone)]
pub struct WatchParams {
    /// The watched resource type (at the requested version).
    pub rt: ResourceType,
    /// Namespace and selectors.
    pub filter: Filter,
    /// Events after this version; `None` starts with the current state as ADDED events.
    pub from: Option<u64>,
    /// `allowWatchBookmarks`.
    pub bookmarks: bool,
    /// `sendInitialEvents` (with `from == None`): end the initial state with a bookmark.
    pub send_initial: bool,
    /// `timeoutSeconds`.
    pub timeout: Option<Duration>,
}

/// A chunk of the response body, or the error that aborts it.
pub type Chunk = Result<Bytes, std::io::Error>;

fn line(v: &Value) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

/// The line (if any) `e` produces for a watch of `p`: selector watches see objects that stop
/// matching as DELETED and objects that start matching as ADDED, like kube-apiserver's.
fn render(p: &WatchParams, e: &Event) -> Option<Bytes> {
    if e.key.0 != p.rt.storage_group || e.key.1 != p.rt.plural {
        return None;
    }
    let now = p.filter.matches(&e.key, &e.object);
    let before = e.old.as_ref().is_some_and(|o| p.filter.matches(&e.key, o));
    let kind = match e.kind {
        EventKind::Added | EventKind::Deleted if now => e.kind,
        EventKind::Modified if now && before => EventKind::Modified,
        EventKind::Modified if now => EventKind::Added,
        EventKind::Modified if before => EventKind::Deleted,
        _ => return None,
    };
    Some(line(
        &json!({"type": kind.as_str(), "object": Store::render(&p.rt, &e.object)}),
    ))
}

fn bookmark(p: &WatchParams, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line(&json!({"type": "BOOKMARK",
                 "object": {"kind": p.rt.kind, "apiVersion": p.rt.api_version(), "metadata": meta}}))
}

/// Whether `e` is the removal of the CRD that defines the watched resource: the real server
/// ends such watches.
fn ends_watch(p: &WatchParams, e: &Event) -> bool {
    e.kind == EventKind::Deleted
        && p.rt.crd.as_deref() == Some(e.key.3.as_str())
        && e.key.0 == "apiextensions.k8s.io"
        && e.key.1 == "customresourcedefinitions"
}

/// The in-stream error event a real server sends when a watch cannot go on (410 Gone).
pub fn error_line(e: &ApiError) -> Bytes {
    line(&json!({"type": "ERROR", "object": e.to_status()}))
}

/// How long the watch cache waits for a resourceVersion it has not reached (`blockTimeout`).
pub const FRESH_WAIT: Duration = Duration::from_secs(3);

/// Waits up to [`FRESH_WAIT`] until the store has reached `rv`; whether it did.
pub async fn wait_for_rv(store: &Mutex<Store>, rv: u64) -> bool {
    let deadline = tokio::time::Instant::now() + FRESH_WAIT;
    loop {
        if store.lock().map(|s| s.current_rv() >= rv).unwrap_or(true) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Streams the watch `p` into `tx` until timeout, client disconnect or an injected drop.
pub async fn run(
    store: Arc<Mutex<Store>>,
    faults: Arc<FaultState>,
    p: WatchParams,
    bookmark_every: Duration,
    tx: mpsc::Sender<Chunk>,
) {
    // A streaming list (`sendInitialEvents`) at a version the server has not reached waits
    // up to 3 s for it, then fails with "Too large resource version"; it never gets 410.
    // A plain watch from a future version is accepted at once and quietly waits for it.
    if p.send_initial
        && let Some(wanted) = p.from
        && !wait_for_rv(&store, wanted).await
    {
        let current = store.lock().map(|s| s.current_rv()).unwrap_or(0);
        let _ = tx
            .send(Ok(error_line(&ApiError::too_large_resource_version(
                wanted, current,
            ))))
            .await;
        return;
    }
    let from = if p.send_initial { None } else { p.from };
    let start = match store.lock() {
        Ok(s) => s
            .watch(&p.rt, &p.filter, from)
            .map(|(i, rx)| (i, rx, s.current_rv())),
        Err(_) => return,
    };
    let (initial, mut rx, now) = match start {
        Ok(x) => x,
        Err(e) => {
            let _ = tx.send(Ok(error_line(&e))).await;
            return;
        }
    };
    let mut last = from.unwrap_or(now);
    for e in &initial {
        last = last.max(e.rv);
        if let Some(l) = render(&p, e)
            && tx.send(Ok(l)).await.is_err()
        {
            return;
        }
    }
    if p.send_initial && p.bookmarks {
        let _ = tx.send(Ok(bookmark(&p, last, true))).await;
    }
    let mut drops = faults.drop_watches.subscribe();
    drops.mark_unchanged();
    let mut ticks = tokio::time::interval(bookmark_every);
    ticks.tick().await;
    let deadline = p.timeout.unwrap_or(Duration::from_secs(1800));
    let timeout = tokio::time::sleep(deadline);
    tokio::pin!(timeout);
    // A version the server has not reached: no events and no bookmarks until it passes it.
    let mut ahead = from.filter(|f| *f > now);
    loop {
        let out = tokio::select! {
            r = rx.recv() => match r {
                Ok(e) if e.rv <= last => {
                    if ahead.is_some_and(|f| e.rv >= f) {
                        ahead = None;
                    }
                    continue;
                }
                Ok(e) if ends_watch(&p, &e) => return,
                Ok(e) => {
                    ahead = None;
                    last = e.rv;
                    match render(&p, &e) {
                        Some(l) => Ok(l),
                        None => continue,
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let _ = tx.send(Ok(error_line(&ApiError::expired("watch fell behind; too old resource version")))).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = ticks.tick(), if p.bookmarks && ahead.is_none() => Ok(bookmark(&p, last, false)),
            _ = &mut timeout => return,
            _ = drops.changed() => {
                faults.watches_dropped.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected fault: watch dropped"))
            }
            _ = tx.closed() => return,
        };
        let abort = out.is_err();
        if tx.send(out).await.is_err() || abort {
            return;
        }
    }
}
