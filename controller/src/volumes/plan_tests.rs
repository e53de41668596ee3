//! Golden tests over realistic claims, volumes and StorageClasses of lifeboat-csi, ceph-csi
//! (Rook), another CSI driver and in-tree volumes.
#![allow(clippy::unwrap_used)]

use serde_json::json;

use super::*;

fn claim(
    ns: &str,
    name: &str,
    class: Option<&str>,
    volume: Option<&str>,
    labels: serde_json::Value,
) -> PersistentVolumeClaim {
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": name, "labels": labels, "uid": format!("uid-{name}")},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
            "storageClassName": class,
            "volumeName": volume,
        },
        "status": {"phase": if volume.is_some() { "Bound" } else { "Pending" }},
    }))
    .unwrap()
}

fn csi_volume(
    name: &str,
    driver: &str,
    handle: &str,
    attributes: serde_json::Value,
    class: &str,
) -> PersistentVolume {
    serde_json::from_value(json!({
        "metadata": {"name": name, "annotations": {"pv.kubernetes.io/provisioned-by": driver}},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": class,
            "volumeMode": "Filesystem",
            "csi": {
                "driver": driver,
                "volumeHandle": handle,
                "fsType": "ext4",
                "volumeAttributes": attributes,
                "nodeStageSecretRef": {"name": "node-secret", "namespace": "ceph-csi"},
            },
        },
        "status": {"phase": "Bound"},
    }))
    .unwrap()
}

fn class(name: &str, provisioner: &str, parameters: serde_json::Value) -> StorageClass {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "provisioner": provisioner,
        "parameters": parameters,
        "reclaimPolicy": "Delete",
        "allowVolumeExpansion": true,
    }))
    .unwrap()
}

struct Cluster {
    claims: Vec<PersistentVolumeClaim>,
    volumes: Vec<PersistentVolume>,
    classes: Vec<StorageClass>,
}

fn cluster() -> Cluster {
    let lifeboat_image = "csi-vol-0123456789abcdef0123456789abcdef";
    let ceph_handle = "0001-0009-rook-ceph-0000000000000002-b0285c97-a0ce-11eb-8c66-0242ac110002";
    Cluster {
        claims: vec![
            claim("shop", "db", Some("lifeboat-rbd"), Some("pvc-1"), json!({"app": "db"})),
            claim("shop", "cache", Some("gp3"), Some("pvc-2"), json!({"app": "cache"})),
            claim("shop", "files", Some("lifeboat-nfs"), Some("pvc-3"), json!({})),
            claim("shop", "pending", Some("lifeboat-rbd"), None, json!({})),
            claim("shop", "legacy", Some(""), Some("pv-host"), json!({})),
            claim("rook", "data", Some("rook-ceph-block"), Some("pvc-4"), json!({"tier": "data"})),
            claim("rook", "gone", Some("rook-ceph-block"), Some("pvc-missing"), json!({})),
            claim("kube-system", "other", Some("lifeboat-rbd"), Some("pvc-9"), json!({})),
        ],
        volumes: vec![
            csi_volume("pvc-1", "csi.lifeboat.dev", &format!("rbd:ceph-a:kube:{lifeboat_image}"), json!({}), "lifeboat-rbd"),
            csi_volume("pvc-2", "ebs.csi.aws.com", "vol-0a1b2c3d", json!({}), "gp3"),
            csi_volume(
                "pvc-3",
                "csi.lifeboat.dev",
                "nfs:10.0.0.5:/exports:k8s/vol-0123456789abcdef0123456789abcdef:delete",
                json!({}),
                "lifeboat-nfs",
            ),
            csi_volume(
                "pvc-4",
                "rook-ceph.rbd.csi.ceph.com",
                ceph_handle,
                json!({"clusterID": "rook-ceph", "pool": "replicapool", "imageName": "csi-vol-b0285c97-a0ce-11eb-8c66-0242ac110002",
                       "imageFeatures": "layering", "journalPool": "replicapool",
                       "storage.kubernetes.io/csiProvisionerIdentity": "1700000000000-8081-rook-ceph.rbd.csi.ceph.com"}),
                "rook-ceph-block",
            ),
            serde_json::from_value(json!({
                "metadata": {"name": "pv-host"},
                "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/data"}},
            }))
            .unwrap(),
        ],
        classes: vec![
            class(
                "lifeboat-rbd",
                "csi.lifeboat.dev",
                json!({"clusterID": "ceph-a", "pool": "kube",
                       "csi.storage.k8s.io/provisioner-secret-name": "ceph-admin",
                       "csi.storage.k8s.io/provisioner-secret-namespace": "lifeboat-system"}),
            ),
            class(
                "rook-ceph-block",
                "rook-ceph.rbd.csi.ceph.com",
                json!({"clusterID": "rook-ceph", "pool": "replicapool",
                       "csi.storage.k8s.io/provisioner-secret-name": "rook-csi-rbd-provisioner",
                       "csi.storage.k8s.io/provisioner-secret-namespace": "${pvc.namespace}"}),
            ),
            class("gp3", "ebs.csi.aws.com", json!({"type": "gp3"})),
        ],
    }
}

