//! The volume catalog: for every claim a backup considered, what became of its data. It is
//! stored as `lifeboat/volumes.json` in the tree of the Backup's objects snapshot (format:
//! docs/FORMAT.md, "Volume catalog"), so the recovery point names its volume snapshots.

use std::collections::{BTreeMap, HashMap, HashSet};

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use lifeboat_backup::blob::BlobId;
use lifeboat_backup::blob::SnapshotId;
use lifeboat_backup::snapshot::Snapshot;
use lifeboat_backup::{Repository, Sink, SnapshotReader};
use serde::{Deserialize, Serialize};

use super::handle::NfsDir;
use super::plan::{ClaimPlan, Decision};
use super::restore_plan::BackupVolumes;
use crate::crd::ItemMessage;
use crate::kube_objects::{ObjectPath, ObjectsError, SNAPSHOT_KIND, chain_bases, resource_key};

/// Where the catalog lives in the objects snapshot's tree.
pub const CATALOG_PATH: &str = "lifeboat/volumes.json";

/// What became of one claim's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum VolumeOutcome {
    /// A volume snapshot holds it (`snapshotId`).
    BackedUp,
    /// Left out by the Backup's selection.
    Excluded,
    /// Selected, but Lifeboat cannot take it (another driver, unbound, NFS for now).
    NotBackedUp,
    /// Selected and attempted, but the backup of it failed (`reason`).
    Failed,
}

/// One claim in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CatalogEntry {
    /// The claim's namespace.
    pub namespace: String,
    /// The claim's name.
    pub claim: String,
    /// The PersistentVolume it was bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume: Option<String>,
    /// Its StorageClass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// The CSI driver (`in-tree:<type>` for other sources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// What became of it.
    pub outcome: VolumeOutcome,
    /// Why it was not backed up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The CSI clusterID of an RBD image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// Its pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Its image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The volume snapshot (64 hex digits) holding its data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// The volume's size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// `full` or `incremental` (what was read from the image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<String>,
    /// When the volume snapshot was taken (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// The RBD group snapshot (`pool/group@snapshot`) the image was read at: entries naming
    /// the same one share one recovery point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_snapshot: Option<String>,
    /// The lifeboat-csi NFS directory backed up, file by file (its volume snapshot is a
    /// files snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nfs: Option<NfsDir>,
}

impl CatalogEntry {
    /// The entry of a planned claim before anything is read: excluded or not backed up with
    /// why; an RBD claim starts as `Failed` until its snapshot is filled in.
    pub fn planned(plan: &ClaimPlan) -> Self {
        let attempted = (VolumeOutcome::Failed, Some("not attempted".to_string()));
        let ((outcome, reason), image, nfs) = match &plan.decision {
            Decision::Rbd(t) => (attempted, Some(&t.image), None),
            Decision::Nfs(d) => (attempted, None, Some(d.clone())),
            Decision::Excluded(why) => ((VolumeOutcome::Excluded, Some(why.clone())), None, None),
            Decision::NotTaken(why) => ((VolumeOutcome::NotBackedUp, Some(why.clone())), None, None),
        };
        Self {
            namespace: plan.namespace.clone(),
            claim: plan.claim.clone(),
            persistent_volume: plan.volume.clone(),
            storage_class: plan.storage_class.clone(),
            driver: plan.driver.clone(),
            outcome,
            reason,
            cluster_id: image.map(|i| i.cluster_id.clone()),
            pool: image.map(|i| i.pool.clone()),
            image: image.map(|i| i.image.clone()),
            snapshot_id: None,
            size: None,
            read: None,
            time: None,
            group_snapshot: None,
            nfs,
        }
    }

    /// Where its data was: `pool/image`, an NFS volume's `server:/share/dir`, or `-`.
    pub fn location(&self) -> String {
        match (&self.pool, &self.image, &self.nfs) {
            (Some(p), Some(i), _) => format!("{p}/{i}"),
            (_, _, Some(dir)) => dir.display(),
            _ => "-".to_string(),
        }
    }

    /// `persistentvolumeclaims/<namespace>/<claim>`, as object errors name items.
    pub fn item(&self) -> String {
        format!("persistentvolumeclaims/{}/{}", self.namespace, self.claim)
    }
}

/// Every claim the backup considered, sorted by namespace and name, and when its parts were
/// taken.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeCatalog {
    /// The claims.
    pub volumes: Vec<CatalogEntry>,
    /// When the volumes and the objects were taken; absent in catalogs written before it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point: Option<RecoveryPoint>,
}

/// The instants one Backup's parts were taken at: its volumes' snapshots, then its objects,
/// read right after while the volumes' data is still being read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryPoint {
    /// When every volume snapshot had been taken (RFC 3339); absent when no volume was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes_at: Option<String>,
    /// When the objects began to be read (RFC 3339).
    pub objects_from: String,
    /// The API server's `resourceVersion` of a list made then: on kube-apiservers storing in
    /// etcd, the etcd revision the objects were read from (or after); absent if the list
    /// failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// The etcd snapshot taken with them, when the Backup names an etcd cluster too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<EtcdPoint>,
}

/// The etcd snapshot of a recovery point: started right after the volumes' snapshots, beside
/// the objects' read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EtcdPoint {
    /// The etcd snapshot's id (64 hex digits), restored with `drctl etcd restore`.
    pub snapshot_id: String,
    /// The revision its database holds.
    pub revision: i64,
    /// When it was taken (RFC 3339).
    pub taken_at: String,
}

