//! The volume side of a drill's verification: each claim the recovery point holds data of
//! is bound on the target to a volume written from the volume snapshot the catalog names,
//! and each such RBD image or NFS directory is read back and compared with that snapshot
//! chunk for chunk (`lifeboat_volume::verify_image`, `lifeboat_volume::nfs::verify_dir`: no
//! pack is read).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::Client;
use kube::api::Api;
use lifeboat_backup::Repository;
use lifeboat_backup::snapshot::Snapshot;
use lifeboat_controller::volumes::catalog::VolumeOutcome;
use lifeboat_controller::volumes::ceph::Connections;
use lifeboat_controller::volumes::handle::NfsDir;
use lifeboat_controller::volumes::plan::deletion_secret;
use lifeboat_controller::volumes::restore_plan::RESTORED_FROM;
use lifeboat_controller::volumes::{CsiVolume, classify, read_catalog};
use lifeboat_volume::nfs::NfsLocation;

use super::data::{DataError, Verification, VolumeMover};
use crate::crd::Application;

/// Mismatches named in a [`Verification`], at most.
const NAMED: usize = 20;

/// `volumes_expected` from the recovery point's catalog and, when the run restored volume
/// data with `mover`, each claim's binding on the target and its RBD image's bytes.
pub async fn verify_volumes(
    client: &Client,
    repo: &Repository,
    snapshot: &Snapshot,
    app: &Application,
    namespace_mapping: &BTreeMap<String, String>,
    mover: Option<&VolumeMover>,
) -> Result<Verification, DataError> {
    let mut v = Verification {
        volumes_checked: mover.is_some(),
        ..Verification::default()
    };
    let catalog = read_catalog(repo, snapshot)
        .await
        .map_err(|e| DataError::Catalog(e.to_string()))?;
    let entries = catalog.map(|c| c.volumes).unwrap_or_default();
    let mut connections = None;
    for entry in entries
        .iter()
        .filter(|e| e.outcome == VolumeOutcome::BackedUp && app.namespaces.contains(&e.namespace))
    {
        let Some(wanted) = &entry.snapshot_id else {
            continue;
        };
        v.volumes_expected += 1;
        let Some(mover) = mover else { continue };
        let ns = namespace_mapping
            .get(&entry.namespace)
            .cloned()
            .unwrap_or_else(|| entry.namespace.clone());
        let key = format!("{ns}/{}", entry.claim);
        let problem = match bound_volume(client, &ns, &entry.claim).await? {
            Err(why) => Some(why),
            Ok(pv) => match (binding_problem(&pv, wanted), data_of(&pv)) {
                (Some(why), _) => Some(why),
                (None, None) => None,
                (None, Some(CsiVolume::Nfs(dir))) => check_dir(repo, wanted, &dir, &mut v).await?,
                (None, Some(CsiVolume::Unsupported(_))) => None,
                (None, Some(CsiVolume::Rbd(image))) => {
                    let conns = match &mut connections {
                        Some(c) => c,
                        None => connections.insert(
                            Connections::new(client, mover.access.clone())
                                .await
                                .map_err(|e| DataError::Volumes(e.to_string()))?,
                        ),
                    };
                    check_image(client, repo, wanted, &pv, image, mover, conns, &mut v).await?
                }
            },
        };
        match problem {
            None => v.volumes_restored += 1,
            Some(why) if v.volume_mismatches.len() < NAMED => {
                v.volume_mismatches.push(format!("{key}: {why}"))
            }
            Some(_) => {}
        }
    }
    Ok(v)
}

/// The volume `ns/claim` is bound to, or why there is none.
async fn bound_volume(
    client: &Client,
    ns: &str,
    claim: &str,
) -> Result<Result<PersistentVolume, String>, DataError> {
    let target = |path: String| move |source| DataError::Target { path, source };
    let found = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .get_opt(claim)
        .await
        .map_err(target(format!("persistentvolumeclaims/{ns}/{claim}")))?;
    let Some(pv) = found.and_then(|c| c.spec).and_then(|s| s.volume_name) else {
        return Ok(Err("the claim is missing or bound to no volume".to_string()));
    };
    Ok(Api::<PersistentVolume>::all(client.clone())
        .get_opt(&pv)
        .await
        .map_err(target(format!("persistentvolumes/{pv}")))?
        .ok_or_else(|| format!("bound to {pv}, which does not exist")))
}

fn name(pv: &PersistentVolume) -> &str {
    pv.metadata.name.as_deref().unwrap_or_default()
}

