//! Opening the repository a BackupRepository names, with the credentials and key from its
//! Secrets. Secret values go to the store client and the key parser only: never into
//! messages, events or status.

use std::path::PathBuf;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use lifeboat_backup::Repository;
use lifeboat_backup::crypto::UserKey;
use lifeboat_backup::store::{Secret as Credential, Store, StoreOptions};

use crate::crd::{BackupRepository, SecretKeyRef};

/// Why a repository could not be opened; each names the object and the fix.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The BackupRepository does not exist.
    #[error("BackupRepository {namespace}/{name} not found; create it or fix the name")]
    NoRepository {
        /// Namespace looked in.
        namespace: String,
        /// Name looked for.
        name: String,
    },
    /// A Secret or key in it is missing.
    #[error("Secret {namespace}/{name}: {message}")]
    Secret {
        /// Namespace.
        namespace: String,
        /// Secret name.
        name: String,
        /// What is wrong and the fix.
        message: String,
    },
    /// The API server could not be asked.
    #[error("Kubernetes API: {0}")]
    Kube(String),
    /// The store or repository refused.
    #[error("repository {url}: {message}")]
    Repository {
        /// The repository URL.
        url: String,
        /// Why.
        message: String,
    },
}

/// Reads the BackupRepository `name` in `namespace`.
pub async fn get_repository(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<BackupRepository, AccessError> {
    let api: Api<BackupRepository> = Api::namespaced(client.clone(), namespace);
    api.get_opt(name)
        .await
        .map_err(|e| AccessError::Kube(e.to_string()))?
        .ok_or_else(|| AccessError::NoRepository {
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
}

async fn secret(client: &Client, namespace: &str, name: &str) -> Result<Secret, AccessError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    api.get_opt(name)
        .await
        .map_err(|e| AccessError::Kube(e.to_string()))?
        .ok_or_else(|| AccessError::Secret {
            namespace: namespace.to_string(),
            name: name.to_string(),
            message: "not found; create it or fix the reference".to_string(),
        })
}

fn value(s: &Secret, key: &str) -> Option<Vec<u8>> {
    s.data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.clone())
        .or_else(|| {
            s.string_data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|v| v.as_bytes().to_vec())
        })
}

fn text(s: &Secret, key: &str) -> Option<String> {
    value(s, key).map(|v| String::from_utf8_lossy(&v).trim().to_string())
}

/// Opens the repository `repo` describes.
pub async fn open_repository(client: &Client, repo: &BackupRepository) -> Result<Repository, AccessError> {
    let namespace = repo.metadata.namespace.clone().unwrap_or_default();
    let store = open_store(client, repo).await?;
    let key = user_key(client, &namespace, &repo.spec.key_secret).await?;
    Repository::open(&store, &[key])
        .await
        .map_err(|e| AccessError::Repository {
            url: repo.spec.url.clone(),
            message: e.to_string(),
        })
}

/// Opens the store `repo` points at, with the credentials from its Secret, without opening a
/// repository there (a replication destination may hold none yet).
pub async fn open_store(client: &Client, repo: &BackupRepository) -> Result<Store, AccessError> {
    let namespace = repo.metadata.namespace.clone().unwrap_or_default();
    let spec = &repo.spec;
    let mut options = StoreOptions {
        s3_endpoint: spec.s3_endpoint.clone(),
        s3_region: spec.s3_region.clone(),
        azure_endpoint: spec.azure_endpoint.clone(),
        ..StoreOptions::default()
    };
    if let Some(creds) = &spec.credentials_secret {
        let s = secret(client, &namespace, &creds.name).await?;
        options.access_key_id = text(&s, "AWS_ACCESS_KEY_ID");
        options.secret_access_key = text(&s, "AWS_SECRET_ACCESS_KEY").map(Credential::new);
        options.azure_account = text(&s, "AZURE_STORAGE_ACCOUNT_NAME");
        options.azure_access_key = text(&s, "AZURE_STORAGE_ACCOUNT_KEY").map(Credential::new);
        if options.access_key_id.is_none() && options.azure_account.is_none() {
            return Err(AccessError::Secret {
                namespace,
                name: creds.name.clone(),
                message: "holds neither AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY nor \
                          AZURE_STORAGE_ACCOUNT_NAME/AZURE_STORAGE_ACCOUNT_KEY"
                    .to_string(),
            });
        }
    }
    Store::open(&spec.url, &options).map_err(|e| AccessError::Repository {
        url: spec.url.clone(),
        message: e.to_string(),
    })
}

/// The user key in the key Secret: `identity` (age identity) or `passphrase`.
async fn user_key(client: &Client, namespace: &str, r: &SecretKeyRef) -> Result<UserKey, AccessError> {
    let s = secret(client, namespace, &r.name).await?;
    let bad = |message: String| AccessError::Secret {
        namespace: namespace.to_string(),
        name: r.name.clone(),
        message,
    };
    let keys: Vec<&str> = match r.key.as_deref() {
        Some(k) => vec![k],
        None => vec!["identity", "passphrase"],
    };
    for k in keys {
        let Some(data) = value(&s, k) else { continue };
        let source = PathBuf::from(format!("secret {namespace}/{} key {k}", r.name));
        let parsed = if k == "passphrase" {
            UserKey::passphrase_bytes(&data, &source)
        } else {
            UserKey::identity_bytes(&data, &source)
        };
        return parsed.map_err(|e| bad(e.to_string()));
    }
    Err(bad(
        "has no `identity` (age identity) or `passphrase` key; add one, or name the key in keySecret.key"
            .to_string(),
    ))
}
