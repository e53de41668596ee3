//! Running the CSI driver as a child process on a unix socket and talking gRPC to it, plus
//! the driver config, parameters and secrets that point it at the shared test Ceph and NFS.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lifeboat_csi::proto::controller_client::ControllerClient;
use lifeboat_csi::proto::group_controller_client::GroupControllerClient;
use lifeboat_csi::proto::identity_client::IdentityClient;
use lifeboat_csi::proto::node_client::NodeClient;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::HarnessError;

/// A driver process serving a socket in its own temporary directory; killed on drop.
pub struct CsiDriver {
    child: Option<Child>,
    binary: PathBuf,
    args: Vec<String>,
    /// The temporary directory (socket, config, state).
    pub dir: tempfile::TempDir,
    /// The socket path.
    pub socket: PathBuf,
}

/// What to start the driver with.
pub struct DriverOptions {
    /// The driver config (JSON).
    pub config: serde_json::Value,
    /// `controller`, `node` or `all`.
    pub mode: &'static str,
    /// `auto`, `krbd` or `fuse`.
    pub mapper: &'static str,
    /// Extra flags.
    pub extra: Vec<String>,
    /// `--topology` segments (`key=value`); empty starts the driver without the flag.
    pub topology: Vec<String>,
}

impl Default for DriverOptions {
    fn default() -> Self {
        Self {
            config: serde_json::json!({}),
            mode: "all",
            mapper: "auto",
            extra: vec![],
            topology: vec!["topology.csi.lifeboat.dev/zone=test".into()],
        }
    }
}

fn harness(what: &str, e: impl std::fmt::Display) -> HarnessError {
    HarnessError::Io {
        what: what.to_string(),
        message: e.to_string(),
    }
}

