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

use super::handle::{RbdImage, is_ceph_csi_rbd};
use super::plan::SecretRef;

/// ConfigMaps naming each `clusterID`'s monitors, with the key holding the JSON: lifeboat-csi's
/// (charts/lifeboat, `{"rbd": [{"clusterID", "monitors"}]}`), ceph-csi's and Rook's
/// (`[{"clusterID", "monitors", "rbd": {"radosNamespace"}}]`).
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

/// One `clusterID` of a CSI driver's cluster config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterConfig {
    /// The monitors, `host:port` each.
    pub monitors: Vec<String>,
    /// The RADOS namespace ceph-csi places this cluster's images in (its config's
    /// `rbd.radosNamespace`, or the older top-level `radosNamespace`); `None` for the default
    /// namespace and for lifeboat-csi, which has none.
    pub rados_namespace: Option<String>,
}

/// `clusterID` → its config, from [`MONITOR_CONFIG_MAPS`] in any namespace (the first
/// ConfigMap naming an id wins).
pub async fn clusters(client: &Client) -> Result<HashMap<String, ClusterConfig>, AccessError> {
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
            for (id, config) in parse_clusters(json) {
                out.entry(id).or_insert(config);
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
    /// ceph-csi 3.0–3.4.
    #[serde(default)]
    rados_namespace: Option<String>,
    /// ceph-csi 3.5 and later: `"rbd": {"radosNamespace": …}`.
    #[serde(default)]
    rbd: Option<RbdEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RbdEntry {
    #[serde(default)]
    rados_namespace: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum MonitorConfig {
    Lifeboat { rbd: Vec<ClusterEntry> },
    CephCsi(Vec<ClusterEntry>),
}

/// `clusterID` → config of one ConfigMap's JSON (lifeboat-csi's `{"rbd": [...]}` or
/// ceph-csi's and Rook's list); entries without monitors and unparseable text give nothing.
pub fn parse_clusters(json: &str) -> Vec<(String, ClusterConfig)> {
    let (entries, ceph_csi) = match serde_json::from_str::<MonitorConfig>(json) {
        Ok(MonitorConfig::Lifeboat { rbd }) => (rbd, false),
        Ok(MonitorConfig::CephCsi(list)) => (list, true),
        Err(_) => (Vec::new(), false),
    };
    entries
        .into_iter()
        .filter(|e| !e.monitors.is_empty())
        .map(|e| {
            let rados_namespace = ceph_csi
                .then(|| e.rbd.and_then(|r| r.rados_namespace).or(e.rados_namespace))
                .flatten()
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty());
            (
                e.cluster_id,
                ClusterConfig {
                    monitors: e.monitors,
                    rados_namespace,
                },
            )
        })
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
    clusters: HashMap<String, ClusterConfig>,
    open: HashMap<(String, Option<SecretRef>), Result<Cluster, AccessError>>,
}

impl Connections {
    /// Reads the drivers' cluster configs (unless `access` is a `ceph.conf`).
    pub async fn new(client: &Client, access: CephAccess) -> Result<Self, AccessError> {
        let clusters = match &access {
            CephAccess::Conf { .. } => HashMap::new(),
            CephAccess::FromCluster { .. } => clusters(client).await?,
        };
        Ok(Self {
            access,
            clusters,
            open: HashMap::new(),
        })
    }

    /// `image` of a volume of CSI `driver`, with its pool spec completed by
    /// [`ceph_csi_pool`](Self::ceph_csi_pool) when the driver is ceph-csi's.
    pub fn locate(&self, driver: &str, mut image: RbdImage) -> RbdImage {
        if is_ceph_csi_rbd(driver) {
            image.pool = self.ceph_csi_pool(&image.cluster_id, &image.pool);
        }
        image
    }

    /// The pool spec (`POOL` or `POOL/NAMESPACE`, see [`lifeboat_rbd::split_pool_spec`]) of
    /// `pool` of ceph-csi's `cluster_id`: a pool spec that names a namespace is kept, else
    /// the namespace ceph-csi's config gives that cluster is added. Only ceph-csi places
    /// images in RADOS namespaces; lifeboat-csi's pools are used as they are.
    pub fn ceph_csi_pool(&self, cluster_id: &str, pool: &str) -> String {
        let namespace = self
            .clusters
            .get(cluster_id)
            .and_then(|c| c.rados_namespace.as_deref());
        match (lifeboat_rbd::split_pool_spec(pool), namespace) {
            ((name, None), Some(namespace)) => format!("{name}/{namespace}"),
            _ => pool.to_string(),
        }
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
        let Some(mons) = self.clusters.get(cluster_id).map(|c| c.monitors.clone()) else {
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
            parse_clusters(lifeboat),
            vec![(
                "ceph-a".to_string(),
                ClusterConfig {
                    monitors: vec!["10.0.0.1:6789".to_string(), "10.0.0.2:6789".to_string()],
                    rados_namespace: None,
                }
            )]
        );
        let ceph_csi = r#"[{"clusterID":"rook-ceph","monitors":["v2:10.1.0.1:3300"],"cephFS":{}}]"#;
        assert_eq!(parse_clusters(ceph_csi)[0].0, "rook-ceph");
        assert_eq!(parse_clusters(ceph_csi)[0].1.rados_namespace, None);
        assert!(parse_clusters("not json").is_empty());
    }

    #[test]
    fn ceph_csi_configs_name_rados_namespaces_both_ways() {
        // ceph-csi 3.5 and later, and 3.0–3.4 (top level); an empty one is the default.
        let new = r#"[{"clusterID":"a","monitors":["m:6789"],"rbd":{"radosNamespace":"tenant-a"}}]"#;
        let old = r#"[{"clusterID":"b","monitors":["m:6789"],"radosNamespace":"tenant-b"}]"#;
        let empty = r#"[{"clusterID":"c","monitors":["m:6789"],"rbd":{"radosNamespace":""}}]"#;
        let ns = |json: &str| parse_clusters(json)[0].1.rados_namespace.clone();
        assert_eq!(ns(new).as_deref(), Some("tenant-a"));
        assert_eq!(ns(old).as_deref(), Some("tenant-b"));
        assert_eq!(ns(empty), None);
        // lifeboat-csi's config has no namespaces, whatever it holds.
        let lifeboat = r#"{"rbd":[{"clusterID":"d","monitors":["m:6789"],"radosNamespace":"x"}]}"#;
        assert_eq!(ns(lifeboat), None);
        let conns = Connections {
            access: CephAccess::FromCluster {
                dir: "/nonexistent".into(),
            },
            clusters: parse_clusters(new).into_iter().collect(),
            open: HashMap::new(),
        };
        assert_eq!(conns.ceph_csi_pool("a", "kube"), "kube/tenant-a");
        assert_eq!(conns.ceph_csi_pool("a", "kube/other"), "kube/other");
        assert_eq!(conns.ceph_csi_pool("z", "kube"), "kube");
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
