//! Where a restore puts each claim's volume data: a pure function of the backup's volume
//! catalog and claims, the restore's options, and the target cluster's StorageClasses, claims
//! and volumes (the executor in [`super::restore`] acts on it).
//!
//! Each claim the backup holds the data of gets a new RBD image, written from its volume
//! snapshot, and a PersistentVolume for that image, pre-bound to the claim (`claimRef`); the
//! claim is then restored with `spec.volumeName` naming it. Where to write comes from the
//! target StorageClass (the backup's, or its mapping) as the CSI driver would read it:
//! `clusterID`, `pool`, `dataPool`, `imageFeatures` and the provisioner Secret. Names are
//! derived from the target cluster, volume snapshot, target namespace and claim, so a restore
//! run again after a crash writes the same image and finds the volume it made, and a restore
//! into another cluster sharing the Ceph cluster never meets this one's images.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, ObjectReference, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeSpec, SecretReference,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use lifeboat_rbd::{ImageOptions, features};
use sha2::{Digest, Sha256};

use super::catalog::{VolumeCatalog, VolumeOutcome};
use super::handle::{CEPH_CSI_RBD_DRIVER, LIFEBOAT_DRIVER};
use super::plan::{PROVISIONER_SECRET_NAME, PROVISIONER_SECRET_NAMESPACE, SecretRef};
use super::restore_nfs::{NfsWrite, nfs_class, nfs_write};
use crate::kube_objects::{ObjectsError, RestoreOptions};

/// The annotation on a restored PersistentVolume, and the RBD image metadata key written once
/// its image holds all its data, naming the volume snapshot restored.
pub const RESTORED_FROM: &str = "lifeboat.dev/restored-from";
/// lifeboat-csi's image metadata key saying the driver owns a volume's image (written last,
/// `{"name": <CreateVolume name>, "params": …}`, csi/src/rbd/images.rs `COMPLETE`): with it,
/// the driver deletes, expands and snapshots the restored volume as one it made.
pub const LIFEBOAT_CSI_COMPLETE: &str = "lifeboat.csi.volume";
/// lifeboat-csi's image features when a StorageClass names none (as csi/src/rbd/params.rs).
const LIFEBOAT_FEATURES: &str = "layering,exclusive-lock,object-map,fast-diff,deep-flatten";
/// ceph-csi's: it asks StorageClasses for `imageFeatures`, and `layering` maps on every kernel.
const CEPH_CSI_FEATURES: &str = "layering";

/// The backup's side: its volume catalog and the claims it names, by (namespace, name).
#[derive(Debug, Clone, Default)]
pub struct BackupVolumes {
    /// The catalog.
    pub catalog: VolumeCatalog,
    /// The claim objects of the catalog's backed-up entries.
    pub claims: BTreeMap<(String, String), PersistentVolumeClaim>,
    /// The PersistentVolumes they were bound to, by name (their filesystem type).
    pub volumes: BTreeMap<String, PersistentVolume>,
}

/// The target cluster's side.
#[derive(Debug, Clone, Default)]
pub struct TargetCluster {
    /// What tells this cluster from others sharing a Ceph cluster (the `kube-system`
    /// Namespace's uid, as Velero and kubeadm identify clusters).
    pub uid: String,
    /// StorageClasses by name.
    pub classes: BTreeMap<String, StorageClass>,
    /// Existing claims, (namespace, name), with the PersistentVolume each names
    /// (`spec.volumeName`), if any.
    pub claims: BTreeMap<(String, String), Option<String>>,
    /// Existing PersistentVolumes by name.
    pub volumes: BTreeMap<String, PersistentVolume>,
}

/// An RBD image to create and fill from a volume snapshot, and the volume to create for it.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeWrite {
    /// The CSI `clusterID` whose monitors the image goes to.
    pub cluster_id: String,
    /// The pool.
    pub pool: String,
    /// The new image.
    pub image: String,
    /// Its features and data pool.
    pub image_options: ImageOptions,
    /// The Secret with the cephx user and key (the class's provisioner secret).
    pub secret: Option<SecretRef>,
    /// Metadata written on the image once all its data is in, in order: for lifeboat-csi
    /// [`LIFEBOAT_CSI_COMPLETE`], then [`RESTORED_FROM`], always last (the executor takes an
    /// image holding it as finished).
    pub complete: Vec<(String, String)>,
    /// The PersistentVolume to create once the data is written.
    pub volume: PersistentVolume,
}

