//! Removing what a restore wrote, once it is no longer wanted (a drill's teardown): each
//! PersistentVolume a restore made, with its RBD image or NFS directory. The driver deletes
//! volumes of reclaim policy `Delete` when their claims go, on a cluster where it runs; those
//! of policy `Retain` (ceph-csi static images, lifeboat-csi NFS directories) nobody does.
//!
//! Only a restore's own data is removed: the volume must carry the restore's
//! [`RESTORED_FROM`] mark naming the volume snapshot, its claim must be gone (nothing mounts
//! it any more), and the image's metadata or the directory's completion mark must name the
//! same snapshot. The data goes first and the PersistentVolume last, so a removal cut short
//! between the two is finished by running it again. (An RBD removal cut short inside librbd
//! can leave a name without a header, which is then kept and named: remove it with `rbd rm`.)

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::Client;
use kube::api::{Api, DeleteParams};
use lifeboat_volume::nfs::{NfsLocation, RestoredRemoval, remove_restored_dir};
use serde::{Deserialize, Serialize};

use super::ceph::{CephAccess, Connections};
use super::handle::{CsiVolume, RbdImage, classify};
use super::plan::{SecretRef, deletion_secret, secret_ref};
use super::restore::blocking;
use super::restore_plan::RESTORED_FROM;

/// A volume a restore made: its PersistentVolume and the volume snapshot written into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoredRef {
    /// The PersistentVolume's name.
    pub persistent_volume: String,
    /// The volume snapshot the restore wrote (the volume's [`RESTORED_FROM`] mark).
    pub snapshot_id: String,
}

/// What became of one restored volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum RemovalOutcome {
    /// Its data and its PersistentVolume were removed.
    Removed,
    /// Its PersistentVolume was already gone (its driver deleted it, or someone did).
    Gone,
    /// Left in place (`reason`).
    Kept,
}

/// One restored volume's removal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeRemoval {
    /// The PersistentVolume.
    pub persistent_volume: String,
    /// Where its data is (`RBD image pool/image`, `NFS directory server:/share/dir`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// What became of it.
    pub outcome: RemovalOutcome,
    /// Why it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl VolumeRemoval {
    /// `pv (data)`, or `pv (data): reason` for one kept.
    pub fn describe(&self) -> String {
        let mut out = self.persistent_volume.clone();
        if let Some(d) = &self.data {
            out.push_str(&format!(" ({d})"));
        }
        if let Some(r) = &self.reason {
            out.push_str(&format!(": {r}"));
        }
        out
    }
}

/// Removes each of `volumes` whose claim is gone: its RBD image (through `access`, with
/// `secret`'s key, else the key of the Secret the volume names for deletion, controller
/// expansion or node staging) or NFS directory, then the PersistentVolume. Never fails as a
/// whole: each entry says what became of its volume (same order).
pub async fn remove_restored_volumes(
    client: &Client,
    access: &CephAccess,
    secret: Option<&SecretRef>,
    volumes: &[RestoredRef],
) -> Vec<VolumeRemoval> {
    let mut conns: Option<Connections> = None;
    let mut out = Vec::new();
    for v in volumes {
        let mut entry = VolumeRemoval {
            persistent_volume: v.persistent_volume.clone(),
            data: None,
            outcome: RemovalOutcome::Kept,
            reason: None,
        };
        match remove_one(client, access, secret, &mut conns, v, &mut entry).await {
            Ok(outcome) => entry.outcome = outcome,
            Err(why) => entry.reason = Some(why),
        }
        out.push(entry);
    }
    out
}

