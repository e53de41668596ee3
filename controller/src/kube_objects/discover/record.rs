//! One resource type as a backup read it, and how it is read from a discovery document.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;

/// One resource type as the backup read it; stored in the snapshot so a restore knows the
/// API version and kind of each directory without asking the target cluster.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRecord {
    /// API group (`""` for core).
    pub group: String,
    /// Version read: the group's preferred version, or for custom resources the CRD's
    /// storage version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Plural resource name.
    pub plural: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Whether `status` is a subresource (restored separately, on request).
    #[serde(default)]
    pub status_subresource: bool,
    /// The singular name discovery gives (`deployment`), for resolving names users write;
    /// not stored.
    #[serde(skip)]
    pub singular: String,
    /// The short names discovery gives (`deploy`); not stored.
    #[serde(skip)]
    pub short_names: Vec<String>,
}

impl ResourceRecord {
    /// `apiVersion` as objects carry it.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Directory name in the snapshot.
    pub fn key(&self) -> String {
        crate::kube_objects::resource_key(&self.plural, &self.group)
    }

    /// The client's description of it.
    pub fn api_resource(&self) -> kube::discovery::ApiResource {
        kube::discovery::ApiResource {
            group: self.group.clone(),
            version: self.version.clone(),
            api_version: self.api_version(),
            kind: self.kind.clone(),
            plural: self.plural.clone(),
        }
    }
}

/// The resource types of one group version's discovery document that a backup can take:
/// those that can be listed and created (subresources are not types of their own, but a
/// `status` subresource is noted).
pub fn records_from(list: &APIResourceList, group: &str, version: &str) -> Vec<ResourceRecord> {
    let has = |verb: &str, r: &k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResource| {
        r.verbs.iter().any(|v| v == verb)
    };
    list.resources
        .iter()
        .filter(|r| !r.name.contains('/') && has("list", r) && has("create", r))
        .map(|r| ResourceRecord {
            group: group.to_string(),
            version: version.to_string(),
            kind: r.kind.clone(),
            plural: r.name.clone(),
            namespaced: r.namespaced,
            status_subresource: list
                .resources
                .iter()
                .any(|s| s.name == format!("{}/status", r.name)),
            singular: r.singular_name.clone(),
            short_names: r.short_names.clone().unwrap_or_default(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listable_creatable_types_with_their_status_subresource() {
        let list: APIResourceList = serde_json::from_value(serde_json::json!({
            "groupVersion": "apps/v1",
            "resources": [
                {"name": "deployments", "singularName": "deployment", "namespaced": true, "kind": "Deployment",
                 "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]},
                {"name": "deployments/status", "singularName": "", "namespaced": true, "kind": "Deployment",
                 "verbs": ["get", "patch", "update"]},
                {"name": "deployments/scale", "singularName": "", "namespaced": true, "kind": "Scale",
                 "verbs": ["get", "patch", "update"]},
                {"name": "controllerrevisions", "singularName": "", "namespaced": true, "kind": "ControllerRevision",
                 "verbs": ["create", "list"]},
                {"name": "readonly", "singularName": "", "namespaced": false, "kind": "ReadOnly",
                 "verbs": ["get", "list"]}
            ]
        }))
        .expect("list");
        let r = records_from(&list, "apps", "v1");
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].key(), "deployments.apps");
        assert!(r[0].status_subresource);
        assert!(!r[1].status_subresource);
        assert_eq!(r[1].api_version(), "apps/v1");
    }
}
