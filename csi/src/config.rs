//! The driver's own configuration file: which Ceph clusters a `clusterID` names, and the
//! read-only credentials the RPCs that carry no secrets (ListVolumes, GetCapacity,
//! ControllerGetVolume, Probe) use. Like ceph-csi's `config.json`, mounted from a ConfigMap.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{CsiError, Result};
use crate::secrets::Credentials;

/// The whole file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DriverConfig {
    /// Ceph clusters by id.
    #[serde(default)]
    pub rbd: Vec<CephCluster>,
    /// NFS exports Probe checks (volumes may also name others through parameters).
    #[serde(default)]
    pub nfs: Vec<NfsExport>,
}

/// One Ceph cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CephCluster {
    /// The id StorageClasses name in `clusterID` and volume ids carry.
    #[serde(rename = "clusterID")]
    pub cluster_id: String,
    /// Monitor addresses (`host:port`).
    pub monitors: Vec<String>,
    /// A cephx user for the RPCs without secrets; without it they answer for this cluster
    /// with what they can (ListVolumes skips it, GetCapacity fails).
    #[serde(default)]
    pub user: Option<String>,
    /// File holding that user's key (a mounted Secret), never the key itself.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Pools ListVolumes walks (and GetCapacity without parameters sums up).
    #[serde(default)]
    pub pools: Vec<String>,
    /// Where the cluster can be reached from: topology segments (`{"topology.kubernetes.io/zone":
    /// "z1"}`), any of which a node must match. Empty: from everywhere.
    #[serde(default)]
    pub topology: Vec<BTreeMap<String, String>>,
}

/// One NFS export.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NfsExport {
    /// Server address.
    pub server: String,
    /// Exported path.
    pub share: String,
    /// Base directories (the `baseDir` of each StorageClass on this export) ListVolumes
    /// walks; empty walks the share's root only.
    #[serde(default)]
    pub base_dirs: Vec<String>,
    /// Where the export can be reached from, as for [`CephCluster::topology`].
    #[serde(default)]
    pub topology: Vec<BTreeMap<String, String>>,
}

impl DriverConfig {
    /// Loads the file, or an empty config when no path is given.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| CsiError::Internal(format!("read driver config {}: {e}", path.display())))?;
        serde_json::from_str(&text)
            .map_err(|e| CsiError::Internal(format!("parse driver config {}: {e}", path.display())))
    }

    /// The export a StorageClass's `server` and `share` name, if configured.
    pub fn export(&self, server: &str, share: &str) -> Option<&NfsExport> {
        self.nfs.iter().find(|e| e.server == server && e.share == share)
    }

    /// The cluster a `clusterID` names.
    pub fn cluster(&self, id: &str) -> Result<&CephCluster> {
        self.rbd
            .iter()
            .find(|c| c.cluster_id == id)
            .ok_or_else(|| CsiError::InvalidArgument(format!("clusterID {id:?} is not in the driver config")))
    }
}

impl CephCluster {
    /// The configured read-only credentials, if any.
    pub fn credentials(&self) -> Result<Option<Credentials>> {
        let (Some(user), Some(file)) = (&self.user, &self.key_file) else {
            return Ok(None);
        };
        let key = zeroize::Zeroizing::new(std::fs::read_to_string(file).map_err(|e| {
            CsiError::Internal(format!(
                "read key file {} for cluster {}: {e}",
                file.display(),
                self.cluster_id
            ))
        })?);
        Credentials::new(user, &key).map(Some)
    }
}