/// What happens to one claim's data.
#[derive(Debug, Clone, PartialEq)]
pub enum RestoreAction {
    /// Write it into a new image, then create the volume.
    Write(Box<VolumeWrite>),
    /// Write its files into a new directory of an NFS export, then create the volume.
    WriteNfs(Box<NfsWrite>),
    /// An earlier run of this restore wrote it and made this volume, which no claim has bound
    /// yet: bind the claim to it.
    Reuse(String),
    /// Leave it alone (a warning); why.
    Skip(String),
    /// It cannot be restored (an error); why.
    Fail(String),
}

/// One claim whose data the backup holds.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeRestorePlan {
    /// The claim's namespace in the backup.
    pub namespace: String,
    /// Its namespace in the target cluster.
    pub target_namespace: String,
    /// The claim.
    pub claim: String,
    /// The volume snapshot holding its data.
    pub snapshot_id: String,
    /// The StorageClass it is restored into.
    pub storage_class: Option<String>,
    /// The PersistentVolume it was bound to in the backup.
    pub original_volume: Option<String>,
    /// The image's size in bytes, as backed up.
    pub size: Option<u64>,
    /// What happens.
    pub action: RestoreAction,
}

impl VolumeRestorePlan {
    /// `namespace/claim` in the target cluster.
    pub fn key(&self) -> String {
        format!("{}/{}", self.target_namespace, self.claim)
    }

    /// `persistentvolumeclaims/<namespace>/<claim>` (target namespace), as restore items are named.
    pub fn item(&self) -> String {
        format!("persistentvolumeclaims/{}", self.key())
    }
}

