//! Drill benchmark (issue 20's number): an application of 1,000 objects and a 2 GiB RBD
//! volume, drilled from one cluster into another, with the RPO and RTO the drill measures.
//!
//! Two Kubernetes API test servers in this process (c1, c2), the harness's real Ceph (c1's
//! StorageClass writes into one pool, c2's into another), one local repository. c1 holds
//! 998 ConfigMaps, Deployment `web` and claim `data` on a 2 GiB image with 1 GiB of data
//! (half random, half text; every other 4 MiB block a hole). In one run:
//!
//! 1. `drctl backup create` of the namespace with its volume data (the first, full read);
//! 2. 1 % of the data rewritten (64 KiB writes at random places), then the backup a schedule
//!    would take next (an incremental read of the image), and one of the objects alone;
//! 3. `drctl drill --to c2`: restore objects and volume data, the read-back of the copy
//!    against the recovery point (every chunk's keyed BLAKE3, before anything starts on it;
//!    left out of the RTO), the Deployment controller and the PersistentVolume binder played
//!    2 s and 1 s late, verification of the objects, teardown;
//! 4. the teardown removed the copy (no image of the drill's is left in c2's pool).
//!
//! Prints each step's wall time, CPU and peak RSS, the drill's timeline, and RPO/RTO against
//! the targets (RTO ≤ 60 s; volume-data RPO ≤ 5 min, bounded below by the
//! incremental's time). Run it with `scripts/bench-drill.sh`.

use std::process::Command;
use std::time::Duration;

use lifeboat_rbd::Pool;
use lifeboat_tests::bench::{Measure, drctl_bin, timed_output};
use lifeboat_tests::kube::TestCluster;
use lifeboat_tests::players::{application, play_deployment_controller, play_volume_binder, ready_node};
use lifeboat_tests::repos::make_identity;
use lifeboat_tests::volumes::{bound_claim_of, install_lifeboat_csi, seeded_bytes};
use serde_json::{Value, json};

const IMAGE: u64 = 2 << 30;
const BLOCK: u64 = 4 << 20;
const CLASS: &str = "fast";

/// Writes 1 GiB into `image` of `pool`: every other 4 MiB block, random and text in turn.
fn fill(pool: &Pool, image: &str) {
    let mut img = pool.open(image, None).expect("open");
    let text: Vec<u8> = (0..)
        .flat_map(|i: u64| {
            format!(
                "{{\"ts\":{i},\"level\":\"info\",\"msg\":\"request served\",\"ms\":{}}}\n",
                i % 97
            )
            .into_bytes()
        })
        .take(BLOCK as usize)
        .collect();
    for (n, offset) in (0..IMAGE).step_by(2 * BLOCK as usize).enumerate() {
        let block = if n % 2 == 0 {
            seeded_bytes(n as u64 + 1, BLOCK as usize)
        } else {
            text.clone()
        };
        img.write_at(offset, &block).expect("write");
    }
    img.flush().expect("flush");
}

/// Rewrites 1 % of the data (64 KiB writes at pseudo-random places in the data blocks).
fn change_one_percent(pool: &Pool, image: &str) {
    let mut img = pool.open(image, None).expect("open");
    let piece = 64 << 10;
    let blocks = IMAGE / (2 * BLOCK);
    for i in 0..((IMAGE / 2) / 100 / piece) {
        let r = u64::from_le_bytes(seeded_bytes(1000 + i, 8).try_into().expect("8 bytes"));
        let block = r % blocks;
        let within = (r >> 32) % (BLOCK / piece);
        img.write_at(
            block * 2 * BLOCK + within * piece,
            &seeded_bytes(5000 + i, piece as usize),
        )
        .expect("write");
    }
    img.flush().expect("flush");
}

/// Runs `cmd` timed, off the runtime's threads (the API servers live in this process).
async fn timed(cmd: Command, env: &[(String, String)]) -> (Measure, String) {
    let env = env.to_vec();
    tokio::task::spawn_blocking(move || timed_output(cmd, &env))
        .await
        .expect("timed command")
}

