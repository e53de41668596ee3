//! Services take addresses: a cluster IP from the service range and node ports from the node
//! port range, refused as kube-apiserver refuses them when taken, out of range or used up.

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, PostParams};
use lifeboat_tests::kube::{AddressRanges, TestCluster};
use serde_json::json;

use crate::common::*;

fn service(name: &str, node_port: Option<u16>) -> Service {
    let mut port = json!({"port": 80, "targetPort": 8080});
    let kind = match node_port {
        Some(p) => {
            port["nodePort"] = json!(p);
            "NodePort"
        }
        None => "ClusterIP",
    };
    serde_json::from_value(json!({"metadata": {"name": name},
        "spec": {"type": kind, "selector": {"app": name}, "ports": [port]}}))
    .expect("valid Service")
}

fn api_error<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> kube::core::Status {
    match r {
        Err(kube::Error::Api(s)) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_taken_node_port_is_refused_before_the_name_is_checked() {
    let (c, ns) = cluster_ns("nodeport").await;
    let api: Api<Service> = Api::namespaced(c.client(), &ns);
    let port = lifeboat_tests::some_node_port();
    let first = api
        .create(&PostParams::default(), &service("web", Some(port)))
        .await
        .expect("create a NodePort Service");
    let spec = first.spec.expect("spec");
    assert_eq!(spec.ports.expect("ports")[0].node_port, Some(i32::from(port)));
    assert!(
        spec.cluster_ip.is_some_and(|ip| !ip.is_empty()),
        "a cluster IP is given"
    );

    // Another Service asking for the same port, and the same Service created again (what a
    // restore into the original namespace does): the port is refused first, not the name.
    for name in ["other", "web"] {
        let e = api_error(
            api.create(&PostParams::default(), &service(name, Some(port)))
                .await,
        );
        assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"), "{name}: {e:?}");
        assert!(
            e.message.contains(&format!(
                "spec.ports[0].nodePort: Invalid value: {port}: provided port is already allocated"
            )),
            "{name}: {e:?}"
        );
        let causes = e.details.map(|d| d.causes).unwrap_or_default();
        assert!(
            causes.iter().any(|c| c.field == "spec.ports[0].nodePort"),
            "{causes:?}"
        );
    }
    // Without the fixed port, the existing name is what is wrong.
    let e = api_error(api.create(&PostParams::default(), &service("web", None)).await);
    assert_eq!((e.code, e.reason.as_str()), (409, "AlreadyExists"), "{e:?}");

    let e = api_error(
        api.create(&PostParams::default(), &service("low", Some(80)))
            .await,
    );
    assert_eq!(e.code, 422, "{e:?}");
    assert!(
        e.message.contains("provided port is not in the valid range"),
        "{e:?}"
    );

    // Deleting the Service frees its port.
    api.delete("web", &Default::default()).await.expect("delete");
    eventually("the node port to be free", 30, || {
        let api = api.clone();
        async move {
            api.create(&PostParams::default(), &service("again", Some(port)))
                .await
                .ok()
                .map(|_| ())
        }
    })
    .await;
}

/// A cluster whose Services get addresses from a /28 (13 free cluster IPs once the
/// `kubernetes` Service has the first) and three node ports.
async fn small_ranges() -> Option<TestCluster> {
    let ranges = AddressRanges {
        service_cidr: AddressRanges::parse_cidr("10.0.0.0/28").expect("cidr"),
        node_ports: (30000, 30002),
    };
    TestCluster::start_with_ranges(ranges)
        .await
        .expect("a cluster with small address ranges")
}

#[tokio::test]
#[cfg_attr(
    kube_backend = "existing",
    ignore = "an existing cluster's service range cannot be chosen"
)]
async fn cluster_ips_run_out_like_kube_apiserver() {
    let Some(c) = small_ranges().await else {
        unsupported(
            "cluster_ips_run_out_like_kube_apiserver",
            "an existing cluster's service range cannot be chosen",
        );
    };
    let ns = c.namespace("ipfull").await.expect("namespace");
    let api: Api<Service> = Api::namespaced(c.client(), &ns);
    let mut made = 0;
    let refused = loop {
        match api
            .create(&PostParams::default(), &service(&format!("s{made}"), None))
            .await
        {
            Ok(s) => {
                let ip = s.spec.and_then(|s| s.cluster_ip).unwrap_or_default();
                assert!(ip.starts_with("10.0.0."), "from the range: {ip}");
                made += 1;
                assert!(made <= 14, "a /28 has 14 addresses");
            }
            Err(kube::Error::Api(e)) => break *e,
            Err(e) => panic!("create: {e}"),
        }
    };
    assert!((10..=13).contains(&made), "{made} Services got an address");
    assert_eq!(
        (refused.code, refused.reason.as_str()),
        (500, "InternalError"),
        "{refused:?}"
    );
    assert_eq!(
        refused.message,
        "Internal error occurred: failed to allocate a serviceIP: range is full"
    );
    // Headless Services take no address.
    let mut headless = service("headless", None);
    if let Some(spec) = headless.spec.as_mut() {
        spec.cluster_ip = Some("None".into());
    }
    api.create(&PostParams::default(), &headless)
        .await
        .expect("a headless Service needs no address");
    // A freed address is given again.
    api.delete("s0", &Default::default()).await.expect("delete");
    eventually("an address to be free", 30, || {
        let api = api.clone();
        async move {
            api.create(&PostParams::default(), &service("later", None))
                .await
                .ok()
                .map(|_| ())
        }
    })
    .await;
}

#[tokio::test]
#[cfg_attr(
    kube_backend = "existing",
    ignore = "an existing cluster's node port range cannot be chosen"
)]
async fn node_ports_run_out_like_kube_apiserver() {
    let Some(c) = small_ranges().await else {
        unsupported(
            "node_ports_run_out_like_kube_apiserver",
            "an existing cluster's node port range cannot be chosen",
        );
    };
    let ns = c.namespace("portfull").await.expect("namespace");
    let api: Api<Service> = Api::namespaced(c.client(), &ns);
    let mut np: Service = service("np0", None);
    if let Some(spec) = np.spec.as_mut() {
        spec.type_ = Some("NodePort".into());
    }
    for i in 0..3 {
        np.metadata.name = Some(format!("np{i}"));
        let s = api
            .create(&PostParams::default(), &np)
            .await
            .expect("a node port is free");
        let port = s.spec.and_then(|s| s.ports).expect("ports")[0]
            .node_port
            .expect("a node port");
        assert!((30000..=30002).contains(&port), "{port}");
    }
    np.metadata.name = Some("np3".into());
    let e = api_error(api.create(&PostParams::default(), &np).await);
    assert_eq!((e.code, e.reason.as_str()), (500, "InternalError"), "{e:?}");
    assert_eq!(
        e.message,
        "Internal error occurred: failed to allocate a nodePort: range is full"
    );
}
