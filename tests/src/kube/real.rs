//! Real API servers: `etcd` + `kube-apiserver` started from `KUBEBUILDER_ASSETS` the way
//! controller-runtime's envtest does, or an existing cluster (`USE_EXISTING_CLUSTER=true`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::{self, Daemon};

use super::KubeTestError;
use super::addresses::AddressRanges;
use super::kubeconfig::{self, Auth};

/// An etcd and a kube-apiserver on loopback, stopped on drop.
#[derive(Debug)]
pub struct Envtest {
    etcd: Daemon,
    apiserver: Daemon,
    etcd_url: String,
}

/// The Service address ranges real API servers are started with: a /16 (65,534 cluster
/// IPs, enough for the 100,000-object benchmark's 20,000 Services, whose namespaces an API
/// server without controllers never finishes deleting) and the default node ports.
pub fn default_ranges() -> AddressRanges {
    AddressRanges {
        service_cidr: (std::net::Ipv4Addr::new(10, 0, 0, 0), 16),
        node_ports: (30000, 32767),
    }
}

impl Envtest {
    /// Compacts etcd at its current revision (physically), so every older resourceVersion
    /// is gone: watches and lists from one get 410.
    pub async fn compact(&self) -> Result<(), KubeTestError> {
        let fail = |e: etcd_client::Error| KubeTestError::Start(format!("compact etcd: {e}"));
        let mut client = etcd_client::Client::connect([self.etcd_url.as_str()], None)
            .await
            .map_err(fail)?;
        let revision = client
            .status()
            .await
            .map_err(fail)?
            .header()
            .map_or(0, |h| h.revision());
        client
            .compact(
                revision,
                Some(etcd_client::CompactionOptions::new().with_physical()),
            )
            .await
            .map_err(fail)?;
        Ok(())
    }
}

impl Drop for Envtest {
    fn drop(&mut self) {
        self.apiserver.stop();
        self.etcd.stop();
    }
}

fn harness(e: crate::HarnessError) -> KubeTestError {
    KubeTestError::Start(e.to_string())
}

/// Starts etcd and kube-apiserver from `assets` with state under `dir` and Service addresses
/// from [`default_ranges`]; returns them and the kubeconfig (token auth, authorization
/// AlwaysAllow, self-signed serving certificate).
pub async fn start_envtest(assets: &Path, dir: &Path) -> Result<(Envtest, PathBuf), KubeTestError> {
    start_envtest_with(assets, dir, &default_ranges()).await
}

