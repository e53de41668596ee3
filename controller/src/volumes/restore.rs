//! A restore with its volume data: read the backup's volume catalog and claims, plan where
//! each claim's data goes ([`plan_volume_restore`], which refuses before anything is written
//! when a target StorageClass is missing), write each RBD image or NFS directory with
//! `lifeboat-volume` (a bounded number at once) and create its PersistentVolume, then restore the objects with each
//! claim bound to its new volume. Volumes go first, so a workload restored with its claim
//! starts on its data.

use std::sync::Arc;

use futures::StreamExt;
use futures::future::Either;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Client;
use kube::api::{Api, PostParams};
use lifeboat_backup::Repository;
use lifeboat_backup::progress::Progress;
use lifeboat_backup::snapshot::Snapshot;
use lifeboat_rbd::Cluster;
use lifeboat_volume::nfs::{NfsLocation, read_restore_mark, restore_nfs, write_restore_mark};
use lifeboat_volume::{RbdImageSink, restore_volume};
use serde::{Deserialize, Serialize};

use super::catalog::read_backup_volumes;
use super::ceph::{CephAccess, Connections};
use super::handle::is_ceph_csi_rbd;
use super::plan::SecretRef;
use super::restore_nfs::NfsWrite;
use super::restore_plan::{
    RESTORED_FROM, RestoreAction, TargetCluster, VolumeRestorePlan, VolumeWrite, plan_volume_restore,
};
use super::take::list_all;
use crate::crd::ItemMessage;
use crate::kube_objects::restore::objects_plan::check_options;
use crate::kube_objects::restore::resolve_resource_names;
use crate::kube_objects::{ObjectsError, RestoreOptions, RestoreOutcome, VolumeBinding, restore_objects};

/// How a restore's volume data is written.
#[derive(Debug, Clone)]
pub struct VolumeRestoreRequest {
    /// Restore volume data at all (`spec.restorePVs`); off, claims come back as objects only.
    pub enabled: bool,
    /// How Ceph is reached.
    pub access: CephAccess,
    /// The Secret to write every image with, instead of each target class's provisioner Secret.
    pub secret: Option<SecretRef>,
    /// Volumes written at once (0: 4).
    pub parallelism: usize,
    /// Writer threads per volume (0: the volume crate's default).
    pub workers: usize,
}

/// What became of one claim's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum RestoredOutcome {
    /// Written into a new image, with a PersistentVolume bound to the claim.
    Restored,
    /// An earlier run of this restore had written it; the claim is bound to that volume.
    Reused,
    /// A dry run: it would be written.
    Planned,
    /// Left alone (`reason`), e.g. the claim exists.
    Skipped,
    /// Not restored (`reason`); the claim is restored as an object, bound as in the backup.
    Failed,
}

/// One claim's data in a restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoredVolume {
    /// The claim's namespace in this cluster.
    pub namespace: String,
    /// The claim.
    pub claim: String,
    /// What became of its data.
    pub outcome: RestoredOutcome,
    /// The volume snapshot it comes from.
    pub snapshot_id: String,
    /// The StorageClass it went into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// Its new PersistentVolume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume: Option<String>,
    /// The pool of its new image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Its new image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Its new NFS directory (`server:/share/dir`), for an NFS volume's files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nfs: Option<String>,
    /// Bytes written (holes are not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written: Option<u64>,
    /// Why it was skipped or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What was restored with a note (an NFS server refusing an owner: root squashing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl RestoredVolume {
    fn of(plan: &VolumeRestorePlan, outcome: RestoredOutcome) -> Self {
        let write = match &plan.action {
            RestoreAction::Write(w) => Some(w),
            _ => None,
        };
        let reason = match &plan.action {
            RestoreAction::Skip(why) | RestoreAction::Fail(why) => Some(why.clone()),
            _ => None,
        };
        Self {
            namespace: plan.target_namespace.clone(),
            claim: plan.claim.clone(),
            outcome,
            snapshot_id: plan.snapshot_id.clone(),
            storage_class: plan.storage_class.clone(),
            persistent_volume: match &plan.action {
                RestoreAction::Write(w) => w.volume.metadata.name.clone(),
                RestoreAction::WriteNfs(w) => w.volume.metadata.name.clone(),
                RestoreAction::Reuse(v) => Some(v.clone()),
                _ => None,
            },
            pool: write.map(|w| w.pool.clone()),
            image: write.map(|w| w.image.clone()),
            nfs: match &plan.action {
                RestoreAction::WriteNfs(w) => Some(w.location.display()),
                _ => None,
            },
            written: None,
            reason,
            warnings: Vec::new(),
        }
    }
}

