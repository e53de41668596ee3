//! How the backup reaches the Ceph clusters the claims' images live in: the monitors of a
//! CSI `clusterID` from the drivers' own ConfigMaps, and the cephx user and key from the
//! Secret the StorageClass names, read through the API and kept only in memory (never
//! logged, never in errors, status or the catalog). An operator's `ceph.conf` (drctl
//! `--ceph-conf`) replaces both for every image.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Client;
use kube::api::{Api, ListParams};
use lifeboat_rbd::Cluster;
use serde::Deserialize;

use super::plan::SecretRef;

/// ConfigMaps naming each `clusterID`'s monitors, with the key holding the JSON: lifeboat-csi's
/// (charts/lifeboat, `{"rbd": [{"clusterID", "monitors"}]}`), ceph-csi's and Rook's
/// (`[{"clusterID", "monitors"}]`).
pub const MONITOR_CONFIG_MAPS: [(&str, &str); 3] = [
    ("lifeboat-csi-config", "config.json"),
    ("ceph-csi-config", "config.json"),
    ("rook-ceph-csi-config", "csi-cluster-config-json"),
];

/// Where Ceph connections come from.
#[derive(Debug, Clone)]
pub enum CephAccess {
    /// One `ceph.conf` (monitors and keyring) and cephx user for every image, whatever its
    /// clusterID: the operator's override.
    Conf {
        /// The config file.
        path: PathBuf,
        /// The cephx user, without `client.`.
        user: String,
    },
    /// Monitors from the CSI drivers' ConfigMaps, keys from the claims' Secrets; `dir` holds
    /// the short-lived config librados reads (see [`Cluster::connect_with_key`]).
    FromCluster {
        /// A private scratch directory.
        dir: PathBuf,
    },
}

/// Why an image's cluster could not be reached; never holds the key.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct AccessError(pub String);

