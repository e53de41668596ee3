//! Federation runs with volume data, against two API test servers and the harness's real
//! Ceph: a claim on c1 bound to a lifeboat-csi RBD image in one pool; c2's StorageClass of the
//! same name writes into another pool. `drctl drill` restores the claim with its data into
//! a new image of c2's pool, bound to a new PersistentVolume, and its verification checks the
//! binding against the recovery point's catalog; `drctl relocate` then takes a final
//! incremental backup of the image as changed after the scheduled backup, and c2's claim
//! holds exactly those bytes. A claim on a lifeboat-csi NFS directory (real nfs-ganesha) goes
//! along. The drill's teardown removes what it wrote (both copies, RBD image and NFS
//! directory), so a second drill of the same recovery point runs as the first. A failback
//! into c1, which still has the claims on their old volumes, is refused naming them; once they
//! are deleted, `--resume` brings c2's data home. The test plays the Deployment and
//! PersistentVolume controllers.
#![allow(clippy::unwrap_used)] // a test that cannot set up should panic loudly

mod federation_support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use federation_support::{Drctl, json_of, play_deployment_controller, play_volume_binder, ready_node, text};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::PostParams;
use kube::{Api, Client};
use lifeboat_rbd::Pool;
use lifeboat_tests::kube::TestCluster;
use lifeboat_tests::volumes::{
    bound_claim, install_lifeboat_csi, make_image, object, read_image, seeded_bytes,
};
use serde_json::{Value, json};

const CLASS: &str = "fast";
const NFS_CLASS: &str = "shared";

/// lifeboat-csi's NFS StorageClass [`NFS_CLASS`], its volumes under `base` of `nfs`'s export.
async fn install_nfs_class(cluster: &TestCluster, nfs: &lifeboat_tests::NfsDir, base: &str) {
    let params = json!({"backend": "nfs", "server": nfs.server, "share": nfs.share, "baseDir": base});
    Api::<StorageClass>::all(cluster.client())
        .create(
            &PostParams::default(),
            &object(json!({"metadata": {"name": NFS_CLASS}, "provisioner": "csi.lifeboat.dev", "parameters": params})),
        )
        .await
        .unwrap();
}

/// The images of `pool`.
fn images(pool: &Pool) -> BTreeSet<String> {
    pool.list_images().unwrap().into_iter().collect()
}

/// The one image of `pool` not in `before`.
fn new_image(pool: &Pool, before: &BTreeSet<String>) -> String {
    let added: Vec<String> = images(pool).difference(before).cloned().collect();
    assert_eq!(added.len(), 1, "one image written: {added:?}");
    added[0].clone()
}

/// The claim `ns/data` on `client`: bound, to a volume restored from a volume snapshot, on
/// an image of `pool_name`; returns that image.
async fn restored_claim(client: &Client, ns: &str, pool_name: &str) -> String {
    let claim = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .get("data")
        .await
        .unwrap();
    let pv = claim.spec.unwrap().volume_name.expect("bound to a volume");
    let pv: Value = serde_json::to_value(
        Api::<PersistentVolume>::all(client.clone())
            .get(&pv)
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(
        pv["metadata"]["annotations"]["lifeboat.dev/restored-from"].is_string(),
        "{pv}"
    );
    let handle = pv["spec"]["csi"]["volumeHandle"].as_str().unwrap();
    let prefix = format!("rbd:harness:{pool_name}:");
    handle
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{handle} is an image of {pool_name}"))
        .to_string()
}

/// The drill's teardown step says it removed both volumes and kept none.
fn assert_teardown_removed_both(r: &Value) {
    let teardown = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["title"].as_str().unwrap().starts_with("tear down"))
        .unwrap();
    let message = teardown["message"].as_str().unwrap();
    assert!(
        message.contains("removed 2 volume(s) the drill wrote") && !message.contains("kept"),
        "{teardown}"
    );
}

