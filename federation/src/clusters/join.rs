//! Joining a cluster to the federation's agents: each agent reaches the other clusters
//! through a Secret holding a kubeconfig reduced to one context, and knows them from a
//! `Cluster` resource naming that Secret. `drctl cluster add --kubeconfig-secret NAME`
//! installs both, in both directions, on every cluster it can reach.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::config::Kubeconfig;
use kube::{Api, Client};

use super::{ClusterRecord, KubeconfigSecret};
use crate::crd::{Cluster, ClusterSpec};

/// Why a cluster could not be joined to (or removed from) another's agent.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The kubeconfig names no current context and none was given.
    #[error("the kubeconfig has no current context")]
    NoCurrentContext,
    /// The context asked for is not in the file.
    #[error("the kubeconfig has no context {0:?}; `kubectl config get-contexts` lists those it has")]
    NoContext(String),
    /// The context has no body.
    #[error("context {0:?} is empty; fix the kubeconfig or use another context")]
    EmptyContext(String),
    /// The context names a cluster the file does not hold.
    #[error("context {context:?} names cluster {cluster:?}, which is not in the file")]
    MissingCluster {
        /// The context.
        context: String,
        /// The cluster it names.
        cluster: String,
    },
    /// The reduced kubeconfig or a resource could not be encoded.
    #[error("encode {what}: {message}")]
    Encode {
        /// What.
        what: &'static str,
        /// Why.
        message: String,
    },
    /// The API server refused a read, write or delete.
    #[error("{action}: {source}")]
    Api {
        /// What was done (`write Secret ns/name`).
        action: String,
        /// The API's answer.
        source: kube::Error,
    },
}

impl JoinError {
    /// What the operator can do about it, if anything.
    pub fn advice(&self) -> Option<crate::advice::Advice> {
        matches!(self, Self::NoCurrentContext | Self::EmptyContext(_))
            .then_some(crate::advice::Advice::NameContext)
    }
}

fn api(action: String) -> impl FnOnce(kube::Error) -> JoinError {
    move |source| JoinError::Api { action, source }
}

fn encode(what: &'static str) -> impl FnOnce(serde_json::Error) -> JoinError {
    move |e| JoinError::Encode {
        what,
        message: e.to_string(),
    }
}

/// The kubeconfig with only `context` (or the current one), its cluster and its user, as
/// YAML: what a Secret may hold without leaking the operator's other credentials.
pub fn minify(kc: &Kubeconfig, context: Option<&str>) -> Result<String, JoinError> {
    let wanted = context
        .map(str::to_string)
        .or_else(|| kc.current_context.clone())
        .ok_or(JoinError::NoCurrentContext)?;
    let ctx = kc
        .contexts
        .iter()
        .find(|c| c.name == wanted)
        .cloned()
        .ok_or_else(|| JoinError::NoContext(wanted.clone()))?;
    let inner = ctx
        .context
        .clone()
        .ok_or_else(|| JoinError::EmptyContext(wanted.clone()))?;
    let cluster = kc
        .clusters
        .iter()
        .find(|c| c.name == inner.cluster)
        .cloned()
        .ok_or_else(|| JoinError::MissingCluster {
            context: wanted.clone(),
            cluster: inner.cluster.clone(),
        })?;
    let users: Vec<_> = kc
        .auth_infos
        .iter()
        .filter(|u| Some(&u.name) == inner.user.as_ref())
        .cloned()
        .collect();
    let small = Kubeconfig {
        clusters: vec![cluster],
        auth_infos: users,
        contexts: vec![ctx],
        current_context: Some(wanted),
        ..Kubeconfig::default()
    };
    serde_yaml::to_string(&small).map_err(|e| JoinError::Encode {
        what: "the kubeconfig",
        message: e.to_string(),
    })
}

fn params() -> PatchParams {
    PatchParams::apply("lifeboat-federation").force()
}