/// `clusterID` → monitors, from [`MONITOR_CONFIG_MAPS`] in any namespace.
pub async fn monitors(client: &Client) -> Result<HashMap<String, Vec<String>>, AccessError> {
    let api: Api<ConfigMap> = Api::all(client.clone());
    let mut out = HashMap::new();
    for (name, key) in MONITOR_CONFIG_MAPS {
        let list = api
            .list(&ListParams::default().fields(&format!("metadata.name={name}")))
            .await
            .map_err(|e| AccessError(format!("list ConfigMaps {name}: {e}")))?;
        for cm in list.items {
            let Some(json) = cm.data.as_ref().and_then(|d| d.get(key)) else {
                continue;
            };
            for (id, mons) in parse_monitors(json) {
                out.entry(id).or_insert(mons);
            }
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClusterEntry {
    #[serde(rename = "clusterID")]
    cluster_id: String,
    #[serde(default)]
    monitors: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum MonitorConfig {
    Lifeboat { rbd: Vec<ClusterEntry> },
    CephCsi(Vec<ClusterEntry>),
}

/// `clusterID` → monitors of one ConfigMap's JSON; unparseable text gives nothing.
pub fn parse_monitors(json: &str) -> Vec<(String, Vec<String>)> {
    let entries = match serde_json::from_str::<MonitorConfig>(json) {
        Ok(MonitorConfig::Lifeboat { rbd }) => rbd,
        Ok(MonitorConfig::CephCsi(list)) => list,
        Err(_) => Vec::new(),
    };
    entries
        .into_iter()
        .filter(|e| !e.monitors.is_empty())
        .map(|e| (e.cluster_id, e.monitors))
        .collect()
}

/// A cephx user and key; `Debug` hides the key.
pub struct CephKey {
    user: String,
    key: String,
}

impl std::fmt::Debug for CephKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CephKey")
            .field("user", &self.user)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Drop for CephKey {
    fn drop(&mut self) {
        // Overwrite the key's bytes before the memory is freed.
        let zeros = "\0".repeat(self.key.len());
        self.key.replace_range(.., &zeros);
    }
}

/// Reads `userID`/`userKey` (or `adminID`/`adminKey`) from a Secret's data, as ceph-csi and
/// lifeboat-csi do.
pub fn key_from_secret(data: &BTreeMap<String, Vec<u8>>, name: &SecretRef) -> Result<CephKey, AccessError> {
    let get = |k: &str| data.get(k).and_then(|v| String::from_utf8(v.clone()).ok());
    let (user, key) = match (get("userID"), get("userKey"), get("adminID"), get("adminKey")) {
        (Some(u), Some(k), _, _) | (_, _, Some(u), Some(k)) => (u, k),
        _ => {
            return Err(AccessError(format!(
                "Secret {}/{} holds no userID/userKey (or adminID/adminKey)",
                name.namespace, name.name
            )));
        }
    };
    let user = user.trim();
    Ok(CephKey {
        user: user.strip_prefix("client.").unwrap_or(user).to_string(),
        key: key.trim().to_string(),
    })
}

/// Connections opened so far, one per (clusterID, Secret).
pub struct Connections {
    access: CephAccess,
    monitors: HashMap<String, Vec<String>>,
    open: HashMap<(String, Option<SecretRef>), Result<Cluster, AccessError>>,
}

impl Connections {
    /// Reads the monitors (unless `access` is a `ceph.conf`).
    pub async fn new(client: &Client, access: CephAccess) -> Result<Self, AccessError> {
        let monitors = match &access {
            CephAccess::Conf { .. } => HashMap::new(),
            CephAccess::FromCluster { .. } => monitors(client).await?,
        };
        Ok(Self {
            access,
            monitors,
            open: HashMap::new(),
        })
    }

    /// A connection to `cluster_id` with `secret`'s key (opened once, failures remembered).
    pub async fn get(
        &mut self,
        client: &Client,
        cluster_id: &str,
        secret: Option<&SecretRef>,
    ) -> Result<Cluster, AccessError> {
        let slot = (cluster_id.to_string(), secret.cloned());
        if let Some(done) = self.open.get(&slot) {
            return done.clone();
        }
        let result = self.connect(client, cluster_id, secret).await;
        self.open.insert(slot, result.clone());
        result
    }

    async fn connect(
        &self,
        client: &Client,
        cluster_id: &str,
        secret: Option<&SecretRef>,
    ) -> Result<Cluster, AccessError> {
        let dir = match &self.access {
            CephAccess::Conf { path, user } => {
                let (path, user) = (path.clone(), user.clone());
                return blocking(move || {
                    Cluster::connect(&user, &path).map_err(|e| {
                        AccessError(format!(
                            "{e} (the keyring this configuration names must hold the user's key)"
                        ))
                    })
                })
                .await;
            }
            CephAccess::FromCluster { dir } => dir.clone(),
        };
        let Some(mons) = self.monitors.get(cluster_id).cloned() else {
            return Err(AccessError(format!(
                "no monitors for Ceph clusterID {cluster_id:?} in ConfigMaps {}; add it there or pass --ceph-conf",
                MONITOR_CONFIG_MAPS.map(|(n, _)| n).join(", ")
            )));
        };
        let Some(secret) = secret else {
            return Err(AccessError(format!(
                "no Secret names the cephx key for clusterID {cluster_id:?}: set the StorageClass's \
                 csi.storage.k8s.io/provisioner-secret-name/-namespace, or name a Secret with the \
                 key for the backup or restore (cephSecret), or give a ceph.conf"
            )));
        };
        let api: Api<Secret> = Api::namespaced(client.clone(), &secret.namespace);
        let found = api
            .get_opt(&secret.name)
            .await
            .map_err(|e| AccessError(format!("read Secret {}/{}: {e}", secret.namespace, secret.name)))?
            .ok_or_else(|| {
                AccessError(format!(
                    "Secret {}/{} does not exist",
                    secret.namespace, secret.name
                ))
            })?;
        let data: BTreeMap<String, Vec<u8>> = found
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        let key = key_from_secret(&data, secret)?;
        let named = format!("Secret {}/{}", secret.namespace, secret.name);
        blocking(move || {
            Cluster::connect_with_key(&dir, &key.user, &mons, &key.key).map_err(|e| {
                // librados answers a key the monitors refuse the same way as monitors that do
                // not answer: it retries until its timeout.
                let hint = match e.to_string().contains("timed out") {
                    true => {
                        "; a wrong key for the user times out too, so check the key as well as the monitors"
                    }
                    false => "",
                };
                AccessError(format!("{e} (user and key from {named}{hint})"))
            })
        })
        .await
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AccessError> + Send + 'static,
) -> Result<T, AccessError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AccessError(format!("connect task: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_drivers_config_maps_name_monitors() {
        let lifeboat = r#"{"rbd":[{"clusterID":"ceph-a","monitors":["10.0.0.1:6789","10.0.0.2:6789"],"pools":["kube"]}],"nfs":[]}"#;
        assert_eq!(
            parse_monitors(lifeboat),
            vec![(
                "ceph-a".to_string(),
                vec!["10.0.0.1:6789".to_string(), "10.0.0.2:6789".to_string()]
            )]
        );
        let ceph_csi = r#"[{"clusterID":"rook-ceph","monitors":["v2:10.1.0.1:3300"],"cephFS":{}}]"#;
        assert_eq!(parse_monitors(ceph_csi)[0].0, "rook-ceph");
        assert!(parse_monitors("not json").is_empty());
    }

    #[test]
    fn secret_keys_as_ceph_csi_names_them_and_debug_hides_the_key() {
        let r = SecretRef {
            namespace: "ns".into(),
            name: "s".into(),
        };
        let data: BTreeMap<String, Vec<u8>> = [("userID", "client.kube"), ("userKey", "QUJDREVGRw==\n")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        let k = key_from_secret(&data, &r).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((k.user.as_str(), k.key.as_str()), ("kube", "QUJDREVGRw=="));
        assert!(!format!("{k:?}").contains("QUJD"));
        let e = key_from_secret(&BTreeMap::new(), &r).unwrap_err().to_string();
        assert!(e.contains("ns/s") && e.contains("userKey"), "{e}");
    }
}
