//! Where restored volume data goes, for lifeboat-csi and ceph-csi (Rook) target classes,
//! mapped and missing classes, and target clusters holding the claim or an earlier run's volume.
#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};

use super::*;
use crate::kube_objects::{NamespaceFilter, ResourceFilter};
use crate::volumes::catalog::CatalogEntry;
use crate::volumes::handle::NfsDir;

const SNAP: &str = "5f0c6a1e0b6f3c2d9a8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c";

fn entry(ns: &str, claim: &str, class: &str, outcome: VolumeOutcome) -> CatalogEntry {
    CatalogEntry {
        namespace: ns.into(),
        claim: claim.into(),
        persistent_volume: Some(format!("pv-{claim}")),
        storage_class: Some(class.into()),
        driver: Some("csi.lifeboat.dev".into()),
        outcome,
        reason: None,
        cluster_id: Some("ceph-a".into()),
        pool: Some("kube".into()),
        image: Some(format!("csi-vol-{:032x}", 1)),
        snapshot_id: (outcome == VolumeOutcome::BackedUp).then(|| SNAP.to_string()),
        size: Some(1 << 30),
        read: Some("full".into()),
        time: None,
        group_snapshot: None,
        nfs: None,
    }
}

fn claim(ns: &str, name: &str, class: &str, mode: &str) -> PersistentVolumeClaim {
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": name},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
            "storageClassName": class,
            "volumeName": format!("pv-{name}"),
            "volumeMode": mode,
        },
        "status": {"phase": "Bound", "capacity": {"storage": "1025Mi"}},
    }))
    .unwrap()
}

fn class(name: &str, provisioner: &str, parameters: Value) -> StorageClass {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "provisioner": provisioner,
        "parameters": parameters,
        "reclaimPolicy": "Delete",
        "mountOptions": ["discard"],
    }))
    .unwrap()
}

fn backup(entries: Vec<CatalogEntry>, modes: &[(&str, &str)]) -> BackupVolumes {
    let claims = entries
        .iter()
        .map(|e| {
            let mode = modes
                .iter()
                .find(|(c, _)| *c == e.claim)
                .map_or("Filesystem", |(_, m)| m);
            (
                (e.namespace.clone(), e.claim.clone()),
                claim(&e.namespace, &e.claim, e.storage_class.as_deref().unwrap(), mode),
            )
        })
        .collect();
    BackupVolumes {
        catalog: VolumeCatalog {
            volumes: entries,
            point: None,
        },
        claims,
        volumes: BTreeMap::new(),
    }
}

fn target(classes: Vec<StorageClass>) -> TargetCluster {
    TargetCluster {
        uid: "0c1a5e2d-cluster-b".into(),
        classes: classes
            .into_iter()
            .map(|c| (c.metadata.name.clone().unwrap(), c))
            .collect(),
        ..TargetCluster::default()
    }
}

fn lifeboat_class(name: &str, pool: &str) -> StorageClass {
    class(
        name,
        "csi.lifeboat.dev",
        json!({
            "clusterID": "ceph-b", "pool": pool, "imageFeatures": "layering,exclusive-lock",
            "csi.storage.k8s.io/provisioner-secret-name": "rbd-${pvc.namespace}",
            "csi.storage.k8s.io/provisioner-secret-namespace": "lifeboat",
            "csi.storage.k8s.io/node-stage-secret-name": "rbd-node",
            "csi.storage.k8s.io/node-stage-secret-namespace": "lifeboat",
            "csi.storage.k8s.io/fstype": "xfs",
        }),
    )
}

fn options(mapping: &[(&str, &str)]) -> RestoreOptions {
    RestoreOptions {
        storage_class_mapping: mapping
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        namespace_mapping: [("shop".to_string(), "shop-dr".to_string())].into(),
        ..RestoreOptions::default()
    }
}

fn write(plan: &VolumeRestorePlan) -> &VolumeWrite {
    match &plan.action {
        RestoreAction::Write(w) => w,
        other => panic!("not a write: {other:?}"),
    }
}

