//! lifeboat-rbd's trash binding against the shared test Ceph, and what librbd leaves when a
//! remove is killed after moving the image to the trash as "removing": `rbd ls` (and
//! [`Pool::list_image_ids`](lifeboat_rbd::Pool::list_image_ids)) still list it under its
//! name and id, the trash listings leave it out, nobody can open it, and a forced trash
//! remove finishes it once the killed client's watch is gone (after finishing the move, when
//! the entry is still marked as being moved).

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use lifeboat_rbd::{ImageOptions, TrashSource, TrashState, features};
use lifeboat_tests::files::run;

#[test]
fn a_killed_remove_is_listed_by_id_and_finished_by_a_forced_trash_remove() -> Result<()> {
    let ceph = lifeboat_tests::ceph()?;
    let pool_name = ceph.new_pool("rbd-trash")?;
    let cluster = ceph.connect()?;
    let pool = cluster.pool(&pool_name)?;
    // 4 KiB objects and no object map: librbd's remove deletes all 65536 possible data
    // objects one by one, which leaves time to kill it while the image is in the trash.
    let opts = ImageOptions {
        features: Some(features::parse("layering").map_err(anyhow::Error::msg)?),
        order: Some(12),
        ..Default::default()
    };
    pool.create_image("victim", 256 << 20, &opts)?;
    pool.create_image("bystander", 1 << 20, &opts)?;
    // A user's trash entry, listed with its source.
    pool.create_image("deferred", 1 << 20, &opts)?;
    let mut mv = ceph.rbd_cmd();
    mv.args(["trash", "mv", &format!("{pool_name}/deferred")]);
    run(&mut mv);
    let user = pool.trash_list()?;
    ensure!(
        user.len() == 1 && user[0].name == "deferred" && user[0].source == TrashSource::User,
        "{user:?}"
    );

    let mut rm = ceph.rbd_cmd();
    rm.args(["rm", &format!("{pool_name}/victim")])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = rm.spawn()?;
    let start = Instant::now();
    // Moved to the trash: out of the directory, still listed.
    let id = loop {
        if pool.directory_id("victim")?.is_none() {
            let ids = pool.list_image_ids()?;
            if let Some((id, _)) = ids.iter().find(|(_, n)| n == "victim") {
                break id.clone();
            }
        }
        if child.try_wait()?.is_some() {
            bail!("rbd rm finished in {:?} before it was killed", start.elapsed());
        }
        ensure!(
            start.elapsed() < Duration::from_secs(60),
            "victim never left the directory"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    // Into the deletion of its data objects, where the removing client watches it.
    std::thread::sleep(Duration::from_millis(100));
    ensure!(
        child.try_wait()?.is_none(),
        "rbd rm finished before it was killed"
    );
    child.kill()?;
    child.wait()?;

    ensure!(pool.list_images()?.contains(&"victim".to_string()));
    ensure!(pool.image_id("victim")?.is_none());
    ensure!(pool.open("victim", None).is_err(), "a half-removed image opened");
    ensure!(
        pool.trash_list()? == user,
        "the trash listing shows the removing entry"
    );
    // A kill before the move's last step leaves the entry marked as being moved, which every
    // trash remove refuses; put it in that state, and finish the move as the CSI driver does.
    pool.trash_set_state(&id, TrashState::Moving, TrashState::Removing)
        .or_else(|_| pool.trash_set_state(&id, TrashState::Moving, TrashState::Normal))?;
    let refused = pool
        .trash_remove(&id, true)
        .expect_err("a moving entry is refused");
    ensure!(
        refused.errno() == Some(libc::EUCLEAN) || refused.is_busy(),
        "{refused}"
    );
    pool.trash_finish_move(&id)?;
    // Idempotent once moved; refused for an entry being removed.
    pool.trash_finish_move(&id)?;
    pool.trash_set_state(&id, TrashState::Removing, TrashState::Normal)?;
    ensure!(
        pool.trash_finish_move(&id).is_err(),
        "finished the move of an entry being removed"
    );
    match pool.trash_remove(&id, true) {
        Ok(()) => {}
        Err(e) if e.is_busy() => {
            // The killed client still watches it. Instead of waiting for the watch to lapse,
            // what an operator would do: blocklist that client.
            blocklist_watchers(ceph, &pool_name, &id)?;
            pool.trash_remove(&id, true)?;
        }
        Err(e) => return Err(e.into()),
    }
    let absent = pool
        .trash_remove("0123456789ab", true)
        .expect_err("no such entry");
    ensure!(absent.is_not_found(), "{absent}");
    let mut left = pool.list_images()?;
    left.sort();
    ensure!(left == ["bystander"], "{left:?}");
    ensure!(pool.trash_list()? == user);
    Ok(())
}

/// Blocklists every client watching image `id`'s header.
fn blocklist_watchers(ceph: &lifeboat_tests::Ceph, pool: &str, id: &str) -> Result<()> {
    let mut watchers = ceph.rados_cmd();
    watchers.args(["-p", pool, "listwatchers", &format!("rbd_header.{id}")]);
    for line in run(&mut watchers).lines() {
        // "watcher=127.0.0.1:0/123456 client.4321 cookie=…"
        let addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("watcher="))
            .with_context(|| format!("watcher line {line:?}"))?;
        let mut block = ceph.ceph_cmd();
        block.args(["osd", "blocklist", "add", addr]);
        run(&mut block);
    }
    Ok(())
}