impl CsiDriver {
    /// Starts `binary` (the `csi-driver` test binary) and waits until the socket answers.
    pub async fn start(binary: impl AsRef<Path>, opts: DriverOptions) -> Result<Self, HarnessError> {
        let dir = tempfile::Builder::new()
            .prefix("lifeboat-csi-")
            .tempdir()
            .map_err(|e| HarnessError::io("temp dir", e))?;
        let socket = dir.path().join("csi.sock");
        let config = dir.path().join("config.json");
        std::fs::write(&config, opts.config.to_string()).map_err(|e| HarnessError::io("write config", e))?;
        let mut args: Vec<String> = [
            "--endpoint",
            &format!("unix://{}", socket.display()),
            "--node-id",
            "test-node",
            "--mode",
            opts.mode,
            "--mapper",
            opts.mapper,
            "--config",
            &config.to_string_lossy(),
            "--state-dir",
            &dir.path().join("state").to_string_lossy(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for t in opts.topology {
            args.extend(["--topology".to_string(), t]);
        }
        args.extend(opts.extra);
        let mut d = Self {
            child: None,
            binary: binary.as_ref().to_path_buf(),
            args,
            dir,
            socket,
        };
        d.restart().await?;
        Ok(d)
    }

    /// (Re)starts the process with the same arguments and state directory.
    pub async fn restart(&mut self) -> Result<(), HarnessError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("driver.log"))
            .map_err(|e| HarnessError::io("driver log", e))?;
        let err = log.try_clone().map_err(|e| HarnessError::io("driver log", e))?;
        let child = Command::new(&self.binary)
            .args(&self.args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .map_err(|e| harness(&format!("start {}", self.binary.display()), e))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(ch) = channel(&self.socket).await
                && IdentityClient::new(ch)
                    .get_plugin_info(lifeboat_csi::proto::GetPluginInfoRequest {})
                    .await
                    .is_ok()
            {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                return Err(HarnessError::Start {
                    service: "lifeboat-csi".into(),
                    reason: format!("exited with {status}"),
                    log_tail: self.log(),
                });
            }
            if Instant::now() > deadline {
                return Err(HarnessError::Start {
                    service: "lifeboat-csi".into(),
                    reason: "socket did not answer in 20 s".into(),
                    log_tail: self.log(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The driver's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("driver.log")).unwrap_or_default()
    }

    /// The driver's state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// A gRPC channel to the socket.
    pub async fn channel(&self) -> Result<Channel, HarnessError> {
        channel(&self.socket).await
    }

    /// Identity, Controller, GroupController and Node clients on one channel.
    pub async fn clients(&self) -> Result<Clients, HarnessError> {
        let ch = self.channel().await?;
        Ok(Clients {
            identity: IdentityClient::new(ch.clone()),
            controller: ControllerClient::new(ch.clone()),
            group: GroupControllerClient::new(ch.clone()),
            node: NodeClient::new(ch),
        })
    }
}

impl Drop for CsiDriver {
    /// Kills the driver, then undoes whatever a failed test left staged under its directory
    /// (mounts, loop devices, rbd-fuse daemons), which would otherwise hang once the shared
    /// Ceph is stopped.
    fn drop(&mut self) {
        self.kill();
        cleanup_mounts(self.dir.path());
    }
}

/// Lazily unmounts every mount under `dir` (deepest first) and detaches loop devices whose
/// backing file is under it. Reads only /proc and /sys, so a hung FUSE daemon cannot block it.
pub fn cleanup_mounts(dir: &Path) {
    let prefix = dir.to_string_lossy().to_string();
    let mut loops = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/sys/block") {
        for e in entries.flatten() {
            let backing = e.path().join("loop/backing_file");
            if let Ok(b) = std::fs::read_to_string(&backing)
                && b.starts_with(&prefix)
            {
                loops.push(format!("/dev/{}", e.file_name().to_string_lossy()));
            }
        }
    }
    let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&prefix))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        let _ = Command::new("umount").args(["-l", &m]).status();
    }
    for l in loops {
        let _ = Command::new("losetup").args(["-d", &l]).status();
    }
}

/// The four service clients.
pub struct Clients {
    /// Identity.
    pub identity: IdentityClient<Channel>,
    /// Controller.
    pub controller: ControllerClient<Channel>,
    /// GroupController (volume group snapshots).
    pub group: GroupControllerClient<Channel>,
    /// Node.
    pub node: NodeClient<Channel>,
}

/// Connects to a CSI unix socket (the authority in the URI is ignored).
pub async fn channel(socket: &Path) -> Result<Channel, HarnessError> {
    let path = socket.to_path_buf();
    Endpoint::try_from("http://localhost")
        .map_err(|e| harness("endpoint", e))?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let p = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(p).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
        .map_err(|e| harness(&format!("connect {}", socket.display()), e))
}

/// Driver config, StorageClass parameters, secrets.
pub type RbdSetup = (
    serde_json::Value,
    HashMap<String, String>,
    HashMap<String, String>,
);

/// The driver config, StorageClass parameters and secrets for RBD volumes in `pool` on the
/// shared test Ceph; the admin key is written to `key_file` for the driver's read-only calls.
pub fn rbd_setup(ceph: &crate::Ceph, pool: &str, key_file: &Path) -> Result<RbdSetup, HarnessError> {
    let key = ceph.admin_key()?;
    std::fs::write(key_file, &key).map_err(|e| HarnessError::io("write key file", e))?;
    let config = serde_json::json!({
        "rbd": [{
            "clusterID": "test",
            "monitors": [ceph.mon_addr()],
            "user": "admin",
            "keyFile": key_file,
            "pools": [pool],
        }]
    });
    let params = HashMap::from([
        ("backend".to_string(), "rbd".to_string()),
        ("clusterID".to_string(), "test".to_string()),
        ("pool".to_string(), pool.to_string()),
        ("imageFeatures".to_string(), "layering".to_string()),
        ("csi.storage.k8s.io/fstype".to_string(), "ext4".to_string()),
    ]);
    let secrets = HashMap::from([
        ("userID".to_string(), "admin".to_string()),
        ("userKey".to_string(), key),
    ]);
    Ok((config, params, secrets))
}

/// Image names in a pool, through the `rbd` CLI (independent of the driver's own listing).
pub fn rbd_ls(ceph: &crate::Ceph, pool: &str) -> Result<Vec<String>, HarnessError> {
    let out = ceph
        .rbd_cmd()
        .args(["ls", "-p", pool])
        .output()
        .map_err(|e| HarnessError::io("rbd ls", e))?;
    if !out.status.success() {
        return Err(harness("rbd ls", String::from_utf8_lossy(&out.stderr)));
    }
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    names.sort();
    Ok(names)
}

/// A mount capability with `fs_type` and access mode SINGLE_NODE_WRITER.
pub fn mount_cap(fs_type: &str) -> lifeboat_csi::proto::VolumeCapability {
    use lifeboat_csi::proto::volume_capability::{AccessMode, AccessType, MountVolume, access_mode::Mode};
    lifeboat_csi::proto::VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: fs_type.into(),
            ..Default::default()
        })),
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
    }
}

