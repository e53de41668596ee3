//! `drctl backup create --direct` with volume data, against the Kubernetes API test server
//! and the harness's real Ceph: two claims bound to lifeboat-csi RBD images and one to a
//! ceph-csi (Rook) image, holding known data, and one of another driver. The catalog in the
//! objects snapshot names the three images' volume snapshots, which `drctl volume restore`
//! turns back into the same bytes; the other
//! claim is reported naming its driver (exit 3); a second backup is incremental; the cephx
//! key from the StorageClass's Secret never appears in any output.
#![allow(clippy::unwrap_used)] // a test that cannot set up should panic loudly

mod volumes_support;

use assert_cmd::Command;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;
use kube::api::PostParams;
use lifeboat_tests::kube::TestCluster;
use lifeboat_tests::volumes::{
    bound_claim, ceph_secret, make_image, object, read_image, seeded_bytes as random,
};
use serde_json::{Value, json};
use volumes_support::{Env, run, text, volume};

const SIZE: u64 = lifeboat_tests::volumes::IMAGE_SIZE;

impl Env {
    /// `drctl volume restore` with the harness's ceph.conf: the Kubernetes-free path.
    async fn restore_volume(&self, snapshot: &str, pool: &str, image: &str) {
        let ceph = lifeboat_tests::ceph().unwrap();
        let mut restore = self.drctl(&["volume", "restore", snapshot, "--pool", pool, "--image", image]);
        restore.env("CEPH_CONF", ceph.conf()).env("CEPH_ID", "admin");
        let done = run(restore).await;
        assert!(done.status.success(), "{}", text(&done));
    }
}

struct Setup {
    env: Env,
    ns: String,
    pool_name: String,
    images: Vec<(String, Vec<u8>)>,
    key: String,
}

async fn setup(cluster: &TestCluster) -> Setup {
    let ceph = lifeboat_tests::ceph().unwrap();
    let env = Env::new(cluster).await;

    let pool_name = ceph.new_pool("k8svol").unwrap();
    let pool = ceph.connect().unwrap().pool(&pool_name).unwrap();
    // Two lifeboat-csi images and one ceph-csi (Rook) image.
    let uuid = "b0285c97-a0ce-11eb-8c66-0242ac110002";
    let names = [
        format!("csi-vol-{:032x}", 0xabc1),
        format!("csi-vol-{:032x}", 0xabc2),
        format!("csi-vol-{uuid}"),
    ];
    let images: Vec<(String, Vec<u8>)> = names
        .into_iter()
        .zip(1u64..)
        .map(|(name, seed)| {
            let bytes = make_image(&pool, &name, seed);
            (name, bytes)
        })
        .collect();

    let ns = cluster.namespace("vols").await.unwrap();
    let system = cluster.namespace("lbsys").await.unwrap();
    let key = ceph.admin_key().unwrap();
    let secrets: Api<Secret> = Api::namespaced(cluster.client(), &system);
    secrets
        .create(&PostParams::default(), &ceph_secret("admin", &key))
        .await
        .unwrap();
    let config = json!({"rbd": [{"clusterID": "harness", "monitors": [ceph.mon_addr()]}]}).to_string();
    let cms: Api<ConfigMap> = Api::namespaced(cluster.client(), &system);
    cms.create(
        &PostParams::default(),
        &object(json!({"metadata": {"name": "lifeboat-csi-config"}, "data": {"config.json": config}})),
    )
    .await
    .unwrap();
    // Rook's ConfigMap for ceph-csi: a list, under its own key.
    let rook = json!([{"clusterID": "rook-ceph", "monitors": [ceph.mon_addr()]}]).to_string();
    cms.create(
        &PostParams::default(),
        &object(
            json!({"metadata": {"name": "rook-ceph-csi-config"}, "data": {"csi-cluster-config-json": rook}}),
        ),
    )
    .await
    .unwrap();
    let classes: Api<StorageClass> = Api::all(cluster.client());
    let rbd_class = format!("{ns}-rbd");
    let other_class = format!("{ns}-gp3");
    let rook_class = format!("{ns}-rook");
    for (name, provisioner, params) in [
        (
            &rook_class,
            "rook-ceph.rbd.csi.ceph.com",
            json!({"clusterID": "rook-ceph", "pool": pool_name, "imageFeatures": "layering",
                   "csi.storage.k8s.io/provisioner-secret-name": "ceph-provisioner",
                   "csi.storage.k8s.io/provisioner-secret-namespace": system}),
        ),
        (
            &rbd_class,
            "csi.lifeboat.dev",
            json!({"clusterID": "harness", "pool": pool_name,
                   "csi.storage.k8s.io/provisioner-secret-name": "ceph-provisioner",
                   "csi.storage.k8s.io/provisioner-secret-namespace": system}),
        ),
        (&other_class, "ebs.csi.aws.com", json!({"type": "gp3"})),
    ] {
        classes
            .create(
                &PostParams::default(),
                &object(
                    json!({"metadata": {"name": name}, "provisioner": provisioner, "parameters": params}),
                ),
            )
            .await
            .unwrap();
    }
    for (i, (image, _)) in images.iter().enumerate().take(2) {
        let handle = format!("rbd:harness:{pool_name}:{image}");
        let claim = format!("data-{i}");
        bound_claim(
            &cluster.client(),
            &ns,
            &claim,
            &format!("{ns}-pv-{i}"),
            &rbd_class,
            json!({"driver": "csi.lifeboat.dev", "volumeHandle": handle, "volumeAttributes": {}}),
        )
        .await;
    }
    bound_claim(
        &cluster.client(),
        &ns,
        "data-2",
        &format!("{ns}-pv-rook"),
        &rook_class,
        json!({"driver": "rook-ceph.rbd.csi.ceph.com", "volumeHandle": format!("0001-0009-rook-ceph-0000000000000002-{uuid}"), "volumeAttributes": {"clusterID": "rook-ceph", "pool": pool_name, "imageName": images[2].0, "journalPool": pool_name}}),
    )
    .await;
    bound_claim(
        &cluster.client(),
        &ns,
        "cache",
        &format!("{ns}-pv-ebs"),
        &other_class,
        json!({"driver": "ebs.csi.aws.com", "volumeHandle": "vol-0a1b2c3d", "volumeAttributes": {}}),
    )
    .await;
    Setup {
        env,
        ns,
        pool_name,
        images,
        key,
    }
}

