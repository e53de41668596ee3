//! A Backup with its volume data: plan the claims, snapshot the RBD images, then read the
//! objects while each image's data is read with `lifeboat-volume` (a bounded number at once);
//! the objects' snapshot is written last, with the volume catalog naming the volume snapshots
//! in its tree. The images reached through one connection (clusterID and Secret) are
//! snapshotted at one instant, with an RBD group snapshot (docs/volumes.md, "One recovery
//! point for several images"), and the objects are read right after: what the cluster said
//! about the volumes is of the moment their data was taken, not of the end of a long read.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::future::Either;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Client;
use kube::api::{Api, ListParams};
use lifeboat_backup::Repository;
use lifeboat_backup::blob::SnapshotId;
use lifeboat_backup::progress::Progress;
use lifeboat_backup::snapshot::Snapshot;
use lifeboat_backup::snapshot::SnapshotDetails;
use lifeboat_etcd::{EtcdEndpoints, snapshot_etcd};
use lifeboat_rbd::Cluster;
use lifeboat_volume::nfs::{NfsBackupOptions, NfsError, NfsLocation, backup_nfs};
use lifeboat_volume::{
    GroupPoint, TakenAt, VolumeBackup, VolumeBackupOptions, VolumeError, backup_volume, snapshot_together,
};
use tokio::sync::oneshot;

use super::catalog::{CATALOG_PATH, CatalogEntry, EtcdPoint, RecoveryPoint, VolumeCatalog, VolumeOutcome};
use super::ceph::{CephAccess, Connections};
use super::handle::{NfsDir, RbdImage};
use super::hooks::{HookOutcome, HookPhase, PodHooks, plan_hooks, run_hooks};
use super::plan::{ClaimPlan, Decision, SecretRef, VolumeSelector, plan_volumes};
use crate::crd::{ItemMessage, VolumeSelection};
use crate::kube_objects::{
    BACKUP_TAG, BackupOutcome, BackupRequest, LateFiles, ObjectsError, backup_objects_with_late_files,
    for_each_page,
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
    /// The Secret to read every image with, instead of each claim's (see [`ClaimPlan`]).
    pub secret: Option<SecretRef>,
    /// Volumes backed up at once (0: 4).
    pub parallelism: usize,
    /// Reader threads per volume (0: the volume crate's default).
    pub workers: usize,
}

