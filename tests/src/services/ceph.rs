//! One shared Ceph 16 cluster per test run: a monitor, a manager, one BlueStore OSD on a
//! sparse file, and RGW serving S3, all on loopback with cephx on.
//!
//! Starting it takes 15–30 s, so it is started once and shared (see [`crate::shared`]);
//! tests stay independent through their own pools ([`Ceph::new_pool`]) and buckets
//! ([`Rgw::new_bucket`]).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::HarnessError;
use crate::process::{Daemon, free_port, port_open, run};
use crate::shared::{load_state, register, save_state, with_setup_lock};
use crate::unique_name;

/// S3 access to the cluster's RGW.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rgw {
    /// `http://127.0.0.1:PORT`, path-style.
    pub endpoint: String,
    /// Access key of the test user.
    pub access_key: String,
    /// Secret key of the test user.
    pub secret_key: String,
    /// Region RGW answers to.
    pub region: String,
}

/// The shared cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ceph {
    dir: PathBuf,
    conf: PathBuf,
    mon_addr: String,
    rgw: Rgw,
    daemons: Vec<Daemon>,
}

static CEPH: OnceLock<Result<Ceph, HarnessError>> = OnceLock::new();

/// The run's Ceph cluster, started on first use.
pub fn ceph() -> Result<&'static Ceph, HarnessError> {
    CEPH.get_or_init(|| with_setup_lock(|dir| Ceph::reuse_or_start(&dir.join("ceph"))))
        .as_ref()
        .map_err(Clone::clone)
}

impl Ceph {
    fn reuse_or_start(dir: &Path) -> Result<Self, HarnessError> {
        let state_file = dir.join("state.json");
        if let Some(existing) = load_state::<Ceph>(&state_file) {
            // A test killed while it held the OSDs stopped (`stop_osd_processes`) never
            // continued them: a stopped OSD still looks alive and would stall every test.
            existing.continue_osds();
            if existing.healthy() {
                return Ok(existing);
            }
        }
        if let Some(stale) = load_state::<Ceph>(&state_file) {
            stale.daemons.iter().for_each(Daemon::stop);
        }
        let _ = std::fs::remove_dir_all(dir);
        let ceph = Self::bootstrap(dir)?;
        save_state(&state_file, &ceph)?;
        Ok(ceph)
    }

    fn healthy(&self) -> bool {
        self.daemons.iter().all(Daemon::is_alive)
            && run("ceph", self.ceph_cmd().args(["--connect-timeout", "5", "health"])).is_ok()
            && self
                .rgw
                .endpoint
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .is_some_and(port_open)
    }

