//! The object store: JSON objects keyed by resource and name, a global resourceVersion, and
//! the event history that watches replay.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::events;
use super::registry::{Registry, ResourceType};
use super::selectors::{FieldSelector, LabelSelector};
use super::status::ApiError;

/// `(group, plural, namespace or "", name)`: one object, whatever version it is read at.
pub type Key = (String, String, String, String);

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Removed for good.
    Deleted,
}

impl EventKind {
    /// The watch event `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change, as recorded in the history and broadcast to watches.
#[derive(Debug, Clone)]
pub struct Event {
    /// The resourceVersion this change produced.
    pub rv: u64,
    /// The object's key.
    pub key: Key,
    /// What happened.
    pub kind: EventKind,
    /// The object after the change (for deletes: its last state, with the new rv).
    pub object: Value,
    /// The object before the change, so selector watches can see objects leave.
    pub old: Option<Value>,
}

/// A watch's start: the events to replay, and the receiver of later ones.
pub type WatchStart = (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>);

/// The filters of a list or watch.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Restrict to one namespace.
    pub namespace: Option<String>,
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
}

impl Filter {
    /// Whether `obj` (stored under `key`) passes the filter.
    pub fn matches(&self, key: &Key, obj: &Value) -> bool {
        self.namespace.as_ref().is_none_or(|ns| *ns == key.2)
            && self.labels.matches(obj)
            && self.fields.matches(obj)
    }
}

/// How many changes are kept for watches to replay before older versions get 410 Gone.
const HISTORY: usize = 10_000;

/// All objects of one test cluster.
#[derive(Debug)]
pub struct Store {
    /// What is served.
    pub registry: Registry,
    pub(crate) objects: BTreeMap<Key, Value>,
    pub(crate) rv: u64,
    history: VecDeque<Arc<Event>>,
    /// Watches from a resourceVersion below this get 410 Gone.
    history_start: u64,
    tx: broadcast::Sender<Arc<Event>>,
    pub(crate) next_ip: u32,
}

