//! Generated kubeconfig files, so kubectl and `kube::Client` reach a test cluster the same way.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::KubeTestError;

/// How the client authenticates.
#[derive(Debug, Clone)]
pub enum Auth {
    /// No credentials (the in-process server accepts everyone).
    None,
    /// A bearer token.
    Token(String),
}

/// How the client checks the server's certificate.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Plain HTTP, nothing to check.
    None,
    /// Trust this CA (PEM).
    Ca(String),
    /// Skip verification (the self-signed serving certificate of a fresh kube-apiserver).
    Insecure,
}

/// Writes `DIR/kubeconfig` for `server`.
pub fn write(dir: &Path, server: &str, auth: &Auth, trust: &Trust) -> Result<PathBuf, KubeTestError> {
    let path = dir.join("kubeconfig");
    write_to(&path, server, auth, trust)?;
    Ok(path)
}

/// Writes a kubeconfig for `server` at `path`, whole or not at all (written beside it, then
/// renamed), so a process waiting for the file never reads half of it.
pub fn write_to(path: &Path, server: &str, auth: &Auth, trust: &Trust) -> Result<(), KubeTestError> {
    let mut cluster = json!({ "server": server });
    match trust {
        Trust::None => {}
        Trust::Ca(pem) => cluster["certificate-authority-data"] = json!(super::tls::base64(pem.as_bytes())),
        Trust::Insecure => cluster["insecure-skip-tls-verify"] = json!(true),
    }
    let user = match auth {
        Auth::None => json!({}),
        Auth::Token(t) => json!({ "token": t }),
    };
    // JSON is YAML, so kubectl reads this as is.
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "lifeboat-test", "cluster": cluster }],
        "users": [{ "name": "lifeboat-test", "user": user }],
        "contexts": [{ "name": "lifeboat-test", "context": { "cluster": "lifeboat-test", "user": "lifeboat-test" } }],
        "current-context": "lifeboat-test",
    });
    let text = serde_json::to_string_pretty(&doc).map_err(|e| KubeTestError::Client(e.to_string()))?;
    let partial = path.with_extension("partial");
    std::fs::write(&partial, text)
        .map_err(|e| KubeTestError::io(format!("write {}", partial.display()), e))?;
    std::fs::rename(&partial, path).map_err(|e| KubeTestError::io(format!("rename to {}", path.display()), e))
}

/// Selects rustls' ring provider for the process: both ring (kube) and aws-lc-rs
/// (object_store) are linked, and rustls refuses to guess between them.
pub fn install_crypto_provider() {
    // Err means a provider is already installed, which is all we need.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The client configuration for the cluster a kubeconfig file names.
pub async fn config(path: &Path) -> Result<kube::Config, KubeTestError> {
    install_crypto_provider();
    let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| KubeTestError::Client(e.to_string()))?;
    kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|e| KubeTestError::Client(e.to_string()))
}

/// A client for the cluster a kubeconfig file names.
pub async fn client(path: &Path) -> Result<kube::Client, KubeTestError> {
    let cfg = config(path).await?;
    kube::Client::try_from(cfg).map_err(|e| KubeTestError::Client(e.to_string()))
}
