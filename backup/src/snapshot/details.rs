//! What a snapshot says about its source, typed per kind.
//!
//! On storage a manifest keeps the layout every Lifeboat version wrote: a `kind` string and a
//! `meta` map of strings (docs/FORMAT.md). [`SnapshotDetails`] is that pair read into a
//! type, so a field that is missing or malformed is found once, when the manifest is read,
//! instead of in each place that looks it up; and writing the type back gives exactly the
//! pair older readers expect.
//!
//! Adding a kind of source: add a variant holding a struct, give the struct
//! `to_meta`/`from_meta` (the table of its keys), and add one arm to [`SnapshotDetails::kind`],
//! [`SnapshotDetails::to_wire`] and [`SnapshotDetails::from_wire`]. A kind this version does
//! not know is kept as [`SnapshotDetails::Other`], so listing, retention and `forget` still
//! work on repositories a newer version wrote.

use std::collections::BTreeMap;

use crate::blob::SnapshotId;

/// `kind` of file snapshots.
pub const FILES: &str = "files";
/// `kind` of etcd snapshots (full and delta; `meta.type` tells them apart).
pub const ETCD: &str = "etcd";
/// `kind` of Kubernetes object snapshots.
pub const KUBERNETES: &str = "kubernetes";
/// `kind` of block volume snapshots (one [`crate::snapshot::NodeKind::Volume`] node).
pub const VOLUME: &str = "volume";

/// The typed description of what a snapshot holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotDetails {
    /// Files and directories (`kind: files`); `meta` records what was left out, if anything.
    Files(FilesBackup),
    /// A whole etcd database (`kind: etcd`, `meta.type: full`).
    EtcdFull(EtcdFull),
    /// The changes etcd made after a full snapshot (`kind: etcd`, `meta.type: delta`).
    EtcdDelta(EtcdDelta),
    /// Kubernetes objects, one JSON file each (`kind: kubernetes`).
    Kubernetes(KubernetesObjects),
    /// One block volume image (`kind: volume`).
    Volume(VolumeImage),
    /// A kind this version does not know (written by a newer one): kept as read.
    Other {
        /// Its `kind`.
        kind: String,
        /// Its `meta`, as stored.
        meta: BTreeMap<String, String>,
    },
}

/// What a files backup was asked to leave out; empty `meta` when nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilesBackup {
    /// `--exclude` patterns, as given (`meta.excludes`: a JSON array of strings; absent when
    /// none).
    pub excludes: Vec<String>,
    /// The backup stayed on its roots' filesystems (`meta.one_file_system`: `true`; absent
    /// when not).
    pub one_file_system: bool,
    /// Cache directories' content was left out (`meta.exclude_caches`: `true`; absent when
    /// not).
    pub exclude_caches: bool,
}

/// A full etcd snapshot: which cluster and member, and the revision it reflects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdFull {
    /// The cluster id, 16 hex digits (`meta.cluster_id`).
    pub cluster_id: String,
    /// The member streamed from, 16 hex digits (`meta.member_id`).
    pub member_id: String,
    /// The member's client URL (`meta.endpoint`).
    pub endpoint: String,
    /// The store revision the database holds (`meta.revision`).
    pub revision: i64,
}

/// An etcd delta: a link of the chain that continues a full snapshot. The snapshot's `parent`
/// is the previous link (the full snapshot for the first delta).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdDelta {
    /// The cluster id, 16 hex digits (`meta.cluster_id`).
    pub cluster_id: String,
    /// The full snapshot the chain continues (`meta.base`).
    pub base: SnapshotId,
    /// The first revision the delta holds (`meta.first_revision`).
    pub first_revision: i64,
    /// The last revision it holds (`meta.last_revision`, also written as `meta.revision`).
    pub last_revision: i64,
    /// Changes (puts and deletes) in it (`meta.events`).
    pub events: u64,
}

/// A backup of Kubernetes objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesObjects {
    /// The cluster: the uid of its `kube-system` namespace, or `unknown` (`meta.cluster_id`).
    pub cluster_id: String,
    /// The Backup it was made for (`meta.backup`).
    pub backup: String,
    /// Objects stored (`meta.items`).
    pub items: u64,
}

