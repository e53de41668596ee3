//! Backup and restore of Kubernetes objects, Velero-style, into the backup engine.
//!
//! A snapshot of kind `kubernetes` holds one JSON file per object at
//! `resources/<plural>[.<group>]/namespaces/<namespace>/<name>.json` (or `…/cluster/<name>.json`)
//! and `lifeboat/resources.json`, which says for each resource directory which API version,
//! kind and scope it was read with. Every object is one blob, so an unchanged object costs one
//! tree line in the next backup and nothing else.

mod backup;
pub mod discover;
mod error;
pub(crate) mod filter;
pub mod needs;
mod phase;
pub mod restore;
mod select;
mod skip;

pub(crate) use backup::for_each_page;
pub use backup::{BackupOutcome, BackupRequest, LateFiles, backup_objects, backup_objects_with_late_files};
pub use discover::{Discovered, DiscoveryDeadlines, ResourceRecord, UnavailableGroup, discover};
pub use error::ObjectsError;
pub use filter::{NamespaceFilter, ObjectFilter, ResourceFilter};
pub use restore::{RepositoryAdvice, RestoreOptions, RestoreOutcome, VolumeBinding, restore_objects};
pub use select::{backup_snapshots, chain_bases, forget_backup, snapshot_to_restore};

/// `Snapshot::kind` of object backups.
pub const SNAPSHOT_KIND: &str = "kubernetes";
/// Where the resource table lives in the snapshot tree.
pub const RESOURCES_PATH: &str = "lifeboat/resources.json";
/// The snapshot tag that names the Backup it was made for.
pub const BACKUP_TAG: &str = "backup";

/// Object snapshots in `repo`, newest first; only those of the Backup `name` if given (the
/// record a restore finds when the cluster that held the Backup resource is gone).
pub async fn object_snapshots(
    repo: &lifeboat_backup::Repository,
    name: Option<&str>,
) -> Result<Vec<lifeboat_backup::snapshot::Snapshot>, lifeboat_backup::RepoError> {
    let mut snaps: Vec<_> = repo
        .snapshots()
        .await?
        .into_iter()
        .filter(|s| s.kind() == SNAPSHOT_KIND)
        .filter(|s| name.is_none_or(|n| s.tags.get(BACKUP_TAG).map(String::as_str) == Some(n)))
        .collect();
    snaps.sort_by_key(|s| std::cmp::Reverse(s.time));
    Ok(snaps)
}

/// Directory name of a resource: `configmaps`, `deployments.apps`.
pub fn resource_key(plural: &str, group: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

/// Tree path of one object.
pub fn object_path(key: &str, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("resources/{key}/namespaces/{ns}/{name}.json"),
        None => format!("resources/{key}/cluster/{name}.json"),
    }
}

/// An object's place, parsed back from its tree path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectPath {
    /// Resource directory (`deployments.apps`).
    pub key: String,
    /// Namespace, for namespaced objects.
    pub namespace: Option<String>,
    /// Object name.
    pub name: String,
}

impl ObjectPath {
    /// Parses `resources/…`; `None` for other files of the snapshot.
    pub fn parse(path: &str) -> Option<Self> {
        let (key, namespace, name) = Self::split(path)?;
        Some(Self {
            key: key.to_string(),
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
        })
    }

    /// [`Self::parse`] without copying: `(key, namespace, name)`, borrowed from `path`.
    pub fn split(path: &str) -> Option<(&str, Option<&str>, &str)> {
        let mut parts = path.strip_prefix("resources/")?.split('/');
        let (key, scope) = (parts.next()?, parts.next()?);
        let (namespace, file) = match (scope, parts.next(), parts.next(), parts.next()) {
            ("namespaces", Some(ns), Some(file), None) => (Some(ns), file),
            ("cluster", Some(file), None, None) => (None, file),
            _ => return None,
        };
        Some((key, namespace, file.strip_suffix(".json")?))
    }

    /// `resource/namespace/name` for messages.
    pub fn display(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{}/{}/{}", self.key, ns, self.name),
            None => format!("{}/{}", self.key, self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip() {
        let p = object_path(&resource_key("deployments", "apps"), Some("web"), "api");
        assert_eq!(p, "resources/deployments.apps/namespaces/web/api.json");
        let parsed = ObjectPath::parse(&p).expect("parses");
        assert_eq!(parsed.key, "deployments.apps");
        assert_eq!(parsed.namespace.as_deref(), Some("web"));
        assert_eq!(parsed.name, "api");
        let c = ObjectPath::parse(&object_path("namespaces", None, "web")).expect("parses");
        assert_eq!(c.namespace, None);
        assert_eq!(ObjectPath::parse(RESOURCES_PATH), None);
    }
}