    fn bootstrap(dir: &Path) -> Result<Self, HarnessError> {
        for sub in [
            "run", "log", "keyrings", "mon-a", "osd-0", "mgr-a", "blocks", "rgw",
        ] {
            std::fs::create_dir_all(dir.join(sub))
                .map_err(|e| HarnessError::io(format!("create {sub}"), e))?;
        }
        let fsid = random_uuid()?;
        let mon_port = free_port()?;
        let rgw_port = free_port()?;
        let mon_addr = format!("127.0.0.1:{mon_port}");
        let conf = dir.join("ceph.conf");
        std::fs::write(&conf, config(dir, &fsid, &mon_addr, rgw_port))
            .map_err(|e| HarnessError::io("write ceph.conf", e))?;
        let mut ceph = Self {
            dir: dir.to_path_buf(),
            conf,
            mon_addr: mon_addr.clone(),
            rgw: Rgw {
                endpoint: format!("http://127.0.0.1:{rgw_port}"),
                access_key: random_hex(10)?.to_uppercase(),
                secret_key: random_hex(20)?,
                region: "us-east-1".to_string(),
            },
            daemons: Vec::new(),
        };
        let keyring = |name: &str| {
            dir.join("keyrings")
                .join(format!("{name}.keyring"))
                .display()
                .to_string()
        };
        let authtool = |args: &[&str]| run("ceph-mon", Command::new("ceph-authtool").args(args));

        // Monitor.
        authtool(&[
            "--create-keyring",
            &keyring("mon.a"),
            "--gen-key",
            "-n",
            "mon.",
            "--cap",
            "mon",
            "allow *",
        ])?;
        authtool(&[
            "--create-keyring",
            &keyring("client.admin"),
            "--gen-key",
            "-n",
            "client.admin",
            "--cap",
            "mon",
            "allow *",
            "--cap",
            "osd",
            "allow *",
            "--cap",
            "mds",
            "allow *",
            "--cap",
            "mgr",
            "allow *",
        ])?;
        authtool(&[&keyring("mon.a"), "--import-keyring", &keyring("client.admin")])?;
        let monmap = dir.join("monmap").display().to_string();
        run(
            "ceph-mon",
            Command::new("monmaptool").args(["--create", "--add", "a", &mon_addr, "--fsid", &fsid, &monmap]),
        )?;
        run(
            "ceph-mon",
            ceph.daemon_cmd("ceph-mon").args([
                "--mkfs",
                "-i",
                "a",
                "--monmap",
                &monmap,
                "--keyring",
                &keyring("mon.a"),
            ]),
        )?;
        let mon = ceph.start(
            "ceph-mon",
            ceph.daemon_cmd("ceph-mon").args(["-f", "-i", "a"]),
            "mon.a",
        )?;
        mon.wait_ready("answering `ceph mon stat`", Duration::from_secs(60), || {
            run(
                "ceph-mon",
                ceph.ceph_cmd().args(["--connect-timeout", "3", "mon", "stat"]),
            )
            .is_ok()
        })?;

        // Manager: without it `ceph df` reports nothing and RBD trash purges never run.
        run(
            "ceph-mgr",
            ceph.ceph_cmd().args([
                "auth",
                "get-or-create",
                "mgr.a",
                "mon",
                "allow profile mgr",
                "osd",
                "allow *",
                "mds",
                "allow *",
                "-o",
                &keyring("mgr.a"),
            ]),
        )?;
        ceph.start(
            "ceph-mgr",
            ceph.daemon_cmd("ceph-mgr").args(["-f", "-i", "a"]),
            "mgr.a",
        )?;

        // OSD with BlueStore on a sparse file.
        let id = run("ceph-osd", ceph.ceph_cmd().args(["osd", "create"]))?
            .trim()
            .to_string();
        run(
            "ceph-osd",
            ceph.daemon_cmd("ceph-osd")
                .args(["-i", &id, "--mkfs", "--mkkey", "--no-mon-config"]),
        )?;
        let osd_name = format!("osd.{id}");
        run(
            "ceph-osd",
            ceph.ceph_cmd().args([
                "auth",
                "add",
                &osd_name,
                "osd",
                "allow *",
                "mon",
                "allow profile osd",
                "mgr",
                "allow profile osd",
                "-i",
                &keyring(&osd_name),
            ]),
        )?;
        for args in [
            vec!["osd", "crush", "add-bucket", "localhost", "host"],
            vec!["osd", "crush", "move", "localhost", "root=default"],
            vec!["osd", "crush", "add", &osd_name, "1.0", "host=localhost"],
        ] {
            run("ceph-osd", ceph.ceph_cmd().args(&args))?;
        }
        let osd = ceph.start(
            "ceph-osd",
            ceph.daemon_cmd("ceph-osd").args(["-f", "-i", &id]),
            &osd_name,
        )?;
        osd.wait_ready("up in the OSD map", Duration::from_secs(90), || {
            run("ceph-osd", ceph.ceph_cmd().args(["osd", "stat", "-f", "json"]))
                .ok()
                .and_then(|out| serde_json::from_str::<serde_json::Value>(&out).ok())
                .and_then(|v| v.get("num_up_osds").and_then(serde_json::Value::as_u64))
                .is_some_and(|up| up >= 1)
        })?;
        ceph.create_pool("rbd")?;

        // RGW serving S3.
        run(
            "radosgw",
            ceph.ceph_cmd().args([
                "auth",
                "get-or-create",
                "client.rgw.a",
                "mon",
                "allow rw",
                "osd",
                "allow rwx",
                "-o",
                &keyring("client.rgw.a"),
            ]),
        )?;
        let rgw = ceph.start(
            "radosgw",
            ceph.daemon_cmd("radosgw").args(["-f", "-n", "client.rgw.a"]),
            "client.rgw.a",
        )?;
        rgw.wait_ready("serving HTTP", Duration::from_secs(120), || port_open(rgw_port))?;
        run(
            "radosgw",
            Command::new("radosgw-admin").arg("-c").arg(&ceph.conf).args([
                "user",
                "create",
                "--uid=lifeboat-test",
                "--display-name=lifeboat test",
                &format!("--access-key={}", ceph.rgw.access_key),
                &format!("--secret-key={}", ceph.rgw.secret_key),
            ]),
        )?;
        Ok(ceph)
    }

