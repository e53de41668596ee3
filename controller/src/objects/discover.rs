//! Which resources the cluster serves: every API group's preferred version, custom
//! resources included, keeping those that can be listed.

use kube::Client;
use kube::discovery::{Discovery, Scope, verbs};

use super::ObjectsError;

/// One resource type as the backup read it; stored in the snapshot so a restore knows the
/// API version and kind of each directory without asking the target cluster.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRecord {
    /// API group (`""` for core).
    pub group: String,
    /// Version read.
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
        super::resource_key(&self.plural, &self.group)
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

/// Lists the listable resources the server prefers, sorted by key.
pub async fn discover(client: &Client) -> Result<Vec<ResourceRecord>, ObjectsError> {
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .map_err(|e| ObjectsError::kube("discover API resources", e))?;
    let mut out = Vec::new();
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            if !caps.supports_operation(verbs::LIST) || !caps.supports_operation(verbs::CREATE) {
                continue;
            }
            let status_subresource = caps.subresources.iter().any(|(sub, _)| sub.plural == "status");
            out.push(ResourceRecord {
                group: ar.group.clone(),
                version: ar.version.clone(),
                kind: ar.kind.clone(),
                plural: ar.plural.clone(),
                namespaced: matches!(caps.scope, Scope::Namespaced),
                status_subresource,
            });
        }
    }
    out.sort_by_key(ResourceRecord::key);
    out.dedup_by_key(|r| r.key());
    Ok(out)
}
