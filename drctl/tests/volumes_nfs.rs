//! `drctl backup create --direct` and `drctl restore create --direct` with the data of a
//! lifeboat-csi NFS claim, against the Kubernetes API test server and the harness's real
//! nfs-ganesha: the directory is backed up file by file through the userspace NFS client,
//! a second backup reads only the file that changed, and a restore mapped into another NFS
//! class writes the files into a new directory there, bound to the restored claim.
#![allow(clippy::unwrap_used)] // a test that cannot set up should panic loudly

mod volumes_support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;
use kube::api::PostParams;
use lifeboat_tests::kube::TestCluster;
use lifeboat_tests::volumes::{bound_claim, object, seeded_bytes};
use serde_json::{Value, json};
use volumes_support::{Env, run, text, volume};

/// An NFS StorageClass of lifeboat-csi whose volumes go under `base` of the harness's export.
async fn nfs_class(cluster: &TestCluster, name: &str, nfs: &lifeboat_tests::NfsDir, base: &str) {
    let classes: Api<StorageClass> = Api::all(cluster.client());
    let params = json!({"backend": "nfs", "server": nfs.server, "share": nfs.share, "baseDir": base});
    classes
        .create(
            &PostParams::default(),
            &object(
                json!({"metadata": {"name": name}, "provisioner": "csi.lifeboat.dev", "parameters": params}),
            ),
        )
        .await
        .unwrap();
}

