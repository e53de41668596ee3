//! ceph-csi volumes in RADOS namespaces (multi-tenant pools), against the Kubernetes API test
//! server and the harness's real Ceph: ceph-csi places a clusterID's images in the namespace
//! its config gives (`"rbd": {"radosNamespace": …}`), and a volume may name one in its
//! attributes (which wins). `drctl backup create` reads both images from their namespace, one
//! group snapshot per namespace (the catalog names `POOL/NAMESPACE`), `drctl volume restore --pool POOL/NAMESPACE` writes one back, and
//! `drctl restore create` into the ceph-csi class writes into that namespace, where ceph-csi
//! will look for it.
#![allow(clippy::unwrap_used)] // a test that cannot set up should panic loudly

mod volumes_support;

use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolume, Secret};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;
use kube::api::PostParams;
use lifeboat_tests::kube::TestCluster;
use lifeboat_tests::volumes::{bound_claim, ceph_secret, make_image, object, read_image};
use serde_json::{Value, json};
use volumes_support::{Env, run, text, volume};

fn rbd(args: &[&str]) {
    let ceph = lifeboat_tests::ceph().unwrap();
    let out = ceph.rbd_cmd().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "rbd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_in_rados_namespaces_are_backed_up_and_restored_there() {
    let ceph = lifeboat_tests::ceph().unwrap();
    let cluster = TestCluster::start().await.unwrap();
    let env = Env::new(&cluster).await;
    let pool_name = ceph.new_pool("k8sns").unwrap();
    // Two tenants: one named by ceph-csi's cluster config, one by the volume's attributes.
    for tenant in ["tenant-a", "tenant-b"] {
        rbd(&["namespace", "create", &format!("{pool_name}/{tenant}")]);
    }
    let connection = ceph.connect().unwrap();
    let in_a = connection.pool(&format!("{pool_name}/tenant-a")).unwrap();
    let in_b = connection.pool(&format!("{pool_name}/tenant-b")).unwrap();
    let uuid_a = "0a0a0a0a-a0ce-11eb-8c66-0242ac110002";
    let uuid_b = "0b0b0b0b-a0ce-11eb-8c66-0242ac110002";
    let (image_a, image_b) = (format!("csi-vol-{uuid_a}"), format!("csi-vol-{uuid_b}"));
    let bytes_a = make_image(&in_a, &image_a, 11);
    let bytes_b = make_image(&in_b, &image_b, 12);
    let default_ns = connection.pool(&pool_name).unwrap();
    assert!(
        default_ns.list_images().unwrap().is_empty(),
        "the images are in their namespaces only"
    );

    let ns = cluster.namespace("radosns").await.unwrap();
    let system = cluster.namespace("cephcsi").await.unwrap();
    let key = ceph.admin_key().unwrap();
    let secrets: Api<Secret> = Api::namespaced(cluster.client(), &system);
    secrets
        .create(&PostParams::default(), &ceph_secret("admin", &key))
        .await
        .unwrap();
    // ceph-csi's config (3.5+ form): clusterID "tenant-a" places images in namespace tenant-a.
    let config = json!([
        {"clusterID": "tenant-a", "monitors": [ceph.mon_addr()], "rbd": {"radosNamespace": "tenant-a"}}
    ])
    .to_string();
    let cms: Api<ConfigMap> = Api::namespaced(cluster.client(), &system);
    cms.create(
        &PostParams::default(),
        &object(json!({"metadata": {"name": "ceph-csi-config"}, "data": {"config.json": config}})),
    )
    .await
    .unwrap();
    let class = format!("{ns}-tenant");
    let classes: Api<StorageClass> = Api::all(cluster.client());
    classes
        .create(
            &PostParams::default(),
            &object(
                json!({"metadata": {"name": class}, "provisioner": "rbd.csi.ceph.com",
                "reclaimPolicy": "Delete",
                "parameters": {"clusterID": "tenant-a", "pool": pool_name, "imageFeatures": "layering",
                    "csi.storage.k8s.io/provisioner-secret-name": "ceph-provisioner",
                    "csi.storage.k8s.io/provisioner-secret-namespace": system,
                    "csi.storage.k8s.io/node-stage-secret-name": "ceph-provisioner",
                    "csi.storage.k8s.io/node-stage-secret-namespace": system}}),
            ),
        )
        .await
        .unwrap();
    bound_claim(
        &cluster.client(),
        &ns,
        "data-a",
        &format!("{ns}-pv-a"),
        &class,
        json!({"driver": "rbd.csi.ceph.com", "volumeHandle": format!("0001-0008-tenant-a-0000000000000002-{uuid_a}"),
               "volumeAttributes": {"clusterID": "tenant-a", "pool": pool_name, "imageName": image_a}}),
    )
    .await;
    bound_claim(
        &cluster.client(),
        &ns,
        "data-b",
        &format!("{ns}-pv-b"),
        &class,
        json!({"driver": "rbd.csi.ceph.com", "volumeHandle": format!("0001-0008-tenant-a-0000000000000002-{uuid_b}"),
               "volumeAttributes": {"clusterID": "tenant-a", "pool": pool_name, "imageName": image_b,
                                    "radosNamespace": "tenant-b"}}),
    )
    .await;

    let backed = run(env.drctl(&[
        "backup",
        "create",
        "tenants",
        "--include-namespaces",
        &ns,
        "-o",
        "json",
    ]))
    .await;
    assert!(backed.status.success(), "{}", text(&backed));
    let report: Value = serde_json::from_slice(&backed.stdout).unwrap();
    let mut ids = Vec::new();
    for (claim, tenant) in [("data-a", "tenant-a"), ("data-b", "tenant-b")] {
        let v = volume(&report["volumes"], claim);
        assert_eq!(v["outcome"], "BackedUp", "{v}");
        assert_eq!(v["pool"], format!("{pool_name}/{tenant}"), "{v}");
        // One group snapshot per namespace: librbd refuses a group another namespace's image.
        assert!(
            v["groupSnapshot"]
                .as_str()
                .is_some_and(|g| g.starts_with(&format!("{pool_name}/{tenant}/"))),
            "{v}"
        );
        ids.push(v["snapshotId"].as_str().unwrap().to_string());
    }
    assert!(
        !report.to_string().contains("not in the group snapshot"),
        "{report}"
    );

    // Kubernetes-free: back into tenant-b's namespace under another name.
    let mut restore = env.drctl(&[
        "volume",
        "restore",
        &ids[1],
        "--pool",
        &format!("{pool_name}/tenant-b"),
        "--image",
        "restored-b",
    ]);
    restore.env("CEPH_CONF", ceph.conf()).env("CEPH_ID", "admin");
    let restored = run(restore).await;
    assert!(restored.status.success(), "{}", text(&restored));
    assert!(read_image(&in_b, "restored-b") == bytes_b, "restored-b differs");

    // Into the ceph-csi class of a new namespace: the image goes where ceph-csi looks for
    // the class's clusterID, tenant-a's namespace.
    let copy = format!("{ns}-copy");
    let done = run(env.drctl(&[
        "restore",
        "create",
        "--from-backup",
        "tenants",
        "--include-namespaces",
        &ns,
        "--namespace-mapping",
        &format!("{ns}:{copy}"),
        "-o",
        "json",
    ]))
    .await;
    assert!(done.status.success(), "{}", text(&done));
    let report: Value = serde_json::from_slice(&done.stdout).unwrap();
    let pvs: Api<PersistentVolume> = Api::all(cluster.client());
    for (claim, bytes) in [("data-a", &bytes_a), ("data-b", &bytes_b)] {
        let v = volume(&report["volumes"], claim);
        assert_eq!(v["pool"], format!("{pool_name}/tenant-a"), "{v}");
        let pv = pvs.get(v["persistentVolume"].as_str().unwrap()).await.unwrap();
        let csi = pv.spec.unwrap().csi.unwrap();
        assert_eq!(
            csi.volume_attributes.unwrap()["pool"],
            pool_name,
            "ceph-csi's pool attribute is the pool alone"
        );
        assert!(
            read_image(&in_a, &csi.volume_handle) == *bytes,
            "{claim}'s restored image in tenant-a differs"
        );
    }
    assert!(
        default_ns.list_images().unwrap().is_empty(),
        "nothing was written outside the namespaces"
    );
    drop((in_a, in_b, default_ns));
    ceph.delete_pool(&pool_name).unwrap();
}
