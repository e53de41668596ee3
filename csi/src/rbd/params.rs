//! StorageClass parameters for RBD volumes, parsed and checked before anything is created.

use std::collections::HashMap;

use lifeboat_rbd::{ImageOptions, features};

use crate::error::{Result, invalid};
use crate::ids::check_name;

/// Image features when a StorageClass names none: what `rbd create` uses by default on Ceph
/// Pacific. object-map and fast-diff make removal touch only written objects and make
/// changed-block diffs fast; kernels before 5.3 cannot map such images with krbd (see
/// docs/csi.md), and StorageClasses for them set `imageFeatures: layering`.
pub const DEFAULT_FEATURES: &str = "layering,exclusive-lock,object-map,fast-diff,deep-flatten";

/// How a volume made from a snapshot or another volume relates to its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloneMode {
    /// Copy-on-write clone, then flatten: independent of the source once created (default).
    Flatten,
    /// Copy-on-write clone left attached to its parent snapshot: fast, but the snapshot
    /// cannot be deleted while the clone lives.
    Cow,
}

/// Parsed RBD parameters.
#[derive(Debug, Clone)]
pub struct RbdParams {
    /// Key into the driver config for monitors.
    pub cluster_id: String,
    /// Pool for image headers.
    pub pool: String,
    /// Optional separate data pool (erasure coding).
    pub data_pool: Option<String>,
    /// Comma-separated image features as given.
    pub features: String,
    /// Filesystem for mount volumes.
    pub fs_type: String,
    /// Mount options for the filesystem (`mountOptions` parameter, comma separated).
    pub mount_options: String,
    /// Clone policy.
    pub clone_mode: CloneMode,
}

impl RbdParams {
    /// Parses `clusterID`, `pool`, `dataPool`, `imageFeatures`, `csi.storage.k8s.io/fstype`,
    /// `mountOptions` and `cloneMode`; other keys are ignored, as ceph-csi does.
    pub fn parse(p: &HashMap<String, String>) -> Result<Self> {
        let get = |k: &str| p.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let cluster_id = get("clusterID").ok_or_else(|| invalid("parameter clusterID is required"))?;
        check_name("clusterID", cluster_id)?;
        let pool = get("pool").ok_or_else(|| invalid("parameter pool is required"))?;
        check_name("pool", pool)?;
        let data_pool = get("dataPool").map(str::to_string);
        if let Some(d) = &data_pool {
            check_name("dataPool", d)?;
        }
        let feats = get("imageFeatures").unwrap_or(DEFAULT_FEATURES);
        features::parse(feats).map_err(|e| invalid(e.to_string()))?;
        let fs_type = get("csi.storage.k8s.io/fstype")
            .or(get("fsType"))
            .unwrap_or("ext4");
        if !["ext4", "xfs", "ext3"].contains(&fs_type) {
            return Err(invalid(format!("fstype {fs_type:?}: ext4, ext3 or xfs")));
        }
        let clone_mode = match get("cloneMode").unwrap_or("flatten") {
            "flatten" => CloneMode::Flatten,
            "cow" => CloneMode::Cow,
            other => return Err(invalid(format!("cloneMode {other:?}: flatten or cow"))),
        };
        Ok(Self {
            cluster_id: cluster_id.into(),
            pool: pool.into(),
            data_pool,
            features: feats.into(),
            fs_type: fs_type.into(),
            mount_options: get("mountOptions").unwrap_or("").into(),
            clone_mode,
        })
    }

    /// librbd options for a new image or clone.
    pub fn image_options(&self) -> Result<ImageOptions> {
        Ok(ImageOptions {
            features: Some(features::parse(&self.features).map_err(|e| invalid(e.to_string()))?),
            order: None,
            data_pool: self.data_pool.clone(),
        })
    }

    /// What makes two requests with one name the same volume (compared on retries).
    pub fn fingerprint(&self, source: &str) -> String {
        format!(
            "pool={};dataPool={};features={};cloneMode={:?};source={source}",
            self.pool,
            self.data_pool.as_deref().unwrap_or(""),
            self.features,
            self.clone_mode
        )
    }
}