/// Backs up the objects `request` selects and the data of the claims `volumes` selects;
/// claims whose data is not taken are in the outcome's `errors` (PartiallyFailed) unless
/// the selection left them out. `volume_progress` gives the counters of one claim
/// (`namespace/name`), for a progress line per volume. With `etcd`, a full snapshot of that
/// etcd cluster is taken too, started with the objects' read, and the catalog's recovery
/// point names it; if it fails, the backup fails and no objects snapshot is written.
pub async fn backup_with_volumes(
    client: &Client,
    repo: &Repository,
    request: &BackupRequest,
    volumes: &VolumeRequest,
    etcd: Option<&EtcdEndpoints>,
    progress: Arc<Progress>,
    volume_progress: &(dyn Fn(&str) -> Arc<Progress> + Sync),
) -> Result<BackupOutcome, ObjectsError> {
    let selector = VolumeSelector::new(request.filter.namespaces.clone(), volumes.selection.as_ref())?;
    let plans = read_plans(client, &selector).await?;
    // The volumes' snapshots, then the objects read while the volumes' data is; the catalog,
    // complete once the data is read, goes into the objects' snapshot last.
    let (snapshotted, volumes_at) = oneshot::channel::<Option<DateTime<Utc>>>();
    let (done, catalog) = oneshot::channel::<VolumeCatalog>();
    let volumes_side = async {
        let (catalog, hooks) = take_volumes(
            client,
            repo,
            &request.name,
            &plans,
            volumes,
            volume_progress,
            |at| {
                let _ = snapshotted.send(at);
            },
        )
        .await;
        // The objects' side may have failed and gone: its error is the backup's.
        let _ = done.send(catalog.clone());
        (catalog, hooks)
    };
    let (etcd_done, etcd_taken) = oneshot::channel::<Result<Snapshot, ObjectsError>>();
    let etcd_taken_point = std::sync::Mutex::new(None::<EtcdPoint>);
    let objects_side = async {
        let volumes_at = volumes_at.await.ok().flatten();
        let mut point = RecoveryPoint {
            volumes_at: volumes_at.map(|t| t.to_rfc3339()),
            objects_from: Utc::now().to_rfc3339(),
            resource_version: resource_version(client).await,
            etcd: None,
        };
        let etcd_side = async {
            if let Some(endpoints) = etcd {
                let mut tags = request.tags.clone();
                tags.insert(BACKUP_TAG.to_string(), request.name.clone());
                let taken = snapshot_etcd(repo, endpoints, tags, Arc::new(Progress::default())).await;
                if let Ok(snap) = &taken
                    && let Ok(mut taken_point) = etcd_taken_point.lock()
                {
                    *taken_point = Some(etcd_point(snap));
                }
                let _ = etcd_done.send(taken.map_err(ObjectsError::from));
            }
        };
        let late: LateFiles<'_> = Box::pin(async move {
            let mut catalog = catalog
                .await
                .map_err(|_| ObjectsError::Invalid("the volume catalog was never completed".to_string()))?;
            if etcd.is_some() {
                let snap = etcd_taken
                    .await
                    .map_err(|_| ObjectsError::Invalid("the etcd snapshot never finished".to_string()))??;
                point.etcd = Some(etcd_point(&snap));
            }
            catalog.point = Some(point);
            let json =
                serde_json::to_vec_pretty(&catalog).map_err(|e| ObjectsError::Invalid(e.to_string()))?;
            Ok(vec![(CATALOG_PATH.to_string(), json)])
        });
        let ((), outcome) = tokio::join!(
            etcd_side,
            backup_objects_with_late_files(client, repo, request, progress, late)
        );
        outcome
    };
    let ((catalog, hooks), outcome) = tokio::join!(volumes_side, objects_side);
    let etcd_point = etcd_taken_point.lock().ok().and_then(|p| p.clone());
    // An etcd snapshot whose objects' snapshot failed belongs to no recovery point.
    if let (Err(e), Some(orphan)) = (&outcome, &etcd_point)
        && let Ok(id) = orphan.snapshot_id.parse::<SnapshotId>()
        && let Err(forget) = repo.forget_snapshots(&[id]).await
    {
        tracing::warn!(snapshot = %orphan.snapshot_id, error = %forget, backup_error = %e,
            "could not forget the etcd snapshot of a failed backup; `drctl forget` it");
    }
    let mut outcome = outcome?;
    outcome.etcd = etcd_point;
    outcome.errors.extend(catalog.errors());
    outcome.errors.extend(hooks.errors);
    outcome.warnings.extend(hooks.warnings);
    outcome.volumes = catalog.volumes;
    Ok(outcome)
}

/// What the recovery point records of its etcd snapshot.
fn etcd_point(snap: &Snapshot) -> EtcdPoint {
    EtcdPoint {
        snapshot_id: snap.id.map(|i| i.to_hex()).unwrap_or_default(),
        revision: match &snap.details {
            SnapshotDetails::EtcdFull(f) => f.revision,
            _ => 0,
        },
        taken_at: snap.time.to_rfc3339(),
    }
}

