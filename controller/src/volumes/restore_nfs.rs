//! Where a restore writes an NFS volume's files: a new directory on the export of the target
//! lifeboat-csi NFS StorageClass, named as the driver names the directory of a CreateVolume
//! called after the new volume (`[baseDir/]vol-<32 hex>`), and a static PersistentVolume for
//! it (reclaim policy `Retain`, handle `nfs:<server>:<share>:<dir>:retain`): the driver keeps
//! its own records of the volumes it made, which a restored directory has none of, so it is
//! never asked to delete one.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::handle::{LIFEBOAT_DRIVER, NfsDir};
use super::restore_plan::{RESTORED_FROM, VolumeRestorePlan, claim_capacity, hex16};

/// A directory to create and fill from a files volume snapshot, and the volume to create for it.
#[derive(Debug, Clone, PartialEq)]
pub struct NfsWrite {
    /// The new directory.
    pub location: NfsDir,
    /// The PersistentVolume to create once the files are written.
    pub volume: PersistentVolume,
}

/// A lifeboat-csi NFS StorageClass, as its driver reads it.
#[derive(Debug, Clone)]
pub(super) struct NfsClass<'a> {
    class: &'a StorageClass,
    server: String,
    share: String,
    base_dir: String,
    mount_options: String,
}

/// Reads where a class makes NFS volumes; `Err` says why it cannot take an NFS volume's files
/// (words after the class's name).
pub(super) fn nfs_class(class: Option<&StorageClass>) -> Result<NfsClass<'_>, String> {
    let class = class.ok_or_else(|| {
        "does not exist in this cluster: create it, or map the backup's class to one that exists".to_string()
    })?;
    let provisioner = class.provisioner.as_str();
    let params = class.parameters.clone().unwrap_or_default();
    let get = |k: &str| params.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let lifeboat = provisioner == LIFEBOAT_DRIVER || provisioner.ends_with(".lifeboat.dev");
    let nfs = get("backend") == Some("nfs") || get("pool").is_none() && get("server").is_some();
    if !lifeboat || !nfs {
        return Err(format!(
            "(provisioner {provisioner}) is not an NFS class of lifeboat-csi: an NFS volume's \
             files are restored into one (parameters backend: nfs, server, share)"
        ));
    }
    let (Some(server), Some(share)) = (get("server"), get("share")) else {
        return Err(format!(
            "(provisioner {provisioner}) has no server and share parameters"
        ));
    };
    let base_dir = get("baseDir").unwrap_or("").trim_matches('/').to_string();
    if !share.starts_with('/')
        || base_dir
            .split('/')
            .any(|c| c == "." || c == ".." || c.starts_with(".lifeboat"))
    {
        return Err(format!(
            "(provisioner {provisioner}) has a share that is not absolute or a baseDir with \
             `.`, `..` or the driver's own directories"
        ));
    }
    Ok(NfsClass {
        class,
        server: server.to_string(),
        share: share.to_string(),
        base_dir,
        mount_options: get("mountOptions").unwrap_or("").to_string(),
    })
}

/// The directory and static volume `name` for `plan`'s claim in `class`.
pub(super) fn nfs_write(
    plan: &VolumeRestorePlan,
    claim: &PersistentVolumeClaim,
    class_name: &str,
    class: &NfsClass<'_>,
    name: &str,
) -> NfsWrite {
    let leaf = format!("vol-{}", hex16(name));
    let dir = if class.base_dir.is_empty() {
        leaf
    } else {
        format!("{}/{leaf}", class.base_dir)
    };
    let location = NfsDir {
        server: class.server.clone(),
        share: class.share.clone(),
        dir,
    };
    let attributes = BTreeMap::from([
        ("backend".to_string(), "nfs".to_string()),
        ("server".to_string(), location.server.clone()),
        ("share".to_string(), location.share.clone()),
        ("subDir".to_string(), location.dir.clone()),
        ("mountOptions".to_string(), class.mount_options.clone()),
    ]);
    let spec = claim.spec.clone().unwrap_or_default();
    let volume = PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            annotations: Some(BTreeMap::from([
                (
                    "pv.kubernetes.io/provisioned-by".to_string(),
                    class.class.provisioner.clone(),
                ),
                (RESTORED_FROM.to_string(), plan.snapshot_id.clone()),
            ])),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: spec
                .access_modes
                .clone()
                .or_else(|| Some(vec!["ReadWriteMany".to_string()])),
            volume_mode: Some("Filesystem".to_string()),
            // The claim's: an NFS directory has no size of its own.
            capacity: Some(BTreeMap::from([("storage".to_string(), claim_capacity(claim))])),
            storage_class_name: Some(class_name.to_string()),
            persistent_volume_reclaim_policy: Some("Retain".to_string()),
            mount_options: class.class.mount_options.clone(),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".to_string()),
                kind: Some("PersistentVolumeClaim".to_string()),
                namespace: Some(plan.target_namespace.clone()),
                name: Some(plan.claim.clone()),
                ..ObjectReference::default()
            }),
            csi: Some(CSIPersistentVolumeSource {
                driver: class.class.provisioner.clone(),
                volume_handle: format!(
                    "nfs:{}:{}:{}:retain",
                    location.server, location.share, location.dir
                ),
                volume_attributes: Some(attributes),
                ..CSIPersistentVolumeSource::default()
            }),
            ..PersistentVolumeSpec::default()
        }),
        ..PersistentVolume::default()
    };
    NfsWrite { location, volume }
}
