//! Topology: where a backend can be reached from, and what CreateVolume answers for a
//! request's `accessibility_requirements`.
//!
//! A backend (Ceph cluster or NFS export) may name in the driver config the topology segments
//! it is reachable from (`"topology": [{"topology.kubernetes.io/zone": "z1"}]`); a node whose
//! topology has every key/value of one of them reaches it. A backend without any is
//! reachable from everywhere, which is the common case for network storage.
//!
//! CreateVolume keeps, of the request's requisite topologies (or, without requisite ones, its
//! preferred ones), those the backend is reachable from, preferred ones first, and answers them
//! as the volume's `accessible_topology`; none reachable is RESOURCE_EXHAUSTED. Without
//! requirements the volume is accessible where the backend is: everywhere (no
//! `accessible_topology`) or the configured segments.

use std::collections::{BTreeMap, HashMap};

use crate::error::{CsiError, Result};
use crate::proto::{Topology, TopologyRequirement};

/// Topology segments a backend is reachable from; empty = everywhere.
pub type Reach = Vec<BTreeMap<String, String>>;

/// The key of the segment NodeGetInfo reports when no `--topology` is given.
pub const NODE_KEY: &str = "topology.csi.lifeboat.dev/node";

/// True if a node or requested topology with `segments` reaches a backend with `reach`.
pub fn reachable(reach: &Reach, segments: &HashMap<String, String>) -> bool {
    reach.is_empty()
        || reach
            .iter()
            .any(|r| r.iter().all(|(k, v)| segments.get(k) == Some(v)))
}

/// The `accessible_topology` of a new volume on a backend with `reach`; `what` names the
/// backend for the error.
pub fn accessible(req: Option<&TopologyRequirement>, reach: &Reach, what: &str) -> Result<Vec<Topology>> {
    let asked: Vec<&Topology> = match req {
        Some(t) if !t.requisite.is_empty() => {
            // Preferred first (they are a subset of requisite, per the spec), then the rest.
            let first: Vec<&Topology> = t.preferred.iter().filter(|p| t.requisite.contains(p)).collect();
            let rest = t.requisite.iter().filter(|r| !first.contains(r));
            let mut v = first.clone();
            v.extend(rest);
            v
        }
        Some(t) => t.preferred.iter().collect(),
        None => vec![],
    };
    if asked.is_empty() {
        return Ok(reach
            .iter()
            .map(|r| Topology {
                segments: r.clone().into_iter().collect(),
            })
            .collect());
    }
    let ok: Vec<Topology> = asked
        .into_iter()
        .filter(|t| reachable(reach, &t.segments))
        .cloned()
        .collect();
    if ok.is_empty() {
        return Err(CsiError::ResourceExhausted(format!(
            "{what} is reachable only from {}",
            describe(reach)
        )));
    }
    Ok(ok)
}

fn describe(reach: &Reach) -> String {
    reach
        .iter()
        .map(|r| {
            r.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect::<Vec<_>>()
        .join(" or ")
}

/// The segment a node reports without `--topology`: its id as a label value when it is one
/// (at most 63 characters of `[A-Za-z0-9._-]`, alphanumeric at both ends, as Kubernetes node
/// names are), else `n-` and the first 60 hex digits of its hash.
pub fn default_node_segment(node_id: &str) -> (String, String) {
    let valid = !node_id.is_empty()
        && node_id.len() <= 63
        && node_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        && node_id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && node_id.ends_with(|c: char| c.is_ascii_alphanumeric());
    let value = if valid {
        node_id.to_string()
    } else {
        format!("n-{}", crate::ids::name_hash(node_id))
    };
    (NODE_KEY.to_string(), value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(kv: &[(&str, &str)]) -> Topology {
        Topology {
            segments: kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn requisite_is_filtered_by_reach_and_preferred_comes_first() {
        let zone = |z: &str| BTreeMap::from([("zone".to_string(), z.to_string())]);
        let req = TopologyRequirement {
            requisite: vec![t(&[("zone", "a")]), t(&[("zone", "b")]), t(&[("zone", "c")])],
            preferred: vec![t(&[("zone", "c")])],
        };
        let everywhere = accessible(Some(&req), &vec![], "cluster x").expect("everywhere");
        assert_eq!(
            everywhere,
            vec![t(&[("zone", "c")]), t(&[("zone", "a")]), t(&[("zone", "b")])]
        );
        let only_b = accessible(Some(&req), &vec![zone("b")], "cluster x").expect("b");
        assert_eq!(only_b, vec![t(&[("zone", "b")])]);
        let none = accessible(Some(&req), &vec![zone("d")], "cluster x");
        assert!(matches!(none, Err(CsiError::ResourceExhausted(m)) if m.contains("zone=d")));
        assert_eq!(
            accessible(None, &vec![zone("b")], "x").expect("none"),
            vec![t(&[("zone", "b")])]
        );
        assert!(accessible(None, &vec![], "x").expect("none").is_empty());
        // A segment with more keys than the reach names still matches it.
        assert!(reachable(
            &vec![zone("a")],
            &t(&[("zone", "a"), ("rack", "1")]).segments
        ));
    }

    #[test]
    fn the_default_segment_is_the_node_name_or_a_hash() {
        assert_eq!(default_node_segment("worker-1").1, "worker-1");
        let odd = default_node_segment("node/with:odd chars").1;
        assert!(odd.starts_with("n-") && odd.len() == 34, "{odd}");
        assert_eq!(default_node_segment(&"a".repeat(64)).1.len(), 34);
    }
}
