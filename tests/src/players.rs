//! The parts of a cluster the Kubernetes API test server does not run, played by a test or a
//! benchmark: the kubelet's Ready node, the Deployment controller's status, the
//! PersistentVolume controller's binding of restored claims; and a small application.
#![allow(clippy::unwrap_used)] // test support: a setup that fails should panic loudly

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

/// Plays the kubelet: a Ready node with an internal address (health probes require one).
pub async fn ready_node(client: &kube::Client, name: &str, address: &str) {
    let api: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    api.create(&PostParams::default(), &node).await.unwrap();
    let status = json!({"status": {
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
            "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
        "addresses": [{"type": "InternalIP", "address": address}]}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

/// Plays one cluster's Deployment controller: a Deployment whose available replicas differ
/// from its spec gets them `delay` after this task first sees it (scaled to zero: none).
pub fn play_deployment_controller(client: kube::Client, delay: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // When each Deployment was first seen wanting its current replica count.
        let mut seen: HashMap<(String, String), (i32, Instant)> = HashMap::new();
        loop {
            let all: Api<Deployment> = Api::all(client.clone());
            if let Ok(list) = all.list(&Default::default()).await {
                for d in list.items {
                    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                    let have = d.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0);
                    let ns = d.namespace().unwrap_or_default();
                    let key = (ns.clone(), d.name_any());
                    if want == have {
                        seen.remove(&key);
                        continue;
                    }
                    // A new target restarts the delay: an entry left from the scale-up just
                    // before (patched, not yet seen settled) must not make a quiesce instant.
                    let entry = seen.entry(key.clone()).or_insert((want, Instant::now()));
                    if entry.0 != want {
                        *entry = (want, Instant::now());
                    }
                    if entry.1.elapsed() < delay {
                        continue;
                    }
                    let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
                    let status = json!({"status": {"replicas": want, "readyReplicas": want,
                        "availableReplicas": want, "updatedReplicas": want,
                        "observedGeneration": d.metadata.generation}});
                    let patched = api
                        .patch_status(&d.name_any(), &PatchParams::default(), &Patch::Merge(&status))
                        .await;
                    if patched.is_ok() {
                        seen.remove(&key);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// Plays one cluster's PersistentVolume controller for restored claims: a claim naming its
/// volume (`spec.volumeName`) whose PersistentVolume exists and is not Bound yet becomes
/// Bound `delay` after this task first sees it, as the volume does.
pub fn play_volume_binder(client: kube::Client, delay: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut seen: HashMap<(String, String), Instant> = HashMap::new();
        loop {
            let claims: Api<PersistentVolumeClaim> = Api::all(client.clone());
            let volumes: Api<PersistentVolume> = Api::all(client.clone());
            if let Ok(list) = claims.list(&Default::default()).await {
                for c in list.items {
                    let bound = c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
                    let Some(pv) = c.spec.as_ref().and_then(|s| s.volume_name.clone()) else {
                        continue;
                    };
                    let ns = c.namespace().unwrap_or_default();
                    if bound || !matches!(volumes.get_opt(&pv).await, Ok(Some(_))) {
                        continue;
                    }
                    let first = *seen
                        .entry((ns.clone(), c.name_any()))
                        .or_insert_with(Instant::now);
                    if first.elapsed() < delay {
                        continue;
                    }
                    let status = json!({"status": {"phase": "Bound"}});
                    let _ = volumes
                        .patch_status(&pv, &PatchParams::default(), &Patch::Merge(&status))
                        .await;
                    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
                    let _ = api
                        .patch_status(&c.name_any(), &PatchParams::default(), &Patch::Merge(&status))
                        .await;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// The application's workload: Deployment `web` with 2 replicas.
pub fn web_deployment() -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}
    }))
    .unwrap()
}

/// Creates ConfigMap `name` in `namespace` with `data.v = value`.
pub async fn config_map(client: &kube::Client, namespace: &str, name: &str, value: &str) {
    let cm: k8s_openapi::api::core::v1::ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": name}, "data": {"v": value}})).unwrap();
    Api::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
}

/// The application in `namespace` (which exists): `n` ConfigMaps `cm-<i>` and [`web_deployment`].
pub async fn application(client: &kube::Client, namespace: &str, n: usize) {
    for i in 0..n {
        config_map(client, namespace, &format!("cm-{i}"), &i.to_string()).await;
    }
    Api::<Deployment>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &web_deployment())
        .await
        .unwrap();
}
