//! Backup hooks' executor against the Kubernetes API test server, which (like an API server
//! whose kubelet is unreachable) cannot exec: every hook fails, and its pod's annotation
//! decides whether that is an error or a warning, named by pod, phase, command and container.
//! Where hooks are planned is tested in controller/src/volumes/hooks.rs; running a command in
//! a real container needs a kubelet (docs/volumes.md, "Backup hooks").

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use lifeboat_controller::volumes::hooks::{HookPhase, plan_hooks, run_hooks};
use lifeboat_tests::kube::TestCluster;
use serde_json::json;

#[tokio::test]
async fn failed_hooks_are_errors_or_warnings_as_their_pods_say() {
    let cluster = TestCluster::start().await.expect("a test cluster starts");
    let ns = cluster.namespace("hooks").await.expect("a namespace");
    let pods: Api<Pod> = Api::namespaced(cluster.client(), &ns);
    for (name, on_error) in [("db-0", "Fail"), ("db-1", "Continue")] {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "annotations": {
                "pre.hook.backup.velero.io/command": "[\"/sbin/fsfreeze\", \"--freeze\", \"/data\"]",
                "pre.hook.backup.velero.io/on-error": on_error,
                "pre.hook.backup.velero.io/timeout": "5s",
            }},
            "spec": {
                "containers": [{"name": "db", "image": "postgres:16"}],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
            },
        }))
        .expect("a pod");
        pods.create(&PostParams::default(), &pod)
            .await
            .expect("create pod");
    }
    // The test server keeps status as given: mark them running, as the kubelet would.
    let mut listed: Vec<Pod> = pods.list(&Default::default()).await.expect("list pods").items;
    for p in &mut listed {
        p.status = Some(serde_json::from_value(json!({"phase": "Running"})).expect("status"));
    }
    let claims = BTreeSet::from([(ns.clone(), "data".to_string())]);
    let (hooks, errors) = plan_hooks(&listed, &claims);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(hooks.len(), 2);

    let started = Instant::now();
    let out = run_hooks(&cluster.client(), &hooks, HookPhase::Pre).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "bounded by the hooks' timeout"
    );
    assert_eq!(out.errors.len(), 1, "{out:?}");
    assert_eq!(out.errors[0].item, format!("pods/{ns}/db-0"));
    let message = &out.errors[0].message;
    assert!(
        message.starts_with("pre hook \"/sbin/fsfreeze --freeze /data\" in container db:"),
        "{message}"
    );
    assert_eq!(out.warnings.len(), 1, "{out:?}");
    assert_eq!(out.warnings[0].item, format!("pods/{ns}/db-1"));
}