/// Plans every claim of `backup` the restore selects. Errors, before anything is written,
/// when a target StorageClass is missing or is not one Lifeboat can write RBD images for
/// (each such class named, with the claims needing it). A restore that leaves out claims or
/// volumes (its resource filter) writes no data.
pub fn plan_volume_restore(
    backup: &BackupVolumes,
    options: &RestoreOptions,
    target: &TargetCluster,
) -> Result<Vec<VolumeRestorePlan>, ObjectsError> {
    if !options.resources.matches("persistentvolumeclaims", "")
        || options.resources.excludes("persistentvolumes", "")
    {
        return Ok(Vec::new());
    }
    let mut plans = Vec::new();
    // Class → (why not, what it was mapped from, claims needing it).
    let mut refused: BTreeMap<String, (String, Option<String>, Vec<String>)> = BTreeMap::new();
    for entry in &backup.catalog.volumes {
        let Some(snapshot_id) = entry.snapshot_id.clone() else {
            continue;
        };
        if entry.outcome != VolumeOutcome::BackedUp || !options.namespaces.matches(&entry.namespace) {
            continue;
        }
        // A restore's label selector takes the data of the claims it restores, and no other.
        if let Some(selector) = &options.label_selector {
            let labels = backup
                .claims
                .get(&(entry.namespace.clone(), entry.claim.clone()))
                .and_then(|c| c.metadata.labels.clone())
                .unwrap_or_default();
            if !selector.matches(&labels) {
                continue;
            }
        }
        let target_namespace = options
            .namespace_mapping
            .get(&entry.namespace)
            .cloned()
            .unwrap_or_else(|| entry.namespace.clone());
        let class = entry
            .storage_class
            .as_ref()
            .map(|c| options.storage_class_mapping.get(c).unwrap_or(c).clone());
        let mut plan = VolumeRestorePlan {
            namespace: entry.namespace.clone(),
            target_namespace,
            claim: entry.claim.clone(),
            snapshot_id,
            storage_class: class.clone(),
            original_volume: entry.persistent_volume.clone(),
            size: entry.size,
            action: RestoreAction::Skip(String::new()),
        };
        let claim = backup.claims.get(&(entry.namespace.clone(), entry.claim.clone()));
        let existing = target
            .claims
            .get(&(plan.target_namespace.clone(), plan.claim.clone()));
        plan.action = match (claim, &class) {
            _ if existing.is_some_and(|bound| ours_bound(&plan, bound.as_deref(), target)) => {
                // An earlier run of this restore (a retried Restore) made both.
                RestoreAction::Reuse(Names::of_plan(&plan, &target.uid).volume)
            }
            _ if existing.is_some() => RestoreAction::Skip(
                "the claim exists in this cluster; its volume and data are left as they are".to_string(),
            ),
            (None, _) => {
                RestoreAction::Fail("the backup holds its volume data but not the claim itself".to_string())
            }
            (Some(_), None) => RestoreAction::Fail(
                "it had no StorageClass, so nothing says where its data goes here; restore its \
                 volume snapshot into an image by hand and bind a PersistentVolume to it"
                    .to_string(),
            ),
            (Some(claim), Some(class_name)) => {
                let class = target.classes.get(class_name);
                // Where the data can go: an NFS volume's files into an NFS class, an image's
                // blocks into an RBD class; `Err` says why the class cannot take it.
                let decided = if entry.nfs.is_some() {
                    nfs_class(class).map(|class| {
                        earlier_volume(&plan, target).unwrap_or_else(|| {
                            let name = Names::of_plan(&plan, &target.uid).volume;
                            RestoreAction::WriteNfs(Box::new(nfs_write(
                                &plan, claim, class_name, &class, &name,
                            )))
                        })
                    })
                } else {
                    writer_for(class).map(|writer| {
                        let fs_type = plan
                            .original_volume
                            .as_ref()
                            .and_then(|v| backup.volumes.get(v))
                            .and_then(|v| v.spec.as_ref()?.csi.as_ref()?.fs_type.clone());
                        decide(&plan, claim, class_name, &writer, fs_type, target)
                    })
                };
                decided.unwrap_or_else(|why| {
                    let from = entry.storage_class.clone().filter(|c| c != class_name);
                    refused
                        .entry(class_name.clone())
                        .or_insert_with(|| (why.clone(), from, Vec::new()))
                        .2
                        .push(plan.key());
                    RestoreAction::Fail(why)
                })
            }
        };
        plans.push(plan);
    }
    // Two claims of the backup mapped onto one claim here (`a:t,b:t`, both holding `data`):
    // one claim object can be bound to one volume only, so which data it got would be chance.
    let mut targets: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for plan in &plans {
        targets
            .entry(plan.key())
            .or_default()
            .push(format!("{}/{}", plan.namespace, plan.claim));
    }
    let collisions: Vec<String> = targets
        .iter()
        .filter(|(_, from)| from.len() > 1)
        .map(|(to, from)| format!("{} all map to claim {to}", from.join(", ")))
        .collect();
    if !collisions.is_empty() {
        return Err(ObjectsError::Invalid(format!(
            "the namespace mapping restores several claims holding volume data into one: {}; \
             map their namespaces to different ones, or restore them one at a time with \
             --include-namespaces; nothing was restored",
            collisions.join("; ")
        )));
    }
    if !refused.is_empty() {
        let each: Vec<String> = refused
            .iter()
            .map(|(class, (why, from, claims))| {
                let mapped = from
                    .as_ref()
                    .map(|f| format!(" (mapped from {f})"))
                    .unwrap_or_default();
                format!(
                    "StorageClass {class}{mapped} {why}; needed by {}",
                    claims.join(", ")
                )
            })
            .collect();
        return Err(ObjectsError::VolumeTargets(each));
    }
    Ok(plans)
}

/// How a StorageClass's volumes are made.
#[derive(Debug, Clone)]
struct Writer<'a> {
    class: &'a StorageClass,
    kind: DriverKind,
    cluster_id: String,
    pool: String,
    image_options: ImageOptions,
    features: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DriverKind {
    Lifeboat,
    CephCsi,
}

/// Whether an existing claim of `plan`'s name is bound to the volume an earlier run of this
/// restore made: it names the volume this restore would make, and that volume carries this
/// volume snapshot's [`RESTORED_FROM`].
fn ours_bound(plan: &VolumeRestorePlan, bound: Option<&str>, target: &TargetCluster) -> bool {
    let name = Names::of_plan(plan, &target.uid).volume;
    bound == Some(name.as_str())
        && target
            .volumes
            .get(&name)
            .and_then(|v| v.metadata.annotations.as_ref()?.get(RESTORED_FROM))
            .is_some_and(|s| *s == plan.snapshot_id)
}