#[test]
fn a_mapped_lifeboat_class_says_where_to_write_and_how_to_bind() {
    let b = backup(
        vec![
            entry("shop", "data", "fast", VolumeOutcome::BackedUp),
            entry("shop", "raw", "fast", VolumeOutcome::BackedUp),
            entry("shop", "cache", "gp3", VolumeOutcome::NotBackedUp),
        ],
        &[("raw", "Block")],
    );
    let t = target(vec![lifeboat_class("fast-b", "dr")]);
    let plans = plan_volume_restore(&b, &options(&[("fast", "fast-b")]), &t).unwrap();
    assert_eq!(plans.len(), 2, "only backed-up claims: {plans:?}");
    let p = &plans[0];
    assert_eq!(
        (p.target_namespace.as_str(), p.claim.as_str()),
        ("shop-dr", "data")
    );
    assert_eq!(p.storage_class.as_deref(), Some("fast-b"));
    assert_eq!(p.original_volume.as_deref(), Some("pv-data"));
    let w = write(p);
    assert_eq!((w.cluster_id.as_str(), w.pool.as_str()), ("ceph-b", "dr"));
    let pv_name = w.volume.metadata.name.clone().unwrap();
    assert_eq!(
        w.image,
        format!("csi-vol-{}", hex16(&pv_name)),
        "lifeboat-csi's image for a CreateVolume named after the volume"
    );
    assert_eq!(
        w.complete,
        vec![
            (
                LIFEBOAT_CSI_COMPLETE.to_string(),
                json!({"name": pv_name, "params": format!("restored-from={SNAP}")}).to_string()
            ),
            (RESTORED_FROM.to_string(), SNAP.to_string()),
        ],
        "lifeboat-csi owns it once complete; the restore's own mark, read as finished, last"
    );
    assert_eq!(
        w.image_options.features,
        Some(features::LAYERING | features::EXCLUSIVE_LOCK)
    );
    assert_eq!(
        w.secret,
        Some(SecretRef {
            namespace: "lifeboat".into(),
            name: "rbd-shop-dr".into()
        }),
        "templates expand to the claim's new namespace"
    );
    let pv = serde_json::to_value(&w.volume).unwrap();
    let name = pv["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("pvc-") && name.len() == 40, "{name}");
    assert_eq!(pv["metadata"]["annotations"][RESTORED_FROM], SNAP);
    assert_eq!(
        pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"],
        "csi.lifeboat.dev"
    );
    assert_eq!(
        pv["metadata"]["annotations"]["volume.kubernetes.io/provisioner-deletion-secret-name"],
        "rbd-shop-dr"
    );
    let spec = &pv["spec"];
    assert_eq!(
        spec["claimRef"],
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": "shop-dr", "name": "data"})
    );
    assert_eq!(spec["storageClassName"], "fast-b");
    assert_eq!(
        spec["capacity"]["storage"],
        (1u64 << 30).to_string(),
        "the image's size as backed up"
    );
    assert_eq!(spec["persistentVolumeReclaimPolicy"], "Delete");
    assert_eq!(spec["mountOptions"], json!(["discard"]));
    assert_eq!(spec["accessModes"], json!(["ReadWriteOnce"]));
    let csi = &spec["csi"];
    assert_eq!(csi["driver"], "csi.lifeboat.dev");
    assert_eq!(csi["volumeHandle"], format!("rbd:ceph-b:dr:{}", w.image));
    assert_eq!(csi["fsType"], "xfs");
    assert_eq!(csi["volumeAttributes"]["imageName"], w.image.as_str());
    assert_eq!(
        csi["nodeStageSecretRef"],
        json!({"name": "rbd-node", "namespace": "lifeboat"})
    );
    // A block claim's volume is a block volume, with no filesystem.
    let raw = serde_json::to_value(&write(&plans[1]).volume).unwrap();
    assert_eq!(raw["spec"]["volumeMode"], "Block");
    assert!(raw["spec"]["csi"].get("fsType").is_none(), "{raw}");
    // The same restore planned again makes the same names; another claim, or another cluster
    // sharing the Ceph cluster, gets others.
    let again = plan_volume_restore(&b, &options(&[("fast", "fast-b")]), &t).unwrap();
    assert_eq!(write(&again[0]).image, w.image);
    assert_ne!(write(&plans[1]).image, w.image);
    let mut other = t.clone();
    other.uid = "another-cluster".into();
    let elsewhere = plan_volume_restore(&b, &options(&[("fast", "fast-b")]), &other).unwrap();
    assert_ne!(write(&elsewhere[0]).image, w.image);
    assert_ne!(write(&elsewhere[0]).volume.metadata.name, w.volume.metadata.name);
}

#[test]
fn the_filesystem_is_the_backed_up_volumes() {
    let mut b = backup(vec![entry("shop", "data", "fast", VolumeOutcome::BackedUp)], &[]);
    let pv: PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": "pv-data"},
        "spec": {"csi": {"driver": "csi.lifeboat.dev", "volumeHandle": "h", "fsType": "ext4"}}
    }))
    .unwrap();
    b.volumes.insert("pv-data".into(), pv);
    // The target class says xfs; the data is ext4.
    let t = target(vec![lifeboat_class("fast", "kube")]);
    let plans = plan_volume_restore(&b, &options(&[]), &t).unwrap();
    let pv = serde_json::to_value(&write(&plans[0]).volume).unwrap();
    assert_eq!(pv["spec"]["csi"]["fsType"], "ext4");
}

