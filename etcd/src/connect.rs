//! Reaching etcd: several endpoints, mutual TLS, and choosing a healthy member.

use std::path::PathBuf;
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

use crate::EtcdError;

/// Client certificate files, as kubeadm lays them out (`/etc/kubernetes/pki/etcd/…`).
#[derive(Debug, Clone)]
pub struct EtcdTlsFiles {
    /// CA that signed the server certificates.
    pub ca: PathBuf,
    /// Client certificate.
    pub cert: Option<PathBuf>,
    /// Client key.
    pub key: Option<PathBuf>,
}

/// Where etcd is.
#[derive(Debug, Clone)]
pub struct EtcdEndpoints {
    /// Client URLs, e.g. `https://10.0.0.1:2379`.
    pub urls: Vec<String>,
    /// TLS material, for `https://` endpoints.
    pub tls: Option<EtcdTlsFiles>,
}

/// A member chosen to snapshot from.
pub(crate) struct Member {
    pub(crate) client: Client,
    pub(crate) endpoint: String,
    pub(crate) member_id: u64,
    pub(crate) cluster_id: u64,
    pub(crate) revision: i64,
    pub(crate) db_size: i64,
}

fn read(path: &PathBuf) -> Result<Vec<u8>, EtcdError> {
    std::fs::read(path).map_err(|e| EtcdError::TlsFile {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

impl EtcdEndpoints {
    fn options(&self) -> Result<ConnectOptions, EtcdError> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(600));
        if let Some(tls) = &self.tls {
            let mut t = TlsOptions::new().ca_certificate(Certificate::from_pem(read(&tls.ca)?));
            if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
                t = t.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            options = options.with_tls(t);
        }
        Ok(options)
    }

    /// Asks every endpoint for its status and picks the leader, or else the first healthy
    /// member; the error lists every endpoint with why it was unusable.
    pub(crate) async fn healthy_member(&self) -> Result<Member, EtcdError> {
        if self.urls.is_empty() {
            return Err(EtcdError::NoEndpoints);
        }
        let options = self.options()?;
        let mut healthy = Vec::new();
        let mut problems = Vec::new();
        for url in &self.urls {
            let attempt = async {
                let mut client = Client::connect([url.as_str()], Some(options.clone())).await?;
                let status = tokio::time::timeout(Duration::from_secs(5), client.status())
                    .await
                    .map_err(|_| {
                        etcd_client::Error::InvalidArgs("status timed out after 5s".to_string())
                    })??;
                Ok::<_, etcd_client::Error>((client, status))
            };
            match attempt.await {
                Ok((client, status)) => {
                    let header = status.header();
                    let member_id = header.map_or(0, |h| h.member_id());
                    if !status.errors().is_empty() {
                        problems.push(format!("{url}: unhealthy: {}", status.errors().join("; ")));
                        continue;
                    }
                    healthy.push((
                        status.leader() == member_id,
                        Member {
                            client,
                            endpoint: url.clone(),
                            member_id,
                            cluster_id: header.map_or(0, |h| h.cluster_id()),
                            revision: header.map_or(0, |h| h.revision()),
                            db_size: status.db_size(),
                        },
                    ));
                }
                Err(e) => problems.push(format!("{url}: {e}")),
            }
        }
        healthy.sort_by_key(|(leader, _)| !*leader);
        healthy
            .into_iter()
            .next()
            .map(|(_, m)| m)
            .ok_or_else(|| EtcdError::NoHealthyMember(problems.join("; ")))
    }
}