/// Reads where a class writes RBD images; `Err` says why it cannot (words after the class's name).
fn writer_for(class: Option<&StorageClass>) -> Result<Writer<'_>, String> {
    let class = class.ok_or_else(|| {
        "does not exist in this cluster: create it, or map the backup's class to one that exists".to_string()
    })?;
    let provisioner = class.provisioner.as_str();
    let params = class.parameters.clone().unwrap_or_default();
    let get = |k: &str| params.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let kind = if provisioner == LIFEBOAT_DRIVER || provisioner.ends_with(".lifeboat.dev") {
        if get("backend") == Some("nfs") || get("pool").is_none() && get("server").is_some() {
            return Err(format!(
                "(provisioner {provisioner}) makes NFS volumes: an RBD image's data is restored into an RBD class of lifeboat-csi or ceph-csi"
            ));
        }
        DriverKind::Lifeboat
    } else if provisioner == CEPH_CSI_RBD_DRIVER || provisioner.ends_with(".rbd.csi.ceph.com") {
        if let Some(ns) = get("radosNamespace") {
            return Err(format!(
                "(provisioner {provisioner}) writes into RADOS namespace {ns}, which is not supported yet"
            ));
        }
        DriverKind::CephCsi
    } else {
        return Err(format!(
            "has provisioner {provisioner}, not an RBD driver Lifeboat writes volumes for \
             (csi.lifeboat.dev or ceph-csi's rbd.csi.ceph.com)"
        ));
    };
    if get("encrypted") == Some("true") {
        return Err(format!(
            "(provisioner {provisioner}) encrypts its volumes, which restored data is not written into yet"
        ));
    }
    let (Some(cluster_id), Some(pool)) = (get("clusterID"), get("pool")) else {
        return Err(format!(
            "(provisioner {provisioner}) has no clusterID and pool parameters"
        ));
    };
    let default = match kind {
        DriverKind::Lifeboat => LIFEBOAT_FEATURES,
        DriverKind::CephCsi => CEPH_CSI_FEATURES,
    };
    let features = get("imageFeatures").unwrap_or(default).to_string();
    let bits = features::parse(&features)
        .map_err(|e| format!("has imageFeatures that librbd does not know: {e}"))?;
    Ok(Writer {
        class,
        kind,
        cluster_id: cluster_id.to_string(),
        pool: pool.to_string(),
        image_options: ImageOptions {
            features: Some(bits),
            order: None,
            data_pool: get("dataPool").map(str::to_string),
        },
        features,
    })
}

/// What to do when the volume this restore would make exists: it is this restore's own
/// (the volume snapshot's mark) and unbound, so reuse it; or say what to delete. `None`
/// when there is none.
fn earlier_volume(plan: &VolumeRestorePlan, target: &TargetCluster) -> Option<RestoreAction> {
    let names = Names::of_plan(plan, &target.uid);
    let existing = target.volumes.get(&names.volume)?;
    let ours = existing
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(RESTORED_FROM))
        .is_some_and(|s| *s == plan.snapshot_id);
    let bound = existing
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .is_some_and(|r| r.uid.is_some());
    Some(if ours && !bound {
        RestoreAction::Reuse(names.volume)
    } else {
        RestoreAction::Fail(format!(
            "PersistentVolume {} from an earlier restore of this data exists and is bound, or \
             was bound to a claim since deleted: delete it (and, if its reclaim policy is \
             Retain, its image or directory) to restore the data again",
            names.volume
        ))
    })
}

