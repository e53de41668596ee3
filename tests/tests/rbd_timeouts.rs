//! lifeboat-rbd's connection against the shared test Ceph: a connect that fails gives up after
//! the file's `client_mount_timeout` and leaves no librados thread behind; Lifeboat's defaults
//! apply where the file is silent; a `ceph.conf` that sets operation timeouts gets them, and
//! with the OSDs paused an operation then fails with `ETIMEDOUT` instead of waiting forever.
//! A test binary of its own: the pause stops the whole shared cluster.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use lifeboat_rbd::Cluster;

/// Threads of this process (librados starts a dozen per handle).
fn threads() -> Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

#[test]
fn connections_fail_cleanly_and_operations_time_out() -> Result<()> {
    let dir = tempfile::tempdir()?;

    // 1. No monitor at the address: the connect gives up after the config's mount timeout,
    //    names the step, and shuts its half-made handle down (its threads are gone).
    let dead = lifeboat_tests::unreachable_conf(dir.path(), 2)?;
    let before = threads()?;
    let started = Instant::now();
    let refused = match Cluster::connect("admin", &dead) {
        Ok(_) => anyhow::bail!("connected to a port with no monitor"),
        Err(e) => e.to_string(),
    };
    let took = started.elapsed();
    ensure!(
        refused.contains("connect") && refused.contains("timed out"),
        "{refused}"
    );
    ensure!(
        took < Duration::from_secs(30),
        "the 2 s mount timeout took {took:?}"
    );
    // librados joins its threads in rados_shutdown; give exiting threads a moment to go.
    let deadline = Instant::now() + Duration::from_secs(5);
    while threads()? > before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    ensure!(
        threads()? <= before,
        "a failed connect left {} librados threads running",
        threads()? - before
    );

    // 2. Defaults where the config is silent; the config's own values where it sets them.
    let ceph = lifeboat_tests::ceph()?;
    let plain = ceph.connect()?;
    for (option, value) in [
        ("rados_osd_op_timeout", "0"),
        ("rados_mon_op_timeout", "0"),
        ("client_mount_timeout", "60"),
        ("rbd_invalidate_object_map_on_timeout", "false"),
    ] {
        let got = plain.config(option)?;
        ensure!(
            got == value
                || got
                    .parse::<f64>()
                    .ok()
                    .is_some_and(|g| value.parse::<f64>().ok() == Some(g)),
            "{option} = {got}, expected {value}"
        );
    }
    let short = dir.path().join("short.conf");
    std::fs::write(
        &short,
        format!(
            "[global]\nmon host = {}\nkey = {}\nrados osd op timeout = 3\nlog to stderr = false\nerr to stderr = false\n",
            ceph.mon_addr(),
            ceph.admin_key()?
        ),
    )?;
    let cluster = Cluster::connect("admin", &short)?;
    ensure!(cluster.config("rados_osd_op_timeout")?.parse::<f64>()? == 3.0);

    // 3. With the OSDs paused, a read fails with ETIMEDOUT after the config's 3 s. (A client
    //    learns of the pause from the OSD map it fetches when it connects.)
    let pool_name = ceph.new_pool("rbd-timeouts")?;
    let pool = cluster.pool(&pool_name)?;
    pool.write_object("probe", b"written before the pause")?;
    let (failed, took) = {
        let _paused = ceph.pause_osds()?;
        let late = Cluster::connect("admin", &short)?;
        let late_pool = late.pool(&pool_name)?;
        let started = Instant::now();
        (late_pool.read_object("probe", 64), started.elapsed())
    };
    let e = match failed {
        Ok(v) => anyhow::bail!("read {v:?} with the OSDs paused"),
        Err(e) => e,
    };
    ensure!(e.errno() == Some(libc::ETIMEDOUT), "{e}");
    ensure!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(60),
        "the 3 s op timeout took {took:?}"
    );
    // The OSDs are back: the same handle reads again.
    let back = pool.read_object("probe", 64)?.context("probe gone")?;
    ensure!(back == b"written before the pause");
    ceph.delete_pool(&pool_name)?;
    Ok(())
}