fn golden(plans: &[ClaimPlan]) -> String {
    plans
        .iter()
        .map(|p| {
            let what = match &p.decision {
                Decision::Rbd(t) => format!(
                    "rbd {}/{}/{} secret {}",
                    t.image.cluster_id,
                    t.image.pool,
                    t.image.image,
                    t.secret
                        .as_ref()
                        .map_or("-".to_string(), |s| format!("{}/{}", s.namespace, s.name))
                ),
                Decision::Nfs(d) => format!("nfs {}", d.display()),
                Decision::Excluded(why) => format!("excluded: {why}"),
                Decision::NotTaken(why) => format!("NOT TAKEN: {why}"),
            };
            format!("{} [{}] {what}\n", p.key(), p.driver.as_deref().unwrap_or("-"))
        })
        .collect()
}

fn selector(namespaces: &[&str], selection: Option<VolumeSelection>) -> VolumeSelector {
    let ns: Vec<String> = namespaces.iter().map(|s| s.to_string()).collect();
    VolumeSelector::new(NamespaceFilter::new(&ns, &[]).unwrap(), selection.as_ref()).unwrap()
}

#[test]
fn default_takes_every_bound_rbd_claim_and_reports_the_rest() {
    let c = cluster();
    let plans = plan_volumes(
        &selector(&["shop", "rook"], None),
        &c.claims,
        &c.volumes,
        &c.classes,
    );
    let expected = "\
rook/data [rook-ceph.rbd.csi.ceph.com] rbd rook-ceph/replicapool/csi-vol-b0285c97-a0ce-11eb-8c66-0242ac110002 secret rook/rook-csi-rbd-provisioner
rook/gone [-] NOT TAKEN: bound to PersistentVolume pvc-missing, which does not exist
shop/cache [ebs.csi.aws.com] NOT TAKEN: CSI driver ebs.csi.aws.com is not one Lifeboat reads volumes of
shop/db [csi.lifeboat.dev] rbd ceph-a/kube/csi-vol-0123456789abcdef0123456789abcdef secret lifeboat-system/ceph-admin
shop/files [csi.lifeboat.dev] nfs 10.0.0.5:/exports/k8s/vol-0123456789abcdef0123456789abcdef
shop/legacy [in-tree:hostPath] NOT TAKEN: PersistentVolume pv-host is an in-tree hostPath volume; only CSI volumes of lifeboat-csi and ceph-csi (RBD) are backed up
shop/pending [-] NOT TAKEN: the claim is not bound (phase Pending): no volume to back up
";
    assert_eq!(golden(&plans), expected);
}

#[test]
fn selection_excludes_without_failing() {
    let c = cluster();
    let selection = VolumeSelection {
        excluded_storage_classes: vec!["gp*".into()],
        label_selector: Some("app!=cache".into()),
        included_namespaces: vec!["shop".into()],
        ..VolumeSelection::default()
    };
    let plans = plan_volumes(
        &selector(&["shop", "rook"], Some(selection)),
        &c.claims,
        &c.volumes,
        &c.classes,
    );
    let by_key: BTreeMap<String, &Decision> = plans.iter().map(|p| (p.key(), &p.decision)).collect();
    assert!(matches!(by_key["rook/data"], Decision::Excluded(w) if w.contains("namespace rook")));
    assert!(matches!(by_key["shop/cache"], Decision::Excluded(w) if w.contains("labelSelector")));
    assert!(matches!(by_key["shop/db"], Decision::Rbd(_)));
    let classes_only = VolumeSelection {
        excluded_storage_classes: vec!["gp*".into()],
        ..VolumeSelection::default()
    };
    let plans = plan_volumes(
        &selector(&["shop"], Some(classes_only)),
        &c.claims,
        &c.volumes,
        &c.classes,
    );
    let cache = plans.iter().find(|p| p.claim == "cache").unwrap();
    assert_eq!(
        cache.decision,
        Decision::Excluded("StorageClass \"gp3\" is not selected by spec.volumes".into())
    );

    let off = VolumeSelection {
        enabled: false,
        ..VolumeSelection::default()
    };
    let plans = plan_volumes(&selector(&[], Some(off)), &c.claims, &c.volumes, &c.classes);
    assert_eq!(plans.len(), c.claims.len(), "every namespace: kube-system too");
    assert!(
        plans
            .iter()
            .all(|p| matches!(&p.decision, Decision::Excluded(w) if w.contains("--no-volumes")))
    );
}

#[test]
fn secret_falls_back_to_the_volume_when_the_class_is_gone() {
    let c = cluster();
    let classes: Vec<StorageClass> = c
        .classes
        .iter()
        .filter(|s| s.metadata.name.as_deref() != Some("lifeboat-rbd"))
        .cloned()
        .collect();
    let plans = plan_volumes(&selector(&["shop"], None), &c.claims, &c.volumes, &classes);
    let db = plans.iter().find(|p| p.claim == "db").unwrap();
    assert!(
        matches!(&db.decision, Decision::Rbd(t) if t.secret == Some(SecretRef { namespace: "ceph-csi".into(), name: "node-secret".into() }))
    );
}

#[test]
fn bad_selection_names_the_field() {
    let bad = VolumeSelection {
        label_selector: Some("app in db".into()),
        ..VolumeSelection::default()
    };
    let e = VolumeSelector::new(NamespaceFilter::default(), Some(&bad))
        .unwrap_err()
        .to_string();
    assert!(e.contains("spec.volumes.labelSelector"), "{e}");
    let bad = VolumeSelection {
        included_storage_classes: vec!["[".into()],
        ..VolumeSelection::default()
    };
    let e = VolumeSelector::new(NamespaceFilter::default(), Some(&bad))
        .unwrap_err()
        .to_string();
    assert!(e.contains("spec.volumes.includedStorageClasses"), "{e}");
}