fn row(name: &str, m: &Measure, note: &str) {
    println!(
        "| {name:<50} | {:>8.2} | {:>8.2} | {:>8.0} | {note}",
        m.wall, m.cpu, m.rss_mib
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let ceph = lifeboat_tests::ceph().expect("Ceph");
    let rados = ceph.connect().expect("connect");
    let (src_name, dst_name) = (
        ceph.new_pool("drill-src").expect("pool"),
        ceph.new_pool("drill-dst").expect("pool"),
    );
    let (src, dst) = (
        rados.pool(&src_name).expect("pool"),
        rados.pool(&dst_name).expect("pool"),
    );
    let work = tempfile::Builder::new()
        .prefix("lifeboat-bench-drill-")
        .tempdir()
        .expect("tempdir");
    let w = work.path();

    let c1 = TestCluster::in_process().await.expect("c1");
    let c2 = TestCluster::in_process().await.expect("c2");
    ready_node(&c1.client(), "node-1", "10.0.1.1").await;
    ready_node(&c2.client(), "node-1", "10.0.2.1").await;
    let _players = [
        play_deployment_controller(c1.client(), Duration::from_secs(2)),
        play_deployment_controller(c2.client(), Duration::from_secs(2)),
        play_volume_binder(c2.client(), Duration::from_secs(1)),
    ];
    install_lifeboat_csi(&c1, CLASS, &src_name).await;
    install_lifeboat_csi(&c2, CLASS, &dst_name).await;

    let image = format!("csi-vol-{:032x}", 0xd1);
    src.create_image(
        &image,
        IMAGE,
        &lifeboat_rbd::ImageOptions {
            features: Some(
                lifeboat_rbd::features::parse("layering,exclusive-lock,object-map,fast-diff")
                    .expect("features"),
            ),
            ..Default::default()
        },
    )
    .expect("create image");
    eprintln!("writing 1 GiB into a 2 GiB image");
    fill(&src, &image);
    let ns = c1.namespace("shop").await.expect("namespace");
    application(&c1.client(), &ns, 998).await;
    bound_claim_of(
        &c1.client(),
        &ns,
        "data",
        &format!("{ns}-pv"),
        CLASS,
        json!({"driver": "csi.lifeboat.dev", "volumeHandle": format!("rbd:harness:{src_name}:{image}"),
               "volumeAttributes": {}}),
        "2Gi",
    )
    .await;

    let (identity, recipient) = make_identity(w, "bench").expect("identity");
    let repo = w.join("repo");
    std::fs::create_dir(&repo).expect("mkdir");
    let env = vec![
        ("DRCTL_IDENTITY".to_string(), identity.display().to_string()),
        ("HOME".to_string(), w.display().to_string()),
        ("TMPDIR".to_string(), w.display().to_string()),
    ];
    let repo_arg = repo.display().to_string();
    let drctl = |kubeconfig: Option<&std::path::Path>, args: &[&str]| {
        let mut c = Command::new(drctl_bin());
        c.arg("--quiet");
        if let Some(k) = kubeconfig {
            c.arg("--kubeconfig").arg(k);
        }
        c.args(args).args(["--repo", &repo_arg]);
        c
    };
    let k1 = c1.kubeconfig_path().expect("kubeconfig").to_path_buf();
    let k2 = c2.kubeconfig_path().expect("kubeconfig").to_path_buf();
    timed(drctl(None, &["repo", "init", "--recipient", &recipient]), &env).await;
    for (name, k, role) in [("c1", &k1, "primary"), ("c2", &k2, "standby")] {
        timed(drctl(Some(k), &["cluster", "add", name, "--role", role]), &env).await;
    }
    let plan = w.join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "apiVersion: lifeboat.dev/v1alpha1
kind: FailoverPlan
metadata: {{name: shop}}
spec:
  applications: [{{name: shop, namespaces: [{ns}]}}]
  primary: c1
  standbys: [c2]
  repositories: [{{url: {repo_arg}}}]
  rpoSeconds: 300
  rtoSeconds: 60
  readiness: {{timeoutSeconds: 300, workloads: true, volumeClaims: true}}
"
        ),
    )
    .expect("plan");

    let backup = |name: &str, extra: &[&str]| {
        let mut args = vec!["backup", "create", name, "--include-namespaces", &ns];
        args.extend_from_slice(extra);
        drctl(Some(&k1), &args)
    };
    let (full, _) = timed(backup("full", &[]), &env).await;
    change_one_percent(&src, &image);
    let (incremental, _) = timed(backup("incremental", &[]), &env).await;
    let (objects_only, _) = timed(backup("objects", &["--no-volumes"]), &env).await;
    // The drill restores the newest recovery point with volume data: take one more, so it
    // is the incremental's content the drill's copy is compared with.
    let (latest, _) = timed(backup("latest", &[]), &env).await;

    let before: Vec<String> = dst.list_images().expect("list");
    let (drill, out) = timed(
        drctl(
            None,
            &[
                "drill",
                "--plan",
                plan.to_str().expect("utf-8"),
                "--to",
                "c2",
                "--namespace-suffix",
                "-drill",
                "--report-dir",
                w.join("report").to_str().expect("utf-8"),
                "-o",
                "json",
            ],
        ),
        &env,
    )
    .await;
    let report: Value = serde_json::from_str(&out).expect("drill JSON");
    let left: Vec<String> = dst
        .list_images()
        .expect("list")
        .into_iter()
        .filter(|i| !before.contains(i))
        .collect();
    let v = &report["verification"][0][1];
    let read_back = (v["volumesDataChecked"].as_u64(), v["volumeBytesChecked"].as_u64());

    println!("\nDrill benchmark: 1,000 objects and a 2 GiB RBD volume (1 GiB of data), c1 → c2\n");
    println!(
        "| {:<50} | {:>8} | {:>8} | {:>8} | note",
        "step", "wall s", "CPU s", "RSS MiB"
    );
    println!("|{:-<52}|{:->10}|{:->10}|{:->10}|------", "", "", "", "");
    row("backup, first (objects + full read of the image)", &full, "");
    row("backup after 1 % changed (incremental read)", &incremental, "");
    row("backup of the objects alone (unchanged)", &objects_only, "");
    row("backup, latest (the recovery point drilled)", &latest, "");
    row("drctl drill (whole run, incl. teardown)", &drill, "");
    println!("\nThe drill's timeline:\n");
    for s in report["steps"].as_array().cloned().unwrap_or_default() {
        println!(
            "  {:>6.2} s  {:>6.2} s  {:<8} {}{}",
            s["startSeconds"].as_f64().unwrap_or(0.0),
            s["durationSeconds"].as_f64().unwrap_or(0.0),
            s["state"].as_str().unwrap_or("?"),
            s["title"].as_str().unwrap_or("?"),
            s["message"]
                .as_str()
                .map(|m| format!(" — {m}"))
                .unwrap_or_default()
        );
    }
    let rto = report["rto"]["measuredSeconds"].as_f64().unwrap_or(f64::NAN);
    let rpo = report["rpo"]["measuredSeconds"].as_f64().unwrap_or(f64::NAN);
    println!(
        "\nRTO (drill start → ready): {rto:.2} s, target ≤ 60 s: {}",
        if rto <= 60.0 { "met" } else { "MISSED" }
    );
    println!("RPO of this drill (age of the recovery point used): {rpo:.2} s");
    println!(
        "volume-data RPO floor (a schedule cannot back up more often than its incremental takes): \
         {:.2} s, target ≤ 300 s: {}",
        incremental.wall,
        if incremental.wall <= 300.0 {
            "met"
        } else {
            "MISSED"
        }
    );
    println!(
        "objects RPO floor (an unchanged cluster's objects backup): {:.2} s, target ≤ 30 s: {}",
        objects_only.wall,
        if objects_only.wall <= 30.0 {
            "met"
        } else {
            "MISSED"
        }
    );
    println!(
        "drill verification: {} volume(s) read back before the start, {:.1} MiB matching the \
         recovery point chunk for chunk; images of the drill left in c2's pool: {}",
        read_back.0.unwrap_or(0),
        read_back.1.unwrap_or(0) as f64 / (1 << 20) as f64,
        if left.is_empty() {
            "none".to_string()
        } else {
            left.join(", ")
        }
    );
    assert_eq!(report["success"], true, "the drill failed: {report}");
    assert_eq!(read_back.0, Some(1), "the drill read its copy back: {report}");
    assert!(left.is_empty(), "the teardown left the drill's copy: {left:?}");
}
