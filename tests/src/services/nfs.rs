//! One shared nfs-ganesha server per test run, exporting a temporary directory over NFSv3 and
//! NFSv4 on 127.0.0.1, registered with rpcbind so userspace clients find it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::HarnessError;
use crate::process::{Daemon, free_port, port_open, run};
use crate::shared::{load_state, register, save_state, with_setup_lock};
use crate::unique_name;

/// The shared NFS server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Nfs {
    dir: PathBuf,
    export: PathBuf,
    nfs_port: u16,
    daemons: Vec<Daemon>,
}

/// A directory on the export reserved for one test.
#[derive(Debug, Clone)]
pub struct NfsDir {
    /// Server address, as StorageClasses give it.
    pub server: String,
    /// The export's path (what an NFSv3 client mounts), as StorageClasses give `share`.
    pub share: String,
    /// The test's own directory under the share.
    pub name: String,
    /// Where that directory is on the server's disk, to check results without NFS.
    pub local: PathBuf,
}

static NFS: OnceLock<Result<Nfs, HarnessError>> = OnceLock::new();

/// The run's NFS server, started on first use.
pub fn nfs() -> Result<&'static Nfs, HarnessError> {
    NFS.get_or_init(|| with_setup_lock(|dir| Nfs::reuse_or_start(dir, &dir.join("nfs"))))
        .as_ref()
        .map_err(Clone::clone)
}

impl Nfs {
    fn reuse_or_start(state_root: &Path, dir: &Path) -> Result<Self, HarnessError> {
        let state_file = dir.join("state.json");
        if let Some(existing) = load_state::<Nfs>(&state_file)
            && existing.healthy()
        {
            return Ok(existing);
        }
        if let Some(stale) = load_state::<Nfs>(&state_file) {
            stale.daemons.iter().for_each(Daemon::stop);
        }
        let _ = std::fs::remove_dir_all(dir);
        let nfs = Self::bootstrap(state_root, dir)?;
        save_state(&state_file, &nfs)?;
        Ok(nfs)
    }

    fn healthy(&self) -> bool {
        self.daemons.iter().all(Daemon::is_alive)
            && port_open(111)
            && port_open(self.nfs_port)
            && self.lists()
    }

    /// Lists the export through libnfs, a userspace client that asks rpcbind for the ports.
    fn lists(&self) -> bool {
        run("nfs-ganesha", Command::new("nfs-ls").arg(self.url(""))).is_ok()
    }

    fn bootstrap(state_root: &Path, dir: &Path) -> Result<Self, HarnessError> {
        let export = dir.join("export");
        for sub in [export.clone(), dir.join("recovery")] {
            std::fs::create_dir_all(&sub)
                .map_err(|e| HarnessError::io(format!("create {}", sub.display()), e))?;
        }
        let mut daemons = Vec::new();
        if !port_open(111) {
            // rpcbind's port is fixed machine-wide: one for everyone, started if missing.
            std::fs::create_dir_all("/run/rpcbind")
                .map_err(|e| HarnessError::io("create /run/rpcbind", e))?;
            let mut cmd = Command::new("rpcbind");
            cmd.args(["-f", "-w"]);
            let rpcbind = Daemon::spawn("rpcbind", cmd, &dir.join("rpcbind.log"))?;
            register(state_root, &rpcbind)?;
            rpcbind.wait_ready("listening on port 111", Duration::from_secs(10), || {
                port_open(111)
            })?;
            daemons.push(rpcbind);
        }
        let nfs_port = free_port()?;
        let mnt_port = free_port()?;
        let conf = dir.join("ganesha.conf");
        std::fs::write(&conf, config(dir, &export, nfs_port, mnt_port))
            .map_err(|e| HarnessError::io("write ganesha.conf", e))?;
        let log = dir.join("ganesha.log");
        let mut cmd = Command::new("ganesha.nfsd");
        cmd.arg("-F")
            .arg("-f")
            .arg(&conf)
            .arg("-L")
            .arg(&log)
            .arg("-p")
            .arg(dir.join("ganesha.pid"))
            .args(["-N", "NIV_EVENT"]);
        let ganesha = Daemon::spawn("nfs-ganesha", cmd, &dir.join("ganesha.out"))?.with_log(log);
        register(state_root, &ganesha)?;
        daemons.push(ganesha.clone());
        let nfs = Self {
            dir: dir.to_path_buf(),
            export,
            nfs_port,
            daemons,
        };
        ganesha.wait_ready("serving the export", Duration::from_secs(60), || {
            port_open(nfs_port) && nfs.lists()
        })?;
        Ok(nfs)
    }

