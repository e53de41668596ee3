//! The etcd of a Backup (alone, or beside its objects and volumes): endpoints from the spec,
//! mutual-TLS material from a Secret written to a private temporary directory (mode 0700)
//! that lives only as long as the run.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use lifeboat_backup::Repository;
use lifeboat_backup::progress::Progress;
use lifeboat_backup::snapshot::Snapshot;
use lifeboat_etcd::{EtcdEndpoints, EtcdTlsFiles, snapshot_etcd};
use tempfile::TempDir;

use crate::crd::EtcdSource;
use crate::reconcile::outcome::Failure;

/// Snapshots the etcd cluster `source` names into `repo`.
pub async fn backup_etcd(
    client: &Client,
    namespace: &str,
    source: &EtcdSource,
    repo: &Repository,
    tags: BTreeMap<String, String>,
    progress: Arc<Progress>,
) -> Result<Snapshot, Failure> {
    let (endpoints, _tls_dir) = etcd_endpoints(client, namespace, source).await?;
    snapshot_etcd(repo, &endpoints, tags, progress)
        .await
        .map_err(|e| Failure::Failed(e.to_string()))
}

/// The endpoints `source` names, with its TLS Secret's files written to a private directory
/// that is removed when the returned handle is dropped (keep it for as long as they are used).
pub async fn etcd_endpoints(
    client: &Client,
    namespace: &str,
    source: &EtcdSource,
) -> Result<(EtcdEndpoints, TempDir), Failure> {
    if source.endpoints.is_empty() {
        return Err(Failure::Invalid(
            "spec.etcd.endpoints is empty; list the etcd client URLs (https://HOST:2379)".to_string(),
        ));
    }
    let dir = tempfile::Builder::new()
        .prefix("lifeboat-etcd-tls-")
        .tempdir()
        .map_err(|e| Failure::Failed(format!("create a private directory for etcd TLS files: {e}")))?;
    let tls = match &source.tls_secret {
        None => None,
        Some(r) => Some(tls_files(client, namespace, &r.name, dir.path()).await?),
    };
    let endpoints = EtcdEndpoints {
        urls: source.endpoints.clone(),
        tls,
    };
    Ok((endpoints, dir))
}

async fn tls_files(
    client: &Client,
    namespace: &str,
    name: &str,
    dir: &std::path::Path,
) -> Result<EtcdTlsFiles, Failure> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = api
        .get_opt(name)
        .await
        .map_err(|e| Failure::Transient(format!("read Secret {namespace}/{name}: {e}")))?
        .ok_or_else(|| {
            Failure::Invalid(format!(
                "Secret {namespace}/{name} (spec.etcd.tlsSecret) not found; create it with ca.crt, tls.crt and tls.key"
            ))
        })?;
    let data = secret.data.unwrap_or_default();
    let write = |key: &str| -> Result<Option<std::path::PathBuf>, Failure> {
        let Some(v) = data.get(key) else { return Ok(None) };
        let path = dir.join(key);
        std::fs::write(&path, &v.0)
            .map_err(|e| Failure::Failed(format!("write etcd TLS file {}: {e}", path.display())))?;
        Ok(Some(path))
    };
    let ca = write("ca.crt")?.ok_or_else(|| {
        Failure::Invalid(format!(
            "Secret {namespace}/{name} (spec.etcd.tlsSecret) has no ca.crt; add the etcd CA certificate"
        ))
    })?;
    Ok(EtcdTlsFiles {
        ca,
        cert: write("tls.crt")?,
        key: write("tls.key")?,
    })
}
