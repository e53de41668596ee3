//! Which claims' volume data a backup takes, and why the others are not taken: a pure
//! function of the Backup's selection and the PersistentVolumeClaims, PersistentVolumes and
//! StorageClasses read from the cluster (the executor in [`super::take`] acts on it).

use std::collections::{BTreeMap, HashMap};

use globset::GlobSet;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, SecretReference};
use k8s_openapi::api::storage::v1::StorageClass;
use serde::Serialize;

use super::handle::{CsiVolume, NfsDir, RbdImage, classify};
use crate::crd::VolumeSelection;
use crate::kube_objects::filter::globs;
use crate::kube_objects::{NamespaceFilter, ObjectsError};
use crate::label_selector::LabelSelector;

/// The StorageClass parameters naming the Secret CSI CreateVolume gets (external-provisioner).
pub const PROVISIONER_SECRET_NAME: &str = "csi.storage.k8s.io/provisioner-secret-name";
/// … and its namespace.
pub const PROVISIONER_SECRET_NAMESPACE: &str = "csi.storage.k8s.io/provisioner-secret-namespace";

/// Include/exclude globs over names, errors naming `spec.volumes.included<What>` or
/// `…excluded<What>`.
#[derive(Debug, Clone, Default)]
struct NameFilter {
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
}

impl NameFilter {
    fn new(what: &str, include: &[String], exclude: &[String]) -> Result<Self, ObjectsError> {
        Ok(Self {
            include: globs(&format!("spec.volumes.included{what}"), include)?,
            exclude: globs(&format!("spec.volumes.excluded{what}"), exclude)?,
        })
    }

    fn matches(&self, name: &str) -> bool {
        self.include.as_ref().is_none_or(|g| g.is_match(name))
            && !self.exclude.as_ref().is_some_and(|g| g.is_match(name))
    }
}

/// A Backup's volume selection, compiled.
#[derive(Debug, Clone)]
pub struct VolumeSelector {
    enabled: bool,
    /// The backup's own namespaces: claims outside them are not considered at all.
    backup_namespaces: NamespaceFilter,
    namespaces: NameFilter,
    labels: LabelSelector,
    classes: NameFilter,
}

impl VolumeSelector {
    /// Compiles `selection` (none: every bound claim) within the backup's namespaces; bad
    /// globs and selectors are reported naming the `spec.volumes` field.
    pub fn new(
        backup_namespaces: NamespaceFilter,
        selection: Option<&VolumeSelection>,
    ) -> Result<Self, ObjectsError> {
        let default = VolumeSelection::default();
        let s = selection.unwrap_or(&default);
        let labels = LabelSelector::parse(s.label_selector.as_deref().unwrap_or(""))
            .map_err(|e| ObjectsError::Invalid(format!("spec.volumes.labelSelector: {e}")))?;
        Ok(Self {
            enabled: s.enabled,
            backup_namespaces,
            namespaces: NameFilter::new("Namespaces", &s.included_namespaces, &s.excluded_namespaces)?,
            labels,
            classes: NameFilter::new(
                "StorageClasses",
                &s.included_storage_classes,
                &s.excluded_storage_classes,
            )?,
        })
    }

    /// True when the backup's namespaces include `ns` (the claims the plan considers).
    pub fn covers_namespace(&self, ns: &str) -> bool {
        self.backup_namespaces.matches(ns)
    }
}

/// Where the cephx user and key for an image come from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// The Secret's namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

/// An RBD image to back up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RbdTake {
    /// The image.
    #[serde(flatten)]
    pub image: RbdImage,
    /// The Secret with `userID`/`userKey`: the StorageClass's provisioner secret, else the
    /// PersistentVolume's controller-expand or node-stage secret; none when neither names one.
    pub secret: Option<SecretRef>,
}

/// What happens to one claim's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Backed up from this RBD image.
    Rbd(RbdTake),
    /// Backed up from this lifeboat-csi NFS directory, file by file.
    Nfs(NfsDir),
    /// Left out by the Backup's selection (not a failure); why.
    Excluded(String),
    /// Selected but cannot be taken (the backup is PartiallyFailed); why, naming the driver.
    NotTaken(String),
}

