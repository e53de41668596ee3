//! The object store: JSON objects keyed by resource and name, a global resourceVersion, and
//! the event history that watches replay.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::addresses::Addresses;
use super::events;
use super::index::Index;
use super::registry::{Registry, ResourceType};
use super::schema;
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
    /// Lookups the server's controllers need after each change.
    pub(crate) index: Index,
    /// Service cluster IPs and node ports in use.
    pub(crate) addresses: Addresses,
    /// Aggregated group versions whose requests hang (a fault).
    pub(crate) hanging_apis: std::collections::BTreeSet<(String, String)>,
}

impl Store {
    /// A store with the namespaces every cluster has, allocating Service addresses from
    /// `addresses`.
    pub fn new(addresses: Addresses) -> Self {
        let (tx, _) = broadcast::channel(4096);
        let mut s = Self {
            registry: Registry::default(),
            objects: BTreeMap::new(),
            rv: 0,
            history: VecDeque::new(),
            history_start: 0,
            tx,
            index: Index::default(),
            addresses,
            hanging_apis: Default::default(),
        };
        if let Some(rt) = s.registry.builtin("", "namespaces").cloned() {
            for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
                let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
                // Built-in names are valid; a failure here would be a bug caught by every test.
                let _ = s.create(&rt, None, body, &super::managed::Write::system());
            }
        }
        if let Some(rt) = s.registry.builtin("", "services").cloned() {
            // The API server's own Service holds the first address of the range.
            let ip = s.addresses.first_ip();
            let body = json!({"metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
                              "spec": {"clusterIP": ip, "ports": [{"name": "https", "port": 443, "targetPort": 6443}]}});
            let _ = s.create(&rt, Some("default"), body, &super::managed::Write::system());
        }
        super::aggregator::register_local(&mut s);
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

    /// `obj` as served at `rt`'s version: a custom resource read at a version other than the
    /// one it was written at loses the fields that version's schema does not declare, as a
    /// real server prunes after converting (CRD conversion `None` only rewrites apiVersion).
    pub fn render(rt: &ResourceType, obj: &Value) -> Value {
        let mut o = if events::is_view(&rt.group) {
            events::to_v1(obj)
        } else {
            obj.clone()
        };
        o["apiVersion"] = json!(rt.api_version());
        o["kind"] = json!(rt.kind);
        if let Some(s) = &rt.schema {
            schema::prune(&mut o, s);
        }
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
        if let Some(o) = &old {
            self.index.remove(&key, o);
            if key.0.is_empty() && key.1 == "services" {
                self.addresses.release(o);
            }
        }
        if kind == EventKind::Deleted {
            if let Some(uid) = obj["metadata"]["uid"].as_str() {
                self.index.owner_gone(uid);
            }
        } else {
            self.index.add(&key, &obj);
            if key.0.is_empty() && key.1 == "services" {
                self.addresses.hold(&obj);
            }
        }
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
        self.of_type(rt, None).filter(move |(k, o)| filter.matches(k, o))
    }

    /// The stored objects of stored type `group/plural`, in key order.
    pub(crate) fn objects_of<'a>(
        &'a self,
        group: &'a str,
        plural: &'a str,
    ) -> impl Iterator<Item = (&'a Key, &'a Value)> + 'a {
        let start: Key = (
            group.to_string(),
            plural.to_string(),
            String::new(),
            String::new(),
        );
        self.objects
            .range(start..)
            .take_while(move |(k, _)| k.0 == group && k.1 == plural)
    }

    /// The stored objects of `rt`'s type, in key order, after `(namespace, name)` if given:
    /// a range of the map, since keys start with the type.
    fn of_type<'a>(
        &'a self,
        rt: &'a ResourceType,
        after: Option<(&str, &str)>,
    ) -> impl Iterator<Item = (&'a Key, &'a Value)> + 'a {
        type_range(&self.objects, rt, after)
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
        let after = after.as_ref().map(|(ns, name)| (ns.as_str(), name.as_str()));
        let snapshot = self.snapshot_at(rt, list_rv, after);
        let mut items = Vec::new();
        let mut remaining = 0usize;
        let mut last: Option<Key> = None;
        let mut take = |k: &Key, o: &Value| {
            if !filter.matches(k, o) {
                return;
            }
            if limit.is_some_and(|l| items.len() >= l) {
                remaining += 1;
                return;
            }
            last = Some(k.clone());
            items.push(Self::render(rt, o));
        };
        match &snapshot {
            Some(objects) => objects.iter().for_each(|(k, o)| take(k, o)),
            None => self.of_type(rt, after).for_each(|(k, o)| take(k, o)),
        }
        let mut meta = json!({ "resourceVersion": list_rv.to_string() });
        if remaining > 0
            && let Some(k) = &last
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

    /// The objects of `rt`'s type after `after` as they were at `rv` (`None`: that is now),
    /// undoing the later history of that type only.
    fn snapshot_at(
        &self,
        rt: &ResourceType,
        rv: u64,
        after: Option<(&str, &str)>,
    ) -> Option<BTreeMap<Key, Value>> {
        if rv >= self.rv {
            return None;
        }
        // The state at `rv` of every key of this type changed since: the first later event
        // of a key says what it was before (absent for an ADDED).
        let mut before: BTreeMap<&Key, Option<&Value>> = BTreeMap::new();
        for e in self.history.iter().filter(|e| e.rv > rv) {
            if e.key.0 == rt.storage_group && e.key.1 == rt.plural {
                before.entry(&e.key).or_insert(match e.kind {
                    EventKind::Added => None,
                    _ => e.old.as_ref(),
                });
            }
        }
        let mut objects: BTreeMap<Key, Value> = self
            .of_type(rt, after)
            .filter(|(k, _)| !before.contains_key(k))
            .map(|(k, o)| (k.clone(), o.clone()))
            .collect();
        for (k, o) in before {
            let later = after.is_none_or(|(ns, name)| (k.2.as_str(), k.3.as_str()) > (ns, name));
            if let (Some(o), true) = (o, later) {
                objects.insert(k.clone(), o.clone());
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
        Self::new(Addresses::default())
    }
}

/// The objects of `rt`'s stored type in `objects`, in key order, strictly after
/// `(namespace, name)` if given.
fn type_range<'a>(
    objects: &'a BTreeMap<Key, Value>,
    rt: &'a ResourceType,
    after: Option<(&str, &str)>,
) -> impl Iterator<Item = (&'a Key, &'a Value)> + 'a {
    let start: Key = match after {
        Some((ns, name)) => (
            rt.storage_group.clone(),
            rt.plural.clone(),
            ns.to_string(),
            name.to_string(),
        ),
        None => (
            rt.storage_group.clone(),
            rt.plural.clone(),
            String::new(),
            String::new(),
        ),
    };
    let lower = if after.is_some() {
        Bound::Excluded(start)
    } else {
        Bound::Included(start)
    };
    objects
        .range((lower, Bound::Unbounded))
        .take_while(move |(k, _)| k.0 == rt.storage_group && k.1 == rt.plural)
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