impl Setup {
    /// `drctl backup create NAME --include-namespaces <ns> -o json` plus `extra`.
    fn backup(&self, name: &str, extra: &[&str]) -> Command {
        let mut args = vec![
            "backup",
            "create",
            name,
            "--include-namespaces",
            &self.ns,
            "-o",
            "json",
        ];
        args.extend_from_slice(extra);
        self.env.drctl(&args)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbd_claims_are_backed_up_with_the_objects_and_restore_exactly() {
    let cluster = TestCluster::start().await.unwrap();
    let s = setup(&cluster).await;
    let env = &s.env;

    let out = run(s.backup("nightly", &[])).await;
    assert_eq!(
        out.status.code(),
        Some(3),
        "the ebs claim makes it PartiallyFailed: {}",
        text(&out)
    );
    let all = text(&out);
    assert!(
        !all.contains(&s.key),
        "the cephx key leaked into the output: {all}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        stderr.contains(&format!("persistentvolumeclaims/{}/cache", s.ns))
            && stderr.contains("ebs.csi.aws.com"),
        "the claim not taken is named with its driver: {stderr}"
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["phase"], "PartiallyFailed", "{report}");
    let volumes = &report["volumes"];
    assert_eq!(volumes.as_array().unwrap().len(), 4, "{volumes}");
    let cache = volume(volumes, "cache");
    assert_eq!(cache["outcome"], "NotBackedUp");
    assert_eq!(cache["driver"], "ebs.csi.aws.com");

    // The catalog is in the objects snapshot: `describe` reads it back from the repository.
    let described = run(env.drctl(&["backup", "describe", "nightly", "-o", "json"])).await;
    assert!(described.status.success(), "{}", text(&described));
    let described: Value = serde_json::from_slice(&described.stdout).unwrap();
    assert_eq!(
        &described["volumes"], volumes,
        "describe shows the stored catalog"
    );
    // And the recovery point: the volumes snapshotted, then the objects read, at a
    // resourceVersion of the API server.
    let point = &described["point"];
    let at = |k: &str| {
        chrono::DateTime::parse_from_rfc3339(point[k].as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{k}: {e}: {point}"))
    };
    assert!(at("volumesAt") <= at("objectsFrom"), "{point}");
    assert!(
        point["resourceVersion"].as_str().is_some_and(|v| !v.is_empty()),
        "{point}"
    );
    let table = run(env.drctl(&["backup", "describe", "nightly"])).await;
    assert!(
        text(&table).contains("recovery point: volumes snapshotted by"),
        "{}",
        text(&table)
    );

    let ceph = lifeboat_tests::ceph().unwrap();
    let pool = ceph.connect().unwrap().pool(&s.pool_name).unwrap();
    let mut first = Vec::new();
    for (i, (image, bytes)) in s.images.iter().enumerate() {
        let v = volume(volumes, &format!("data-{i}"));
        assert_eq!(v["outcome"], "BackedUp", "{v}");
        let driver = if i < 2 {
            "csi.lifeboat.dev"
        } else {
            "rook-ceph.rbd.csi.ceph.com"
        };
        assert_eq!(v["driver"], driver);
        assert_eq!(
            (v["pool"].as_str(), v["image"].as_str()),
            (Some(s.pool_name.as_str()), Some(image.as_str()))
        );
        assert_eq!(v["size"], SIZE);
        assert_eq!(v["read"], "full");
        assert!(v["time"].as_str().is_some_and(|t| t.starts_with("20")), "{v}");
        let id = v["snapshotId"].as_str().unwrap().to_string();
        let restored = format!("restored-{i}");
        env.restore_volume(&id, &s.pool_name, &restored).await;
        assert!(
            read_image(&pool, &restored) == *bytes,
            "{restored} differs from {image}"
        );
        first.push(id);
    }
    // The two lifeboat-csi images (one clusterID and Secret) share one group snapshot; the
    // Rook one, reached through another clusterID, has one of its own (so it too is
    // snapshotted before the objects are read).
    let point = |volumes: &Value, i: usize| volume(volumes, &format!("data-{i}"))["groupSnapshot"].clone();
    let first_point = point(volumes, 0);
    assert!(
        first_point.as_str().is_some_and(|p| p.contains('@')) && point(volumes, 1) == first_point,
        "{volumes}"
    );
    assert!(
        point(volumes, 2).as_str().is_some_and(|p| p.contains('@')) && point(volumes, 2) != first_point,
        "{volumes}"
    );
    assert!(
        !volumes.to_string().contains("not in the group snapshot"),
        "{volumes}"
    );
    let groups = ceph
        .rbd_cmd()
        .args(["group", "ls", &s.pool_name])
        .output()
        .unwrap();
    assert!(
        groups.status.success() && groups.stdout.iter().all(u8::is_ascii_whitespace),
        "RBD groups left: {}",
        String::from_utf8_lossy(&groups.stdout)
    );
    // The objects are there too: the claims and their volumes.
    let listed = run(env.drctl(&["backup", "list", "-o", "json"])).await;
    let list: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|s| s["tags"]["backup"] == "nightly"),
        "{list}"
    );

    // Change one image; the next backup reads only what changed since the first.
    {
        let mut img = pool.open(&s.images[0].0, None).unwrap();
        img.write_at(9 << 20, &random(77, 64 * 1024)).unwrap();
        img.flush().unwrap();
    }
    let again = run(s.backup("nightly-2", &[])).await;
    assert_eq!(again.status.code(), Some(3), "{}", text(&again));
    assert!(!text(&again).contains(&s.key));
    let report: Value = serde_json::from_slice(&again.stdout).unwrap();
    for (i, earlier) in first.iter().enumerate() {
        let v = volume(&report["volumes"], &format!("data-{i}"));
        assert_eq!(v["read"], "incremental", "{v}");
        assert_ne!(v["snapshotId"].as_str(), Some(earlier.as_str()));
    }
    let second_point = point(&report["volumes"], 0);
    assert!(
        second_point.is_string() && second_point != first_point,
        "{report}"
    );
    assert_eq!(point(&report["volumes"], 1), second_point);
    let changed = volume(&report["volumes"], "data-0")["snapshotId"]
        .as_str()
        .unwrap()
        .to_string();
    env.restore_volume(&changed, &s.pool_name, "restored-incr").await;
    assert!(read_image(&pool, "restored-incr") == read_image(&pool, &s.images[0].0));

    // Leaving the other driver's class out of the selection makes the backup complete.
    let other = format!("{}-gp3", s.ns);
    let narrowed = run(s.backup("nightly-3", &["--volume-exclude-storage-class", &other])).await;
    assert!(narrowed.status.success(), "{}", text(&narrowed));
    let report: Value = serde_json::from_slice(&narrowed.stdout).unwrap();
    assert_eq!(volume(&report["volumes"], "cache")["outcome"], "Excluded");
    // Deleting a Backup forgets its volume snapshots too.
    let deleted = run(env.drctl(&["backup", "delete", "nightly"])).await;
    assert!(deleted.status.success(), "{}", text(&deleted));
    let snaps = run(env.drctl(&["snapshots", "-o", "json"])).await;
    let snaps: Value = serde_json::from_slice(&snaps.stdout).unwrap();
    for id in &first {
        assert!(
            !snaps.as_array().unwrap().iter().any(|s| s["id"] == id.as_str()),
            "{id} still listed"
        );
    }
    assert!(
        snaps
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == changed.as_str()),
        "nightly-2's stay"
    );
    // No scratch config with the key is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("lifeboat-ceph-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    ceph.delete_pool(&s.pool_name).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_fails_the_volumes_without_showing_the_key() {
    let cluster = TestCluster::start().await.unwrap();
    let s = setup(&cluster).await;
    let system_secret: Api<Secret> =
        Api::namespaced(cluster.client(), &secret_namespace(&cluster, &s.ns).await);
    let wrong = "QVFBd3JvbmdrZXl3cm9uZ2tleXdyb25na2V5d3Jvbmc9PQ==";
    let mut secret = system_secret.get("ceph-provisioner").await.unwrap();
    secret.data = ceph_secret("admin", wrong).data;
    system_secret
        .replace("ceph-provisioner", &PostParams::default(), &secret)
        .await
        .unwrap();
    let out = run(s.backup("nightly", &[])).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let all = text(&out);
    assert!(!all.contains(wrong) && !all.contains(&s.key), "{all}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let v = volume(&report["volumes"], "data-0");
    assert_eq!(v["outcome"], "Failed", "{v}");
    assert!(
        v["reason"].as_str().unwrap().contains("ceph-provisioner"),
        "names the Secret: {v}"
    );

    // A Secret named for the backup (`--ceph-secret`, `spec.volumes.cephSecret`) is used for
    // every image instead of the classes' secrets.
    let own: Api<Secret> = Api::namespaced(cluster.client(), &s.ns);
    let mut good = ceph_secret("admin", &s.key);
    good.metadata.name = Some("backup-ceph".to_string());
    own.create(&PostParams::default(), &good).await.unwrap();
    let out = run(s.backup(
        "nightly-own-secret",
        &["--namespace", &s.ns, "--ceph-secret", "backup-ceph"],
    ))
    .await;
    assert_eq!(out.status.code(), Some(3), "only the ebs claim: {}", text(&out));
    let all = text(&out);
    assert!(!all.contains(wrong) && !all.contains(&s.key), "{all}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    for claim in ["data-0", "data-1", "data-2"] {
        assert_eq!(
            volume(&report["volumes"], claim)["outcome"],
            "BackedUp",
            "{report}"
        );
    }
    lifeboat_tests::ceph().unwrap().delete_pool(&s.pool_name).unwrap();
}

/// A running pod with Velero hook annotations mounting the Rook claim: its hooks run around
/// the snapshots (the API test server cannot exec, so the `Fail` pre hook is an error and the
/// `Continue` post hook a warning, both naming the pod), and its image, alone on its
/// connection, is still snapshotted through a group point inside the hooks' window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_hooks_run_around_the_point_and_their_failures_are_reported() {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Patch, PatchParams};
    let cluster = TestCluster::start().await.unwrap();
    let s = setup(&cluster).await;
    let pods: Api<Pod> = Api::namespaced(cluster.client(), &s.ns);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "db-0", "annotations": {
            "pre.hook.backup.velero.io/command": "[\"/sbin/fsfreeze\", \"--freeze\", \"/data\"]",
            "pre.hook.backup.velero.io/timeout": "5s",
            "post.hook.backup.velero.io/command": "[\"/sbin/fsfreeze\", \"--unfreeze\", \"/data\"]",
            "post.hook.backup.velero.io/on-error": "Continue",
        }},
        "spec": {
            "containers": [{"name": "db", "image": "postgres:16"}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-2"}}],
        },
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    pods.patch_status(
        "db-0",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running"}})),
    )
    .await
    .unwrap();

    let out = run(s.backup("hooked", &[])).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let item = format!("pods/{}/db-0", s.ns);
    let named = |list: &str, phase: &str| {
        report[list].as_array().unwrap().iter().any(|e| {
            e["item"] == item.as_str()
                && e["message"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("{phase} hook \"/sbin/fsfreeze --"))
        })
    };
    assert!(named("errors", "pre"), "{report}");
    assert!(named("warnings", "post"), "{report}");
    assert!(!named("errors", "post"), "{report}");
    // The data is still taken, and the Rook image alone on its connection is at a point.
    let rook = volume(&report["volumes"], "data-2");
    assert_eq!(rook["outcome"], "BackedUp", "{rook}");
    assert!(
        rook["groupSnapshot"].as_str().is_some_and(|p| p.contains('@')),
        "{rook}"
    );
    lifeboat_tests::ceph().unwrap().delete_pool(&s.pool_name).unwrap();
}