/// Like [`start_envtest`], giving Services addresses from `ranges`.
pub async fn start_envtest_with(
    assets: &Path,
    dir: &Path,
    ranges: &AddressRanges,
) -> Result<(Envtest, PathBuf), KubeTestError> {
    for bin in ["etcd", "kube-apiserver"] {
        if !assets.join(bin).is_file() {
            return Err(KubeTestError::Start(format!(
                "KUBEBUILDER_ASSETS={} has no {bin} binary",
                assets.display()
            )));
        }
    }
    let etcd_port = process::free_port().map_err(harness)?;
    let peer_port = process::free_port().map_err(harness)?;
    let api_port = process::free_port().map_err(harness)?;
    let etcd_url = format!("http://127.0.0.1:{etcd_port}");
    let mut cmd = Command::new(assets.join("etcd"));
    cmd.arg(format!("--data-dir={}", dir.join("etcd").display()))
        .arg(format!("--listen-client-urls={etcd_url}"))
        .arg(format!("--advertise-client-urls={etcd_url}"))
        .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"))
        .arg(format!(
            "--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"
        ))
        .arg(format!("--initial-cluster=default=http://127.0.0.1:{peer_port}"));
    let etcd = Daemon::spawn("etcd", cmd, &dir.join("etcd.log")).map_err(harness)?;
    // wait_ready polls with thread sleeps (up to 30 s): off the async runtime.
    let etcd = tokio::task::spawn_blocking(move || {
        match etcd.wait_ready("listening", Duration::from_secs(30), || {
            process::port_open(etcd_port)
        }) {
            Ok(()) => Ok(etcd),
            Err(e) => {
                etcd.stop();
                Err(harness(e))
            }
        }
    })
    .await
    .map_err(|e| KubeTestError::Start(format!("waiting for etcd: {e}")))??;

    let (key, public) = match service_account_key(dir) {
        Ok(paths) => paths,
        Err(e) => {
            etcd.stop();
            return Err(e);
        }
    };
    let token = format!("lifeboat-{:016x}", super::names::random_u64());
    let tokens = dir.join("tokens.csv");
    std::fs::write(
        &tokens,
        format!("{token},lifeboat-admin,lifeboat-admin,\"system:masters\"\n"),
    )
    .map_err(|e| {
        etcd.stop();
        KubeTestError::io("write tokens.csv", e)
    })?;
    let mut cmd = Command::new(assets.join("kube-apiserver"));
    cmd.arg(format!("--etcd-servers={etcd_url}"))
        .arg(format!("--cert-dir={}", dir.join("certs").display()))
        .arg(format!("--secure-port={api_port}"))
        .arg("--bind-address=127.0.0.1")
        .arg("--advertise-address=127.0.0.1")
        .arg(format!(
            "--service-cluster-ip-range={}/{}",
            ranges.service_cidr.0, ranges.service_cidr.1
        ))
        .arg(format!(
            "--service-node-port-range={}-{}",
            ranges.node_ports.0, ranges.node_ports.1
        ))
        .arg("--allow-privileged=true")
        .arg("--authorization-mode=AlwaysAllow")
        .arg(format!("--token-auth-file={}", tokens.display()))
        .arg(format!("--service-account-issuer=https://127.0.0.1:{api_port}"))
        .arg(format!("--service-account-key-file={}", public.display()))
        .arg(format!("--service-account-signing-key-file={}", key.display()))
        .arg("--disable-admission-plugins=ServiceAccount");
    let apiserver = Daemon::spawn("kube-apiserver", cmd, &dir.join("kube-apiserver.log")).map_err(|e| {
        etcd.stop();
        harness(e)
    })?;
    let env = Envtest {
        etcd,
        apiserver,
        etcd_url,
    };
    let path = kubeconfig::write(
        dir,
        &format!("https://127.0.0.1:{api_port}"),
        &Auth::Token(token),
        &kubeconfig::Trust::Insecure,
    )?;
    let client = kubeconfig::client(&path).await?;
    let start = Instant::now();
    loop {
        let ready = client.list_core_api_versions().await.is_ok()
            && kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
                .get("default")
                .await
                .is_ok();
        if ready {
            return Ok((env, path));
        }
        if !env.apiserver.is_alive() {
            return Err(KubeTestError::Start(
                env.apiserver.failed("exited before ready").to_string(),
            ));
        }
        if start.elapsed() > Duration::from_secs(60) {
            return Err(KubeTestError::Start(
                env.apiserver.failed("not ready after 60 s").to_string(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Writes a fresh ECDSA P-256 service-account key pair under `dir`: the private key (PKCS#8
/// PEM, for `--service-account-signing-key-file`) and its public key (SPKI PEM, for
/// `--service-account-key-file`); kube-apiserver accepts EC keys for both. No openssl needed.
fn service_account_key(dir: &Path) -> Result<(PathBuf, PathBuf), KubeTestError> {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| KubeTestError::Start(format!("generate the service-account key: {e}")))?;
    let key = dir.join("sa.key");
    let public = dir.join("sa.pub");
    std::fs::write(&key, pair.serialize_pem()).map_err(|e| KubeTestError::io("write sa.key", e))?;
    std::fs::write(&public, pair.public_key_pem()).map_err(|e| KubeTestError::io("write sa.pub", e))?;
    Ok((key, public))
}

/// A client for the cluster `KUBECONFIG` (or `~/.kube/config`) names.
pub async fn existing_client() -> Result<kube::Client, KubeTestError> {
    kubeconfig::install_crypto_provider();
    let cfg = kube::Config::infer()
        .await
        .map_err(|e| KubeTestError::Client(e.to_string()))?;
    kube::Client::try_from(cfg).map_err(|e| KubeTestError::Client(e.to_string()))
}