/// Restores `snapshot`'s objects and, unless `volumes.enabled` is off, its claims' volume
/// data first. `volume_progress` gives the counters of one claim (`namespace/name` in this
/// cluster), for a progress line per volume. Claims whose data could not be written are in
/// the outcome's errors and come back bound as in the backup.
pub async fn restore_with_volumes(
    client: &Client,
    repo: &Repository,
    snapshot: &Snapshot,
    options: &RestoreOptions,
    volumes: &VolumeRestoreRequest,
    progress: Arc<Progress>,
    volume_progress: &(dyn Fn(&str) -> Arc<Progress> + Sync),
) -> Result<RestoreOutcome, ObjectsError> {
    let backup = match volumes.enabled {
        true => read_backup_volumes(repo, snapshot).await?,
        false => None,
    };
    let Some(backup) = backup else {
        return restore_objects(client, repo, snapshot, options, progress).await;
    };
    // What would stop the objects restore stops it before any data is written.
    check_options(options)?;
    // `--include-resources pvc` selects claims here as it does for the objects.
    let resolved = resolve_resource_names(client, repo, snapshot, options).await?;
    let options = &resolved;
    let target = read_target(client).await?;
    let plans = plan_volume_restore(&backup, options, &target)?;
    let entries = if options.dry_run {
        plans
            .iter()
            .map(|p| match &p.action {
                RestoreAction::Write(_) | RestoreAction::WriteNfs(_) => {
                    RestoredVolume::of(p, RestoredOutcome::Planned)
                }
                _ => RestoredVolume::of(p, outcome_of(&p.action)),
            })
            .collect()
    } else {
        write_volumes(client, repo, &plans, volumes, volume_progress).await
    };
    // Every claim handled here is bound to its new volume or withheld, and never comes back
    // bound to its backed-up volume: in a cluster sharing the Ceph cluster, that volume names
    // the production image (which deleting the claim would delete).
    let mut with_bindings = options.clone();
    for (plan, entry) in plans.iter().zip(&entries) {
        let written = matches!(
            entry.outcome,
            RestoredOutcome::Restored | RestoredOutcome::Reused | RestoredOutcome::Planned
        );
        with_bindings.volume_bindings.insert(
            (plan.namespace.clone(), plan.claim.clone()),
            VolumeBinding {
                volume: entry.persistent_volume.clone().filter(|_| written),
                replaces: plan.original_volume.clone(),
            },
        );
    }
    let mut outcome = restore_objects(client, repo, snapshot, &with_bindings, progress).await?;
    for (plan, entry) in plans.iter().zip(&entries) {
        let message = |why: &Option<String>| ItemMessage {
            item: plan.item(),
            message: format!(
                "volume data not restored: {}",
                why.as_deref().unwrap_or("unknown reason")
            ),
        };
        match entry.outcome {
            RestoredOutcome::Failed => outcome.errors.push(message(&entry.reason)),
            RestoredOutcome::Skipped => outcome.warnings.push(message(&entry.reason)),
            RestoredOutcome::Planned => outcome.changes.push(format!(
                "write volume data of {} from volume snapshot {} into {} (StorageClass {}), \
                 create persistentvolumes/{}",
                plan.key(),
                plan.snapshot_id,
                entry.nfs.clone().unwrap_or_else(|| format!(
                    "{}/{}",
                    entry.pool.as_deref().unwrap_or("?"),
                    entry.image.as_deref().unwrap_or("?")
                )),
                entry.storage_class.as_deref().unwrap_or("?"),
                entry.persistent_volume.as_deref().unwrap_or("?"),
            )),
            RestoredOutcome::Restored => {
                outcome
                    .warnings
                    .extend(entry.warnings.iter().map(|w| ItemMessage {
                        item: plan.item(),
                        message: format!("volume data restored with a note: {w}"),
                    }));
            }
            RestoredOutcome::Reused => {}
        }
    }
    outcome.changes.sort();
    outcome.volumes = entries;
    Ok(outcome)
}