/// The action for a claim whose class can take it and which the target does not hold,
/// given the volumes the target holds. `fs_type` is the backed-up volume's filesystem.
fn decide(
    plan: &VolumeRestorePlan,
    claim: &PersistentVolumeClaim,
    class_name: &str,
    writer: &Writer<'_>,
    fs_type: Option<String>,
    target: &TargetCluster,
) -> RestoreAction {
    if let Some(action) = earlier_volume(plan, target) {
        return action;
    }
    let names = Names::of_plan(plan, &target.uid);
    // The executor reads RESTORED_FROM as "this image is finished": it goes last, so a crash
    // between the marks leaves an image a rerun replaces, never one it refuses as finished
    // without the driver's mark.
    let mut complete = Vec::new();
    let image = match writer.kind {
        DriverKind::Lifeboat => {
            // As lifeboat-csi names the image of a CreateVolume called after the volume.
            complete.push((
                LIFEBOAT_CSI_COMPLETE.to_string(),
                serde_json::json!({
                    "name": names.volume,
                    "params": format!("restored-from={}", plan.snapshot_id),
                })
                .to_string(),
            ));
            format!("csi-vol-{}", hex16(&names.volume))
        }
        DriverKind::CephCsi => format!("csi-vol-{}", names.uuid),
    };
    complete.push((RESTORED_FROM.to_string(), plan.snapshot_id.clone()));
    let volume = persistent_volume(plan, claim, class_name, writer, fs_type, &names.volume, &image);
    let secret = writer
        .class
        .parameters
        .as_ref()
        .and_then(|p| secret_param(p, "provisioner", plan, &names.volume));
    RestoreAction::Write(Box::new(VolumeWrite {
        cluster_id: writer.cluster_id.clone(),
        pool: writer.pool.clone(),
        image,
        image_options: writer.image_options.clone(),
        secret,
        complete,
        volume,
    }))
}

