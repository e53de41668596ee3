//! The restore plan: which objects, in which stage, under which namespace. A plain function
//! of the snapshot's listing and the options, so tests and `--dry-run` see exactly what the
//! executor will do.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use lifeboat_backup::blob::BlobId;
use lifeboat_backup::snapshot::Node;

use super::RestoreOptions;
use crate::objects::discover::ResourceRecord;
use crate::objects::{ObjectPath, ObjectsError};

/// Restore stages, in order: each one's objects are created (in parallel) before the next
/// stage starts, so what an object refers to exists first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// CustomResourceDefinitions, then wait until Established.
    Crds,
    /// Namespaces (and any the mapping or the objects need).
    Namespaces,
    /// StorageClasses.
    StorageClasses,
    /// PersistentVolumes.
    PersistentVolumes,
    /// PersistentVolumeClaims.
    PersistentVolumeClaims,
    /// ServiceAccounts, Secrets, ConfigMaps, LimitRanges, ResourceQuotas.
    Config,
    /// Roles, ClusterRoles and their bindings.
    Rbac,
    /// Services.
    Services,
    /// Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs, Pods.
    Workloads,
    /// Every other built-in resource.
    Other,
    /// Custom resources, last, once their CRDs are served.
    Custom,
}

/// The stage a resource belongs to.
pub fn stage_of(group: &str, plural: &str) -> Stage {
    match (group, plural) {
        ("apiextensions.k8s.io", "customresourcedefinitions") => Stage::Crds,
        ("", "namespaces") => Stage::Namespaces,
        ("storage.k8s.io", "storageclasses") => Stage::StorageClasses,
        ("", "persistentvolumes") => Stage::PersistentVolumes,
        ("", "persistentvolumeclaims") => Stage::PersistentVolumeClaims,
        ("", "serviceaccounts" | "secrets" | "configmaps" | "limitranges" | "resourcequotas") => {
            Stage::Config
        }
        ("rbac.authorization.k8s.io", _) => Stage::Rbac,
        ("", "services") => Stage::Services,
        ("apps", _) | ("batch", _) | ("", "pods" | "replicationcontrollers") => Stage::Workloads,
        (g, _) if is_builtin_group(g) => Stage::Other,
        _ => Stage::Custom,
    }
}

/// Groups served by Kubernetes itself rather than by CRDs or aggregated APIs.
fn is_builtin_group(group: &str) -> bool {
    group.is_empty()
        || group.ends_with(".k8s.io")
        || matches!(group, "apps" | "batch" | "policy" | "autoscaling" | "extensions")
}

/// One object to restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanItem {
    /// Where it was in the backup.
    pub source: ObjectPath,
    /// Its blob.
    pub blob: BlobId,
    /// The namespace it goes to (after mapping).
    pub namespace: Option<String>,
    /// The name it gets (a Namespace's name is mapped too).
    pub name: String,
}

impl PlanItem {
    /// `resource/namespace/name` as restored, for messages.
    pub fn display(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{}/{}/{}", self.source.key, ns, self.name),
            None => format!("{}/{}", self.source.key, self.name),
        }
    }
}

/// The whole plan.
#[derive(Debug, Clone, Default)]
pub struct RestorePlan {
    /// Stages in order, each with its objects.
    pub stages: Vec<(Stage, Vec<PlanItem>)>,
    /// Namespaces the restored objects live in (created if missing).
    pub namespaces: BTreeSet<String>,
    /// Objects left out by the filters.
    pub filtered: u64,
}

impl RestorePlan {
    /// Objects to restore.
    pub fn len(&self) -> usize {
        self.stages.iter().map(|(_, items)| items.len()).sum()
    }

    /// True when nothing is to be restored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// True for a valid namespace name (an RFC 1123 label).
pub fn valid_namespace(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Computes the plan.
pub fn plan(
    nodes: &[Node],
    resources: &HashMap<String, ResourceRecord>,
    options: &RestoreOptions,
) -> Result<RestorePlan, ObjectsError> {
    for (from, to) in &options.namespace_mapping {
        if !valid_namespace(to) {
            return Err(ObjectsError::Invalid(format!(
                "namespace mapping {from}:{to}: `{to}` is not a valid namespace name \
                 (lowercase letters, digits and '-', at most 63, starting and ending with a letter or digit)"
            )));
        }
    }
    let map_ns = |ns: &str| {
        options
            .namespace_mapping
            .get(ns)
            .cloned()
            .unwrap_or_else(|| ns.to_string())
    };
    let mut stages: BTreeMap<Stage, Vec<PlanItem>> = BTreeMap::new();
    let mut namespaces = BTreeSet::new();
    let mut filtered = 0;
    for node in nodes {
        let Some(path) = ObjectPath::parse(&node.path) else {
            continue;
        };
        let Some(record) = resources.get(&path.key) else {
            continue;
        };
        let Some(blob) = node.chunks.first().copied() else {
            continue;
        };
        let is_namespace = record.group.is_empty() && record.plural == "namespaces";
        let covered_ns = match (&path.namespace, is_namespace) {
            (Some(ns), _) => options.namespaces.matches(ns),
            (None, true) => options.namespaces.matches(&path.name),
            (None, false) => options.cluster_scoped,
        };
        if !covered_ns || !options.resources.matches(&record.plural, &record.group) {
            filtered += 1;
            continue;
        }
        let namespace = path.namespace.as_deref().map(map_ns);
        let name = if is_namespace {
            map_ns(&path.name)
        } else {
            path.name.clone()
        };
        if let Some(ns) = &namespace {
            namespaces.insert(ns.clone());
        }
        stages
            .entry(stage_of(&record.group, &record.plural))
            .or_default()
            .push(PlanItem {
                source: path,
                blob,
                namespace,
                name,
            });
    }
    Ok(RestorePlan {
        stages: stages.into_iter().collect(),
        namespaces,
        filtered,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_follow_dependencies() {
        assert!(stage_of("apiextensions.k8s.io", "customresourcedefinitions") < stage_of("", "namespaces"));
        assert!(stage_of("", "namespaces") < stage_of("", "persistentvolumes"));
        assert!(stage_of("", "persistentvolumeclaims") < stage_of("", "secrets"));
        assert!(stage_of("", "secrets") < stage_of("rbac.authorization.k8s.io", "rolebindings"));
        assert!(stage_of("", "services") < stage_of("apps", "deployments"));
        assert!(stage_of("apps", "deployments") < stage_of("networking.k8s.io", "ingresses"));
        assert_eq!(stage_of("example.com", "widgets"), Stage::Custom);
    }

    #[test]
    fn namespace_names_are_checked() {
        assert!(valid_namespace("team-a"));
        assert!(!valid_namespace("Team_A"));
        assert!(!valid_namespace("-a"));
        assert!(!valid_namespace(&"a".repeat(64)));
    }
}
