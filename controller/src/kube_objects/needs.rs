//! What selected objects need from outside their selection: the Namespace objects they live
//! in, the CRDs of their custom resources, the PersistentVolumes bound to their claims and
//! the StorageClasses of both. Backup and restore apply the same rule, so narrowing either
//! to some namespaces (or a label selector) never leaves those behind.

use std::collections::BTreeSet;

use serde_json::Value;

/// The cluster-scoped kinds that come with what needs them, in the order they can be
/// decided: StorageClasses last, as needed PersistentVolumes name them too.
pub fn dependency_order(group: &str, plural: &str) -> Option<u8> {
    match (group, plural) {
        ("", "namespaces") | ("", "persistentvolumes") => Some(0),
        ("apiextensions.k8s.io", "customresourcedefinitions") => Some(0),
        ("storage.k8s.io", "storageclasses") => Some(1),
        _ => None,
    }
}

/// Groups served by Kubernetes itself rather than by CRDs or aggregated APIs.
pub fn is_builtin_group(group: &str) -> bool {
    group.is_empty()
        || group.ends_with(".k8s.io")
        || matches!(group, "apps" | "batch" | "policy" | "autoscaling" | "extensions")
}

/// What the objects noted so far need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// Namespaces holding selected objects.
    pub namespaces: BTreeSet<String>,
    /// Selected PersistentVolumeClaims, `(namespace, name)`.
    pub claims: BTreeSet<(String, String)>,
    /// StorageClasses named by selected claims and needed volumes.
    pub storage_classes: BTreeSet<String>,
    /// CRD names (`plural.group`) of custom resource types with selected objects.
    pub crds: BTreeSet<String>,
}

fn str_at<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(obj, |v, k| v.get(*k))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

impl Needs {
    /// Notes what a selected object of `group/plural` needs.
    pub fn note(&mut self, group: &str, plural: &str, obj: &Value) {
        let ns = str_at(obj, &["metadata", "namespace"]);
        if let Some(ns) = ns
            && !self.namespaces.contains(ns)
        {
            self.namespaces.insert(ns.to_string());
        }
        match (group, plural) {
            ("", "persistentvolumeclaims") => {
                if let (Some(ns), Some(name)) = (ns, str_at(obj, &["metadata", "name"])) {
                    self.claims.insert((ns.to_string(), name.to_string()));
                }
                if let Some(sc) = str_at(obj, &["spec", "storageClassName"]) {
                    self.storage_classes.insert(sc.to_string());
                }
            }
            ("", "persistentvolumes") => {
                if let Some(sc) = str_at(obj, &["spec", "storageClassName"]) {
                    self.storage_classes.insert(sc.to_string());
                }
            }
            (g, p) if !is_builtin_group(g) => {
                let crd = format!("{p}.{g}");
                if !self.crds.contains(&crd) {
                    self.crds.insert(crd);
                }
            }
            _ => {}
        }
    }

    /// Whether the cluster-scoped object `obj` of `group/plural` is needed.
    pub fn needs(&self, group: &str, plural: &str, obj: &Value) -> bool {
        let name = str_at(obj, &["metadata", "name"]).unwrap_or("");
        match (group, plural) {
            ("", "namespaces") => self.namespaces.contains(name),
            ("", "persistentvolumes") => {
                match (
                    str_at(obj, &["spec", "claimRef", "namespace"]),
                    str_at(obj, &["spec", "claimRef", "name"]),
                ) {
                    (Some(ns), Some(claim)) => self.claims.contains(&(ns.to_string(), claim.to_string())),
                    _ => false,
                }
            }
            ("storage.k8s.io", "storageclasses") => self.storage_classes.contains(name),
            ("apiextensions.k8s.io", "customresourcedefinitions") => {
                let key = format!(
                    "{}.{}",
                    str_at(obj, &["spec", "names", "plural"]).unwrap_or(""),
                    str_at(obj, &["spec", "group"]).unwrap_or("")
                );
                self.crds.contains(&key)
            }
            _ => false,
        }
    }

    /// Adds what `other` needs.
    pub fn merge(&mut self, other: Needs) {
        self.namespaces.extend(other.namespaces);
        self.claims.extend(other.claims);
        self.storage_classes.extend(other.storage_classes);
        self.crds.extend(other.crds);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn claims_bring_volumes_and_classes_and_custom_resources_their_crds() {
        let mut n = Needs::default();
        n.note(
            "",
            "persistentvolumeclaims",
            &json!({"metadata": {"name": "data", "namespace": "shop"}, "spec": {"storageClassName": "fast"}}),
        );
        n.note(
            "example.com",
            "widgets",
            &json!({"metadata": {"name": "w", "namespace": "shop"}}),
        );
        assert!(n.needs("", "namespaces", &json!({"metadata": {"name": "shop"}})));
        assert!(!n.needs("", "namespaces", &json!({"metadata": {"name": "other"}})));
        let pv = json!({"metadata": {"name": "pv1"}, "spec": {"claimRef": {"namespace": "shop", "name": "data"}, "storageClassName": "slow"}});
        assert!(n.needs("", "persistentvolumes", &pv));
        n.note("", "persistentvolumes", &pv);
        for sc in ["fast", "slow"] {
            assert!(n.needs(
                "storage.k8s.io",
                "storageclasses",
                &json!({"metadata": {"name": sc}})
            ));
        }
        let crd = json!({"metadata": {"name": "widgets.example.com"}, "spec": {"group": "example.com", "names": {"plural": "widgets"}}});
        assert!(n.needs("apiextensions.k8s.io", "customresourcedefinitions", &crd));
        assert_eq!(dependency_order("storage.k8s.io", "storageclasses"), Some(1));
        assert_eq!(dependency_order("", "configmaps"), None);
    }
}