fn outcome_of(action: &RestoreAction) -> RestoredOutcome {
    match action {
        RestoreAction::Write(_) | RestoreAction::WriteNfs(_) => RestoredOutcome::Restored,
        RestoreAction::Reuse(_) => RestoredOutcome::Reused,
        RestoreAction::Skip(_) => RestoredOutcome::Skipped,
        RestoreAction::Fail(_) => RestoredOutcome::Failed,
    }
}

/// The target cluster's StorageClasses, claims and volumes.
async fn read_target(client: &Client) -> Result<TargetCluster, ObjectsError> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let uid = namespaces
        .get_opt("kube-system")
        .await
        .map_err(|e| ObjectsError::kube("read Namespace kube-system", e))?
        .and_then(|n| n.metadata.uid)
        .unwrap_or_default();
    let classes: Vec<StorageClass> =
        list_all(Api::all(client.clone()), "storageclasses.storage.k8s.io").await?;
    let claims: Vec<PersistentVolumeClaim> =
        list_all(Api::all(client.clone()), "persistentvolumeclaims").await?;
    let volumes: Vec<PersistentVolume> = list_all(Api::all(client.clone()), "persistentvolumes").await?;
    Ok(TargetCluster {
        uid,
        classes: classes
            .into_iter()
            .filter_map(|c| Some((c.metadata.name.clone()?, c)))
            .collect(),
        claims: claims
            .into_iter()
            .filter_map(|c| {
                let bound = c.spec.and_then(|s| s.volume_name).filter(|v| !v.is_empty());
                Some(((c.metadata.namespace?, c.metadata.name?), bound))
            })
            .collect(),
        volumes: volumes
            .into_iter()
            .filter_map(|v| Some((v.metadata.name.clone()?, v)))
            .collect(),
    })
}

/// Writes every planned image, `volumes.parallelism` at once, and creates its volume; the
/// entries say what became of each plan (same order).
async fn write_volumes(
    client: &Client,
    repo: &Repository,
    plans: &[VolumeRestorePlan],
    volumes: &VolumeRestoreRequest,
    volume_progress: &(dyn Fn(&str) -> Arc<Progress> + Sync),
) -> Vec<RestoredVolume> {
    let mut entries: Vec<RestoredVolume> = plans
        .iter()
        .map(|p| RestoredVolume::of(p, outcome_of(&p.action)))
        .collect();
    let fail = |entry: &mut RestoredVolume, why: String| {
        entry.outcome = RestoredOutcome::Failed;
        entry.reason = Some(why);
    };
    let mut jobs = Vec::new();
    if plans.iter().any(|p| matches!(p.action, RestoreAction::Write(_))) {
        match Connections::new(client, volumes.access.clone()).await {
            Ok(mut conns) => {
                for (i, plan) in plans.iter().enumerate() {
                    let RestoreAction::Write(write) = &plan.action else {
                        continue;
                    };
                    let secret = volumes.secret.as_ref().or(write.secret.as_ref());
                    // ceph-csi places images in the RADOS namespace its config gives the
                    // cluster, and looks for them there: write them there.
                    let mut write = write.clone();
                    let driver = write
                        .volume
                        .spec
                        .as_ref()
                        .and_then(|s| s.csi.as_ref())
                        .map(|c| c.driver.as_str());
                    if driver.is_some_and(is_ceph_csi_rbd) {
                        write.pool = conns.ceph_csi_pool(&write.cluster_id, &write.pool);
                        entries[i].pool = Some(write.pool.clone());
                    }
                    match conns.get(client, &write.cluster_id, secret).await {
                        Ok(cluster) => jobs.push((i, cluster, write)),
                        Err(e) => fail(&mut entries[i], e.0),
                    }
                }
            }
            Err(e) => {
                for (i, plan) in plans.iter().enumerate() {
                    if matches!(plan.action, RestoreAction::Write(_)) {
                        fail(&mut entries[i], e.0.clone());
                    }
                }
            }
        }
    }
    let parallelism = if volumes.parallelism == 0 {
        4
    } else {
        volumes.parallelism
    };
    // NFS volumes' files, beside the images.
    let nfs = futures::stream::iter(
        plans
            .iter()
            .enumerate()
            .filter_map(|(i, plan)| match &plan.action {
                RestoreAction::WriteNfs(w) => Some((i, w)),
                _ => None,
            }),
    )
    .map(|(i, write)| {
        Either::Right(async move {
            let plan = &plans[i];
            let result = write_nfs(client, repo, plan, write, volume_progress(&plan.key())).await;
            (i, result)
        })
    });
    let done: Vec<_> = futures::stream::iter(jobs)
        .map(|(i, cluster, write)| {
            Either::Left(async move {
                let plan = &plans[i];
                let result = write_one(
                    client,
                    repo,
                    plan,
                    cluster,
                    &write,
                    volumes,
                    volume_progress(&plan.key()),
                )
                .await;
                (i, result)
            })
        })
        .chain(nfs)
        .buffer_unordered(parallelism)
        .collect()
        .await;
    for (i, result) in done {
        match result {
            Ok((written, warnings)) => {
                entries[i].written = Some(written);
                entries[i].warnings = warnings;
            }
            Err(why) => fail(&mut entries[i], why),
        }
    }
    entries
}

