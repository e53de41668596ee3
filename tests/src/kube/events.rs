//! `events.k8s.io/v1` Events are a view of core `v1` Events (one storage, renamed fields), so
//! an event recorded through one API is seen through the other, as on a real server.

use serde_json::{Map, Value};

/// `(core v1 field, events.k8s.io/v1 field)`.
const RENAMES: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reportingComponent", "reportingController"),
];

fn rename(obj: &Value, to_v1: bool) -> Value {
    let Some(m) = obj.as_object() else {
        return obj.clone();
    };
    let mut out = Map::new();
    for (k, v) in m {
        let key = RENAMES
            .iter()
            .find_map(|(core, v1)| match to_v1 {
                true if k == core => Some(*v1),
                false if k == v1 => Some(*core),
                _ => None,
            })
            .unwrap_or(k.as_str());
        out.insert(key.to_string(), v.clone());
    }
    Value::Object(out)
}

/// A stored (core) Event as events.k8s.io/v1 shows it.
pub fn to_v1(core: &Value) -> Value {
    rename(core, true)
}

/// An events.k8s.io/v1 Event in its stored (core) form.
pub fn to_core(v1: &Value) -> Value {
    rename(v1, false)
}

/// Whether `group` is the events.k8s.io view.
pub fn is_view(group: &str) -> bool {
    group == "events.k8s.io"
}
