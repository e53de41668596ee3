//! CSI provisioning benchmark: CreateVolume + DeleteVolume through the driver's socket, one
//! and 16 requests in flight, against `rbd create` / `rbd rm` on the same pool in the same
//! run. Run it with `scripts/bench-csi.sh`; it prints a table.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use lifeboat_csi::proto::*;
use lifeboat_tests::bench::MachineCpu;
use lifeboat_tests::csi::{CsiDriver, DriverOptions, mount_cap, rbd_setup};

const OPS: usize = 48;
const SIZE: i64 = 1 << 30;

struct Row {
    what: String,
    create: Vec<Duration>,
    delete: Vec<Duration>,
    wall: Duration,
    /// CPU seconds the whole machine spent during the row.
    cpu: f64,
}

fn pct(v: &[Duration], p: f64) -> f64 {
    let mut s: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return 0.0;
    }
    s[((s.len() as f64 - 1.0) * p).round() as usize]
}

/// Waits for a row's (create, delete) timings and measures its wall time and machine CPU
/// from `start` and `cpu`.
async fn collect(
    what: String,
    tasks: Vec<tokio::task::JoinHandle<(Duration, Duration)>>,
    start: Instant,
    cpu: MachineCpu,
) -> Row {
    let mut row = Row {
        what,
        create: vec![],
        delete: vec![],
        wall: Duration::ZERO,
        cpu: 0.0,
    };
    for t in tasks {
        let (c, d) = t.await.expect("task");
        row.create.push(c);
        row.delete.push(d);
    }
    row.wall = start.elapsed();
    row.cpu = MachineCpu::now().seconds_since(&cpu);
    row
}

async fn csi_run(
    driver: &CsiDriver,
    params: &HashMap<String, String>,
    secrets: &HashMap<String, String>,
    inflight: usize,
    tag: &str,
) -> Row {
    let clients = driver.clients().await.expect("clients");
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(inflight));
    let cpu = MachineCpu::now();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..OPS {
        let mut c = clients.controller.clone();
        let (params, secrets, sem) = (params.clone(), secrets.clone(), sem.clone());
        let name = format!("bench-{tag}-{i}");
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await.expect("semaphore");
            let t = Instant::now();
            let v = c
                .create_volume(CreateVolumeRequest {
                    name,
                    capacity_range: Some(CapacityRange {
                        required_bytes: SIZE,
                        limit_bytes: 0,
                    }),
                    volume_capabilities: vec![mount_cap("ext4")],
                    parameters: params,
                    secrets: secrets.clone(),
                    ..Default::default()
                })
                .await
                .expect("create")
                .into_inner()
                .volume
                .expect("volume");
            let created = t.elapsed();
            let t = Instant::now();
            c.delete_volume(DeleteVolumeRequest {
                volume_id: v.volume_id,
                secrets,
            })
            .await
            .expect("delete");
            (created, t.elapsed())
        }));
    }
    collect(format!("CSI, {inflight} in flight"), tasks, start, cpu).await
}

async fn cli_run(ceph: &'static lifeboat_tests::Ceph, pool: &str, inflight: usize, tag: &str) -> Row {
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(inflight));
    let cpu = MachineCpu::now();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..OPS {
        let sem = sem.clone();
        let spec = format!("{pool}/cli-{tag}-{i}");
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await.expect("semaphore");
            let run = |args: Vec<String>| async move {
                let cmd = ceph.rbd_cmd();
                let t = Instant::now();
                let out = tokio::process::Command::from(cmd)
                    .args(&args)
                    .output()
                    .await
                    .expect("rbd");
                assert!(
                    out.status.success(),
                    "rbd {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                t.elapsed()
            };
            let c = run(vec!["create".into(), spec.clone(), "--size".into(), "1G".into()]).await;
            let d = run(vec!["rm".into(), "--no-progress".into(), spec]).await;
            (c, d)
        }));
    }
    collect(format!("rbd CLI, {inflight} in flight"), tasks, start, cpu).await
}

#[tokio::main]
async fn main() {
    let ceph = lifeboat_tests::ceph().expect("test Ceph");
    let pool = ceph.new_pool("bench-csi").expect("pool");
    let keydir = tempfile::tempdir().expect("temp dir");
    let (config, mut params, secrets) = rbd_setup(ceph, &pool, &keydir.path().join("key")).expect("setup");
    // No imageFeatures: the driver's default is what `rbd create` uses by default in Ceph 16
    // (layering,exclusive-lock,object-map,fast-diff,deep-flatten), so both sides make the same
    // images and object-map lets removal skip objects never written.
    params.remove("imageFeatures");
    let exe = std::env::current_exe().expect("current exe");
    let driver_bin = exe.with_file_name("csi-driver");
    let driver = CsiDriver::start(
        &driver_bin,
        DriverOptions {
            config,
            mode: "controller",
            ..Default::default()
        },
    )
    .await
    .expect("start driver");
    // Warm up: the first call opens the cluster connection.
    let _ = csi_run(&driver, &params, &secrets, 1, "warm").await;
    let rows = vec![
        cli_run(ceph, &pool, 1, "s").await,
        csi_run(&driver, &params, &secrets, 1, "s").await,
        cli_run(ceph, &pool, 16, "p").await,
        csi_run(&driver, &params, &secrets, 16, "p").await,
    ];
    println!("\n{OPS} × (create 1 GiB + delete) per row, pool {pool}\n");
    println!(
        "| {:<22} | {:>12} | {:>12} | {:>12} | {:>12} | {:>8} | {:>11} | {:>13} |",
        "", "create p50", "create p99", "delete p50", "delete p99", "pairs/s", "cores busy", "CPU ms/pair"
    );
    println!(
        "|{:-<24}|{:->14}|{:->14}|{:->14}|{:->14}|{:->10}|{:->13}|{:->15}|",
        "", "", "", "", "", "", "", ""
    );
    for r in &rows {
        println!(
            "| {:<22} | {:>9.1} ms | {:>9.1} ms | {:>9.1} ms | {:>9.1} ms | {:>8.1} | {:>11.2} | {:>13.1} |",
            r.what,
            pct(&r.create, 0.5),
            pct(&r.create, 0.99),
            pct(&r.delete, 0.5),
            pct(&r.delete, 0.99),
            OPS as f64 / r.wall.as_secs_f64(),
            r.cpu / r.wall.as_secs_f64(),
            r.cpu * 1000.0 / OPS as f64
        );
    }
    let ratio = pct(&rows[1].create, 0.5) / pct(&rows[0].create, 0.5);
    let delete_ratio = pct(&rows[1].delete, 0.5) / pct(&rows[0].delete, 0.5);
    let speedup = (OPS as f64 / rows[3].wall.as_secs_f64()) / (OPS as f64 / rows[1].wall.as_secs_f64());
    println!("\nCSI create p50 / rbd create p50: {ratio:.2} (target ≤ 1.2)");
    println!("CSI delete p50 / rbd rm p50 at 1 in flight: {delete_ratio:.2} (target ≤ 1.0)");
    println!("CSI 16-in-flight throughput / serial: {speedup:.1}× (target ≥ 5×)");
    println!(
        "(cores busy and CPU are the whole machine's: driver, Ceph daemons and this client; it has {} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    drop(driver);
    let _ = ceph.delete_pool(&pool);
}
