//! The registry of clusters: one record per cluster in the federation state, written by
//! `drctl cluster add`. A record says where the cluster's API server is and how to reach it
//! (a kubeconfig context on the operator's machine, a Secret for the federation agent), but
//! never holds credentials: kubeconfigs stay in files and Secrets.

mod connect;
pub mod join;

pub use connect::{ConnectError, Connector, KubeconfigError, connect_kubeconfig};
pub use join::JoinError;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::fence::blocklist::CephAccess;
use crate::state::{StateError, StateStore, WriteReport, key};

/// What a cluster is for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs the applications.
    #[default]
    Primary,
    /// Takes them over.
    Standby,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Primary => "primary",
            Role::Standby => "standby",
        })
    }
}

/// A Secret holding a kubeconfig, in the federation agent's namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubeconfigSecret {
    /// The Secret's name.
    pub name: String,
    /// The key holding the kubeconfig (default `kubeconfig`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// `federation/clusters/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRecord {
    /// The cluster's name in the federation (a DNS label).
    pub name: String,
    /// Region (`eu-west-1`).
    pub region: String,
    /// Cloud or site (`aws`, `onprem-fra`).
    pub cloud: String,
    /// Primary or standby.
    pub role: Role,
    /// The API server's URL, from the kubeconfig.
    pub server: String,
    /// The kubeconfig context that reaches it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// The kubeconfig file given to `cluster add`, on the machine that ran it (a hint for
    /// drctl on that machine; never read anywhere else).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig_path: Option<String>,
    /// The Secret (in the agents' namespace of the other clusters) holding its kubeconfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig_secret: Option<KubeconfigSecret>,
    /// The uid of its `kube-system` namespace: the id object backups record, so recovery
    /// points can be traced to the cluster that took them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// Its nodes' addresses, for blocklisting its RBD clients when it is fenced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_addresses: Vec<String>,
    /// Its Ceph, when fencing should blocklist its RBD clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceph: Option<CephAccess>,
    /// The namespace Lifeboat's controller (and its Lease) lives in there.
    pub controller_namespace: String,
    /// When it was registered.
    pub added: DateTime<Utc>,
    /// When the record last changed.
    pub updated: DateTime<Utc>,
}

/// The record's key.
pub fn record_key(name: &str) -> String {
    key(&["clusters", name])
}

/// A name that is not a DNS label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{name:?} is not a valid name: use 1-63 lowercase letters, digits and '-', starting and ending with a \
     letter or digit"
)]
pub struct NameError {
    /// The name given.
    pub name: String,
}

/// Checks a cluster name: a DNS label, as it becomes part of object keys and annotations.
pub fn valid_name(name: &str) -> Result<(), NameError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(NameError {
            name: name.to_string(),
        })
    }
}

/// Writes (or replaces) a record in every repository.
pub async fn put(state: &StateStore, record: &ClusterRecord) -> Result<WriteReport, StateError> {
    state.overwrite_all(&record_key(&record.name), record).await
}

/// Every registered cluster, by name (the newest copy of each).
pub async fn list(state: &StateStore) -> Result<Vec<ClusterRecord>, StateError> {
    let keys = state.list_union(&key(&["clusters"])).await?;
    let mut records = Vec::new();
    for k in keys {
        let copies: Vec<ClusterRecord> = state.read_values(&k).await?;
        if let Some(newest) = copies.into_iter().max_by_key(|r| r.updated) {
            records.push(newest);
        }
    }
    records.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(records)
}

/// One record; `None` when the cluster is not registered.
pub async fn get(state: &StateStore, name: &str) -> Result<Option<ClusterRecord>, StateError> {
    let copies: Vec<ClusterRecord> = state.read_values(&record_key(name)).await?;
    Ok(copies.into_iter().max_by_key(|r| r.updated))
}

/// Removes a record from every repository (its health observations go too).
pub async fn remove(state: &StateStore, name: &str) -> Result<WriteReport, StateError> {
    let report = state.delete_all(&record_key(name)).await?;
    for k in state.list_union(&key(&["health", name])).await? {
        state.delete_all(&k).await?;
    }
    Ok(report)
}

/// What `cluster add` learns from the cluster itself: the id object backups record (the
/// `kube-system` namespace's uid) and its nodes' internal addresses.
pub async fn inspect(client: &kube::Client) -> Result<(Option<String>, Vec<String>), kube::Error> {
    use k8s_openapi::api::core::v1::{Namespace, Node};
    let ns = kube::Api::<Namespace>::all(client.clone())
        .get_opt("kube-system")
        .await?;
    let id = ns.and_then(|n| n.metadata.uid);
    let nodes = kube::Api::<Node>::all(client.clone())
        .list(&Default::default())
        .await?;
    let mut addresses = Vec::new();
    for n in nodes.items {
        for a in n.status.and_then(|s| s.addresses).unwrap_or_default() {
            if a.type_ == "InternalIP" && !addresses.contains(&a.address) {
                addresses.push(a.address);
            }
        }
    }
    Ok((id, addresses))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels() {
        assert!(valid_name("eu-west-1").is_ok());
        for bad in ["", "EU", "a_b", "-a", "a-", &"x".repeat(64), "a/b", "a.b"] {
            let e = valid_name(bad).expect_err(bad);
            assert!(e.to_string().contains("lowercase"), "{e}");
        }
    }
}
