//! Reaching the cluster the kubectl way (`--kubeconfig`, `--context`, `-n`), and telling
//! whether a Lifeboat controller is running there.

use anyhow::{Context, Result};
use k8s_openapi::api::coordination::v1::Lease;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use lifeboat_controller::leader::LeaseView;

use crate::cli::GlobalArgs;

/// A client and the namespace commands work in.
pub struct Target {
    /// The API client.
    pub client: Client,
    /// `-n`, else the context's namespace, else `default`.
    pub namespace: String,
}

/// Connects as kubectl would.
pub async fn connect(g: &GlobalArgs) -> Result<Target> {
    let options = KubeConfigOptions {
        context: g.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match &g.kubeconfig {
        // A single file; a colon-separated KUBECONFIG list is merged by from_kubeconfig.
        Some(path) if !path.to_string_lossy().contains(':') => {
            let kc =
                Kubeconfig::read_from(path).with_context(|| format!("read kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(kc, &options)
                .await
                .with_context(|| format!("use kubeconfig {}", path.display()))?
        }
        _ if g.context.is_some() => Config::from_kubeconfig(&options)
            .await
            .context("load kubeconfig")?,
        _ => Config::infer()
            .await
            .context("find a cluster: set --kubeconfig or KUBECONFIG, or run inside a pod")?,
    };
    let namespace = g
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let url = config.cluster_url.clone();
    let client = Client::try_from(config).context("build the Kubernetes client")?;
    // One clear error for a server that cannot be reached, before any command's own calls.
    if let Err(e) = client.apiserver_version().await
        && !matches!(&e, kube::Error::Api(_))
    {
        anyhow::bail!(
            "cannot reach the Kubernetes API server at {url}: {e}; check --context, --kubeconfig and the network"
        );
    }
    Ok(Target { client, namespace })
}

/// True when the controller's Lease is held and fresh.
pub async fn controller_running(client: &Client, namespace: &str) -> Result<bool> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let lease = match api.get_opt(lifeboat_controller::LEASE_NAME).await {
        Ok(l) => l,
        // Not allowed to look: treat as absent; a direct run will say what it needs.
        Err(kube::Error::Api(e)) if e.code == 403 => None,
        Err(e) => return Err(e).context("ask the cluster whether a Lifeboat controller runs"),
    };
    let now = chrono::Utc::now();
    Ok(lease.is_some_and(|l| LeaseView::from(&l).held_until(now).is_some()))
}
