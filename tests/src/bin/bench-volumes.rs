//! Volume benchmark on the harness's real Ceph, one run, one table: a 2 GiB RBD image with
//! ext4 and the 1 GiB mixed dataset (rbd-fuse + loop + mount), backed up by `drctl volume
//! backup` (full, then after ~1 % changed: incremental) against restic on the mounted
//! filesystem (the file-level path Velero and K8up take) and `rbd export-diff` of the same
//! snapshots (the floor for reading changed blocks); restore by `drctl volume restore`
//! against `rbd import` of the same data. Run it with `scripts/bench-volumes.sh`.

use std::path::{Path, PathBuf};
use std::process::Command;

use lifeboat_tests::bench::{Measure, change_one_percent, drctl_bin, make_dataset, timed, timed_output};
use lifeboat_tests::repos::make_identity;

const IMAGE_MIB: u64 = 2048;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The image mapped as a block device through rbd-fuse and a loop device.
struct Mapped {
    fuse: PathBuf,
    loop_dev: String,
}

impl Mapped {
    fn new(conf: &Path, pool: &str, image: &str, work: &Path) -> Self {
        let fuse = work.join("fuse");
        std::fs::create_dir_all(&fuse).expect("mkdir");
        run(Command::new("rbd-fuse")
            .arg("-c")
            .arg(conf)
            .args(["-p", pool, "-r", image])
            .arg(&fuse));
        let file = fuse.join(image);
        for _ in 0..100 {
            if file.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let loop_dev = run(Command::new("losetup")
            .args(["--find", "--show", "--direct-io=on"])
            .arg(&file));
        Self { fuse, loop_dev }
    }

    fn mount(&self, at: &Path) {
        std::fs::create_dir_all(at).expect("mkdir");
        run(Command::new("mount").arg(&self.loop_dev).arg(at));
    }

    fn unmount(&self, at: &Path) {
        run(Command::new("umount").arg(at));
        run(&mut Command::new("sync"));
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.loop_dev]).status();
        let _ = Command::new("fusermount").arg("-u").arg(&self.fuse).status();
        let _ = Command::new("umount").arg(&self.fuse).status();
    }
}