/// The files under `dir`, relative, with their content and permission bits.
fn files(dir: &Path) -> Vec<(String, Vec<u8>, u32)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
            if meta.is_dir() {
                stack.push(e.path());
            } else if meta.is_file() {
                out.push((
                    rel,
                    std::fs::read(e.path()).unwrap(),
                    meta.permissions().mode() & 0o7777,
                ));
            } else {
                let target = std::fs::read_link(e.path()).unwrap();
                out.push((rel, target.display().to_string().into_bytes(), 0));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn nfs_claims_are_backed_up_file_by_file_and_restore_into_a_mapped_class() {
    let cluster = TestCluster::start().await.unwrap();
    let nfs = lifeboat_tests::nfs().unwrap().new_dir("k8snfs").unwrap();
    let env = Env::new(&cluster).await;

    // A volume directory as lifeboat-csi makes them, holding known files.
    let leaf = format!("vol-{:032x}", 0x5eed);
    let base = format!("{}/volumes", nfs.name);
    let volume_dir = nfs.local.join("volumes").join(&leaf);
    std::fs::create_dir_all(volume_dir.join("conf")).unwrap();
    std::fs::write(volume_dir.join("big.bin"), seeded_bytes(7, 3 << 20)).unwrap();
    std::fs::write(volume_dir.join("conf/app.yaml"), b"replicas: 3\n").unwrap();
    std::fs::write(volume_dir.join("run.sh"), b"#!/bin/sh\necho up\n").unwrap();
    std::fs::set_permissions(volume_dir.join("run.sh"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::os::unix::fs::symlink("conf/app.yaml", volume_dir.join("current")).unwrap();

    let ns = cluster.namespace("nfsvols").await.unwrap();
    let class = format!("{ns}-nfs");
    nfs_class(&cluster, &class, &nfs, &base).await;
    let handle = format!("nfs:{}:{}:{base}/{leaf}:delete", nfs.server, nfs.share);
    bound_claim(
        &cluster.client(),
        &ns,
        "files",
        &format!("{ns}-pv-files"),
        &class,
        json!({"driver": "csi.lifeboat.dev", "volumeHandle": handle, "volumeAttributes": {}}),
    )
    .await;

    let backup = |name: &str| {
        env.drctl(&[
            "backup",
            "create",
            name,
            "--include-namespaces",
            &ns,
            "-o",
            "json",
        ])
    };
    let first = run(backup("first")).await;
    assert!(first.status.success(), "{}", text(&first));
    let report: Value = serde_json::from_slice(&first.stdout).unwrap();
    let v = volume(&report["volumes"], "files");
    assert_eq!(v["outcome"], "BackedUp", "{v}");
    assert_eq!(v["read"], "full", "{v}");
    assert_eq!(v["nfs"]["dir"], format!("{base}/{leaf}").as_str(), "{v}");

    // One file changes (through NFS: the server caches attributes, and a write behind its
    // back on its disk is not seen at once): the next backup reads only it.
    let changed = format!("{}/volumes/{leaf}/conf/app.yaml", nfs.name);
    lifeboat_tests::write_over_nfs(&nfs.server, &nfs.share, &changed, 10, b"5")
        .await
        .unwrap();
    let second = run(backup("second")).await;
    assert!(second.status.success(), "{}", text(&second));
    let report: Value = serde_json::from_slice(&second.stdout).unwrap();
    let v = volume(&report["volumes"], "files");
    assert_eq!(v["read"], "incremental", "{v}");
    let snapshots = run(env.drctl(&["snapshots", "-o", "json"])).await;
    assert!(snapshots.status.success(), "{}", text(&snapshots));
    let listed: Value = serde_json::from_slice(&snapshots.stdout).unwrap();
    let snap = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == v["snapshotId"])
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(
        snap["summary"]["files_read"], 1,
        "only the changed file is read: {snap}"
    );

    // Restore the second backup into another NFS class (another base directory), into
    // another namespace.
    let dr_class = format!("{ns}-nfs-dr");
    nfs_class(&cluster, &dr_class, &nfs, &format!("{}/dr", nfs.name)).await;
    let copy = format!("{ns}-copy");
    let restore = |extra: &[&str]| {
        let mapping = format!("{ns}:{copy}");
        let classes = format!("{class}:{dr_class}");
        let mut args = vec![
            "restore",
            "create",
            "--from-backup",
            "second",
            "--include-namespaces",
            &ns,
            "--namespace-mapping",
            &mapping,
            "--storage-class-mapping",
            &classes,
            "-o",
            "json",
        ];
        args.extend_from_slice(extra);
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        env.drctl(&args)
    };
    let done = run(restore(&[])).await;
    assert!(done.status.success(), "{}", text(&done));
    let report: Value = serde_json::from_slice(&done.stdout).unwrap();
    let v = volume(&report["volumes"], "files");
    assert_eq!(v["outcome"], "Restored", "{v}");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(cluster.client(), &copy);
    let pv_name = claims
        .get("files")
        .await
        .unwrap()
        .spec
        .unwrap()
        .volume_name
        .unwrap();
    assert_eq!(v["persistentVolume"], pv_name.as_str());
    let pv = Api::<PersistentVolume>::all(cluster.client())
        .get(&pv_name)
        .await
        .unwrap();
    let spec = pv.spec.unwrap();
    assert_eq!(spec.persistent_volume_reclaim_policy.as_deref(), Some("Retain"));
    let csi = spec.csi.unwrap();
    let restored_dir = csi.volume_handle.split(':').nth(3).unwrap().to_string();
    assert!(
        restored_dir.starts_with(&format!("{}/dr/vol-", nfs.name)) && csi.volume_handle.ends_with(":retain"),
        "{}",
        csi.volume_handle
    );
    let restored = nfs
        .local
        .join(restored_dir.strip_prefix(&format!("{}/", nfs.name)).unwrap());
    assert_eq!(
        files(&restored),
        files(&volume_dir),
        "the restored directory differs"
    );

    // Again (a retried restore): the claim is this restore's own, and nothing is written.
    let again = run(restore(&[])).await;
    assert!(again.status.success(), "{}", text(&again));
    let report: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(
        volume(&report["volumes"], "files")["outcome"],
        "Reused",
        "{report}"
    );

    // The application uses the directory; then its claim and volume are deleted, the directory
    // kept (Retain). A rerun never writes the backup's files over that finished directory.
    std::fs::write(restored.join("conf/app.yaml"), b"replicas: 9\n").unwrap();
    claims.delete("files", &Default::default()).await.unwrap();
    Api::<PersistentVolume>::all(cluster.client())
        .delete(&pv_name, &Default::default())
        .await
        .unwrap();
    let rerun = run(restore(&[])).await;
    assert_eq!(rerun.status.code(), Some(3), "{}", text(&rerun));
    let report: Value = serde_json::from_slice(&rerun.stdout).unwrap();
    let v = volume(&report["volumes"], "files");
    assert_eq!(v["outcome"], "Failed", "{v}");
    assert!(
        v["reason"].as_str().unwrap().contains(".lifeboat-restored-from"),
        "{v}"
    );
    assert_eq!(
        std::fs::read(restored.join("conf/app.yaml")).unwrap(),
        b"replicas: 9\n",
        "the used directory was written over"
    );
    assert!(claims.get_opt("files").await.unwrap().is_none(), "withheld");
}