/// Puts `record`'s kubeconfig Secret and `Cluster` resource into the cluster behind
/// `client` (namespace `namespace`), replacing earlier ones. The kubeconfig goes into the
/// Secret only; the Cluster names the Secret.
pub async fn install(
    client: &Client,
    namespace: &str,
    record: &ClusterRecord,
    secret: &KubeconfigSecret,
    kubeconfig_yaml: &str,
) -> Result<(), JoinError> {
    let key = secret.key.clone().unwrap_or_else(|| "kubeconfig".to_string());
    let mut s = Secret::default();
    s.metadata.name = Some(secret.name.clone());
    s.metadata.namespace = Some(namespace.to_string());
    s.metadata.labels = Some(BTreeMap::from([(
        "lifeboat.dev/cluster".to_string(),
        record.name.clone(),
    )]));
    s.type_ = Some("Opaque".to_string());
    s.data = Some(BTreeMap::from([(
        key,
        ByteString(kubeconfig_yaml.as_bytes().to_vec()),
    )]));
    let mut value = serde_json::to_value(&s).map_err(encode("the Secret"))?;
    value["apiVersion"] = "v1".into();
    value["kind"] = "Secret".into();
    Api::<Secret>::namespaced(client.clone(), namespace)
        .patch(&secret.name, &params(), &Patch::Apply(&value))
        .await
        .map_err(api(format!("write Secret {namespace}/{}", secret.name)))?;
    apply_cluster(client, namespace, record, Some(secret)).await
}

/// Puts the `Cluster` resource of `record` into the cluster behind `client`.
pub async fn apply_cluster(
    client: &Client,
    namespace: &str,
    record: &ClusterRecord,
    secret: Option<&KubeconfigSecret>,
) -> Result<(), JoinError> {
    let mut c = Cluster::new(
        &record.name,
        ClusterSpec {
            region: record.region.clone(),
            cloud: record.cloud.clone(),
            role: record.role,
            kubeconfig_secret: secret.cloned(),
            context: record.context.clone(),
            controller_namespace: Some(record.controller_namespace.clone()),
        },
    );
    c.metadata.namespace = Some(namespace.to_string());
    let mut value = serde_json::to_value(&c).map_err(encode("the Cluster"))?;
    if let Some(m) = value.as_object_mut() {
        m.remove("status");
    }
    Api::<Cluster>::namespaced(client.clone(), namespace)
        .patch(&record.name, &params(), &Patch::Apply(&value))
        .await
        .map(|_| ())
        .map_err(api(format!("write Cluster {namespace}/{}", record.name)))
}

/// Removes `name`'s Cluster resource (and the Secret it names) from the cluster behind
/// `client`.
pub async fn uninstall(client: &Client, namespace: &str, name: &str) -> Result<(), JoinError> {
    let clusters: Api<Cluster> = Api::namespaced(client.clone(), namespace);
    let existing = clusters
        .get_opt(name)
        .await
        .map_err(api(format!("read Cluster {namespace}/{name}")))?;
    if let Some(c) = existing {
        if let Some(s) = &c.spec.kubeconfig_secret {
            let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
            match secrets.delete(&s.name, &Default::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(api(format!("delete Secret {namespace}/{}", s.name))(e)),
            }
        }
        match clusters.delete(name, &Default::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(api(format!("delete Cluster {namespace}/{name}"))(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minify_keeps_one_context_and_its_credentials() {
        let text = r#"
apiVersion: v1
kind: Config
current-context: a
clusters:
- name: ca
  cluster: {server: "https://a:6443"}
- name: cb
  cluster: {server: "https://b:6443"}
users:
- name: ua
  user: {token: secret-a}
- name: ub
  user: {token: secret-b}
contexts:
- name: a
  context: {cluster: ca, user: ua}
- name: b
  context: {cluster: cb, user: ub}
"#;
        let kc = Kubeconfig::from_yaml(text).expect("parses");
        let b = minify(&kc, Some("b")).expect("minify");
        assert!(b.contains("https://b:6443") && b.contains("secret-b"), "{b}");
        assert!(!b.contains("secret-a") && !b.contains("https://a:6443"), "{b}");
        let current = minify(&kc, None).expect("current");
        assert!(current.contains("secret-a") && !current.contains("secret-b"));
        assert!(
            minify(&kc, Some("zz"))
                .expect_err("absent")
                .to_string()
                .contains("no context")
        );
    }
}