/// A raw block capability, SINGLE_NODE_WRITER.
pub fn block_cap() -> lifeboat_csi::proto::VolumeCapability {
    use lifeboat_csi::proto::volume_capability::{AccessMode, AccessType, BlockVolume, access_mode::Mode};
    lifeboat_csi::proto::VolumeCapability {
        access_type: Some(AccessType::Block(BlockVolume {})),
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
    }
}

/// A driver serving RBD volumes in a new pool of the shared test Ceph, with the StorageClass
/// parameters and secrets for that pool.
pub struct RbdEnv {
    /// The driver process.
    pub driver: CsiDriver,
    /// The test's own pool.
    pub pool: String,
    /// StorageClass parameters (`imageFeatures: layering`, ext4).
    pub params: HashMap<String, String>,
    /// Secrets (the admin key).
    pub secrets: HashMap<String, String>,
}

impl RbdEnv {
    /// Starts `binary` (the `csi-driver` test binary) on a new pool named after `prefix`;
    /// `opts.config` is replaced by the pool's driver config after `edit` has seen it.
    pub async fn start(
        binary: impl AsRef<Path>,
        prefix: &str,
        mut opts: DriverOptions,
        edit: impl FnOnce(&mut serde_json::Value),
    ) -> Result<Self, HarnessError> {
        let ceph = crate::ceph()?;
        let pool = ceph.new_pool(prefix)?;
        let keydir = tempfile::tempdir().map_err(|e| HarnessError::io("temp dir", e))?;
        let (mut config, params, secrets) = rbd_setup(ceph, &pool, &keydir.keep().join("admin.key"))?;
        edit(&mut config);
        opts.config = config;
        let driver = CsiDriver::start(binary, opts).await?;
        Ok(Self {
            driver,
            pool,
            params,
            secrets,
        })
    }

    /// A CreateVolume request for `bytes` with this pool's parameters and secrets.
    pub fn create_req(&self, name: &str, bytes: i64) -> lifeboat_csi::proto::CreateVolumeRequest {
        lifeboat_csi::proto::CreateVolumeRequest {
            name: name.into(),
            capacity_range: Some(lifeboat_csi::proto::CapacityRange {
                required_bytes: bytes,
                limit_bytes: 0,
            }),
            volume_capabilities: vec![mount_cap("ext4")],
            parameters: self.params.clone(),
            secrets: self.secrets.clone(),
            ..Default::default()
        }
    }

    /// A DeleteVolume request with the secrets.
    pub fn delete_req(&self, id: &str) -> lifeboat_csi::proto::DeleteVolumeRequest {
        lifeboat_csi::proto::DeleteVolumeRequest {
            volume_id: id.into(),
            secrets: self.secrets.clone(),
        }
    }

    /// Image names in the pool, through the `rbd` CLI.
    pub fn images(&self) -> Result<Vec<String>, HarnessError> {
        rbd_ls(crate::ceph()?, &self.pool)
    }
}

/// The gRPC code of a call that must fail; panics with the answer if it succeeded.
pub fn code<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> tonic::Code {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(s) => s.code(),
    }
}