impl Store {
    /// A store with the namespaces every cluster has.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(4096);
        let mut s = Self {
            registry: Registry::default(),
            objects: BTreeMap::new(),
            rv: 0,
            history: VecDeque::new(),
            history_start: 0,
            tx,
            next_ip: 10,
        };
        if let Some(rt) = s.registry.builtin("", "namespaces").cloned() {
            for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
                let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
                // Built-in names are valid; a failure here would be a bug caught by every test.
                let _ = s.create(&rt, None, body, &super::managed::Write::system());
            }
        }
        if let Some(rt) = s.registry.builtin("", "services").cloned() {
            let body = json!({"metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
                              "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "targetPort": 6443}]}});
            let _ = s.create(&rt, Some("default"), body, &super::managed::Write::system());
        }
        // Like a real server that has been up a while: the start of time is not watchable.
        s.history.clear();
        s.history_start = s.rv;
        s
    }

    /// The current (latest) resourceVersion.
    pub fn current_rv(&self) -> u64 {
        self.rv
    }

    /// Forgets all history: watches from any earlier version now get 410 Gone.
    pub fn compact(&mut self) {
        self.rv += 1;
        self.history.clear();
        self.history_start = self.rv;
    }

    /// The key of `name` of `rt` in `ns`.
    pub fn key(rt: &ResourceType, ns: Option<&str>, name: &str) -> Key {
        let ns = if rt.namespaced { ns.unwrap_or("") } else { "" };
        (
            rt.storage_group.clone(),
            rt.plural.clone(),
            ns.into(),
            name.into(),
        )
    }

    /// `obj` as served at `rt`'s version.
    pub fn render(rt: &ResourceType, obj: &Value) -> Value {
        let mut o = if events::is_view(&rt.group) {
            events::to_v1(obj)
        } else {
            obj.clone()
        };
        o["apiVersion"] = json!(rt.api_version());
        o["kind"] = json!(rt.kind);
        o
    }

    /// Records a change: bumps the resourceVersion, stores or removes, logs and broadcasts.
    pub(crate) fn commit(&mut self, key: Key, mut obj: Value, kind: EventKind) -> Value {
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let old = if kind == EventKind::Deleted {
            self.objects.remove(&key)
        } else {
            self.objects.insert(key.clone(), obj.clone())
        };
        let ev = Arc::new(Event {
            rv: self.rv,
            key,
            kind,
            object: obj.clone(),
            old,
        });
        self.history.push_back(ev.clone());
        while self.history.len() > HISTORY {
            if let Some(e) = self.history.pop_front() {
                self.history_start = e.rv;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(ev);
        obj
    }

    /// One object.
    pub fn get(&self, rt: &ResourceType, ns: Option<&str>, name: &str) -> Result<Value, ApiError> {
        self.objects
            .get(&Self::key(rt, ns, name))
            .map(|o| Self::render(rt, o))
            .ok_or_else(|| ApiError::not_found(rt, name))
    }

    /// Objects of `rt` passing `filter`, in key order.
    pub fn matching<'a>(
        &'a self,
        rt: &'a ResourceType,
        filter: &'a Filter,
    ) -> impl Iterator<Item = (&'a Key, &'a Value)> + 'a {
        self.objects
            .iter()
            .filter(move |(k, o)| k.0 == rt.storage_group && k.1 == rt.plural && filter.matches(k, o))
    }

    /// A list response, paginated with `limit` and an opaque `continue` token. Pages after
    /// the first, and lists at an exact `at` resourceVersion, show the objects as they were at
    /// that version (from the history), as etcd-backed lists do.
    pub fn list(
        &self,
        rt: &ResourceType,
        filter: &Filter,
        limit: Option<usize>,
        cont: Option<&str>,
        at: Option<u64>,
    ) -> Result<Value, ApiError> {
        let (list_rv, after) = match cont.filter(|c| !c.is_empty()) {
            Some(c) => {
                let (rv, ns, name) = decode_continue(c)?;
                if rv < self.history_start {
                    return Err(ApiError::expired(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                    ));
                }
                (rv, Some((ns, name)))
            }
            None => (at.unwrap_or(self.rv), None),
        };
        if list_rv > self.rv {
            return Err(ApiError::too_large_resource_version(list_rv, self.rv));
        }
        if list_rv < self.history_start {
            return Err(ApiError::expired(format!(
                "too old resource version: {list_rv} ({})",
                self.history_start
            )));
        }
        let snapshot = self.snapshot_at(list_rv);
        let objects = snapshot.as_ref().unwrap_or(&self.objects);
        let mut items = Vec::new();
        let mut remaining = 0usize;
        let mut last: Option<&Key> = None;
        let selected = objects
            .iter()
            .filter(|(k, o)| k.0 == rt.storage_group && k.1 == rt.plural && filter.matches(k, o));
        for (k, o) in selected {
            if let Some((ns, name)) = &after
                && (&k.2, &k.3) <= (ns, name)
            {
                continue;
            }
            if limit.is_some_and(|l| items.len() >= l) {
                remaining += 1;
                continue;
            }
            last = Some(k);
            items.push(Self::render(rt, o));
        }
        let mut meta = json!({ "resourceVersion": list_rv.to_string() });
        if remaining > 0
            && let Some(k) = last
        {
            meta["continue"] = json!(encode_continue(list_rv, &k.2, &k.3));
            // Real servers cannot count what a selector would keep, so they leave it out.
            if filter.labels.is_empty() && filter.fields.is_empty() {
                meta["remainingItemCount"] = json!(remaining);
            }
        }
        Ok(json!({
            "kind": rt.list_kind(),
            "apiVersion": rt.api_version(),
            "metadata": meta,
            "items": items,
        }))
    }

    /// The objects as they were at `rv` (`None`: that is now), undoing later history.
    fn snapshot_at(&self, rv: u64) -> Option<BTreeMap<Key, Value>> {
        if rv >= self.rv {
            return None;
        }
        let mut objects = self.objects.clone();
        for e in self.history.iter().rev().take_while(|e| e.rv > rv) {
            match (&e.kind, &e.old) {
                (EventKind::Added, _) => {
                    objects.remove(&e.key);
                }
                (_, Some(old)) => {
                    objects.insert(e.key.clone(), old.clone());
                }
                (_, None) => {}
            }
        }
        Some(objects)
    }

    /// Starts a watch: the events after `from` (or synthetic ADDED events for everything, when
    /// `from` is `None`) and a receiver for later ones. `Err` is the 410 for a compacted `from`.
    pub fn watch(
        &self,
        rt: &ResourceType,
        filter: &Filter,
        from: Option<u64>,
    ) -> Result<WatchStart, ApiError> {
        let rx = self.tx.subscribe();
        let initial = match from {
            Some(v) if v < self.history_start => {
                return Err(ApiError::expired(format!(
                    "too old resource version: {v} ({})",
                    self.history_start
                )));
            }
            Some(v) => self
                .history
                .iter()
                .filter(|e| e.rv > v && e.key.0 == rt.storage_group && e.key.1 == rt.plural)
                .cloned()
                .collect(),
            None => self
                .matching(rt, filter)
                .map(|(k, o)| {
                    Arc::new(Event {
                        rv: self.rv,
                        key: k.clone(),
                        kind: EventKind::Added,
                        object: o.clone(),
                        old: None,
                    })
                })
                .collect(),
        };
        Ok((initial, rx))
    }
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

fn encode_continue(rv: u64, ns: &str, name: &str) -> String {
    let raw = format!("{rv}/{ns}/{name}");
    raw.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_continue(token: &str) -> Result<(u64, String, String), ApiError> {
    let bad = || ApiError::bad_request("continue key is not valid");
    let bytes: Vec<u8> = (0..token.len())
        .step_by(2)
        .map(|i| token.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect::<Option<_>>()
        .ok_or_else(bad)?;
    let raw = String::from_utf8(bytes).map_err(|_| bad())?;
    let mut parts = raw.splitn(3, '/');
    let rv = parts.next().and_then(|r| r.parse().ok()).ok_or_else(bad)?;
    let ns = parts.next().ok_or_else(bad)?.to_string();
    let name = parts.next().ok_or_else(bad)?.to_string();
    Ok((rv, ns, name))
}