impl VolumeCatalog {
    /// Claims selected but not backed up, as errors (the backup is PartiallyFailed).
    pub fn errors(&self) -> Vec<ItemMessage> {
        self.volumes
            .iter()
            .filter(|e| matches!(e.outcome, VolumeOutcome::NotBackedUp | VolumeOutcome::Failed))
            .map(|e| ItemMessage {
                item: e.item(),
                message: format!(
                    "volume data not backed up: {}",
                    e.reason.as_deref().unwrap_or("unknown reason")
                ),
            })
            .collect()
    }
}

/// Reads the catalog out of an objects snapshot; `None` for a snapshot made without volume
/// data (before catalogs existed, or of another kind).
pub async fn read_catalog(
    repo: &Repository,
    snapshot: &Snapshot,
) -> Result<Option<VolumeCatalog>, ObjectsError> {
    Ok(read_backup_volumes_with(repo, snapshot, false)
        .await?
        .map(|b| b.catalog))
}

/// The volume and etcd snapshots an objects snapshot's catalog names that are among `listed`
/// (the repository's snapshots: what forgetting the Backup forgets with it), but for an etcd
/// snapshot a delta chain is built on ([`chain_bases`]); none for a snapshot without a
/// catalog.
pub async fn cataloged_snapshots(
    repo: &Repository,
    snapshot: &Snapshot,
    listed: &[Snapshot],
) -> Result<Vec<SnapshotId>, ObjectsError> {
    let Some(catalog) = read_catalog(repo, snapshot).await? else {
        return Ok(Vec::new());
    };
    let named: HashSet<&str> = catalog
        .volumes
        .iter()
        .filter_map(|e| e.snapshot_id.as_deref())
        .chain(
            catalog
                .point
                .iter()
                .flat_map(|p| &p.etcd)
                .map(|e| e.snapshot_id.as_str()),
        )
        .collect();
    let bases = chain_bases(listed);
    Ok(listed
        .iter()
        .filter_map(|s| s.id)
        .filter(|id| named.contains(id.to_hex().as_str()) && !bases.contains(id))
        .collect())
}

/// Reads the catalog and the claim objects of its backed-up entries (what a restore of the
/// volume data needs); `None` as for [`read_catalog`].
pub async fn read_backup_volumes(
    repo: &Repository,
    snapshot: &Snapshot,
) -> Result<Option<BackupVolumes>, ObjectsError> {
    read_backup_volumes_with(repo, snapshot, true).await
}

async fn read_backup_volumes_with(
    repo: &Repository,
    snapshot: &Snapshot,
    claims: bool,
) -> Result<Option<BackupVolumes>, ObjectsError> {
    if snapshot.kind() != SNAPSHOT_KIND {
        return Ok(None);
    }
    repo.restore(snapshot, CatalogReader { claims }).await
}

/// A sink that reads only [`CATALOG_PATH`] and, when asked, the claims it names.
struct CatalogReader {
    claims: bool,
}

impl Sink for CatalogReader {
    type Output = Option<BackupVolumes>;
    type Error = ObjectsError;

    fn purpose(&self) -> &'static str {
        "read volume catalog"
    }

    fn accepts(&self, _snapshot: &Snapshot) -> Result<(), Self::Error> {
        Ok(())
    }

    async fn restore(self, reader: &SnapshotReader<'_>) -> Result<Self::Output, Self::Error> {
        let (claims_key, volumes_key) = (
            resource_key("persistentvolumeclaims", ""),
            resource_key("persistentvolumes", ""),
        );
        let mut chunks = None;
        // Claims and volumes are few: their paths and chunks, until the catalog says which matter.
        let mut claim_blobs: HashMap<(String, String), Vec<BlobId>> = HashMap::new();
        let mut volume_blobs: HashMap<String, Vec<BlobId>> = HashMap::new();
        reader
            .for_each_node(|node| {
                if node.path == CATALOG_PATH {
                    chunks = Some(node.chunks);
                } else if self.claims
                    && let Some((key, ns, name)) = ObjectPath::split(&node.path)
                {
                    match ns {
                        Some(ns) if key == claims_key => {
                            claim_blobs.insert((ns.to_string(), name.to_string()), node.chunks);
                        }
                        None if key == volumes_key => {
                            volume_blobs.insert(name.to_string(), node.chunks);
                        }
                        _ => {}
                    }
                }
            })
            .await?;
        let Some(chunks) = chunks else {
            return Ok(None);
        };
        let bytes = reader.read_blobs(&chunks).await?;
        let catalog: VolumeCatalog = serde_json::from_slice(&bytes)
            .map_err(|e| ObjectsError::Invalid(format!("{CATALOG_PATH} is unreadable: {e}")))?;
        let (mut claims, mut volumes) = (BTreeMap::new(), BTreeMap::new());
        for entry in catalog
            .volumes
            .iter()
            .filter(|e| e.outcome == VolumeOutcome::BackedUp)
        {
            let key = (entry.namespace.clone(), entry.claim.clone());
            let Some(blobs) = claim_blobs.get(&key) else {
                continue;
            };
            let claim: PersistentVolumeClaim = serde_json::from_slice(&reader.read_blobs(blobs).await?)
                .map_err(|e| {
                    ObjectsError::Invalid(format!(
                        "the backup's claim {}/{} is unreadable: {e}",
                        key.0, key.1
                    ))
                })?;
            claims.insert(key, claim);
            // The volume only tells its filesystem: one that cannot be read tells nothing.
            if let Some(pv) = &entry.persistent_volume
                && let Some(blobs) = volume_blobs.get(pv)
                && let Ok(volume) = serde_json::from_slice(&reader.read_blobs(blobs).await?)
            {
                volumes.insert(pv.clone(), volume);
            }
        }
        Ok(Some(BackupVolumes {
            catalog,
            claims,
            volumes,
        }))
    }
}