    fn daemon_cmd(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.arg("-c").arg(&self.conf);
        cmd
    }

    fn start(&mut self, service: &str, cmd: &mut Command, name: &str) -> Result<Daemon, HarnessError> {
        let cmd = std::mem::replace(cmd, Command::new("true"));
        let daemon = Daemon::spawn(service, cmd, &self.dir.join("log").join(format!("{name}.out")))?
            .with_log(self.dir.join("log").join(format!("{name}.log")));
        register(self.dir.parent().unwrap_or(&self.dir), &daemon)?;
        self.daemons.push(daemon.clone());
        Ok(daemon)
    }

    /// A `ceph` CLI command as client.admin against this cluster.
    pub fn ceph_cmd(&self) -> Command {
        self.daemon_cmd("ceph")
    }

    /// An `rbd` CLI command as client.admin against this cluster.
    pub fn rbd_cmd(&self) -> Command {
        self.daemon_cmd("rbd")
    }

    /// A `rados` CLI command as client.admin against this cluster.
    pub fn rados_cmd(&self) -> Command {
        self.daemon_cmd("rados")
    }

    /// The cluster's `ceph.conf` (client.admin's keyring is found through it).
    pub fn conf(&self) -> &Path {
        &self.conf
    }

    /// The monitor address, `127.0.0.1:PORT`.
    pub fn mon_addr(&self) -> &str {
        &self.mon_addr
    }

    /// The client.admin key, as CSI secrets carry it (`userKey`).
    pub fn admin_key(&self) -> Result<String, HarnessError> {
        let out = run("ceph", self.ceph_cmd().args(["auth", "get-key", "client.admin"]))?;
        Ok(out.trim().to_string())
    }

    /// S3 access to RGW.
    pub fn rgw(&self) -> &Rgw {
        &self.rgw
    }

    /// `ceph osd pause` (clients stop sending reads and writes) until the guard is dropped,
    /// also when a test fails: a paused cluster would stall every later test.
    pub fn pause_osds(&self) -> Result<OsdsPaused, HarnessError> {
        run("ceph osd pause", self.ceph_cmd().args(["osd", "pause"]))?;
        Ok(OsdsPaused)
    }

    /// The daemons this cluster runs (mon, mgr, OSDs, RGW).
    pub(crate) fn daemons(&self) -> &[Daemon] {
        &self.daemons
    }

    /// Connects through librados as client.admin.
    pub fn connect(&self) -> Result<lifeboat_rbd::Cluster, HarnessError> {
        lifeboat_rbd::Cluster::connect("admin", &self.conf).map_err(|e| HarnessError::Start {
            service: "ceph".to_string(),
            reason: e.to_string(),
            log_tail: String::new(),
        })
    }

    /// Creates a fresh RBD pool for one test, named after `prefix`.
    pub fn new_pool(&self, prefix: &str) -> Result<String, HarnessError> {
        let name = unique_name(prefix);
        self.create_pool(&name)?;
        Ok(name)
    }

    fn create_pool(&self, name: &str) -> Result<(), HarnessError> {
        run(
            "ceph",
            self.ceph_cmd().args(["osd", "pool", "create", name, "8", "8"]),
        )?;
        run("ceph", self.rbd_cmd().args(["pool", "init", name]))?;
        Ok(())
    }

    /// Deletes a pool made by [`Ceph::new_pool`].
    pub fn delete_pool(&self, name: &str) -> Result<(), HarnessError> {
        run(
            "ceph",
            self.ceph_cmd().args([
                "osd",
                "pool",
                "delete",
                name,
                name,
                "--yes-i-really-really-mean-it",
            ]),
        )
        .map(|_| ())
    }
}

