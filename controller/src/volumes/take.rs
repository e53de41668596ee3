//! A Backup with its volume data: plan the claims, back up each RBD image with
//! `lifeboat-volume` (a bounded number at once), then back up the objects with the volume
//! catalog in their snapshot's tree. Volumes go first so the catalog can name their
//! snapshots, and the objects are read right after the images' snapshots, as close to one
//! recovery point as separate snapshots get (group snapshots: docs/volumes.md).

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Client;
use kube::api::Api;
use lifeboat_backup::Repository;
use lifeboat_backup::progress::Progress;
use lifeboat_backup::snapshot::SnapshotDetails;
use lifeboat_volume::{VolumeBackupOptions, backup_volume};

use super::catalog::{CATALOG_PATH, CatalogEntry, VolumeCatalog, VolumeOutcome};
use super::ceph::{CephAccess, Connections};
use super::plan::{ClaimPlan, Decision, VolumeSelector, plan_volumes};
use crate::crd::VolumeSelection;
use crate::kube_objects::{
    BACKUP_TAG, BackupOutcome, BackupRequest, ObjectsError, backup_objects, for_each_page,
};

/// The snapshot tag naming the claim (`namespace/name`) a volume snapshot was taken for.
pub const CLAIM_TAG: &str = "persistentvolumeclaim";

/// How a Backup's volume data is taken.
#[derive(Debug, Clone)]
pub struct VolumeRequest {
    /// `spec.volumes` (none: every bound claim in the backup's namespaces).
    pub selection: Option<VolumeSelection>,
    /// How Ceph is reached.
    pub access: CephAccess,
    /// Volumes backed up at once (0: 4).
    pub parallelism: usize,
    /// Reader threads per volume (0: the volume crate's default).
    pub workers: usize,
}

/// Backs up the objects `request` selects and the data of the claims `volumes` selects;
/// claims whose data is not taken are in the outcome's `errors` (PartiallyFailed) unless
/// the selection left them out. `volume_progress` gives the counters of one claim
/// (`namespace/name`), for a progress line per volume.
pub async fn backup_with_volumes(
    client: &Client,
    repo: &Repository,
    request: &BackupRequest,
    volumes: &VolumeRequest,
    progress: Arc<Progress>,
    volume_progress: &(dyn Fn(&str) -> Arc<Progress> + Sync),
) -> Result<BackupOutcome, ObjectsError> {
    let selector = VolumeSelector::new(request.filter.namespaces.clone(), volumes.selection.as_ref())?;
    let plans = read_plans(client, &selector).await?;
    let catalog = take_volumes(client, repo, &request.name, &plans, volumes, volume_progress).await;
    let json = serde_json::to_vec_pretty(&catalog).map_err(|e| ObjectsError::Invalid(e.to_string()))?;
    let mut with_catalog = request.clone();
    with_catalog.files.push((CATALOG_PATH.to_string(), json));
    let mut outcome = backup_objects(client, repo, &with_catalog, progress).await?;
    outcome.errors.extend(catalog.errors());
    outcome.volumes = catalog.volumes;
    Ok(outcome)
}

/// Lists claims, volumes and classes and plans every claim in the backup's namespaces.
pub async fn read_plans(client: &Client, selector: &VolumeSelector) -> Result<Vec<ClaimPlan>, ObjectsError> {
    let claims: Vec<PersistentVolumeClaim> =
        list_all(Api::all(client.clone()), "persistentvolumeclaims").await?;
    let pvs: Vec<PersistentVolume> = list_all(Api::all(client.clone()), "persistentvolumes").await?;
    let classes: Vec<StorageClass> =
        list_all(Api::all(client.clone()), "storageclasses.storage.k8s.io").await?;
    Ok(plan_volumes(selector, &claims, &pvs, &classes))
}

pub(super) async fn list_all<K>(api: Api<K>, what: &str) -> Result<Vec<K>, ObjectsError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut out = Vec::new();
    for_each_page(&api, what, |page| out.extend(page)).await?;
    Ok(out)
}

/// Backs up every planned RBD image, `volumes.parallelism` at once, and returns the catalog
/// of every planned claim. A claim whose cluster cannot be reached or whose backup fails is
/// `Failed` with why; the others go on.
pub async fn take_volumes(
    client: &Client,
    repo: &Repository,
    backup: &str,
    plans: &[ClaimPlan],
    volumes: &VolumeRequest,
    volume_progress: &(dyn Fn(&str) -> Arc<Progress> + Sync),
) -> VolumeCatalog {
    let mut entries: Vec<CatalogEntry> = plans.iter().map(CatalogEntry::planned).collect();
    let mut jobs = Vec::new();
    if plans.iter().any(|p| matches!(p.decision, Decision::Rbd(_))) {
        match Connections::new(client, volumes.access.clone()).await {
            Ok(mut conns) => {
                for (i, plan) in plans.iter().enumerate() {
                    let Decision::Rbd(take) = &plan.decision else {
                        continue;
                    };
                    match conns
                        .get(client, &take.image.cluster_id, take.secret.as_ref())
                        .await
                    {
                        Ok(cluster) => jobs.push((i, cluster, take.image.clone())),
                        Err(e) => entries[i].reason = Some(e.0),
                    }
                }
            }
            Err(e) => {
                for entry in entries.iter_mut().filter(|e| e.outcome == VolumeOutcome::Failed) {
                    entry.reason = Some(e.0.clone());
                }
            }
        }
    }
    let parallelism = if volumes.parallelism == 0 {
        4
    } else {
        volumes.parallelism
    };
    let done: Vec<_> = futures::stream::iter(jobs)
        .map(|(i, cluster, image)| async move {
            let key = plans[i].key();
            let tags = BTreeMap::from([
                (BACKUP_TAG.to_string(), backup.to_string()),
                (CLAIM_TAG.to_string(), key.clone()),
            ]);
            let options = VolumeBackupOptions {
                tags,
                progress: volume_progress(&key),
                workers: volumes.workers,
                force_full: false,
                at: None,
            };
            (
                i,
                backup_volume(repo, &cluster, &image.pool, &image.image, &options).await,
            )
        })
        .buffer_unordered(parallelism)
        .collect()
        .await;
    for (i, result) in done {
        let entry = &mut entries[i];
        match result {
            Ok(done) => {
                let snap = &done.snapshot;
                entry.outcome = VolumeOutcome::BackedUp;
                entry.reason = done.full_reason.clone().map(|why| format!("full read: {why}"));
                entry.snapshot_id = snap.id.map(|id| id.to_hex());
                entry.time = Some(snap.time.to_rfc3339());
                if let SnapshotDetails::Volume(v) = &snap.details {
                    entry.size = Some(v.size);
                    entry.read = Some(v.read.clone());
                }
                for w in &done.warnings {
                    tracing::warn!(claim = %plans[i].key(), "{w}");
                }
            }
            Err(e) => {
                entry.reason = Some(format!(
                    "volume backup of {}/{} failed: {e}",
                    entry.pool.as_deref().unwrap_or("?"),
                    entry.image.as_deref().unwrap_or("?")
                ))
            }
        }
    }
    VolumeCatalog { volumes: entries }
}