fn summary(json: &str) -> (u64, u64, String) {
    let v: serde_json::Value = serde_json::from_str(json).expect("drctl -o json");
    (
        v["summary"]["stored_bytes"].as_u64().unwrap_or(0),
        v["meta"]["read_bytes"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        v["meta"]["read"].as_str().unwrap_or("?").to_string(),
    )
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

fn main() {
    let ceph = lifeboat_tests::ceph().expect("Ceph");
    let conf = ceph.conf().to_path_buf();
    let pool = ceph.new_pool("bench-vol").expect("pool");
    let work = tempfile::Builder::new()
        .prefix("lifeboat-bench-vol-")
        .tempdir()
        .expect("tempdir");
    let w = work.path();
    let rbd = || {
        let mut c = Command::new("rbd");
        c.arg("-c").arg(&conf);
        c
    };
    let spec = |name: &str| format!("{pool}/{name}");
    run(rbd()
        .args(["create", "--size", &IMAGE_MIB.to_string(), &spec("vol")])
        .args([
            "--image-feature",
            "layering,exclusive-lock,object-map,fast-diff,deep-flatten",
        ]));
    let mapped = Mapped::new(&conf, &pool, "vol", w);
    run(Command::new("mkfs.ext4").args([
        "-q",
        "-E",
        "lazy_itable_init=0,lazy_journal_init=0",
        &mapped.loop_dev,
    ]));
    let mnt = w.join("mnt");
    mapped.mount(&mnt);
    eprintln!("writing the 1 GiB dataset into the ext4 volume");
    make_dataset(&mnt.join("data"));
    mapped.unmount(&mnt);

    let (identity, recipient) = make_identity(w, "bench").expect("identity");
    std::fs::create_dir(w.join("repo")).expect("mkdir");
    let env = vec![
        ("DRCTL_REPO".to_string(), w.join("repo").display().to_string()),
        ("DRCTL_IDENTITY".to_string(), identity.display().to_string()),
        ("CEPH_CONF".to_string(), conf.display().to_string()),
        (
            "RESTIC_REPOSITORY".to_string(),
            w.join("restic").display().to_string(),
        ),
        ("RESTIC_PASSWORD".to_string(), "bench".to_string()),
    ];
    let drctl = |args: &[&str]| {
        let mut c = Command::new(drctl_bin());
        c.args(["--quiet"]).args(args);
        c
    };
    timed(drctl(&["repo", "init", "--recipient", &recipient]), &env);
    timed(
        {
            let mut c = Command::new("restic");
            c.args(["init", "--repository-version", "2"]);
            c
        },
        &env,
    );
    let volume_backup = || {
        drctl(&[
            "-o", "json", "volume", "backup", "--pool", &pool, "--image", "vol",
        ])
    };

    // Full: Lifeboat, rbd export-diff of the same point, restic of the same filesystem.
    let (lb_full, out) = timed_output(volume_backup(), &env);
    let (full_stored, full_read, full_mode) = summary(&out);
    run(rbd().args(["snap", "create", &format!("{}@s1", spec("vol"))]));
    let diff1 = w.join("s1.diff");
    let rbd_full = timed(
        {
            let mut c = rbd();
            c.args(["export-diff", &format!("{}@s1", spec("vol"))])
                .arg(&diff1);
            c
        },
        &[],
    );
    mapped.mount(&mnt);
    let restic = || {
        let mut c = Command::new("restic");
        c.args(["backup", "--quiet", "--compression", "auto"])
            .arg(mnt.join("data"));
        c
    };
    let restic_full = timed(restic(), &env);
    change_one_percent(&mnt.join("data"));
    mapped.unmount(&mnt);

    // Incremental after ~1 %.
    let (lb_incr, out) = timed_output(volume_backup(), &env);
    let (incr_stored, incr_read, incr_mode) = summary(&out);
    // Ceph's share of any snapshot-based incremental: creating the new snapshot and removing
    // the old base are monitor (osdmap) updates, each waiting for the next paxos proposal
    // (`paxos_propose_interval`, 1 s by default). Timed here on the same image.
    let snap_create = timed(
        {
            let mut c = rbd();
            c.args(["snap", "create", &format!("{}@s2", spec("vol"))]);
            c
        },
        &[],
    );
    let diff2 = w.join("s2.diff");
    let rbd_incr = timed(
        {
            let mut c = rbd();
            c.args(["export-diff", "--from-snap", "s1", &format!("{}@s2", spec("vol"))])
                .arg(&diff2);
            c
        },
        &[],
    );
    let snap_remove = timed(
        {
            let mut c = rbd();
            c.args(["snap", "rm", "--no-progress", &format!("{}@s1", spec("vol"))]);
            c
        },
        &[],
    );
    let snap_ops = Measure {
        wall: snap_create.wall + snap_remove.wall,
        cpu: snap_create.cpu + snap_remove.cpu,
        rss_mib: snap_create.rss_mib.max(snap_remove.rss_mib),
    };
    let changed = std::fs::metadata(&diff2).map(|m| m.len()).unwrap_or(0);
    mapped.mount(&mnt);
    let restic_incr = timed(restic(), &env);
    mapped.unmount(&mnt);
    drop(mapped);
    let _ = std::fs::remove_file(&diff1);

    // Restore: Lifeboat into a new image, then `rbd import` of the same point's raw export.
    let snaps = run(drctl(&["-o", "json", "snapshots"]).envs(env.iter().map(|(k, v)| (k, v))));
    let list: serde_json::Value = serde_json::from_str(&snaps).expect("snapshots json");
    let latest = list
        .as_array()
        .and_then(|a| a.last())
        .and_then(|s| s["id"].as_str())
        .expect("a snapshot")
        .to_string();
    let lb_restore = timed(
        drctl(&[
            "volume", "restore", &latest, "--pool", &pool, "--image", "restored",
        ]),
        &env,
    );
    run(rbd().args(["rm", "--no-progress", &spec("restored")]));
    let raw = w.join("s2.raw");
    run(rbd()
        .args(["export", "--no-progress", &format!("{}@s2", spec("vol"))])
        .arg(&raw));
    let rbd_import = timed(
        {
            let mut c = rbd();
            c.args(["import", "--no-progress"])
                .arg(&raw)
                .arg(spec("imported"));
            c
        },
        &[],
    );
    let _ = std::fs::remove_file(&raw);
    run(rbd().args(["rm", "--no-progress", &spec("imported")]));

    let row = |name: &str, m: &Measure, note: String| {
        println!(
            "| {name:<38} | {:>8.1} | {:>8.1} | {:>8.0} | {note}",
            m.wall, m.cpu, m.rss_mib
        );
    };
    println!(
        "\nVolume benchmark: {IMAGE_MIB} MiB RBD image, ext4, 1 GiB mixed data; ~1 % changed (one 8 MiB file rewritten, 2 MiB appended)"
    );
    println!(
        "| {:<38} | {:>8} | {:>8} | {:>8} | notes",
        "operation", "wall s", "cpu s", "RSS MiB"
    );
    println!("|{}|", "-".repeat(90));
    row(
        "lifeboat full (drctl volume backup)",
        &lb_full,
        format!(
            "{full_mode}: read {:.0} MiB, stored {:.0} MiB",
            mib(full_read),
            mib(full_stored)
        ),
    );
    row("rbd export-diff (full)", &rbd_full, String::new());
    row(
        "restic backup of the mounted fs (full)",
        &restic_full,
        String::new(),
    );
    row(
        "lifeboat incremental",
        &lb_incr,
        format!(
            "{incr_mode}: read {:.1} MiB, stored {:.1} MiB for {:.1} MiB export-diff",
            mib(incr_read),
            mib(incr_stored),
            mib(changed)
        ),
    );
    row(
        "rbd export-diff --from-snap (incremental)",
        &rbd_incr,
        String::new(),
    );
    row(
        "rbd snap create + snap rm (Ceph's share)",
        &snap_ops,
        "monitor updates any snapshot-based incremental pays".to_string(),
    );
    row("restic backup (incremental)", &restic_incr, String::new());
    row(
        "lifeboat restore (drctl volume restore)",
        &lb_restore,
        String::new(),
    );
    row("rbd import (same data)", &rbd_import, String::new());
    println!(
        "ratios: full vs restic {:.2}x faster; incremental {:.1}% of full, {:.1}x faster than restic's \
         (without Ceph's snapshot share: {:.1}% of full); stored/changed {:.2}; restore rate {:.0}% of rbd import's",
        restic_full.wall / lb_full.wall,
        100.0 * lb_incr.wall / lb_full.wall,
        restic_incr.wall / lb_incr.wall,
        100.0 * (lb_incr.wall - snap_ops.wall).max(0.0) / lb_full.wall,
        incr_stored as f64 / changed.max(1) as f64,
        100.0 * rbd_import.wall / lb_restore.wall
    );
    let _ = ceph.delete_pool(&pool);
}