#[test]
fn ceph_csi_classes_get_static_volumes() {
    let b = backup(vec![entry("shop", "data", "fast", VolumeOutcome::BackedUp)], &[]);
    let rook = class(
        "fast",
        "rook-ceph.rbd.csi.ceph.com",
        json!({"clusterID": "rook-ceph", "pool": "replicapool", "imageFeatures": "layering",
               "csi.storage.k8s.io/node-stage-secret-name": "rook-csi-rbd-node",
               "csi.storage.k8s.io/node-stage-secret-namespace": "rook-ceph"}),
    );
    let plans = plan_volume_restore(&b, &options(&[]), &target(vec![rook])).unwrap();
    let w = write(&plans[0]);
    let pv = serde_json::to_value(&w.volume).unwrap();
    let csi = &pv["spec"]["csi"];
    assert_eq!(
        csi["volumeHandle"],
        w.image.as_str(),
        "static: the handle is the image"
    );
    assert_eq!(csi["volumeAttributes"]["staticVolume"], "true");
    assert_eq!(csi["volumeAttributes"]["clusterID"], "rook-ceph");
    assert_eq!(csi["volumeAttributes"]["pool"], "replicapool");
    assert_eq!(
        pv["spec"]["persistentVolumeReclaimPolicy"], "Retain",
        "ceph-csi never deletes static volumes"
    );
    assert_eq!(
        w.secret, None,
        "no provisioner secret named: the connection says so"
    );
}