/// Writes one image, marks it complete, and creates its volume; the image is removed again
/// when the volume is surely not made. Returns the bytes written (and no notes).
async fn write_one(
    client: &Client,
    repo: &Repository,
    plan: &VolumeRestorePlan,
    cluster: Cluster,
    write: &VolumeWrite,
    volumes: &VolumeRestoreRequest,
    progress: Arc<Progress>,
) -> Result<(u64, Vec<String>), String> {
    let at = format!("{}/{}", write.pool, write.image);
    let snapshot = repo
        .find_snapshot(&plan.snapshot_id)
        .await
        .map_err(|e| format!("volume snapshot {}: {e}", plan.snapshot_id))?;
    // The name is this restore's own (the cluster, snapshot, namespace and claim), and no
    // volume names it (the plan checked). An image there without the completion mark is an
    // earlier run's, cut short, and is replaced; one with it is finished data someone may
    // have used since (its volume deleted, the image kept), and is left alone.
    let finished = {
        let (cluster, pool, image) = (cluster.clone(), write.pool.clone(), write.image.clone());
        let found = tokio::task::spawn_blocking(move || {
            let mark = cluster.pool(&pool)?.peek_image_metadata(&image, RESTORED_FROM)?;
            Ok::<_, lifeboat_rbd::RbdError>(mark.is_some())
        })
        .await
        .map_err(|e| format!("look for an earlier {at}: task: {e}"))?;
        match found {
            Ok(f) => f,
            Err(e) if e.is_not_found() => return Err(missing_pool(plan, write)),
            Err(e) => return Err(format!("look for an earlier {at}: {e}")),
        }
    };
    if finished {
        return Err(format!(
            "image {at} exists, holding an earlier restore of this data that no PersistentVolume \
             names: remove it to restore again, or bind a PersistentVolume to it by hand"
        ));
    }
    let sink = RbdImageSink {
        cluster: cluster.clone(),
        pool: write.pool.clone(),
        image: write.image.clone(),
        force: true,
        options: write.image_options.clone(),
        workers: volumes.workers,
        progress,
    };
    let done = restore_volume(repo, &snapshot, sink)
        .await
        .map_err(|e| format!("writing {at}: {e}"))?;
    let marked = {
        let (cluster, pool, image) = (cluster.clone(), write.pool.clone(), write.image.clone());
        let marks = write.complete.clone();
        blocking(move || {
            let pool = cluster.pool(&pool)?;
            let mut img = pool.open(&image, None)?;
            for (key, value) in &marks {
                img.set_metadata(key, value)?;
            }
            Ok(())
        })
        .await
    };
    if let Err(e) = marked {
        remove_image(&cluster, write).await;
        return Err(format!("marking {at} complete: {e}"));
    }
    match create_volume(client, plan, &write.volume).await {
        Ok(()) => Ok((done.written, Vec::new())),
        Err(Uncreated::Surely(why)) => {
            remove_image(&cluster, write).await;
            Err(why)
        }
        // Unknown: the image stays, marked, and a rerun says what to do with it.
        Err(Uncreated::Unknown(why)) => Err(why),
    }
}

/// Why a PersistentVolume was not created.
enum Uncreated {
    /// It surely was not (what was written for it may be removed).
    Surely(String),
    /// Whether it was is unknown.
    Unknown(String),
}