/// Why `pv` is not the volume written from volume snapshot `wanted`, if it is not.
fn binding_problem(pv: &PersistentVolume, wanted: &str) -> Option<String> {
    let from = pv
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(RESTORED_FROM));
    match from {
        Some(f) if f == wanted => None,
        Some(f) => Some(format!(
            "bound to {}, restored from volume snapshot {f:.12}, not {wanted:.12}",
            name(pv)
        )),
        None => Some(format!("bound to {}, which no restore wrote", name(pv))),
    }
}

/// Where `pv`'s data is (an RBD image of lifeboat-csi or ceph-csi, an NFS directory), if it
/// is a CSI volume.
fn data_of(pv: &PersistentVolume) -> Option<CsiVolume> {
    let csi = pv.spec.as_ref()?.csi.as_ref()?;
    let attributes = csi.volume_attributes.clone().unwrap_or_default();
    Some(classify(&csi.driver, &csi.volume_handle, &attributes))
}

/// Finds volume snapshot `wanted` in `repo`.
async fn volume_snapshot(repo: &Repository, wanted: &str) -> Result<Snapshot, DataError> {
    repo.find_snapshot(wanted)
        .await
        .map_err(|source| DataError::Repository {
            what: format!("find volume snapshot {wanted:.12}"),
            source,
        })
}

/// Reads NFS directory `dir` back and compares it with files snapshot `wanted`; counts it in
/// `v` when it matches, else says how it differs.
async fn check_dir(
    repo: &Repository,
    wanted: &str,
    dir: &NfsDir,
    v: &mut Verification,
) -> Result<Option<String>, DataError> {
    let snapshot = volume_snapshot(repo, wanted).await?;
    let location = NfsLocation::new(&dir.server, &dir.share, &dir.dir)
        .map_err(|e| DataError::Volumes(format!("NFS directory {}: {e}", dir.display())))?;
    let check = lifeboat_volume::nfs::verify_dir(repo, &snapshot, &location)
        .await
        .map_err(|e| DataError::Volumes(format!("read back NFS directory {}: {e}", dir.display())))?;
    if !check.ok() {
        return Ok(Some(format!(
            "NFS directory {}: {} of {} entries differ from the volume snapshot ({})",
            dir.display(),
            check.mismatched,
            check.entries,
            check.mismatches.join("; ")
        )));
    }
    v.volumes_data_checked += 1;
    v.volume_bytes_checked += check.bytes;
    Ok(None)
}

/// Reads `image` back and compares it with volume snapshot `wanted`; counts it in `v` when it
/// matches, else says how it differs. The key is the one the restore wrote with: the
/// mover's Secret, else the one the restore named on the volume (its deletion secret).
#[allow(clippy::too_many_arguments)]
async fn check_image(
    client: &Client,
    repo: &Repository,
    wanted: &str,
    pv: &PersistentVolume,
    image: lifeboat_controller::volumes::RbdImage,
    mover: &VolumeMover,
    connections: &mut Connections,
    v: &mut Verification,
) -> Result<Option<String>, DataError> {
    // The key the restore wrote with: the mover's, else the class's (the volume's deletion
    // secret).
    let secret = mover.secret.clone().or_else(|| deletion_secret(pv));
    // A ceph-csi image is in the RADOS namespace its cluster config gives, as restored.
    let driver = pv
        .spec
        .as_ref()
        .and_then(|s| s.csi.as_ref())
        .map(|c| c.driver.clone());
    let image = connections.locate(driver.as_deref().unwrap_or_default(), image);
    let cluster = connections
        .get(client, &image.cluster_id, secret.as_ref())
        .await
        .map_err(|e| DataError::Volumes(e.to_string()))?;
    let snapshot = volume_snapshot(repo, wanted).await?;
    let check = lifeboat_volume::verify_image(repo, &snapshot, &cluster, &image.pool, &image.image)
        .await
        .map_err(|e| {
            DataError::Volumes(format!("read back RBD image {}/{}: {e}", image.pool, image.image))
        })?;
    if let Some((is, should)) = check.size {
        return Ok(Some(format!(
            "RBD image {}/{} is {is} bytes, the volume snapshot {should}",
            image.pool, image.image
        )));
    }
    if !check.ok() {
        return Ok(Some(format!(
            "RBD image {}/{}: {} of {} chunks differ from the volume snapshot (first at byte {})",
            image.pool,
            image.image,
            check.mismatched,
            check.chunks,
            check.mismatches.first().copied().unwrap_or_default()
        )));
    }
    v.volumes_data_checked += 1;
    v.volume_bytes_checked += check.bytes;
    Ok(None)
}
