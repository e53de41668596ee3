//! The resource types the server serves: a table of built-ins plus the ones CRDs define.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::scale::ScalePaths;

/// How object names of a resource are validated (as kube-apiserver does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 subdomain (most resources).
    Subdomain,
    /// RFC 1123 label (namespaces, services).
    Label,
    /// Path segment only (RBAC objects allow `:` in names).
    PathSegment,
}

/// One served resource in one group version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceType {
    /// API group, empty for core.
    pub group: String,
    /// The group objects are stored under: the same, except for views of another group's
    /// objects (events.k8s.io Events are core Events).
    pub storage_group: String,
    /// Version (`v1`).
    pub version: String,
    /// Plural resource name used in URLs.
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Kind.
    pub kind: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Short names for kubectl.
    pub short_names: Vec<String>,
    /// Categories (`all`) for kubectl.
    pub categories: Vec<String>,
    /// Whether a `status` subresource exists.
    pub status: bool,
    /// Whether `metadata.generation` is maintained.
    pub generation: bool,
    /// Name validation rule.
    pub names: NameRule,
    /// Field selectors supported beyond `metadata.name`/`metadata.namespace`.
    pub fields: Vec<String>,
    /// Defined by a CRD (the CRD's name), `None` for built-ins.
    pub crd: Option<String>,
    /// The `scale` subresource, if any.
    pub scale: Option<ScalePaths>,
    /// For a CRD version: its `openAPIV3Schema`, by which objects read or written at this
    /// version are pruned.
    pub schema: Option<Arc<Value>>,
    /// For a CRD version: the storage version's schema, by which objects are pruned again
    /// when stored (conversion `None` only rewrites `apiVersion`).
    pub storage_schema: Option<Arc<Value>>,
}

impl ResourceType {
    /// `group/version`, or `version` for core.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The kind of list responses.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }
}

/// `(group, version, plural, kind, namespaced, short names, status, generation)`.
type Builtin = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    &'static [&'static str],
    bool,
    bool,
);

#[rustfmt::skip]
const BUILTINS: &[Builtin] = &[
    ("", "v1", "namespaces", "Namespace", false, &["ns"], true, false),
    ("", "v1", "configmaps", "ConfigMap", true, &["cm"], false, false),
    ("", "v1", "secrets", "Secret", true, &[], false, false),
    ("", "v1", "serviceaccounts", "ServiceAccount", true, &["sa"], false, false),
    ("", "v1", "services", "Service", true, &["svc"], true, false),
    ("", "v1", "persistentvolumes", "PersistentVolume", false, &["pv"], true, false),
    ("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", true, &["pvc"], true, false),
    ("", "v1", "pods", "Pod", true, &["po"], true, false),
    ("", "v1", "events", "Event", true, &["ev"], false, false),
    ("", "v1", "nodes", "Node", false, &["no"], true, false),
    ("", "v1", "endpoints", "Endpoints", true, &["ep"], false, false),
    ("", "v1", "resourcequotas", "ResourceQuota", true, &["quota"], true, false),
    ("", "v1", "limitranges", "LimitRange", true, &["limits"], false, false),
    ("", "v1", "podtemplates", "PodTemplate", true, &[], false, false),
    ("", "v1", "replicationcontrollers", "ReplicationController", true, &["rc"], true, true),
    ("apps", "v1", "deployments", "Deployment", true, &["deploy"], true, true),
    ("apps", "v1", "statefulsets", "StatefulSet", true, &["sts"], true, true),
    ("apps", "v1", "daemonsets", "DaemonSet", true, &["ds"], true, true),
    ("apps", "v1", "replicasets", "ReplicaSet", true, &["rs"], true, true),
    ("apps", "v1", "controllerrevisions", "ControllerRevision", true, &[], false, false),
    ("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", true, &["hpa"], true, false),
    ("batch", "v1", "jobs", "Job", true, &[], true, true),
    ("batch", "v1", "cronjobs", "CronJob", true, &["cj"], true, true),
    ("rbac.authorization.k8s.io", "v1", "roles", "Role", true, &[], false, false),
    ("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", true, &[], false, false),
    ("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", false, &[], false, false),
    ("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", false, &[], false, false),
    ("storage.k8s.io", "v1", "storageclasses", "StorageClass", false, &["sc"], false, false),
    ("storage.k8s.io", "v1", "csidrivers", "CSIDriver", false, &[], false, false),
    ("storage.k8s.io", "v1", "csinodes", "CSINode", false, &[], false, false),
    ("storage.k8s.io", "v1", "volumeattachments", "VolumeAttachment", false, &[], true, false),
    ("snapshot.storage.k8s.io", "v1", "volumesnapshots", "VolumeSnapshot", true, &["vs"], true, true),
    ("snapshot.storage.k8s.io", "v1", "volumesnapshotcontents", "VolumeSnapshotContent", false, &["vsc", "vscs"], true, true),
    ("snapshot.storage.k8s.io", "v1", "volumesnapshotclasses", "VolumeSnapshotClass", false, &["vsclass", "vsclasses"], false, false),
    ("networking.k8s.io", "v1", "ingresses", "Ingress", true, &["ing"], true, false),
    ("networking.k8s.io", "v1", "ingressclasses", "IngressClass", false, &[], false, false),
    ("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", true, &["netpol"], false, false),
    ("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", true, &[], false, false),
    ("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", true, &["pdb"], true, false),
    ("scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass", false, &["pc"], false, false),
    ("coordination.k8s.io", "v1", "leases", "Lease", true, &[], false, false),
    ("apiregistration.k8s.io", "v1", "apiservices", "APIService", false, &[], true, false),
    ("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations", "ValidatingWebhookConfiguration", false, &[], false, true),
    ("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations", "MutatingWebhookConfiguration", false, &[], false, true),
    ("admissionregistration.k8s.io", "v1", "validatingadmissionpolicies", "ValidatingAdmissionPolicy", false, &[], true, true),
    ("admissionregistration.k8s.io", "v1", "validatingadmissionpolicybindings", "ValidatingAdmissionPolicyBinding", false, &[], false, true),
    ("events.k8s.io", "v1", "events", "Event", true, &["ev"], false, false),
    ("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", false, &["crd", "crds"], true, true),
];

