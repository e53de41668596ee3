//! Helpers of the RBD volume tests: seeded data to write into images, an image read back
//! whole to compare, and the Kubernetes side of a claim on an RBD image (PV, bound PVC,
//! the provisioner Secret).
#![allow(clippy::unwrap_used)] // test helpers panic loudly

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Secret};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use lifeboat_rbd::{ImageOptions, Pool, features};
use serde_json::{Value, json};

/// The size of [`make_image`]'s images.
pub const IMAGE_SIZE: u64 = 32 << 20;

/// `len` pseudo-random bytes from `seed` (incompressible, so dedup and not compression is
/// measured; the same seed gives the same bytes).
pub fn seeded_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = crate::faults::SeededRng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The whole content of `image` (holes as zeros), read 4 MiB at a time.
pub fn read_image(pool: &Pool, image: &str) -> Vec<u8> {
    let img = pool.open_read_only(image, None).unwrap();
    let size = img.info().unwrap().size as usize;
    let mut out = vec![0u8; size];
    let mut done = 0;
    while done < size {
        let n = img
            .read_at(done as u64, &mut out[done..(done + (4 << 20)).min(size)])
            .unwrap();
        assert!(n > 0);
        done += n;
    }
    out
}

/// An image of [`IMAGE_SIZE`] with data at a few places and holes between; returns its bytes.
pub fn make_image(pool: &Pool, name: &str, seed: u64) -> Vec<u8> {
    let options = ImageOptions {
        features: Some(features::parse("layering,exclusive-lock,object-map,fast-diff").unwrap()),
        ..Default::default()
    };
    pool.create_image(name, IMAGE_SIZE, &options).unwrap();
    let mut expected = vec![0u8; IMAGE_SIZE as usize];
    let mut img = pool.open(name, None).unwrap();
    for (i, offset) in [0u64, 5 << 20, 17 << 20, IMAGE_SIZE - (1 << 20)]
        .iter()
        .enumerate()
    {
        let data = seeded_bytes(seed * 10 + i as u64, 700 * 1024);
        let len = data.len().min((IMAGE_SIZE - offset) as usize);
        img.write_at(*offset, &data[..len]).unwrap();
        expected[*offset as usize..*offset as usize + len].copy_from_slice(&data[..len]);
    }
    img.flush().unwrap();
    expected
}

/// A Kubernetes object from its JSON.
pub fn object<K: serde::de::DeserializeOwned>(v: Value) -> K {
    serde_json::from_value(v).unwrap()
}

/// Creates a 32 MiB PV with the CSI source `csi` and a claim bound to it (status set as the
/// PV controller would).
pub async fn bound_claim(client: &kube::Client, ns: &str, claim: &str, pv: &str, class: &str, csi: Value) {
    bound_claim_of(client, ns, claim, pv, class, csi, "32Mi").await;
}

/// [`bound_claim`] of `size` (a Kubernetes quantity, `2Gi`).
pub async fn bound_claim_of(
    client: &kube::Client,
    ns: &str,
    claim: &str,
    pv: &str,
    class: &str,
    csi: Value,
    size: &str,
) {
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    pvs.create(
        &PostParams::default(),
        &object(json!({
            "metadata": {"name": pv},
            "spec": {
                "capacity": {"storage": size},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": class,
                "claimRef": {"namespace": ns, "name": claim},
                "csi": csi,
            },
        })),
    )
    .await
    .unwrap();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    claims
        .create(
            &PostParams::default(),
            &object(json!({
                "metadata": {"name": claim, "labels": {"app": "shop"}},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": size}},
                    "storageClassName": class,
                    "volumeName": pv,
                },
            })),
        )
        .await
        .unwrap();
    claims
        .patch_status(
            claim,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Bound", "capacity": {"storage": size}}})),
        )
        .await
        .unwrap();
}

/// A Secret as ceph-csi's provisioner secrets hold the cephx user and key.
pub fn ceph_secret(user: &str, key: &str) -> Secret {
    let data = [("userID", user), ("userKey", key)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), k8s_openapi::ByteString(v.as_bytes().to_vec())))
        .collect();
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("ceph-provisioner".to_string()),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    }
}

/// What an installed lifeboat-csi leaves in `cluster` for RBD: its ConfigMap naming the
/// harness's monitors under clusterID `harness`, the provisioner Secret with the admin key (in
/// a new namespace), and StorageClass `class` writing into `pool`.
pub async fn install_lifeboat_csi(cluster: &crate::kube::TestCluster, class: &str, pool: &str) {
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::api::storage::v1::StorageClass;
    let ceph = crate::ceph().unwrap();
    let system = cluster.namespace("lbsys").await.unwrap();
    Api::<Secret>::namespaced(cluster.client(), &system)
        .create(
            &PostParams::default(),
            &ceph_secret("admin", &ceph.admin_key().unwrap()),
        )
        .await
        .unwrap();
    let config = json!({"rbd": [{"clusterID": "harness", "monitors": [ceph.mon_addr()]}]}).to_string();
    Api::<ConfigMap>::namespaced(cluster.client(), &system)
        .create(
            &PostParams::default(),
            &object(json!({"metadata": {"name": "lifeboat-csi-config"}, "data": {"config.json": config}})),
        )
        .await
        .unwrap();
    Api::<StorageClass>::all(cluster.client())
        .create(
            &PostParams::default(),
            &object(json!({
                "metadata": {"name": class},
                "provisioner": "csi.lifeboat.dev",
                "reclaimPolicy": "Delete",
                "parameters": {"clusterID": "harness", "pool": pool,
                    "csi.storage.k8s.io/provisioner-secret-name": "ceph-provisioner",
                    "csi.storage.k8s.io/provisioner-secret-namespace": system},
            })),
        )
        .await
        .unwrap();
}
