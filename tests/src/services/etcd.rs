//! A private etcd 3.4 per test, plain or with mutual TLS as kubeadm configures it.
//!
//! etcd starts in about a second, and tests compact, kill and fill it, so each test gets its
//! own instance instead of a shared one. It is stopped when the handle drops.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use crate::HarnessError;
use crate::process::{Daemon, free_port, port_open, run};

/// Client TLS material for a mutual-TLS etcd: what `--cacert/--cert/--key` take.
#[derive(Debug, Clone)]
pub struct EtcdTls {
    /// CA that signed the server and client certificates.
    pub ca: PathBuf,
    /// Client certificate (CN `lifeboat-test`).
    pub cert: PathBuf,
    /// Client private key.
    pub key: PathBuf,
}

/// A running etcd member on loopback.
pub struct Etcd {
    daemon: Daemon,
    client_port: u16,
    tls: Option<EtcdTls>,
    dir: TempDir,
}

impl Etcd {
    /// Starts etcd serving plain HTTP.
    pub fn start() -> Result<Self, HarnessError> {
        Self::launch(false, &[])
    }

    /// Starts etcd requiring client certificates, like a kubeadm control plane.
    pub fn start_tls() -> Result<Self, HarnessError> {
        Self::launch(true, &[])
    }

    /// Starts etcd with extra flags (e.g. `--quota-backend-bytes`).
    pub fn start_with(tls: bool, extra: &[&str]) -> Result<Self, HarnessError> {
        Self::launch(tls, extra)
    }

    fn launch(tls: bool, extra: &[&str]) -> Result<Self, HarnessError> {
        let dir = tempfile::Builder::new()
            .prefix("lifeboat-etcd-")
            .tempdir()
            .map_err(|e| HarnessError::io("create etcd temp dir", e))?;
        let tls = if tls { Some(make_certs(dir.path())?) } else { None };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let client_port = free_port()?;
        let peer_port = free_port()?;
        let client_url = format!("{scheme}://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let mut cmd = Command::new("etcd");
        cmd.arg("--name=lifeboat-test")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=lifeboat-test={peer_url}"))
            .arg("--log-level=warn")
            .args(extra);
        if let Some(t) = &tls {
            let server = dir.path().join("pki");
            cmd.arg(format!("--cert-file={}", server.join("server.crt").display()))
                .arg(format!("--key-file={}", server.join("server.key").display()))
                .arg(format!("--trusted-ca-file={}", t.ca.display()))
                .arg("--client-cert-auth");
        }
        let daemon = Daemon::spawn("etcd", cmd, &dir.path().join("etcd.log"))?;
        let etcd = Self {
            daemon,
            client_port,
            tls,
            dir,
        };
        etcd.daemon
            .wait_ready("serving clients", Duration::from_secs(30), || {
                port_open(client_port) && etcd.healthy()
            })?;
        Ok(etcd)
    }

    /// Asks `etcdctl endpoint health`, the same check operators use.
    fn healthy(&self) -> bool {
        let mut cmd = self.etcdctl();
        cmd.args(["endpoint", "health", "--command-timeout=2s"]);
        run("etcd", &mut cmd).is_ok()
    }

    /// An `etcdctl` (API v3) command already pointed at this member, TLS flags included.
    pub fn etcdctl(&self) -> Command {
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint()));
        if let Some(t) = &self.tls {
            cmd.arg(format!("--cacert={}", t.ca.display()))
                .arg(format!("--cert={}", t.cert.display()))
                .arg(format!("--key={}", t.key.display()));
        }
        cmd
    }

    /// The client URL, e.g. `https://127.0.0.1:40123`.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// Client TLS material when started with [`Etcd::start_tls`].
    pub fn tls(&self) -> Option<&EtcdTls> {
        self.tls.as_ref()
    }

    /// A scratch directory that lives as long as this member.
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    /// The process id, for tests that kill or pause the member.
    pub fn pid(&self) -> u32 {
        self.daemon.pid
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.daemon.stop();
    }
}

/// Makes a CA, a server certificate for 127.0.0.1/localhost and a client certificate.
fn make_certs(dir: &Path) -> Result<EtcdTls, HarnessError> {
    let pki = dir.join("pki");
    std::fs::create_dir_all(&pki).map_err(|e| HarnessError::io("create pki dir", e))?;
    let p = |name: &str| pki.join(name).display().to_string();
    let openssl = |args: &[&str]| run("etcd certificates", Command::new("openssl").args(args));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=lifeboat-test-ca",
        "-keyout",
        &p("ca.key"),
        "-out",
        &p("ca.crt"),
    ])?;
    let ext = pki.join("server.ext");
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .map_err(|e| HarnessError::io("write server.ext", e))?;
    let client_ext = pki.join("client.ext");
    std::fs::write(&client_ext, "extendedKeyUsage=clientAuth\n")
        .map_err(|e| HarnessError::io("write client.ext", e))?;
    for (name, cn, ext) in [
        ("server", "127.0.0.1", &ext),
        ("client", "lifeboat-test", &client_ext),
    ] {
        openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            &p(&format!("{name}.key")),
            "-out",
            &p(&format!("{name}.csr")),
        ])?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            &p(&format!("{name}.csr")),
            "-CA",
            &p("ca.crt"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext.display().to_string(),
            "-out",
            &p(&format!("{name}.crt")),
        ])?;
    }
    Ok(EtcdTls {
        ca: pki.join("ca.crt"),
        cert: pki.join("client.crt"),
        key: pki.join("client.key"),
    })
}

impl Etcd {
    /// Restores a snapshot file with the stock `etcdctl snapshot restore` and starts a member
    /// on the result: the check that a database a backup produced is one etcd accepts.
    pub fn from_snapshot(db: &Path) -> Result<Self, HarnessError> {
        let data_dir = db.with_extension("restored-data");
        run(
            "etcd",
            Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .args(["snapshot", "restore"])
                .arg(db)
                .arg(format!("--data-dir={}", data_dir.display()))
                .args([
                    "--name=default",
                    "--initial-cluster=default=http://127.0.0.1:2380",
                    "--initial-advertise-peer-urls=http://127.0.0.1:2380",
                ]),
        )?;
        // Flags given later override the harness defaults; the restored data dir's membership
        // wins over --initial-cluster.
        Self::start_with(
            false,
            &[&format!("--data-dir={}", data_dir.display()), "--name=default"],
        )
    }
}
