//! Reaching a registered cluster: through a kubeconfig on the operator's machine (drctl), or
//! through the kubeconfig in a Secret (the federation agent). Connections fail fast, since a
//! probe of a partitioned cluster must not hang.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use super::ClusterRecord;
use crate::advice::Advice;

/// How long a connection to an API server may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may wait for an answer.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a cluster could not be reached.
#[derive(Debug, thiserror::Error)]
#[error("cluster {cluster}: {message}")]
pub struct ConnectError {
    /// The cluster.
    pub cluster: String,
    /// What is wrong.
    pub message: String,
    /// What to do about it, if the operator can.
    pub advice: Option<crate::advice::Advice>,
}

/// Why a kubeconfig gave no client.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    /// The file could not be read or parsed.
    #[error("read kubeconfig {path}: {source}; pass a kubeconfig file kubectl can use")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: kube::config::KubeconfigError,
    },
    /// The context (or the current one) is missing or incomplete.
    #[error("use kubeconfig{}: {source}", context.as_deref().map(|c| format!(" context {c:?}")).unwrap_or_default())]
    Context {
        /// The context asked for (`None`: the current one).
        context: Option<String>,
        /// Why.
        source: kube::config::KubeconfigError,
    },
    /// The configuration could not make a client (TLS material, proxy).
    #[error("build a client: {0}")]
    Client(#[source] kube::Error),
}

/// Builds a client from a kubeconfig file and context, with fail-fast timeouts.
pub async fn connect_kubeconfig(
    path: &Path,
    context: Option<&str>,
) -> Result<(Client, Config), KubeconfigError> {
    let kc = Kubeconfig::read_from(path).map_err(|source| KubeconfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    from_kubeconfig(kc, context).await
}

async fn from_kubeconfig(kc: Kubeconfig, context: Option<&str>) -> Result<(Client, Config), KubeconfigError> {
    let options = KubeConfigOptions {
        context: context.map(str::to_string),
        ..KubeConfigOptions::default()
    };
    let mut config = Config::from_custom_kubeconfig(kc, &options)
        .await
        .map_err(|source| KubeconfigError::Context {
            context: context.map(str::to_string),
            source,
        })?;
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.read_timeout = Some(READ_TIMEOUT);
    let client = Client::try_from(config.clone()).map_err(KubeconfigError::Client)?;
    Ok((client, config))
}

/// Where credentials for the registered clusters come from.
#[derive(Clone)]
pub enum Connector {
    /// The operator's machine: `overrides` (`--kubeconfig-for NAME=FILE`), else the record's
    /// kubeconfig path if it exists here, else `default` (`--kubeconfig`/`KUBECONFIG`), each
    /// with the record's context.
    Local {
        /// The kubeconfig given with `--kubeconfig` or `KUBECONFIG`.
        default: Option<PathBuf>,
        /// Per-cluster kubeconfig files.
        overrides: BTreeMap<String, PathBuf>,
    },
    /// The federation agent: the record's Secret, read from this cluster.
    Secrets {
        /// This cluster's client.
        client: Client,
        /// The agent's namespace, where the Secrets are.
        namespace: String,
        /// This cluster's own name and client, used as they are.
        own: Option<(String, Client)>,
    },
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local { default, overrides } => f
                .debug_struct("Local")
                .field("default", default)
                .field("overrides", overrides)
                .finish(),
            Self::Secrets { namespace, .. } => {
                f.debug_struct("Secrets").field("namespace", namespace).finish()
            }
        }
    }
}

impl Connector {
    /// A client for `record`'s cluster.
    pub async fn connect(&self, record: &ClusterRecord) -> Result<Client, ConnectError> {
        let fail = |message: String| ConnectError {
            cluster: record.name.clone(),
            message,
            advice: None,
        };
        let advise = |message: String, advice: Advice| ConnectError {
            cluster: record.name.clone(),
            message,
            advice: Some(advice),
        };
        match self {
            Self::Local { default, overrides } => {
                let path = overrides
                    .get(&record.name)
                    .cloned()
                    .or_else(|| {
                        record
                            .kubeconfig_path
                            .as_ref()
                            .map(PathBuf::from)
                            .filter(|p| p.is_file())
                    })
                    .or_else(|| default.clone())
                    .or_else(default_kubeconfig)
                    .ok_or_else(|| {
                        advise(
                            "no kubeconfig for it (no file given, none recorded, no default)".to_string(),
                            Advice::GiveKubeconfig {
                                cluster: record.name.clone(),
                                context: record.context.clone().unwrap_or_else(|| record.name.clone()),
                            },
                        )
                    })?;
                connect_kubeconfig(&path, record.context.as_deref())
                    .await
                    .map(|(c, _)| c)
                    .map_err(|e| fail(e.to_string()))
            }
            Self::Secrets {
                client,
                namespace,
                own,
            } => {
                if let Some((name, c)) = own
                    && *name == record.name
                {
                    return Ok(c.clone());
                }
                let Some(s) = &record.kubeconfig_secret else {
                    return Err(advise(
                        "its record names no kubeconfig Secret".to_string(),
                        Advice::StoreKubeconfig {
                            cluster: record.name.clone(),
                            secret: None,
                        },
                    ));
                };
                let key = s.key.as_deref().unwrap_or("kubeconfig");
                let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
                let secret = api
                    .get_opt(&s.name)
                    .await
                    .map_err(|e| fail(format!("read Secret {namespace}/{}: {e}", s.name)))?
                    .ok_or_else(|| {
                        advise(
                            format!(
                                "Secret {namespace}/{} (its kubeconfig) not found in this cluster",
                                s.name
                            ),
                            Advice::StoreKubeconfig {
                                cluster: record.name.clone(),
                                secret: Some(s.name.clone()),
                            },
                        )
                    })?;
                let bytes = secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .map(|b| b.0.clone())
                    .ok_or_else(|| fail(format!("Secret {namespace}/{} has no key {key}", s.name)))?;
                let text = String::from_utf8(bytes)
                    .map_err(|_| fail(format!("Secret {namespace}/{} key {key} is not text", s.name)))?;
                let kc = Kubeconfig::from_yaml(&text)
                    .map_err(|e| fail(format!("Secret {namespace}/{} key {key}: {e}", s.name)))?;
                from_kubeconfig(kc, record.context.as_deref())
                    .await
                    .map(|(c, _)| c)
                    .map_err(|e| fail(e.to_string()))
            }
        }
    }
}

fn default_kubeconfig() -> Option<PathBuf> {
    if let Some(list) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        return std::env::split_paths(&list).find(|p| p.is_file());
    }
    let home = std::env::var_os("HOME")?;
    Some(PathBuf::from(home).join(".kube").join("config")).filter(|p| p.is_file())
}