async fn remove_one(
    client: &Client,
    access: &CephAccess,
    secret: Option<&SecretRef>,
    conns: &mut Option<Connections>,
    v: &RestoredRef,
    entry: &mut VolumeRemoval,
) -> Result<RemovalOutcome, String> {
    let api: Api<PersistentVolume> = Api::all(client.clone());
    let Some(pv) = api
        .get_opt(&v.persistent_volume)
        .await
        .map_err(|e| format!("read the PersistentVolume: {e}"))?
    else {
        return Ok(RemovalOutcome::Gone);
    };
    let spec = pv.spec.clone().unwrap_or_default();
    let csi = spec.csi.clone().unwrap_or_default();
    let location = classify(
        &csi.driver,
        &csi.volume_handle,
        &csi.volume_attributes.clone().unwrap_or_default(),
    );
    entry.data = match &location {
        CsiVolume::Rbd(i) => Some(format!("RBD image {}/{}", i.pool, i.image)),
        CsiVolume::Nfs(d) => Some(format!("NFS directory {}", d.display())),
        CsiVolume::Unsupported(_) => None,
    };
    let annotations = pv.metadata.annotations.clone().unwrap_or_default();
    if annotations.get(RESTORED_FROM) != Some(&v.snapshot_id) {
        return Err(format!(
            "its {RESTORED_FROM} annotation does not name volume snapshot {}: not this restore's",
            v.snapshot_id
        ));
    }
    if let Some(claim) = live_claim(client, &pv).await? {
        return Err(format!("claim {claim} still exists"));
    }
    match location {
        CsiVolume::Rbd(image) => {
            let secret = secret.cloned().or_else(|| volume_secret(&pv));
            if conns.is_none() {
                *conns = Some(Connections::new(client, access.clone()).await.map_err(|e| e.0)?);
            }
            let Some(conns) = conns.as_mut() else {
                return Err("no Ceph connection".to_string());
            };
            let image = conns.locate(&csi.driver, image);
            let cluster = conns
                .get(client, &image.cluster_id, secret.as_ref())
                .await
                .map_err(|e| e.0)?;
            remove_image(cluster, image, v.snapshot_id.clone()).await?;
        }
        CsiVolume::Nfs(dir) => {
            let location = NfsLocation::new(&dir.server, &dir.share, &dir.dir).map_err(|e| e.to_string())?;
            match remove_restored_dir(&location, &v.snapshot_id)
                .await
                .map_err(|e| e.to_string())?
            {
                RestoredRemoval::Removed | RestoredRemoval::Absent => {}
                RestoredRemoval::Unmarked => {
                    return Err("the directory has no restore mark beside it: not removed".to_string());
                }
                RestoredRemoval::OtherRestore(other) => {
                    return Err(format!(
                        "the directory's restore mark names volume snapshot {other}: not removed"
                    ));
                }
            }
        }
        CsiVolume::Unsupported(why) => return Err(why),
    }
    match api.delete(&v.persistent_volume, &DeleteParams::default()).await {
        Ok(_) => Ok(RemovalOutcome::Removed),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(RemovalOutcome::Removed),
        Err(e) => Err(format!("data removed; delete the PersistentVolume: {e}")),
    }
}

/// The claim `pv` is bound to, `namespace/name`, while it exists (the same uid, when the
/// volume recorded one); `None` once it is gone.
async fn live_claim(client: &Client, pv: &PersistentVolume) -> Result<Option<String>, String> {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return Ok(None);
    };
    let (Some(ns), Some(name)) = (&r.namespace, &r.name) else {
        return Ok(None);
    };
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let claim = api
        .get_opt(name)
        .await
        .map_err(|e| format!("read claim {ns}/{name}: {e}"))?;
    Ok(claim
        .filter(|c| r.uid.is_none() || c.metadata.uid == r.uid)
        .map(|_| format!("{ns}/{name}")))
}

/// The Secret a volume names for its deletion (external-provisioner's annotations), else for
/// controller expansion or node staging.
fn volume_secret(pv: &PersistentVolume) -> Option<SecretRef> {
    if let Some(s) = deletion_secret(pv) {
        return Some(s);
    }
    let csi = pv.spec.as_ref()?.csi.as_ref()?;
    csi.controller_expand_secret_ref
        .as_ref()
        .and_then(secret_ref)
        .or_else(|| csi.node_stage_secret_ref.as_ref().and_then(secret_ref))
}

/// Removes `image` when its [`RESTORED_FROM`] metadata names `snapshot_id`; an image already
/// gone is fine. One still mapped somewhere (watchers) is refused by librbd and kept.
async fn remove_image(
    cluster: lifeboat_rbd::Cluster,
    image: RbdImage,
    snapshot_id: String,
) -> Result<(), String> {
    let at = format!("{}/{}", image.pool, image.image);
    // The inner `Err` says why the image was kept; the outer one, that Ceph failed.
    blocking(move || {
        let pool = cluster.pool(&image.pool)?;
        if pool.image_id(&image.image)?.is_none() {
            return Ok(Ok(()));
        }
        match pool.peek_image_metadata(&image.image, RESTORED_FROM)? {
            Some(mark) if mark == snapshot_id => {}
            Some(other) => {
                return Ok(Err(format!(
                    "the image's {RESTORED_FROM} metadata names volume snapshot {other}: not removed"
                )));
            }
            None => {
                return Ok(Err(format!(
                    "the image has no {RESTORED_FROM} metadata: not removed"
                )));
            }
        }
        match pool.remove_image(&image.image) {
            Ok(()) => Ok(Ok(())),
            Err(e) if e.is_not_found() => Ok(Ok(())),
            Err(e) if e.is_busy() => Ok(Err(format!(
                "the image is still in use (mapped on a node, or has snapshots): {e}"
            ))),
            Err(e) => Err(e),
        }
    })
    .await
    .map_err(|e| format!("remove image {at}: {e}"))?
}