/// The namespace of the StorageClass's provisioner Secret.
async fn secret_namespace(cluster: &TestCluster, ns: &str) -> String {
    let classes: Api<StorageClass> = Api::all(cluster.client());
    let class = classes.get(&format!("{ns}-rbd")).await.unwrap();
    class.parameters.unwrap()["csi.storage.k8s.io/provisioner-secret-namespace"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_writes_each_claims_data_into_the_mapped_class() {
    use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
    let cluster = TestCluster::start().await.unwrap();
    let s = setup(&cluster).await;
    let env = &s.env;
    let backed = run(s.backup("nightly", &[])).await;
    assert_eq!(backed.status.code(), Some(3), "{}", text(&backed));

    // The cluster it goes back into offers another class, in another pool.
    let ceph = lifeboat_tests::ceph().unwrap();
    let dr_pool = ceph.new_pool("k8sdr").unwrap();
    let system = secret_namespace(&cluster, &s.ns).await;
    let dr_class = format!("{}-dr", s.ns);
    let classes: Api<StorageClass> = Api::all(cluster.client());
    classes
        .create(
            &PostParams::default(),
            &object(
                json!({"metadata": {"name": dr_class}, "provisioner": "csi.lifeboat.dev",
                "reclaimPolicy": "Delete",
                "parameters": {"clusterID": "harness", "pool": dr_pool, "imageFeatures": "layering",
                    "csi.storage.k8s.io/provisioner-secret-name": "ceph-provisioner",
                    "csi.storage.k8s.io/provisioner-secret-namespace": system,
                    "csi.storage.k8s.io/node-stage-secret-name": "ceph-provisioner",
                    "csi.storage.k8s.io/node-stage-secret-namespace": system}}),
            ),
        )
        .await
        .unwrap();
    let copy = format!("{}-copy", s.ns);
    let restore = |mapping: String, extra: &[&str]| {
        let mut args = vec![
            "restore".to_string(),
            "create".to_string(),
            "--from-backup".to_string(),
            "nightly".to_string(),
            "--include-namespaces".to_string(),
            s.ns.clone(),
            "--namespace-mapping".to_string(),
            format!("{}:{copy}", s.ns),
            "--storage-class-mapping".to_string(),
            mapping,
            "-o".to_string(),
            "json".to_string(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        env.drctl(&args)
    };
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(cluster.client(), &copy);

    // A class the target lacks is refused before anything is written, naming it.
    let missing = format!("{}-nowhere", s.ns);
    let refused = run(restore(format!("{}-rbd:{missing}", s.ns), &[])).await;
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(&format!(
            "StorageClass {missing} (mapped from {}-rbd) does not exist",
            s.ns
        )) && stderr
            .lines()
            .filter(|l| l.starts_with("hint:") || l.starts_with("error:"))
            .all(|l| !l.contains("  "))
            && stderr.contains("--storage-class-mapping"),
        "{stderr}"
    );
    assert!(
        claims
            .list(&Default::default())
            .await
            .map(|l| l.items.is_empty())
            .unwrap_or(true),
        "nothing restored"
    );
    let dr = ceph.connect().unwrap().pool(&dr_pool).unwrap();
    assert!(dr.list_images().unwrap().is_empty(), "no image written");

    // A class whose pool is not in Ceph: each claim's data fails, naming the pool, the class
    // and the fix (and the errno once); the claims come back as objects only.
    let ghost_class = format!("{}-ghost", s.ns);
    let ghost_pool = format!("nosuch-{}", s.ns);
    classes
        .create(
            &PostParams::default(),
            &object(
                json!({"metadata": {"name": ghost_class}, "provisioner": "csi.lifeboat.dev",
                "reclaimPolicy": "Delete",
                "parameters": {"clusterID": "harness", "pool": ghost_pool,
                    "csi.storage.k8s.io/provisioner-secret-name": "ceph-provisioner",
                    "csi.storage.k8s.io/provisioner-secret-namespace": system}}),
            ),
        )
        .await
        .unwrap();
    let ghost_ns = format!("{}-ghost", s.ns);
    let ghost = run(env.drctl(&[
        "restore",
        "create",
        "--from-backup",
        "nightly",
        "--include-namespaces",
        &s.ns,
        "--namespace-mapping",
        &format!("{}:{ghost_ns}", s.ns),
        "--storage-class-mapping",
        &format!("{0}-rbd:{ghost_class},{0}-rook:{ghost_class}", s.ns),
        "-o",
        "json",
    ]))
    .await;
    assert_eq!(ghost.status.code(), Some(3), "{}", text(&ghost));
    let report: Value = serde_json::from_slice(&ghost.stdout).unwrap();
    let v = volume(&report["volumes"], "data-0");
    let reason = v["reason"].as_str().unwrap_or_default();
    assert_eq!(v["outcome"], "Failed", "{v}");
    assert!(
        reason.starts_with(&format!(
            "pool {ghost_pool} does not exist in Ceph cluster harness, which StorageClass {ghost_class} names: create it"
        )),
        "{v}"
    );

    // Both drivers' claims (lifeboat-csi and Rook) go into the lifeboat-csi class of the other pool.
    let mapping = format!("{0}-rbd:{dr_class},{0}-rook:{dr_class}", s.ns);
    // A dry run says what it would write, and writes nothing.
    let dry = run(restore(mapping.clone(), &["--dry-run"])).await;
    assert!(dry.status.success(), "{}", text(&dry));
    let report: Value = serde_json::from_slice(&dry.stdout).unwrap();
    let writes: Vec<&Value> = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c.as_str().unwrap().starts_with("write volume data of"))
        .collect();
    assert_eq!(writes.len(), 3, "{report}");
    assert_eq!(volume(&report["volumes"], "data-1")["outcome"], "Planned");
    assert!(dr.list_images().unwrap().is_empty(), "a dry run wrote an image");
    assert!(
        claims
            .list(&Default::default())
            .await
            .map(|l| l.items.is_empty())
            .unwrap_or(true),
        "a dry run created claims"
    );
    // kubectl's names select the claims' data as they select the claims (`pvc` used to
    // restore the claim objects without their data); a selection without claims takes none.
    for (resources, expected) in [("pvc", 3), ("PersistentVolumeClaim", 3), ("configmaps", 0)] {
        let dry = run(restore(
            mapping.clone(),
            &["--dry-run", "--include-resources", resources],
        ))
        .await;
        assert!(dry.status.success(), "{resources}: {}", text(&dry));
        let report: Value = serde_json::from_slice(&dry.stdout).unwrap();
        let writes = report["changes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c.as_str().unwrap().starts_with("write volume data of"))
            .count();
        assert_eq!(writes, expected, "{resources}: {report}");
    }
    let done = run(restore(mapping.clone(), &[])).await;
    assert!(done.status.success(), "{}", text(&done));
    assert!(
        !text(&done).contains(&s.key),
        "the cephx key leaked: {}",
        text(&done)
    );
    let report: Value = serde_json::from_slice(&done.stdout).unwrap();
    let pvs: Api<PersistentVolume> = Api::all(cluster.client());
    for (i, (_, bytes)) in s.images.iter().enumerate() {
        let name = format!("data-{i}");
        let v = volume(&report["volumes"], &name);
        assert_eq!(v["outcome"], "Restored", "{v}");
        let claim = claims.get(&name).await.unwrap();
        let spec = claim.spec.unwrap();
        assert_eq!(spec.storage_class_name.as_deref(), Some(dr_class.as_str()));
        let pv_name = spec.volume_name.unwrap();
        assert_eq!(v["persistentVolume"], pv_name.as_str());
        let pv = pvs.get(&pv_name).await.unwrap();
        let pv_spec = pv.spec.unwrap();
        let claim_ref = pv_spec.claim_ref.unwrap();
        assert_eq!(
            (claim_ref.namespace.as_deref(), claim_ref.name.as_deref()),
            (Some(copy.as_str()), Some(name.as_str()))
        );
        let csi = pv_spec.csi.unwrap();
        let image = v["image"].as_str().unwrap();
        assert_eq!(csi.volume_handle, format!("rbd:harness:{dr_pool}:{image}"));
        assert!(
            read_image(&dr, image) == *bytes,
            "{name}: {image} differs from the backup"
        );
        // lifeboat-csi owns it: the driver's completion record names the volume.
        let owned = dr
            .peek_image_metadata(image, "lifeboat.csi.volume")
            .unwrap()
            .unwrap();
        assert!(owned.contains(&pv_name), "{owned}");
        // And the restore's own mark, which a rerun reads as "finished".
        let mark = dr
            .peek_image_metadata(image, "lifeboat.dev/restored-from")
            .unwrap();
        assert_eq!(mark.as_deref(), v["snapshotId"].as_str(), "{v}");
    }
    // The claim of the other driver comes back unbound, to be provisioned anew: its volume
    // (reclaim policy Delete, no data in the backup) is not recreated, as a copy would name
    // (and could delete) the disk the original uses.
    let cache = claims.get("cache").await.unwrap();
    assert_eq!(cache.spec.unwrap().volume_name, None);
    let ebs = format!("persistentvolumes/{}-pv-ebs", s.ns);
    assert!(
        report["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["item"] == ebs.as_str() && w["message"].as_str().unwrap().contains("Delete")),
        "{report}"
    );

    // Run again (as a retried Restore does): the claims exist, bound to the volumes this
    // restore made, so they are reported as its own work, and nothing new is written.
    let images_before = dr.list_images().unwrap().len();
    let again = run(restore(mapping.clone(), &[])).await;
    assert!(again.status.success(), "{}", text(&again));
    let report: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(
        volume(&report["volumes"], "data-0")["outcome"],
        "Reused",
        "{report}"
    );
    assert_eq!(dr.list_images().unwrap().len(), images_before);

    // The claim and its volume deleted, the image kept (as with Retain): a rerun never writes
    // over that finished image, and does not bring the claim back bound to the backup's volume.
    let pv_name = claims
        .get("data-0")
        .await
        .unwrap()
        .spec
        .unwrap()
        .volume_name
        .unwrap();
    claims.delete("data-0", &Default::default()).await.unwrap();
    pvs.delete(&pv_name, &Default::default()).await.unwrap();
    let rerun = run(restore(mapping, &[])).await;
    assert_eq!(rerun.status.code(), Some(3), "{}", text(&rerun));
    let report: Value = serde_json::from_slice(&rerun.stdout).unwrap();
    let v = volume(&report["volumes"], "data-0");
    assert_eq!(v["outcome"], "Failed", "{v}");
    assert!(v["reason"].as_str().unwrap().contains("exists"), "{v}");
    assert!(claims.get_opt("data-0").await.unwrap().is_none(), "withheld");
    // Nor its volume: no PersistentVolume names the withheld claim (the backup's would name
    // the source image).
    let naming: Vec<String> = pvs
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|pv| {
            pv.spec
                .as_ref()
                .and_then(|s| s.claim_ref.as_ref())
                .is_some_and(|r| {
                    r.namespace.as_deref() == Some(copy.as_str()) && r.name.as_deref() == Some("data-0")
                })
        })
        .filter_map(|pv| pv.metadata.name)
        .collect();
    assert!(naming.is_empty(), "{naming:?}");
    assert!(
        read_image(&dr, v["image"].as_str().unwrap()) == s.images[0].1,
        "the finished image was written over"
    );
    ceph.delete_pool(&dr_pool).unwrap();
    ceph.delete_pool(&s.pool_name).unwrap();
}