    /// The server address.
    pub fn server(&self) -> &str {
        "127.0.0.1"
    }

    /// The exported path.
    pub fn share(&self) -> String {
        self.export.display().to_string()
    }

    /// A libnfs URL for `path` under the export (`nfs://127.0.0.1/EXPORT/path`).
    pub fn url(&self, path: &str) -> String {
        format!(
            "nfs://127.0.0.1{}/{}",
            self.export.display(),
            path.trim_start_matches('/')
        )
    }

    /// The server's log directory, for debugging.
    pub fn log_dir(&self) -> &Path {
        &self.dir
    }

    /// Reserves a fresh directory under the export for one test.
    pub fn new_dir(&self, prefix: &str) -> Result<NfsDir, HarnessError> {
        let name = unique_name(prefix);
        let local = self.export.join(&name);
        std::fs::create_dir_all(&local)
            .map_err(|e| HarnessError::io(format!("create {}", local.display()), e))?;
        Ok(NfsDir {
            server: self.server().to_string(),
            share: self.share(),
            name,
            local,
        })
    }
}

fn config(dir: &Path, export: &Path, nfs_port: u16, mnt_port: u16) -> String {
    format!(
        "NFS_CORE_PARAM {{
    Protocols = 3, 4;
    Bind_addr = 127.0.0.1;
    NFS_Port = {nfs_port};
    MNT_Port = {mnt_port};
    Enable_NLM = false;
    Enable_RQUOTA = false;
}}
NFSV4 {{
    Graceless = true;
    RecoveryRoot = {recovery};
}}
EXPORT {{
    Export_Id = 1;
    Path = {export};
    Pseudo = /export;
    Access_Type = RW;
    Squash = No_Root_Squash;
    Protocols = 3, 4;
    Transports = TCP;
    SecType = sys;
    FSAL {{ Name = VFS; }}
}}
",
        recovery = dir.join("recovery").display(),
        export = export.display(),
    )
}

/// Writes `data` at `offset` into the existing file `path` (relative to `export`) on
/// `server` through NFSv3, as a client changing part of a file would: nfs-ganesha caches
/// attributes, so a write behind its back on its disk is not seen for a while.
pub async fn write_over_nfs(
    server: &str,
    export: &str,
    path: &str,
    offset: u64,
    data: &[u8],
) -> Result<(), HarnessError> {
    use nfs3_client::nfs3_types::nfs3::{self, Nfs3Result, diropargs3, filename3};
    use nfs3_client::nfs3_types::rpc::{auth_unix, opaque_auth};
    use nfs3_client::nfs3_types::xdr_codec::Opaque;
    let failed = |what: String| HarnessError::Io {
        what: format!("write {path} over NFS"),
        message: what,
    };
    let mut conn =
        nfs3_client::Nfs3ConnectionBuilder::new(nfs3_client::tokio::TokioConnector, server, export)
            .credential(opaque_auth::auth_unix(&auth_unix::default()))
            .mount()
            .await
            .map_err(|e| failed(format!("mount: {e}")))?;
    let mut fh = conn.root_nfs_fh3();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        let what = diropargs3 {
            dir: fh,
            name: filename3(Opaque::owned(part.as_bytes().to_vec())),
        };
        match conn.lookup(&nfs3::LOOKUP3args { what }).await {
            Ok(Nfs3Result::Ok(ok)) => fh = ok.object,
            Ok(Nfs3Result::Err((s, _))) => return Err(failed(format!("lookup {part}: {s:?}"))),
            Err(e) => return Err(failed(format!("lookup {part}: {e}"))),
        }
    }
    let args = nfs3::WRITE3args {
        file: fh,
        offset,
        count: data.len() as u32,
        stable: nfs3::stable_how::FILE_SYNC,
        data: Opaque::borrowed(data),
    };
    match conn.write(&args).await {
        Ok(Nfs3Result::Ok(w)) if w.count as usize == data.len() => {}
        Ok(Nfs3Result::Ok(_)) => return Err(failed("short write".to_string())),
        Ok(Nfs3Result::Err((s, _))) => return Err(failed(format!("{s:?}"))),
        Err(e) => return Err(failed(e.to_string())),
    }
    let _ = conn.unmount().await;
    Ok(())
}