/// The first 16 bytes of SHA-256 of `text`, as 32 lowercase hex digits.
pub(super) fn hex16(text: &str) -> String {
    Sha256::digest(text.as_bytes())[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The names a claim's restored data gets.
struct Names {
    /// A UUID made from the cluster, snapshot, namespace and claim.
    uuid: String,
    /// `pvc-<uuid>`, as external-provisioner names volumes.
    volume: String,
}

impl Names {
    /// The names of `plan`'s claim restored into the cluster `cluster`.
    fn of_plan(plan: &VolumeRestorePlan, cluster: &str) -> Self {
        Self::of(cluster, &plan.snapshot_id, &plan.target_namespace, &plan.claim)
    }

    fn of(cluster: &str, snapshot_id: &str, namespace: &str, claim: &str) -> Self {
        let h = hex16(&format!(
            "lifeboat restore\0{cluster}\0{snapshot_id}\0{namespace}\0{claim}"
        ));
        let uuid = format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        );
        Self {
            volume: format!("pvc-{uuid}"),
            uuid,
        }
    }
}

/// A CSI secret the class names by `csi.storage.k8s.io/<which>-secret-name`/`-namespace`,
/// with external-provisioner's templates expanded.
fn secret_param(
    params: &BTreeMap<String, String>,
    which: &str,
    plan: &VolumeRestorePlan,
    volume: &str,
) -> Option<SecretRef> {
    let expand = |s: &str| {
        s.replace("${pvc.namespace}", &plan.target_namespace)
            .replace("${pvc.name}", &plan.claim)
            .replace("${pv.name}", volume)
    };
    let (name, namespace) = if which == "provisioner" {
        (
            PROVISIONER_SECRET_NAME.to_string(),
            PROVISIONER_SECRET_NAMESPACE.to_string(),
        )
    } else {
        (
            format!("csi.storage.k8s.io/{which}-secret-name"),
            format!("csi.storage.k8s.io/{which}-secret-namespace"),
        )
    };
    Some(SecretRef {
        namespace: expand(params.get(&namespace)?),
        name: expand(params.get(&name)?),
    })
}

fn secret_reference(r: Option<SecretRef>) -> Option<SecretReference> {
    r.map(|r| SecretReference {
        name: Some(r.name),
        namespace: Some(r.namespace),
    })
}

/// The PersistentVolume of a restored image, as the class's driver would have made it, bound
/// ahead to the claim in its target namespace.
fn persistent_volume(
    plan: &VolumeRestorePlan,
    claim: &PersistentVolumeClaim,
    class_name: &str,
    writer: &Writer<'_>,
    fs_type: Option<String>,
    name: &str,
    image: &str,
) -> PersistentVolume {
    let class = writer.class;
    let params = class.parameters.clone().unwrap_or_default();
    let get = |k: &str| params.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let spec = claim.spec.clone().unwrap_or_default();
    // The filesystem the data holds, as the backed-up volume said; else the class's.
    let fs_type = fs_type.filter(|f| !f.is_empty()).unwrap_or_else(|| {
        get("csi.storage.k8s.io/fstype")
            .or(get("fsType"))
            .unwrap_or("ext4")
            .to_string()
    });
    let mut attributes = BTreeMap::from([
        ("clusterID".to_string(), writer.cluster_id.clone()),
        ("pool".to_string(), writer.pool.clone()),
    ]);
    let (handle, reclaim) = match writer.kind {
        DriverKind::Lifeboat => {
            attributes.insert("backend".to_string(), "rbd".to_string());
            attributes.insert("imageName".to_string(), image.to_string());
            attributes.insert("fsType".to_string(), fs_type.clone());
            attributes.insert(
                "mountOptions".to_string(),
                get("mountOptions").unwrap_or("").to_string(),
            );
            (
                format!("rbd:{}:{}:{image}", writer.cluster_id, writer.pool),
                class
                    .reclaim_policy
                    .clone()
                    .unwrap_or_else(|| "Delete".to_string()),
            )
        }
        // ceph-csi's static volumes (docs/static-pvc.md): the handle is the image, and the
        // driver never deletes them, so the volume is Retain.
        DriverKind::CephCsi => {
            attributes.insert("staticVolume".to_string(), "true".to_string());
            attributes.insert("imageFeatures".to_string(), writer.features.clone());
            (image.to_string(), "Retain".to_string())
        }
    };
    let mut annotations = BTreeMap::from([
        (
            "pv.kubernetes.io/provisioned-by".to_string(),
            class.provisioner.clone(),
        ),
        (RESTORED_FROM.to_string(), plan.snapshot_id.clone()),
    ]);
    if let Some(s) = secret_param(&params, "provisioner", plan, name) {
        annotations.insert(
            "volume.kubernetes.io/provisioner-deletion-secret-name".to_string(),
            s.name,
        );
        annotations.insert(
            "volume.kubernetes.io/provisioner-deletion-secret-namespace".to_string(),
            s.namespace,
        );
    }
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: spec
                .access_modes
                .clone()
                .or_else(|| Some(vec!["ReadWriteOnce".to_string()])),
            volume_mode: spec.volume_mode.clone(),
            capacity: Some(BTreeMap::from([(
                "storage".to_string(),
                capacity_of(plan, claim),
            )])),
            storage_class_name: Some(class_name.to_string()),
            persistent_volume_reclaim_policy: Some(reclaim),
            mount_options: class.mount_options.clone(),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".to_string()),
                kind: Some("PersistentVolumeClaim".to_string()),
                namespace: Some(plan.target_namespace.clone()),
                name: Some(plan.claim.clone()),
                ..ObjectReference::default()
            }),
            csi: Some(CSIPersistentVolumeSource {
                driver: class.provisioner.clone(),
                volume_handle: handle,
                fs_type: (spec.volume_mode.as_deref() != Some("Block")).then_some(fs_type),
                volume_attributes: Some(attributes),
                node_stage_secret_ref: secret_reference(secret_param(&params, "node-stage", plan, name)),
                node_publish_secret_ref: secret_reference(secret_param(&params, "node-publish", plan, name)),
                controller_publish_secret_ref: secret_reference(secret_param(
                    &params,
                    "controller-publish",
                    plan,
                    name,
                )),
                controller_expand_secret_ref: secret_reference(secret_param(
                    &params,
                    "controller-expand",
                    plan,
                    name,
                )),
                ..CSIPersistentVolumeSource::default()
            }),
            ..PersistentVolumeSpec::default()
        }),
        ..PersistentVolume::default()
    }
}

/// The volume's capacity: the image's size as backed up (what the restored image has), else
/// what the claim had bound then (`status.capacity`), else its request.
fn capacity_of(plan: &VolumeRestorePlan, claim: &PersistentVolumeClaim) -> Quantity {
    match plan.size {
        Some(size) => Quantity(size.to_string()),
        None => claim_capacity(claim),
    }
}

/// What the claim had bound (`status.capacity`), else its request, else 1Gi.
pub(super) fn claim_capacity(claim: &PersistentVolumeClaim) -> Quantity {
    let bound = claim
        .status
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"));
    let requested = claim
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"));
    bound
        .or(requested)
        .cloned()
        .unwrap_or_else(|| Quantity("1Gi".to_string()))
}

#[cfg(test)]
#[path = "restore_plan_tests.rs"]
mod tests;