/// A backup of one RBD image: where it lives, the RBD snapshot it was read from (kept as the
/// base of the next backup's changed-block diff), and how it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeImage {
    /// The Ceph cluster's fsid (`meta.cluster_fsid`).
    pub cluster_fsid: String,
    /// The pool (`meta.pool`).
    pub pool: String,
    /// The image name (`meta.image`).
    pub image: String,
    /// librbd's id of the image, which a re-created image of the same name does not share
    /// (`meta.image_id`).
    pub image_id: String,
    /// The RBD snapshot read (`meta.rbd_snapshot`).
    pub rbd_snapshot: String,
    /// Its snapshot id, so a snapshot re-created under the same name is never taken for it
    /// (`meta.rbd_snapshot_id`).
    pub rbd_snapshot_id: u64,
    /// The volume's size in bytes (`meta.size`).
    pub size: u64,
    /// The unit re-read around a change and reused when unchanged, bytes (`meta.segment_size`).
    pub segment_size: u64,
    /// `full` (every allocated extent read) or `incremental` (only the extents changed since
    /// the parent's RBD snapshot) (`meta.read`).
    pub read: String,
    /// Bytes read from the image (`meta.read_bytes`).
    pub read_bytes: u64,
}

/// A manifest's `kind` and `meta` that do not make a valid description of that kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} snapshot metadata: {problem}")]
pub struct DetailsError {
    /// The manifest's `kind` (and `meta.type` for etcd).
    pub kind: String,
    /// Which key is missing or malformed.
    pub problem: String,
}

/// Reads typed values out of a `meta` map, naming the key that is wrong.
struct Meta<'a> {
    kind: &'a str,
    meta: &'a BTreeMap<String, String>,
}

impl Meta<'_> {
    fn error(&self, problem: String) -> DetailsError {
        DetailsError {
            kind: self.kind.to_string(),
            problem,
        }
    }

    fn text(&self, key: &str) -> Result<String, DetailsError> {
        self.meta
            .get(key)
            .cloned()
            .ok_or_else(|| self.error(format!("no {key}")))
    }

    fn parse<T: std::str::FromStr>(&self, key: &str) -> Result<T, DetailsError>
    where
        T::Err: std::fmt::Display,
    {
        let text = self.text(key)?;
        text.parse()
            .map_err(|e| self.error(format!("{key} {text:?} is not valid: {e}")))
    }
}

impl FilesBackup {
    fn to_meta(&self) -> BTreeMap<String, String> {
        let mut meta = BTreeMap::new();
        if !self.excludes.is_empty() {
            // A JSON array of strings cannot fail to serialise.
            let list = serde_json::to_string(&self.excludes).unwrap_or_default();
            meta.insert("excludes".to_string(), list);
        }
        for (key, set) in [
            ("one_file_system", self.one_file_system),
            ("exclude_caches", self.exclude_caches),
        ] {
            if set {
                meta.insert(key.to_string(), "true".to_string());
            }
        }
        meta
    }

    fn from_meta(m: &Meta<'_>) -> Result<Self, DetailsError> {
        let excludes = match m.meta.get("excludes") {
            None => Vec::new(),
            Some(text) => serde_json::from_str(text)
                .map_err(|e| m.error(format!("excludes {text:?} is not a JSON array of strings: {e}")))?,
        };
        let flag = |key: &str| match m.meta.get(key) {
            None => Ok(false),
            Some(_) => m.parse(key),
        };
        Ok(Self {
            excludes,
            one_file_system: flag("one_file_system")?,
            exclude_caches: flag("exclude_caches")?,
        })
    }
}

impl EtcdFull {
    fn to_meta(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("cluster_id".to_string(), self.cluster_id.clone()),
            ("member_id".to_string(), self.member_id.clone()),
            ("endpoint".to_string(), self.endpoint.clone()),
            ("revision".to_string(), self.revision.to_string()),
            ("type".to_string(), "full".to_string()),
        ])
    }

    fn from_meta(m: &Meta<'_>) -> Result<Self, DetailsError> {
        Ok(Self {
            cluster_id: m.text("cluster_id")?,
            member_id: m.text("member_id")?,
            endpoint: m.text("endpoint")?,
            revision: m.parse("revision")?,
        })
    }
}

impl EtcdDelta {
    fn to_meta(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("type".to_string(), "delta".to_string()),
            ("cluster_id".to_string(), self.cluster_id.clone()),
            ("base".to_string(), self.base.to_hex()),
            ("first_revision".to_string(), self.first_revision.to_string()),
            ("last_revision".to_string(), self.last_revision.to_string()),
            // Readers before typed metadata looked for `revision` on every etcd snapshot.
            ("revision".to_string(), self.last_revision.to_string()),
            ("events".to_string(), self.events.to_string()),
        ])
    }

    fn from_meta(m: &Meta<'_>) -> Result<Self, DetailsError> {
        Ok(Self {
            cluster_id: m.text("cluster_id")?,
            base: m.parse("base")?,
            first_revision: m.parse("first_revision")?,
            last_revision: m.parse("last_revision")?,
            events: m.parse("events")?,
        })
    }
}