#[test]
fn missing_and_unusable_classes_are_refused_naming_them() {
    let b = backup(
        vec![
            entry("shop", "data", "fast", VolumeOutcome::BackedUp),
            entry("shop", "logs", "fast", VolumeOutcome::BackedUp),
            entry("shop", "tmp", "slow", VolumeOutcome::BackedUp),
        ],
        &[],
    );
    let ebs = class("slow", "ebs.csi.aws.com", json!({"type": "gp3"}));
    let err = plan_volume_restore(&b, &options(&[("fast", "fast-b")]), &target(vec![ebs]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("StorageClass fast-b (mapped from fast) does not exist")
            && err.contains("shop-dr/data, shop-dr/logs"),
        "{err}"
    );
    assert!(
        err.contains("StorageClass slow has provisioner ebs.csi.aws.com"),
        "{err}"
    );
    assert!(err.contains("nothing was restored"), "{err}");
    let only_fast = backup(vec![entry("shop", "data", "fast", VolumeOutcome::BackedUp)], &[]);
    let encrypted = class(
        "fast",
        "rbd.csi.ceph.com",
        json!({"clusterID": "c", "pool": "p", "encrypted": "true"}),
    );
    let err = plan_volume_restore(&only_fast, &options(&[]), &target(vec![encrypted]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("encrypts"), "{err}");
    // A claim that exists is left alone, whatever its class: nothing is refused for it.
    let mut holding = target(vec![]);
    holding.claims.insert(("shop-dr".into(), "data".into()), None);
    let plans = plan_volume_restore(&only_fast, &options(&[]), &holding).unwrap();
    assert!(matches!(&plans[0].action, RestoreAction::Skip(_)), "{plans:?}");
    let nfs = class(
        "fast",
        "csi.lifeboat.dev",
        json!({"backend": "nfs", "server": "10.0.0.5"}),
    );
    let err = plan_volume_restore(&only_fast, &options(&[]), &target(vec![nfs]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("NFS"), "{err}");
}

#[test]
fn what_the_target_holds_decides_skip_reuse_or_fail() {
    let b = backup(vec![entry("shop", "data", "fast", VolumeOutcome::BackedUp)], &[]);
    let mut t = target(vec![lifeboat_class("fast", "kube")]);
    let planned = plan_volume_restore(&b, &options(&[]), &t).unwrap();
    let mut volume = write(&planned[0]).volume.clone();
    let name = volume.metadata.name.clone().unwrap();

    // The claim is there: its data is left alone.
    t.claims
        .insert(("shop-dr".into(), "data".into()), Some("pvc-other".into()));
    let plans = plan_volume_restore(&b, &options(&[]), &t).unwrap();
    assert!(matches!(&plans[0].action, RestoreAction::Skip(w) if w.contains("exists")));

    // A retried restore: the claim is the earlier run's, bound to the volume it made (whose
    // claimRef has its uid): that is this restore's own work, reused, not skipped.
    let mut bound = volume.clone();
    if let Some(r) = bound.spec.as_mut().and_then(|s| s.claim_ref.as_mut()) {
        r.uid = Some("claim-uid".into());
    }
    t.volumes.insert(name.clone(), bound);
    t.claims
        .insert(("shop-dr".into(), "data".into()), Some(name.clone()));
    let plans = plan_volume_restore(&b, &options(&[]), &t).unwrap();
    assert_eq!(plans[0].action, RestoreAction::Reuse(name.clone()));
    // A claim naming that volume that is not this restore's (no mark): left alone.
    let mut foreign = volume.clone();
    foreign.metadata.annotations = None;
    t.volumes.insert(name.clone(), foreign);
    let plans = plan_volume_restore(&b, &options(&[]), &t).unwrap();
    assert!(matches!(&plans[0].action, RestoreAction::Skip(w) if w.contains("exists")));
    t.claims.clear();
    t.volumes.clear();

    // An earlier run made the volume and stopped before the claim: reuse it.
    t.volumes.insert(name.clone(), volume.clone());
    let plans = plan_volume_restore(&b, &options(&[]), &t).unwrap();
    assert_eq!(plans[0].action, RestoreAction::Reuse(name.clone()));

    // It was bound to a claim since deleted: say what to delete.
    if let Some(r) = volume.spec.as_mut().and_then(|s| s.claim_ref.as_mut()) {
        r.uid = Some("old-uid".into());
    }
    t.volumes.insert(name.clone(), volume);
    let plans = plan_volume_restore(&b, &options(&[]), &t).unwrap();
    assert!(
        matches!(&plans[0].action, RestoreAction::Fail(w) if w.contains(&name) && w.contains("delete it")),
        "{plans:?}"
    );
}

#[test]
fn the_restores_selection_applies() {
    let b = backup(
        vec![
            entry("shop", "data", "fast", VolumeOutcome::BackedUp),
            entry("blog", "data", "fast", VolumeOutcome::BackedUp),
        ],
        &[],
    );
    let t = target(vec![lifeboat_class("fast", "kube")]);
    let mut o = options(&[]);
    o.namespaces = NamespaceFilter::new(&["blog".into()], &[]).unwrap();
    let plans = plan_volume_restore(&b, &o, &t).unwrap();
    assert_eq!(plans.len(), 1);
    assert_eq!(plans[0].target_namespace, "blog");
    o.resources = ResourceFilter::new(&[], &["persistentvolumeclaims".into()]).unwrap();
    assert!(plan_volume_restore(&b, &o, &t).unwrap().is_empty());
    o.resources = ResourceFilter::new(&[], &["persistentvolumes".into()]).unwrap();
    assert!(
        plan_volume_restore(&b, &o, &t).unwrap().is_empty(),
        "no volumes restored: no data written"
    );
    // A label selector takes the data of the claims it matches only.
    let mut labelled = b.clone();
    for ((ns, _), claim) in labelled.claims.iter_mut() {
        claim.metadata.labels = Some(BTreeMap::from([("app".to_string(), ns.clone())]));
    }
    let mut o = options(&[]);
    o.label_selector = Some(crate::label_selector::LabelSelector::parse("app=shop").unwrap());
    let plans = plan_volume_restore(&labelled, &o, &t).unwrap();
    assert_eq!(
        plans.iter().map(|p| p.namespace.as_str()).collect::<Vec<_>>(),
        ["shop"]
    );
    // A claim the backup has data of but no object for is an error, not a silent skip.
    let mut no_object = b.clone();
    no_object.claims.clear();
    let plans = plan_volume_restore(&no_object, &options(&[]), &t).unwrap();
    assert!(plans.iter().all(|p| matches!(p.action, RestoreAction::Fail(_))));
}

#[test]
fn nfs_files_go_into_a_new_directory_of_an_nfs_class_as_a_static_volume() {
    let mut files = entry("shop", "files", "nfs-a", VolumeOutcome::BackedUp);
    (files.cluster_id, files.pool, files.image) = (None, None, None);
    files.nfs = Some(NfsDir {
        server: "10.0.0.5".into(),
        share: "/exports".into(),
        dir: format!("k8s/vol-{:032x}", 7),
    });
    let b = backup(vec![files], &[]);
    let nfs_b = class(
        "nfs-b",
        "csi.lifeboat.dev",
        json!({"backend": "nfs", "server": "10.1.0.9", "share": "/srv/dr", "baseDir": "/restored/",
               "mountOptions": "nfsvers=4.1"}),
    );
    let plans = plan_volume_restore(&b, &options(&[("nfs-a", "nfs-b")]), &target(vec![nfs_b])).unwrap();
    let RestoreAction::WriteNfs(w) = &plans[0].action else {
        panic!("not an NFS write: {plans:?}");
    };
    let pv_name = w.volume.metadata.name.clone().unwrap();
    let dir = format!("restored/vol-{}", hex16(&pv_name));
    assert_eq!(
        w.location,
        NfsDir {
            server: "10.1.0.9".into(),
            share: "/srv/dr".into(),
            dir: dir.clone()
        },
        "the directory the driver would make for a volume of that name"
    );
    let pv = serde_json::to_value(&w.volume).unwrap();
    assert_eq!(
        pv["spec"]["csi"]["volumeHandle"],
        format!("nfs:10.1.0.9:/srv/dr:{dir}:retain").as_str()
    );
    assert_eq!(pv["spec"]["csi"]["volumeAttributes"]["subDir"], dir.as_str());
    assert_eq!(
        pv["spec"]["csi"]["volumeAttributes"]["mountOptions"],
        "nfsvers=4.1"
    );
    assert_eq!(
        pv["spec"]["persistentVolumeReclaimPolicy"], "Retain",
        "the driver has no record of it"
    );
    assert_eq!(
        pv["spec"]["capacity"]["storage"], "1025Mi",
        "the claim's, not the files' bytes"
    );
    assert_eq!(pv["spec"]["claimRef"]["namespace"], "shop-dr");
    assert_eq!(pv["metadata"]["annotations"][RESTORED_FROM], SNAP);

    // NFS files into an RBD class, and RBD data into an NFS class, are refused before anything.
    let err = plan_volume_restore(
        &b,
        &options(&[("nfs-a", "fast")]),
        &target(vec![lifeboat_class("fast", "kube")]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("StorageClass fast (mapped from nfs-a)") && err.contains("is not an NFS class"),
        "{err}"
    );
    let rbd = backup(vec![entry("shop", "data", "fast", VolumeOutcome::BackedUp)], &[]);
    let nfs_fast = class(
        "fast",
        "csi.lifeboat.dev",
        json!({"backend": "nfs", "server": "10.1.0.9", "share": "/srv/dr"}),
    );
    let err = plan_volume_restore(&rbd, &options(&[]), &target(vec![nfs_fast]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("makes NFS volumes"), "{err}");
    // A baseDir that climbs out is refused.
    let climbing = class(
        "nfs-b",
        "csi.lifeboat.dev",
        json!({"backend": "nfs", "server": "10.1.0.9", "share": "/srv/dr", "baseDir": "a/../.."}),
    );
    let err = plan_volume_restore(&b, &options(&[("nfs-a", "nfs-b")]), &target(vec![climbing]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("baseDir"), "{err}");
}

#[test]
fn two_claims_mapped_onto_one_are_refused_before_anything() {
    let b = backup(
        vec![
            entry("shop", "data", "fast", VolumeOutcome::BackedUp),
            entry("web", "data", "fast", VolumeOutcome::BackedUp),
        ],
        &[],
    );
    let mut opts = options(&[]);
    opts.namespace_mapping = [
        ("shop".to_string(), "dr".to_string()),
        ("web".to_string(), "dr".to_string()),
    ]
    .into();
    let err = plan_volume_restore(&b, &opts, &target(vec![lifeboat_class("fast", "kube")]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("shop/data, web/data all map to claim dr/data") && err.contains("nothing was restored"),
        "{err}"
    );
}