impl Rgw {
    /// Creates a fresh bucket for one test and returns its name.
    pub fn new_bucket(&self, prefix: &str) -> Result<String, HarnessError> {
        let name = unique_name(prefix).to_lowercase();
        crate::s3::create_bucket(self, &name, false)?;
        Ok(name)
    }

    /// Creates a fresh bucket with S3 Object Lock enabled (and so versioning, which object lock
    /// needs) and returns its name.
    pub fn new_object_lock_bucket(&self, prefix: &str) -> Result<String, HarnessError> {
        let name = unique_name(prefix).to_lowercase();
        crate::s3::create_bucket(self, &name, true)?;
        Ok(name)
    }
}

/// Writes `dir/unreachable.conf`: a monitor address nothing listens on, a well-formed cephx
/// key (librados refuses a malformed one before it tries to connect) and
/// `client mount timeout = mount_timeout_s`, so a connect waits that long and fails.
pub fn unreachable_conf(dir: &Path, mount_timeout_s: u32) -> Result<PathBuf, HarnessError> {
    let port = free_port()?;
    let key = run(
        "ceph-authtool",
        Command::new("ceph-authtool").arg("--gen-print-key"),
    )?;
    let path = dir.join("unreachable.conf");
    std::fs::write(
        &path,
        format!(
            "[global]\nmon host = 127.0.0.1:{port}\nkey = {}\nclient mount timeout = {mount_timeout_s}\nlog to stderr = false\nerr to stderr = false\n",
            key.trim()
        ),
    )
    .map_err(|e| HarnessError::io("write unreachable.conf", e))?;
    Ok(path)
}

/// The OSDs are paused while this lives ([`Ceph::pause_osds`]).
pub struct OsdsPaused;

impl Drop for OsdsPaused {
    fn drop(&mut self) {
        if let Ok(ceph) = ceph() {
            let _ = ceph.ceph_cmd().args(["osd", "unpause"]).output();
        }
    }
}

fn config(dir: &Path, fsid: &str, mon_addr: &str, rgw_port: u16) -> String {
    let d = dir.display();
    format!(
        "[global]
fsid = {fsid}
mon host = {mon_addr}
public addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
run dir = {d}/run
log file = {d}/log/$name.log
# No `admin socket` here: daemons get Ceph's own ($run_dir/$cluster-$name.asok), clients none
# (Ceph's client default). One path for every client.admin made concurrent drctl, rbd and
# ceph processes bind, ping and unlink each other's socket.
keyring = {d}/keyrings/$name.keyring
mon data = {d}/mon-$id
osd data = {d}/osd-$id
mgr data = {d}/mgr-$id
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
# A test cluster must not shut its monitor down because the build machine's disk is busy:
# by default ceph-mon exits below 5 % free space, before logging why.
mon data avail crit = 1
mon data avail warn = 2
mon max pg per osd = 2000
osd objectstore = bluestore
bluestore block path = {d}/blocks/$name.block
bluestore block create = true
bluestore block size = 4294967296
bluestore fsck on mkfs = false
osd memory target = 536870912
bluestore cache autotune = false
bluestore cache size = 134217728

[client.rgw.a]
# Without tcp_nodelay, beast's small responses wait on the client's delayed ACK: ~40 ms per
# request (the production guides recommend it too).
rgw frontends = beast endpoint=127.0.0.1:{rgw_port} tcp_nodelay=1
rgw data = {d}/rgw
rgw thread pool size = 64
"
    )
}

fn random_bytes(n: usize) -> Result<Vec<u8>, HarnessError> {
    use std::io::Read;
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| HarnessError::io("read /dev/urandom", e))?;
    Ok(buf)
}

/// `2n` random lowercase hex digits.
pub(crate) fn random_hex(n: usize) -> Result<String, HarnessError> {
    Ok(random_bytes(n)?.iter().map(|b| format!("{b:02x}")).collect())
}

fn random_uuid() -> Result<String, HarnessError> {
    let h = random_hex(16)?;
    Ok(format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    ))
}