/// One claim and what happens to its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPlan {
    /// The claim's namespace.
    pub namespace: String,
    /// The claim's name.
    pub claim: String,
    /// The PersistentVolume it is bound to.
    pub volume: Option<String>,
    /// Its StorageClass.
    pub storage_class: Option<String>,
    /// The CSI driver of its volume (`in-tree:<type>` for other volume sources).
    pub driver: Option<String>,
    /// What happens.
    pub decision: Decision,
}

impl ClaimPlan {
    /// `namespace/claim`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.claim)
    }
}

/// Decides for every claim in the backup's namespaces, sorted by namespace and name.
pub fn plan_volumes(
    selector: &VolumeSelector,
    claims: &[PersistentVolumeClaim],
    volumes: &[PersistentVolume],
    classes: &[StorageClass],
) -> Vec<ClaimPlan> {
    let volumes: HashMap<&str, &PersistentVolume> = volumes
        .iter()
        .filter_map(|v| Some((v.metadata.name.as_deref()?, v)))
        .collect();
    let classes: HashMap<&str, &StorageClass> = classes
        .iter()
        .filter_map(|c| Some((c.metadata.name.as_deref()?, c)))
        .collect();
    let mut plans: Vec<ClaimPlan> = claims
        .iter()
        .filter(|c| {
            c.metadata
                .namespace
                .as_deref()
                .is_some_and(|ns| selector.covers_namespace(ns))
        })
        .map(|c| plan_claim(selector, c, &volumes, &classes))
        .collect();
    plans.sort_by(|a, b| (&a.namespace, &a.claim).cmp(&(&b.namespace, &b.claim)));
    plans
}

fn plan_claim(
    selector: &VolumeSelector,
    claim: &PersistentVolumeClaim,
    volumes: &HashMap<&str, &PersistentVolume>,
    classes: &HashMap<&str, &StorageClass>,
) -> ClaimPlan {
    let namespace = claim.metadata.namespace.clone().unwrap_or_default();
    let name = claim.metadata.name.clone().unwrap_or_default();
    let spec = claim.spec.clone().unwrap_or_default();
    let volume_name = spec.volume_name.clone().filter(|v| !v.is_empty());
    let pv = volume_name.as_deref().and_then(|v| volumes.get(v).copied());
    let storage_class = spec
        .storage_class_name
        .clone()
        .or_else(|| pv.and_then(|v| v.spec.as_ref()?.storage_class_name.clone()))
        .filter(|s| !s.is_empty());
    let csi = pv.and_then(|v| v.spec.as_ref()?.csi.as_ref());
    let driver = match (pv, csi) {
        (_, Some(c)) => Some(c.driver.clone()),
        (Some(v), None) => Some(format!("in-tree:{}", in_tree_kind(v))),
        (None, None) => None,
    };
    let mut plan = ClaimPlan {
        namespace,
        claim: name,
        volume: volume_name.clone(),
        storage_class: storage_class.clone(),
        driver,
        decision: Decision::Excluded(String::new()),
    };
    let labels = claim.metadata.labels.clone().unwrap_or_default();
    let class_label = storage_class.as_deref().unwrap_or("");
    let excluded = if !selector.enabled {
        Some("volume data is off for this backup (spec.volumes.enabled: false, --no-volumes)".to_string())
    } else if !selector.namespaces.matches(&plan.namespace) {
        Some(format!(
            "namespace {} is not selected by spec.volumes",
            plan.namespace
        ))
    } else if !selector.labels.matches(&labels) {
        Some("the claim's labels do not match spec.volumes.labelSelector".to_string())
    } else if !selector.classes.matches(class_label) {
        Some(format!(
            "StorageClass {class_label:?} is not selected by spec.volumes"
        ))
    } else {
        None
    };
    plan.decision = match excluded {
        Some(why) => Decision::Excluded(why),
        None => decide(
            claim,
            volume_name.as_deref(),
            pv,
            storage_class.as_deref().and_then(|s| classes.get(s).copied()),
        ),
    };
    plan
}