impl KubernetesObjects {
    fn to_meta(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("cluster_id".to_string(), self.cluster_id.clone()),
            ("backup".to_string(), self.backup.clone()),
            ("items".to_string(), self.items.to_string()),
        ])
    }

    fn from_meta(m: &Meta<'_>) -> Result<Self, DetailsError> {
        Ok(Self {
            cluster_id: m.text("cluster_id")?,
            backup: m.text("backup")?,
            items: m.parse("items")?,
        })
    }
}

impl VolumeImage {
    fn to_meta(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("type".to_string(), "rbd".to_string()),
            ("cluster_fsid".to_string(), self.cluster_fsid.clone()),
            ("pool".to_string(), self.pool.clone()),
            ("image".to_string(), self.image.clone()),
            ("image_id".to_string(), self.image_id.clone()),
            ("rbd_snapshot".to_string(), self.rbd_snapshot.clone()),
            ("rbd_snapshot_id".to_string(), self.rbd_snapshot_id.to_string()),
            ("size".to_string(), self.size.to_string()),
            ("segment_size".to_string(), self.segment_size.to_string()),
            ("read".to_string(), self.read.clone()),
            ("read_bytes".to_string(), self.read_bytes.to_string()),
        ])
    }

    fn from_meta(m: &Meta<'_>) -> Result<Self, DetailsError> {
        Ok(Self {
            cluster_fsid: m.text("cluster_fsid")?,
            pool: m.text("pool")?,
            image: m.text("image")?,
            image_id: m.text("image_id")?,
            rbd_snapshot: m.text("rbd_snapshot")?,
            rbd_snapshot_id: m.parse("rbd_snapshot_id")?,
            size: m.parse("size")?,
            segment_size: m.parse("segment_size")?,
            read: m.text("read")?,
            read_bytes: m.parse("read_bytes")?,
        })
    }
}

impl SnapshotDetails {
    /// The manifest's `kind`: `files`, `etcd`, `kubernetes`, or an unknown kind as stored.
    pub fn kind(&self) -> &str {
        match self {
            Self::Files(_) => FILES,
            Self::EtcdFull(_) | Self::EtcdDelta(_) => ETCD,
            Self::Kubernetes(_) => KUBERNETES,
            Self::Volume(_) => VOLUME,
            Self::Other { kind, .. } => kind,
        }
    }

    /// The cluster a snapshot of a cluster comes from (etcd: its cluster id; Kubernetes
    /// objects: the uid of its `kube-system` namespace); `None` for files and unknown kinds.
    pub fn cluster_id(&self) -> Option<&str> {
        match self {
            Self::EtcdFull(d) => Some(&d.cluster_id),
            Self::EtcdDelta(d) => Some(&d.cluster_id),
            Self::Kubernetes(d) => Some(&d.cluster_id),
            // A Ceph fsid names no Kubernetes cluster.
            Self::Files(_) | Self::Volume(_) | Self::Other { .. } => None,
        }
    }

    /// The `kind` and `meta` stored for it.
    pub fn to_wire(&self) -> (String, BTreeMap<String, String>) {
        let meta = match self {
            Self::Files(d) => d.to_meta(),
            Self::EtcdFull(d) => d.to_meta(),
            Self::EtcdDelta(d) => d.to_meta(),
            Self::Kubernetes(d) => d.to_meta(),
            Self::Volume(d) => d.to_meta(),
            Self::Other { meta, .. } => meta.clone(),
        };
        (self.kind().to_string(), meta)
    }

    /// Reads a stored `kind` and `meta`.
    pub fn from_wire(kind: String, meta: BTreeMap<String, String>) -> Result<Self, DetailsError> {
        let m = Meta {
            kind: &kind,
            meta: &meta,
        };
        let details = match kind.as_str() {
            FILES => Self::Files(FilesBackup::from_meta(&m)?),
            ETCD => match meta.get("type").map(String::as_str) {
                Some("full") => Self::EtcdFull(EtcdFull::from_meta(&m)?),
                Some("delta") => Self::EtcdDelta(EtcdDelta::from_meta(&m)?),
                other => {
                    return Err(m.error(format!("type {other:?} is neither \"full\" nor \"delta\"")));
                }
            },
            KUBERNETES => Self::Kubernetes(KubernetesObjects::from_meta(&m)?),
            VOLUME => Self::Volume(VolumeImage::from_meta(&m)?),
            _ => Self::Other { kind, meta },
        };
        Ok(details)
    }
}