/// The names in `dir`, hidden ones included, sorted; none when it does not exist.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn write_plan(dir: &Path, ns: &str, repo: &str) -> String {
    let plan = format!(
        "apiVersion: lifeboat.dev/v1alpha1
kind: FailoverPlan
metadata: {{name: shop}}
spec:
  applications: [{{name: shop, namespaces: [{ns}]}}]
  primary: c1
  standbys: [c2]
  repositories: [{{url: {repo}}}]
  rpoSeconds: 300
  rtoSeconds: 120
  readiness: {{timeoutSeconds: 60, workloads: true, volumeClaims: true}}
"
    );
    let path = dir.join("plan.yaml");
    std::fs::write(&path, plan).unwrap();
    path.to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_and_relocate_move_the_claims_data() {
    let ceph = lifeboat_tests::ceph().unwrap();
    let c1 = TestCluster::in_process().await.unwrap();
    let c2 = TestCluster::in_process().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (identity, public) = lifeboat_tests::repos::make_identity(dir.path(), "me").unwrap();
    let repo_dir = dir.path().join("repo");
    std::fs::create_dir(&repo_dir).unwrap();
    let repo = repo_dir.to_str().unwrap().to_string();
    let drctl = Drctl {
        identity,
        home: dir.path().to_path_buf(),
        env: vec![("TMPDIR".to_string(), dir.path().display().to_string())],
    };
    let init = drctl
        .run(None, &["repo", "init", "--recipient", &public, "--repo", &repo])
        .await;
    assert!(init.status.success(), "{}", text(&init));
    ready_node(&c1.client(), "node-1", "10.0.1.1").await;
    ready_node(&c2.client(), "node-1", "10.0.2.1").await;
    let _players = [
        play_deployment_controller(c1.client(), Duration::from_millis(500)),
        play_deployment_controller(c2.client(), Duration::from_millis(500)),
        play_volume_binder(c1.client(), Duration::from_millis(500)),
        play_volume_binder(c2.client(), Duration::from_millis(500)),
    ];
    let k1 = c1.kubeconfig_path().unwrap();
    let k2 = c2.kubeconfig_path().unwrap();
    drctl.register("c1", k1, "primary", &["--repo", &repo]).await;
    drctl.register("c2", k2, "standby", &["--repo", &repo]).await;

    // c1: the application with a claim on an image of `source`; c2 writes into `target`.
    let (source_name, target_name) = (ceph.new_pool("fedsrc").unwrap(), ceph.new_pool("feddst").unwrap());
    let rados = ceph.connect().unwrap();
    let (source, target) = (
        rados.pool(&source_name).unwrap(),
        rados.pool(&target_name).unwrap(),
    );
    install_lifeboat_csi(&c1, CLASS, &source_name).await;
    install_lifeboat_csi(&c2, CLASS, &target_name).await;
    let image = format!("csi-vol-{:032x}", 0xfed1);
    let backed_up = make_image(&source, &image, 7);
    let ns = c1.namespace("shop").await.unwrap();
    federation_support::application(&c1.client(), &ns, 5).await;
    bound_claim(
        &c1.client(),
        &ns,
        "data",
        &format!("{ns}-pv"),
        CLASS,
        json!({"driver": "csi.lifeboat.dev", "volumeHandle": format!("rbd:harness:{source_name}:{image}"),
               "volumeAttributes": {}}),
    )
    .await;
    // And a directory of the NFS export, as lifeboat-csi makes them.
    let nfs = lifeboat_tests::nfs().unwrap().new_dir("fednfs").unwrap();
    install_nfs_class(&c1, &nfs, &format!("{}/c1", nfs.name)).await;
    install_nfs_class(&c2, &nfs, &format!("{}/c2", nfs.name)).await;
    let leaf = format!("vol-{:032x}", 0xfed2);
    std::fs::create_dir_all(nfs.local.join("c1").join(&leaf)).unwrap();
    std::fs::write(
        nfs.local.join("c1").join(&leaf).join("orders.db"),
        seeded_bytes(3, 1 << 20),
    )
    .unwrap();
    bound_claim(
        &c1.client(),
        &ns,
        "files",
        &format!("{ns}-pv-files"),
        NFS_CLASS,
        json!({"driver": "csi.lifeboat.dev",
               "volumeHandle": format!("nfs:{}:{}:{}/c1/{leaf}:delete", nfs.server, nfs.share, nfs.name),
               "volumeAttributes": {}}),
    )
    .await;
    drctl.backup(k1, "scheduled", &ns, &["--repo", &repo]).await;
    let plan = write_plan(dir.path(), &ns, &repo);

    // A planned move whose volume data cannot land (the mapped class is missing on c2) is
    // refused at preflight, before anything on c1 is stopped.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&plan)
            .unwrap()
            .replace("name: shop}", "name: shopbad}")
            .replace(
                "standbys: [c2]",
                "standbys: [c2]\n  targets: {c2: {storageClassMapping: {fast: nosuch}}}",
            ),
    )
    .unwrap();
    let refused = drctl
        .run(None, &["relocate", "--plan", bad.to_str().unwrap(), "--to", "c2"])
        .await;
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let said = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(
        said.contains("nothing was stopped") && said.contains("StorageClass nosuch does not exist"),
        "{said}"
    );
    let web = Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(c1.client(), &ns)
        .get("web")
        .await
        .unwrap();
    assert_eq!(
        web.spec.unwrap().replicas,
        Some(2),
        "c1 still runs the application"
    );

    // The drill's plan says volume data moves with the objects.
    let dry = drctl
        .run(
            None,
            &["drill", "--plan", &plan, "--to", "c2", "--dry-run", "-o", "json"],
        )
        .await;
    assert!(dry.status.success(), "{}", text(&dry));
    let shown = String::from_utf8_lossy(&dry.stdout).to_string();
    assert!(!shown.contains("volume data is not restored"), "{shown}");
    let no_volumes = drctl
        .run(
            None,
            &[
                "drill",
                "--plan",
                &plan,
                "--to",
                "c2",
                "--dry-run",
                "--no-volumes",
                "-o",
                "json",
            ],
        )
        .await;
    assert!(
        String::from_utf8_lossy(&no_volumes.stdout).contains("volume data is not restored"),
        "{}",
        text(&no_volumes)
    );

    // The drill: the claim's data in a new image of c2's pool, checked against the catalog.
    let before = images(&target);
    let drill = |reports: std::path::PathBuf| {
        let (drctl, plan) = (&drctl, &plan);
        async move {
            let reports = reports.to_str().unwrap().to_string();
            let args = [
                "drill",
                "--plan",
                plan,
                "--to",
                "c2",
                "--namespace-suffix",
                "-drill",
                "--report-dir",
                &reports,
                "-o",
                "json",
            ];
            drctl.run(None, &args).await
        }
    };
    let reports = dir.path().join("drill");
    let drilled = drill(reports.clone()).await;
    assert!(drilled.status.success(), "{}", text(&drilled));
    let r = json_of(&drilled);
    assert_eq!(r["success"], true, "{r}");
    let v = &r["verification"][0][1];
    assert_eq!(
        (v["volumesExpected"].as_u64(), v["volumesRestored"].as_u64()),
        (Some(2), Some(2)),
        "{r}"
    );
    assert_eq!(
        v["volumesDataChecked"].as_u64(),
        Some(2),
        "the RBD and NFS copies were read back and matched chunk for chunk: {r}"
    );
    assert!(
        v["volumeBytesChecked"].as_u64().unwrap() >= 4 * 700 * 1024 + (1 << 20),
        "{r}"
    );
    // The teardown removes what the drill wrote: with the namespace gone, each claim's new
    // volume goes with its data (the RBD image; the NFS directory and its mark, which reclaim
    // policy Retain would otherwise keep for ever).
    assert_teardown_removed_both(&r);
    assert_eq!(images(&target), before, "the drill's image is removed");
    assert_eq!(
        listing(&nfs.local.join("c2")),
        Vec::<String>::new(),
        "the drill's NFS directory and its mark are removed"
    );
    let md = std::fs::read_to_string(reports.join("report.md")).unwrap();
    assert!(
        md.contains("2/2 volumes restored from the recovery point"),
        "{md}"
    );
    // So the same recovery point drills again (the scheduled drill's case): the restore's
    // names are the same, and nothing of the first drill stands in their way.
    let again = drill(dir.path().join("again")).await;
    assert!(again.status.success(), "{}", text(&again));
    let r = json_of(&again);
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(
        r["verification"][0][1]["volumesDataChecked"].as_u64(),
        Some(2),
        "{r}"
    );
    assert_teardown_removed_both(&r);
    assert_eq!(images(&target), before);
    assert!(
        Api::<PersistentVolume>::all(c2.client())
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "no PersistentVolume of either drill is left on c2"
    );

    // After the scheduled backup the application writes to its volume; a relocate loses none
    // of it: the final backup reads the change, and c2's claim holds the image as it is now.
    let changed = {
        let mut img = source.open(&image, None).unwrap();
        let fresh = seeded_bytes(99, 256 * 1024);
        img.write_at(3 << 20, &fresh).unwrap();
        img.flush().unwrap();
        let mut now = backed_up.clone();
        now[3 << 20..(3 << 20) + fresh.len()].copy_from_slice(&fresh);
        now
    };
    let before = images(&target);
    let moved = drctl
        .run(None, &["relocate", "--plan", &plan, "--to", "c2", "-o", "json"])
        .await;
    assert!(moved.status.success(), "{}", text(&moved));
    let relocated = restored_claim(&c2.client(), &ns, &target_name).await;
    assert_eq!(relocated, new_image(&target, &before));
    assert!(
        read_image(&target, &relocated) == changed,
        "c2's claim holds what was written after the scheduled backup"
    );

    // Life goes on at c2; failback brings it home. c1 still has the claims, bound to the
    // volumes from before the relocate: the restore refuses to start the application on that
    // data, naming the claims and the fix, and --resume continues once they are deleted.
    let on_c2 = {
        let mut img = target.open(&relocated, None).unwrap();
        let fresh = seeded_bytes(123, 128 * 1024);
        img.write_at(9 << 20, &fresh).unwrap();
        img.flush().unwrap();
        let mut now = changed.clone();
        now[9 << 20..(9 << 20) + fresh.len()].copy_from_slice(&fresh);
        now
    };
    let refused = drctl.run(None, &["failback", "--plan", &plan]).await;
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let said = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(
        said.contains("already exist on the target") && said.contains(&format!("{ns}/data")),
        "--quiet still prints the cause, naming the claim: {said}"
    );
    let wrong = drctl
        .run(None, &["failback", "--plan", &plan, "--resume", "--no-volumes"])
        .await;
    assert_eq!(wrong.status.code(), Some(1), "{}", text(&wrong));
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("planned with volume data"),
        "a resume may not drop the volume data the run was planned with: {}",
        text(&wrong)
    );
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(c1.client(), &ns);
    for claim in ["data", "files"] {
        claims.delete(claim, &Default::default()).await.unwrap();
    }
    let before = images(&source);
    let home = drctl.run(None, &["failback", "--plan", &plan, "--resume"]).await;
    assert!(home.status.success(), "{}", text(&home));
    let back = restored_claim(&c1.client(), &ns, &source_name).await;
    assert_eq!(back, new_image(&source, &before));
    assert!(
        read_image(&source, &back) == on_c2,
        "c1's claim holds what was written on c2"
    );

    let all = format!(
        "{}{}{}{}",
        text(&drilled),
        text(&moved),
        text(&refused),
        text(&home)
    );
    assert!(
        !all.contains(&ceph.admin_key().unwrap()),
        "the cephx key stays out of every output"
    );
}