fn decide(
    claim: &PersistentVolumeClaim,
    volume_name: Option<&str>,
    pv: Option<&PersistentVolume>,
    class: Option<&StorageClass>,
) -> Decision {
    let phase = claim
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Pending".to_string());
    let (Some(volume_name), true) = (volume_name, phase == "Bound") else {
        return Decision::NotTaken(format!(
            "the claim is not bound (phase {phase}): no volume to back up"
        ));
    };
    let Some(pv) = pv else {
        return Decision::NotTaken(format!(
            "bound to PersistentVolume {volume_name}, which does not exist"
        ));
    };
    let Some(csi) = pv.spec.as_ref().and_then(|s| s.csi.as_ref()) else {
        return Decision::NotTaken(format!(
            "PersistentVolume {volume_name} is an in-tree {} volume; only CSI volumes of lifeboat-csi and ceph-csi (RBD) are backed up",
            in_tree_kind(pv)
        ));
    };
    let attributes: BTreeMap<String, String> = csi.volume_attributes.clone().unwrap_or_default();
    match classify(&csi.driver, &csi.volume_handle, &attributes) {
        CsiVolume::Rbd(image) => Decision::Rbd(RbdTake {
            image,
            secret: provisioner_secret(class, claim, volume_name)
                .or_else(|| csi.controller_expand_secret_ref.as_ref().and_then(secret_ref))
                .or_else(|| csi.node_stage_secret_ref.as_ref().and_then(secret_ref)),
        }),
        CsiVolume::Nfs(dir) => Decision::Nfs(dir),
        CsiVolume::Unsupported(why) => Decision::NotTaken(why),
    }
}

/// The Secret external-provisioner recorded on a volume for deleting it (annotations
/// `volume.kubernetes.io/provisioner-deletion-secret-name` and `-namespace`), as a restore
/// records the class's provisioner Secret there.
pub fn deletion_secret(pv: &PersistentVolume) -> Option<SecretRef> {
    let a = pv.metadata.annotations.as_ref()?;
    let get = |k: &str| a.get(k).filter(|v| !v.is_empty()).cloned();
    Some(SecretRef {
        name: get("volume.kubernetes.io/provisioner-deletion-secret-name")?,
        namespace: get("volume.kubernetes.io/provisioner-deletion-secret-namespace")?,
    })
}

pub(super) fn secret_ref(r: &SecretReference) -> Option<SecretRef> {
    Some(SecretRef {
        namespace: r.namespace.clone()?,
        name: r.name.clone()?,
    })
}

/// The StorageClass's provisioner secret with external-provisioner's templates expanded
/// (`${pvc.namespace}`, `${pvc.name}`, `${pv.name}`).
fn provisioner_secret(
    class: Option<&StorageClass>,
    claim: &PersistentVolumeClaim,
    pv: &str,
) -> Option<SecretRef> {
    let params = class?.parameters.as_ref()?;
    let expand = |s: &str| {
        s.replace(
            "${pvc.namespace}",
            claim.metadata.namespace.as_deref().unwrap_or(""),
        )
        .replace("${pvc.name}", claim.metadata.name.as_deref().unwrap_or(""))
        .replace("${pv.name}", pv)
    };
    Some(SecretRef {
        namespace: expand(params.get(PROVISIONER_SECRET_NAMESPACE)?),
        name: expand(params.get(PROVISIONER_SECRET_NAME)?),
    })
}

/// The in-tree volume source of a PersistentVolume (`hostPath`, `nfs`, `awsElasticBlockStore`…).
fn in_tree_kind(pv: &PersistentVolume) -> &'static str {
    let Some(s) = pv.spec.as_ref() else {
        return "unknown";
    };
    let kinds: [(&'static str, bool); 12] = [
        ("hostPath", s.host_path.is_some()),
        ("local", s.local.is_some()),
        ("nfs", s.nfs.is_some()),
        ("rbd", s.rbd.is_some()),
        ("cephfs", s.cephfs.is_some()),
        ("iscsi", s.iscsi.is_some()),
        ("fc", s.fc.is_some()),
        ("awsElasticBlockStore", s.aws_elastic_block_store.is_some()),
        ("gcePersistentDisk", s.gce_persistent_disk.is_some()),
        ("azureDisk", s.azure_disk.is_some()),
        ("azureFile", s.azure_file.is_some()),
        ("vsphereVolume", s.vsphere_volume.is_some()),
    ];
    kinds.iter().find(|(_, set)| *set).map_or("unknown", |(k, _)| k)
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
