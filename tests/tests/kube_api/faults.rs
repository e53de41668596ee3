//! Fault injection (test server only; skipped with a reason on a real cluster) and several
//! clusters at once.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use lifeboat_tests::kube::TestCluster;
use serde_json::json;

use crate::common::*;

macro_rules! faults_or_fail {
    ($c:expr, $test:literal) => {
        match $c.faults() {
            Some(f) => f,
            None => unsupported($test, "fault injection needs the in-process test server"),
        }
    };
}

#[tokio::test]
#[cfg_attr(
    not(kube_backend = "in_process"),
    ignore = "fault injection needs the in-process test server"
)]
async fn added_latency_slows_requests() {
    let (c, ns) = cluster_ns("latency").await;
    let faults = faults_or_fail!(c, "added_latency_slows_requests");
    let api: Api<ConfigMap> = Api::namespaced(c.client(), &ns);
    create_cm(&api, "l", json!({})).await;
    faults.set_latency(Duration::from_millis(300));
    let start = Instant::now();
    api.get("l").await.expect("get");
    assert!(start.elapsed() >= Duration::from_millis(300));
    faults.set_latency(Duration::ZERO);
}

#[tokio::test]
#[cfg_attr(
    not(kube_backend = "in_process"),
    ignore = "fault injection needs the in-process test server"
)]
async fn injected_429s_are_retried_by_the_client() {
    let (c, ns) = cluster_ns("throttle").await;
    let faults = faults_or_fail!(c, "injected_429s_are_retried_by_the_client");
    let api: Api<ConfigMap> = Api::namespaced(c.client(), &ns);
    create_cm(&api, "t", json!({})).await;
    faults.fail_next(429, 2);
    api.get("t")
        .await
        .expect("kube's default retry policy retries 429");
}

#[tokio::test]
#[cfg_attr(
    not(kube_backend = "in_process"),
    ignore = "fault injection needs the in-process test server"
)]
async fn injected_500_reaches_the_caller() {
    let (c, ns) = cluster_ns("fail").await;
    let faults = faults_or_fail!(c, "injected_500_reaches_the_caller");
    let api: Api<ConfigMap> = Api::namespaced(c.client(), &ns);
    create_cm(&api, "f", json!({})).await;
    faults.fail_next(500, 1);
    assert_eq!(code(api.get("f").await), (500, "InternalError".into()));
    api.get("f").await.expect("the next request succeeds");
}

#[tokio::test]
async fn a_partitioned_cluster_refuses_connections_until_healed() {
    let a = TestCluster::in_process().await.expect("cluster a");
    let b = TestCluster::in_process().await.expect("cluster b");
    let ns = a.namespace("part").await.expect("namespace");
    let api_a: Api<ConfigMap> = Api::namespaced(a.client(), &ns);
    create_cm(&api_a, "only-in-a", json!({})).await;
    // Separate clusters: b has neither the namespace nor the object.
    let api_b: Api<ConfigMap> = Api::namespaced(b.client(), &ns);
    assert_eq!(code(api_b.get("only-in-a").await).0, 404);

    let faults = a.faults().expect("in-process");
    faults.partition();
    let port = a.client().apiserver_version().await;
    assert!(port.is_err(), "a partitioned cluster answered");
    match api_a.get("only-in-a").await {
        Err(kube::Error::Api(s)) => panic!("expected a connection error, got HTTP {}", s.code),
        Err(_) => {}
        Ok(_) => panic!("a partitioned cluster answered"),
    }
    b.client()
        .apiserver_version()
        .await
        .expect("cluster b is unaffected");
    faults.heal();
    eventually("the healed cluster to answer", 10, || async {
        api_a.get("only-in-a").await.ok()
    })
    .await;
}

#[tokio::test]
#[cfg_attr(
    not(kube_backend = "in_process"),
    ignore = "fault injection needs the in-process test server"
)]
async fn injected_failures_can_target_one_kind_of_request() {
    let (c, ns) = cluster_ns("targeted").await;
    let faults = faults_or_fail!(c, "injected_failures_can_target_one_kind_of_request");
    let api: Api<ConfigMap> = Api::namespaced(c.client(), &ns);
    create_cm(&api, "t", json!({})).await;
    faults.fail_matching(500, 1, Some("POST"), "/configmaps");
    api.get("t").await.expect("a GET is not targeted");
    let err = api.create(&Default::default(), &cm("u", json!({}))).await;
    assert_eq!(code(err).0, 500);
    api.create(&Default::default(), &cm("u", json!({})))
        .await
        .expect("only one failure was queued");
}

#[tokio::test]
async fn the_cluster_answers_while_the_test_blocks() {
    // As when a test runs a CLI against the kubeconfig and waits for it synchronously.
    let c = cluster().await;
    let kubeconfig = c.kubeconfig_path().map(std::path::Path::to_path_buf);
    let other = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            // No kubeconfig file: an existing cluster reached from inside (in-cluster config).
            let client = match &kubeconfig {
                Some(path) => lifeboat_tests::kube::kubeconfig::client(path)
                    .await
                    .expect("client"),
                None => kube::Client::try_default().await.expect("client"),
            };
            client.apiserver_version().await.map(|v| v.major)
        })
    });
    // Blocks this test's runtime until the other thread is answered.
    let major = other.join().expect("thread").expect("the cluster answered");
    assert_eq!(major, "1");
}