/// The API server's current `resourceVersion` (a one-item list of Namespaces, read from
/// storage): on kube-apiservers storing in etcd, its revision. `None` if the list fails.
async fn resource_version(client: &Client) -> Option<String> {
    let api: Api<Namespace> = Api::all(client.clone());
    match api.list_metadata(&ListParams::default().limit(1)).await {
        Ok(list) => list.metadata.resource_version.filter(|v| !v.is_empty()),
        Err(e) => {
            tracing::warn!(error = %e, "could not read the resourceVersion of the objects' read");
            None
        }
    }
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
/// of every planned claim and what the pods' backup hooks gave. A claim whose cluster cannot
/// be reached or whose backup fails is `Failed` with why; the others go on.
///
/// Order: the pods' pre hooks; the snapshots (one group point per connection, even of one
/// image, see [`take_points`]); the post hooks; `snapshotted` (with when the snapshots were
/// all taken, `None` if no image is read); then the reads. So every snapshot is taken before
/// the post hooks and before the objects are read; only an image that cannot join a group
/// (its entry's `reason` says why) is snapshotted when its own read begins.
pub async fn take_volumes(
    client: &Client,
    repo: &Repository,
    backup: &str,
    plans: &[ClaimPlan],
    volumes: &VolumeRequest,
    volume_progress: &(dyn Fn(&str) -> Arc<Progress> + Sync),
    snapshotted: impl FnOnce(Option<DateTime<Utc>>),
) -> (VolumeCatalog, HookOutcome) {
    let mut entries: Vec<CatalogEntry> = plans.iter().map(CatalogEntry::planned).collect();
    let mut jobs = Vec::new();
    if plans.iter().any(|p| matches!(p.decision, Decision::Rbd(_))) {
        match Connections::new(client, volumes.access.clone()).await {
            Ok(mut conns) => {
                for (i, plan) in plans.iter().enumerate() {
                    let Decision::Rbd(take) = &plan.decision else {
                        continue;
                    };
                    let secret = volumes.secret.as_ref().or(take.secret.as_ref());
                    let image = conns.locate(plan.driver.as_deref().unwrap_or_default(), take.image.clone());
                    // The catalog names where the data was read (with its RADOS namespace).
                    entries[i].pool = Some(image.pool.clone());
                    match conns.get(client, &take.image.cluster_id, secret).await {
                        Ok(cluster) => jobs.push(Job {
                            index: i,
                            cluster,
                            image,
                            connection: (take.image.cluster_id.clone(), secret.cloned()),
                        }),
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
    let (hooks, mut hooked) = plan_pod_hooks(client, plans, &jobs).await;
    let pre = run_hooks(client, &hooks, HookPhase::Pre).await;
    let points = take_points(repo, &jobs, 1).await;
    let at = Utc::now();
    let post = run_hooks(client, &hooks, HookPhase::Post).await;
    snapshotted((!jobs.is_empty()).then_some(at));
    for outcome in [pre, post] {
        hooked.errors.extend(outcome.errors);
        hooked.warnings.extend(outcome.warnings);
    }
    let taken = &points;
    let nfs_jobs: Vec<(usize, NfsDir)> = plans
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match &p.decision {
            Decision::Nfs(d) => Some((i, d.clone())),
            _ => None,
        })
        .collect();
    let tags = |key: &str| {
        BTreeMap::from([
            (BACKUP_TAG.to_string(), backup.to_string()),
            (CLAIM_TAG.to_string(), key.to_string()),
        ])
    };
    // NFS directories are read live, file by file, beside the images (they have no snapshot).
    let nfs = futures::stream::iter(nfs_jobs).map(|(i, dir)| {
        Either::Right(async move {
            let key = plans[i].key();
            let options = NfsBackupOptions {
                tags: tags(&key),
                progress: volume_progress(&key),
                ..NfsBackupOptions::default()
            };
            let result = match NfsLocation::new(&dir.server, &dir.share, &dir.dir) {
                Ok(location) => backup_nfs(repo, &location, &options).await,
                Err(e) => Err(e),
            };
            (i, Taken::Nfs(result))
        })
    });
    let done: Vec<_> = futures::stream::iter(jobs)
        .map(|job| {
            Either::Left(async move {
                let Job {
                    index: i,
                    cluster,
                    image,
                    ..
                } = job;
                let key = plans[i].key();
                let options = VolumeBackupOptions {
                    tags: tags(&key),
                    progress: volume_progress(&key),
                    workers: volumes.workers,
                    force_full: false,
                    at: taken.at(i),
                };
                (
                    i,
                    Taken::Rbd(backup_volume(repo, &cluster, &image.pool, &image.image, &options).await),
                )
            })
        })
        .chain(nfs)
        .buffer_unordered(parallelism)
        .collect()
        .await;
    let notes = points.notes.clone();
    for w in points.release().await {
        tracing::warn!(backup, "{w}");
    }
    for (i, result) in done {
        let entry = &mut entries[i];
        let result = match result {
            Taken::Rbd(result) => result,
            Taken::Nfs(result) => {
                let (errors, warnings) = nfs_taken(entry, result);
                hooked.errors.extend(errors);
                hooked.warnings.extend(warnings);
                continue;
            }
        };
        match result {
            Ok(done) => {
                let snap = &done.snapshot;
                entry.outcome = VolumeOutcome::BackedUp;
                let full = done.full_reason.clone().map(|why| format!("full read: {why}"));
                entry.reason = join_reasons(notes.get(&i).cloned(), full);
                entry.group_snapshot = done.point.as_ref().map(|p| p.name.clone());
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
                let failed = format!(
                    "volume backup of {}/{} failed: {e}",
                    entry.pool.as_deref().unwrap_or("?"),
                    entry.image.as_deref().unwrap_or("?")
                );
                entry.reason = join_reasons(notes.get(&i).cloned(), Some(failed));
            }
        }
    }
    (
        VolumeCatalog {
            volumes: entries,
            point: None,
        },
        hooked,
    )
}

/// What reading one volume gave.
enum Taken {
    /// An RBD image's volume backup.
    Rbd(Result<VolumeBackup, VolumeError>),
    /// An NFS directory's files snapshot.
    Nfs(Result<Snapshot, NfsError>),
}

/// Fills in an NFS claim's entry from its backup; returns an error item when entries could
/// not be read (the snapshot is kept: it holds the rest, and the backup is PartiallyFailed)
/// and a warning for each file saved with a note (one that changed while it was read may
/// mix old and new data: NFS is read live).
fn nfs_taken(
    entry: &mut CatalogEntry,
    result: Result<Snapshot, NfsError>,
) -> (Vec<ItemMessage>, Vec<ItemMessage>) {
    let at = entry
        .nfs
        .as_ref()
        .map_or_else(|| "?".to_string(), NfsDir::display);
    let snap = match result {
        Ok(snap) => snap,
        Err(e) => {
            entry.reason = Some(format!("volume backup of NFS directory {at} failed: {e}"));
            return (Vec::new(), Vec::new());
        }
    };
    entry.outcome = VolumeOutcome::BackedUp;
    entry.reason = None;
    entry.snapshot_id = snap.id.map(|id| id.to_hex());
    entry.time = Some(snap.time.to_rfc3339());
    entry.size = Some(snap.summary.bytes);
    entry.read = Some(
        match snap.parent {
            Some(_) => "incremental",
            None => "full",
        }
        .to_string(),
    );
    let item = |message: String| ItemMessage {
        item: entry.item(),
        message,
    };
    let skipped = &snap.summary.skipped;
    let errors = skipped
        .first()
        .map(|first| {
            item(format!(
                "volume data partly backed up: {} entries of NFS directory {at} could not be read, e.g. {}: {}",
                skipped.len(),
                first.path,
                first.error
            ))
        })
        .into_iter()
        .collect();
    let warnings = snap
        .summary
        .warnings
        .iter()
        .map(|w| item(format!("NFS directory {at}: {w}")))
        .collect();
    (errors, warnings)
}

/// The backup hooks of the running pods mounting the claims of `jobs`, and an error for each
/// pod whose hook annotations cannot be read; a cluster whose pods cannot be listed is an
/// error too (the volumes are still taken).
async fn plan_pod_hooks(client: &Client, plans: &[ClaimPlan], jobs: &[Job]) -> (Vec<PodHooks>, HookOutcome) {
    let claims: BTreeSet<(String, String)> = jobs
        .iter()
        .map(|j| (plans[j.index].namespace.clone(), plans[j.index].claim.clone()))
        .collect();
    let namespaces: BTreeSet<&String> = claims.iter().map(|(ns, _)| ns).collect();
    let mut pods = Vec::new();
    let mut out = HookOutcome::default();
    for ns in namespaces {
        let api: Api<Pod> = Api::namespaced(client.clone(), ns);
        if let Err(e) = for_each_page(&api, "pods", |page| pods.extend(page)).await {
            out.errors.push(ItemMessage {
                item: format!("pods/{ns}"),
                message: format!("backup hooks not run: {e}"),
            });
        }
    }
    let (hooks, errors) = plan_hooks(&pods, &claims);
    out.errors.extend(errors);
    (hooks, out)
}

/// One RBD image to back up: the claim's index in the plans and how Ceph is reached.
struct Job {
    index: usize,
    cluster: Cluster,
    image: RbdImage,
    connection: Connection,
}

/// clusterID and Secret: images sharing them share a connection, hence a group point.
type Connection = (String, Option<SecretRef>);

/// The recovery points of one Backup's images: one per connection of two images or more.
struct Points {
    points: Vec<GroupPoint>,
    at: BTreeMap<usize, TakenAt>,
    /// Why an image of such a connection is not in its point, by claim index.
    notes: BTreeMap<usize, String>,
}

impl Points {
    fn at(&self, index: usize) -> Option<TakenAt> {
        self.at.get(&index).cloned()
    }

    /// Removes the group snapshots; returns what could not be removed.
    async fn release(self) -> Vec<String> {
        let mut warnings = Vec::new();
        for point in self.points {
            warnings.extend(point.release().await);
        }
        warnings
    }
}

/// Snapshots together the images of each connection and RADOS namespace (librbd keeps a
/// group's images in its namespace) holding `min_images` or more; an image
/// left out (or a whole connection, when the group snapshot cannot be taken) is backed up on
/// its own.
async fn take_points(repo: &Repository, jobs: &[Job], min_images: usize) -> Points {
    // librbd keeps a group and its images in one RADOS namespace (it refuses others with
    // EINVAL), so each namespace of a connection gets its own point.
    type GroupKey<'a> = (&'a Connection, Option<&'a str>);
    let mut by_connection: Vec<(GroupKey, Vec<&Job>)> = Vec::new();
    for job in jobs {
        let key = (&job.connection, lifeboat_rbd::split_pool_spec(&job.image.pool).1);
        match by_connection.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(job),
            None => by_connection.push((key, vec![job])),
        }
    }
    let mut out = Points {
        points: Vec::new(),
        at: BTreeMap::new(),
        notes: BTreeMap::new(),
    };
    for (_, members) in by_connection.into_iter().filter(|(_, m)| m.len() >= min_images) {
        let images: Vec<(String, String)> = members
            .iter()
            .map(|j| (j.image.pool.clone(), j.image.image.clone()))
            .collect();
        match snapshot_together(repo, &members[0].cluster, &images).await {
            Ok(point) => {
                for job in &members {
                    let (pool, image) = (&job.image.pool, &job.image.image);
                    match point.at(pool, image) {
                        Some(at) => {
                            out.at.insert(job.index, at);
                        }
                        None => {
                            let spec = format!("{pool}/{image} ");
                            let why = point
                                .warnings()
                                .iter()
                                .find(|w| w.starts_with(&spec))
                                .cloned()
                                .unwrap_or_else(|| format!("{pool}/{image} not in the group snapshot"));
                            out.notes.insert(job.index, why);
                        }
                    }
                }
                out.points.push(point);
            }
            Err(e) => {
                for job in &members {
                    let note = format!(
                        "{}/{} not in the group snapshot: {e}",
                        job.image.pool, job.image.image
                    );
                    out.notes.insert(job.index, note);
                }
            }
        }
    }
    for note in out.notes.values() {
        tracing::warn!("{note}");
    }
    out
}

/// `first; second`, either alone, or none.
fn join_reasons(first: Option<String>, second: Option<String>) -> Option<String> {
    match (first, second) {
        (Some(a), Some(b)) => Some(format!("{a}; {b}")),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use lifeboat_backup::snapshot::{SkippedPath, Summary};

    use super::*;

    fn entry() -> CatalogEntry {
        let mut e = CatalogEntry::planned(&ClaimPlan {
            namespace: "shop".into(),
            claim: "files".into(),
            volume: Some("pv-files".into()),
            storage_class: Some("nfs".into()),
            driver: Some("csi.lifeboat.dev".into()),
            decision: Decision::Nfs(NfsDir {
                server: "10.0.0.5".into(),
                share: "/exports".into(),
                dir: "k8s/vol-ab".into(),
            }),
        });
        e.reason = Some("not attempted".into());
        e
    }

    #[test]
    fn an_nfs_backups_skips_are_errors_and_its_notes_warnings() {
        let snap = Snapshot {
            id: None,
            time: Utc::now(),
            hostname: "h".into(),
            details: SnapshotDetails::Files(Default::default()),
            source: "nfs:10.0.0.5:/exports/k8s/vol-ab".into(),
            paths: Vec::new(),
            tags: BTreeMap::new(),
            parent: None,
            tree: Vec::new(),
            summary: Summary {
                bytes: 300,
                skipped: vec![SkippedPath {
                    path: "/fifo".into(),
                    error: "a FIFO is not backed up".into(),
                }],
                warnings: vec!["/big: changed while it was read".into()],
                ..Summary::default()
            },
        };
        let mut e = entry();
        let (errors, warnings) = nfs_taken(&mut e, Ok(snap));
        assert_eq!(
            (e.outcome, e.read.as_deref(), e.size),
            (VolumeOutcome::BackedUp, Some("full"), Some(300))
        );
        assert_eq!(e.reason, None);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].item == "persistentvolumeclaims/shop/files"
                && errors[0]
                    .message
                    .contains("1 entries of NFS directory 10.0.0.5:/exports/k8s/vol-ab")
                && errors[0].message.contains("/fifo"),
            "{errors:?}"
        );
        assert!(
            warnings.len() == 1 && warnings[0].message.contains("/big: changed while it was read"),
            "{warnings:?}"
        );
    }
}