/// Extra field selectors kube-apiserver supports per resource.
fn extra_fields(group: &str, plural: &str) -> &'static [&'static str] {
    match (group, plural) {
        ("", "pods") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "status.phase",
            "status.podIP",
        ],
        ("", "secrets") => &["type"],
        ("", "namespaces") => &["status.phase"],
        ("", "events") | ("events.k8s.io", "events") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "type",
        ],
        ("", "persistentvolumeclaims") | ("", "persistentvolumes") => &[],
        _ => &[],
    }
}

fn builtin(b: &Builtin) -> ResourceType {
    let (group, version, plural, kind, namespaced, short, status, generation) = *b;
    let names = match (group, plural) {
        ("", "namespaces") | ("", "services") => NameRule::Label,
        ("rbac.authorization.k8s.io", _) => NameRule::PathSegment,
        _ => NameRule::Subdomain,
    };
    let categories = match group {
        "apps" | "batch" => vec!["all".to_string()],
        "" if matches!(plural, "pods" | "services") => vec!["all".to_string()],
        _ => vec![],
    };
    ResourceType {
        group: group.into(),
        storage_group: if group == "events.k8s.io" {
            String::new()
        } else {
            group.into()
        },
        version: version.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        kind: kind.into(),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories,
        status,
        generation,
        names,
        fields: extra_fields(group, plural)
            .iter()
            .map(|s| s.to_string())
            .collect(),
        crd: None,
        scale: ((group == "apps" && matches!(plural, "deployments" | "statefulsets" | "replicasets"))
            || (group.is_empty() && plural == "replicationcontrollers"))
            .then(ScalePaths::workload),
        schema: None,
        storage_schema: None,
    }
}

/// Kubernetes' version priority (`k8s.io/apimachinery` `CompareKubeAwareVersionStrings`):
/// GA before beta before alpha, higher numbers first, then anything else by name. A group's
/// preferred version is the first in this order.
pub fn version_order(a: &str, b: &str) -> std::cmp::Ordering {
    fn parse(v: &str) -> Option<(u8, u64, u64)> {
        let rest = v.strip_prefix('v')?;
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let major: u64 = rest[..digits].parse().ok()?;
        let tail = &rest[digits..];
        if tail.is_empty() {
            return Some((3, major, 0));
        }
        for (word, rank) in [("beta", 2), ("alpha", 1)] {
            if let Some(n) = tail.strip_prefix(word) {
                return Some((rank, major, n.parse().ok()?));
            }
        }
        None
    }
    match (parse(a), parse(b)) {
        (Some(x), Some(y)) => y.cmp(&x),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// All served resource types: built-ins and CRD-defined ones.
#[derive(Debug, Clone)]
pub struct Registry {
    builtins: Vec<ResourceType>,
    custom: BTreeMap<String, Vec<ResourceType>>,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            builtins: BUILTINS.iter().map(builtin).collect(),
            custom: BTreeMap::new(),
        }
    }
}

impl Registry {
    /// Every served resource type, built-ins first.
    pub fn all(&self) -> impl Iterator<Item = &ResourceType> {
        self.builtins.iter().chain(self.custom.values().flatten())
    }

    /// The type served at `group/version/plural`.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.all()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    /// The built-in type for `group/plural` (any version).
    pub fn builtin(&self, group: &str, plural: &str) -> Option<&ResourceType> {
        self.builtins
            .iter()
            .find(|r| r.group == group && r.plural == plural)
    }

    /// Groups and their versions, in a stable order (core excluded); each group's versions
    /// in priority order, the preferred one first.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for r in self.all().filter(|r| !r.group.is_empty()) {
            match out.iter_mut().find(|(g, _)| *g == r.group) {
                Some((_, versions)) => {
                    if !versions.contains(&r.version) {
                        versions.push(r.version.clone());
                    }
                }
                None => out.push((r.group.clone(), vec![r.version.clone()])),
            }
        }
        for (_, versions) in &mut out {
            versions.sort_by(|a, b| version_order(a, b));
        }
        out
    }

    /// Replaces the types a CRD defines (empty `types` unregisters them).
    pub fn set_custom(&mut self, crd: &str, types: Vec<ResourceType>) {
        if types.is_empty() {
            self.custom.remove(crd);
        } else {
            self.custom.insert(crd.to_string(), types);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_like_kubernetes() {
        let mut v = vec!["v1alpha1", "foo", "v1beta1", "v2", "v1", "v10beta3", "v1beta2"];
        v.sort_by(|a, b| version_order(a, b));
        assert_eq!(
            v,
            ["v2", "v1", "v10beta3", "v1beta2", "v1beta1", "v1alpha1", "foo"]
        );
    }
}