/// Creates `volume`; a create that failed but happened all the same (a 409 on a retry, a
/// timeout) is found by its [`RESTORED_FROM`] mark.
async fn create_volume(
    client: &Client,
    plan: &VolumeRestorePlan,
    volume: &PersistentVolume,
) -> Result<(), Uncreated> {
    let api: Api<PersistentVolume> = Api::all(client.clone());
    let name = volume.metadata.name.clone().unwrap_or_default();
    let Err(e) = api.create(&PostParams::default(), volume).await else {
        return Ok(());
    };
    match api.get_opt(&name).await {
        Ok(Some(v))
            if v.metadata.annotations.as_ref().and_then(|a| a.get(RESTORED_FROM))
                == Some(&plan.snapshot_id) =>
        {
            Ok(())
        }
        Ok(Some(_)) => Err(Uncreated::Surely(format!(
            "PersistentVolume {name} exists and is not this restore's"
        ))),
        Ok(None) => Err(Uncreated::Surely(format!("create PersistentVolume {name}: {e}"))),
        Err(read) => Err(Uncreated::Unknown(format!(
            "create PersistentVolume {name}: {e}; whether it exists is unknown ({read})"
        ))),
    }
}

/// Writes an NFS volume's files into its new directory (made here; a rerun after a crash
/// writes them again over an earlier run's), marks it complete, then creates its volume. A
/// directory whose files could not all be written gets no volume and no mark, and is left for
/// the rerun; one with the mark is refused. Returns the bytes written and the engine's
/// notes (attributes the server refused).
async fn write_nfs(
    client: &Client,
    repo: &Repository,
    plan: &VolumeRestorePlan,
    write: &NfsWrite,
    progress: Arc<Progress>,
) -> Result<(u64, Vec<String>), String> {
    let at = write.location.display();
    let snapshot = repo
        .find_snapshot(&plan.snapshot_id)
        .await
        .map_err(|e| format!("volume snapshot {}: {e}", plan.snapshot_id))?;
    let dir = &write.location;
    let location = NfsLocation::new(&dir.server, &dir.share, &dir.dir).map_err(|e| format!("{at}: {e}"))?;
    // As for images: a directory holding the mark is finished data someone may have used
    // since (its volume deleted, the directory kept), and is never written over.
    let mark = read_restore_mark(&location)
        .await
        .map_err(|e| format!("look for an earlier {at}: {e}"))?;
    if mark.is_some() {
        return Err(format!(
            "NFS directory {at} exists, holding an earlier restore of this data that no \
             PersistentVolume names: remove it (and the file .{}.lifeboat-restored-from beside \
             it) to restore again, or bind a PersistentVolume to it by hand",
            dir.dir.rsplit('/').next().unwrap_or(&dir.dir)
        ));
    }
    let report = restore_nfs(repo, &snapshot, &location, progress)
        .await
        .map_err(|e| format!("writing NFS directory {at}: {e}"))?;
    if let Some(first) = report.errors.first() {
        return Err(format!(
            "writing NFS directory {at}: {} entries could not be written, e.g. {first}",
            report.errors.len()
        ));
    }
    write_restore_mark(&location, &plan.snapshot_id)
        .await
        .map_err(|e| format!("marking {at} complete: {e}"))?;
    match create_volume(client, plan, &write.volume).await {
        Ok(()) => Ok((report.bytes, report.warnings)),
        Err(Uncreated::Surely(why) | Uncreated::Unknown(why)) => Err(why),
    }
}

/// What to say when the pool a StorageClass names is not in its Ceph cluster.
fn missing_pool(plan: &VolumeRestorePlan, write: &VolumeWrite) -> String {
    format!(
        "pool {} does not exist in Ceph cluster {}, which StorageClass {} names: create it \
         (`ceph osd pool create {0}` then `rbd pool init {0}`) or map the claim's class to one \
         whose pool exists",
        write.pool,
        write.cluster_id,
        plan.storage_class.as_deref().unwrap_or("(none)")
    )
}

async fn remove_image(cluster: &Cluster, write: &VolumeWrite) {
    let (cluster, pool, image) = (cluster.clone(), write.pool.clone(), write.image.clone());
    if let Err(e) = blocking(move || cluster.pool(&pool)?.remove_image(&image)).await {
        tracing::warn!(pool = %write.pool, image = %write.image, error = %e, "could not remove a restored image whose volume was not made");
    }
}

/// Runs librbd calls off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, lifeboat_rbd::RbdError> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(format!("task: {e}")),
    }
}
