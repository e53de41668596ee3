//! The CSI spec areas csi-sanity checks that need more than CRUD, against the shared test Ceph
//! (csi-sanity itself is a Go program that cannot be built on these machines; see
//! docs/csi.md): NodeGetInfo's topology without `--topology`, CreateVolume honouring
//! accessibility requirements, GetCapacity without and with parameters and topology,
//! ControllerModifyVolume with RBD QoS, forged RBD ids, snapshot names across pools, default
//! image features, and a Python gRPC client that sends the socket path as `:authority`.

use std::collections::HashMap;

use anyhow::{Context, Result, ensure};
use lifeboat_csi::proto::*;
use lifeboat_tests::csi::{DriverOptions, RbdEnv, code};
use tonic::Code;

const MIB: i64 = 1 << 20;

/// A driver in `all` mode on a new pool; `cluster_topology` is the cluster's `topology` in
/// the driver config, `flags` its `--topology` segments.
async fn env(prefix: &str, cluster_topology: serde_json::Value, flags: Vec<String>) -> Result<RbdEnv> {
    let opts = DriverOptions {
        topology: flags,
        ..Default::default()
    };
    let edit = |config: &mut serde_json::Value| config["rbd"][0]["topology"] = cluster_topology;
    Ok(RbdEnv::start(env!("CARGO_BIN_EXE_csi-driver"), prefix, opts, edit).await?)
}

fn topo(kv: &[(&str, &str)]) -> Topology {
    Topology {
        segments: kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    }
}

/// `rbd` CLI output, as JSON.
fn rbd_json(args: &[&str]) -> Result<serde_json::Value> {
    let out = lifeboat_tests::ceph()?
        .rbd_cmd()
        .args(args)
        .args(["--format", "json"])
        .output()?;
    ensure!(
        out.status.success(),
        "rbd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

#[tokio::test]
async fn topology_is_reported_and_honoured_and_capacity_follows_it() -> Result<()> {
    let zone = "topology.kubernetes.io/zone";
    let e = env("csi-topo", serde_json::json!([{zone: "a"}]), vec![]).await?;
    let mut c = e.driver.clients().await?;

    // Without --topology, NodeGetInfo still reports a segment: the node id.
    let info = c.node.node_get_info(NodeGetInfoRequest {}).await?.into_inner();
    let segments = info
        .accessible_topology
        .context("no accessible_topology")?
        .segments;
    ensure!(
        segments
            == HashMap::from([(
                "topology.csi.lifeboat.dev/node".to_string(),
                "test-node".to_string()
            )]),
        "{segments:?}"
    );

    // The cluster is reachable from zone a only.
    let mut req = e.create_req("pvc-topo", 8 * MIB);
    req.accessibility_requirements = Some(TopologyRequirement {
        requisite: vec![topo(&[(zone, "b")]), topo(&[(zone, "a"), ("rack", "1")])],
        preferred: vec![topo(&[(zone, "b")])],
    });
    let v = c
        .controller
        .create_volume(req)
        .await?
        .into_inner()
        .volume
        .context("v")?;
    ensure!(
        v.accessible_topology == vec![topo(&[(zone, "a"), ("rack", "1")])],
        "{v:?}"
    );
    let mut elsewhere = e.create_req("pvc-elsewhere", 8 * MIB);
    elsewhere.accessibility_requirements = Some(TopologyRequirement {
        requisite: vec![topo(&[(zone, "b")])],
        preferred: vec![],
    });
    let status = c.controller.create_volume(elsewhere).await.expect_err("zone b");
    ensure!(
        status.code() == Code::ResourceExhausted && status.message().contains("zone=a"),
        "{status:?}"
    );
    // No requirements: the volume is where the cluster is.
    let plain = c
        .controller
        .create_volume(e.create_req("pvc-plain", 8 * MIB))
        .await?
        .into_inner()
        .volume
        .context("v")?;
    ensure!(
        plain.accessible_topology == vec![topo(&[(zone, "a")])],
        "{plain:?}"
    );

    // GetCapacity: everything, one StorageClass, and per topology.
    let cap = |parameters: HashMap<String, String>, at: Option<Topology>| {
        let mut c = c.controller.clone();
        async move {
            c.get_capacity(GetCapacityRequest {
                parameters,
                accessible_topology: at,
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner().available_capacity)
        }
    };
    let all = cap(HashMap::new(), None).await?;
    let pool = cap(e.params.clone(), None).await?;
    ensure!(all > 0 && pool > 0 && all >= pool, "all {all}, pool {pool}");
    ensure!(cap(HashMap::new(), Some(topo(&[(zone, "a")]))).await? == all);
    ensure!(cap(HashMap::new(), Some(topo(&[(zone, "b")]))).await? == 0);
    ensure!(cap(e.params.clone(), Some(topo(&[(zone, "b")]))).await? == 0);
    let mut block_nfs = HashMap::from([("backend".to_string(), "nfs".to_string())]);
    block_nfs.insert("server".into(), "127.0.0.1".into());
    let raw_block = c
        .controller
        .get_capacity(GetCapacityRequest {
            volume_capabilities: vec![lifeboat_tests::csi::block_cap()],
            parameters: block_nfs,
            ..Default::default()
        })
        .await?
        .into_inner();
    ensure!(
        raw_block.available_capacity == 0,
        "NFS cannot serve raw block: {raw_block:?}"
    );

    for id in [v.volume_id, plain.volume_id] {
        c.controller.delete_volume(e.delete_req(&id)).await?;
    }
    Ok(())
}

#[tokio::test]
async fn modify_volume_sets_rbd_qos_and_refuses_unknown_keys() -> Result<()> {
    let e = env("csi-qos", serde_json::json!([]), vec![]).await?;
    let mut c = e.driver.clients().await?.controller;
    let mut req = e.create_req("pvc-qos", 8 * MIB);
    req.mutable_parameters = HashMap::from([("qosIopsLimit".to_string(), "100".to_string())]);
    let v = c
        .create_volume(req.clone())
        .await?
        .into_inner()
        .volume
        .context("v")?;
    let spec = format!("{}/{}", e.pool, v.volume_context["imageName"]);
    let option = |name: &str| -> Result<Option<String>> {
        let all = rbd_json(&["config", "image", "list", &spec])?;
        Ok(all
            .as_array()
            .and_then(|a| a.iter().find(|o| o["name"] == name))
            .filter(|o| o["source"] == "image")
            .and_then(|o| o["value"].as_str().map(str::to_string)))
    };
    ensure!(option("rbd_qos_iops_limit")?.as_deref() == Some("100"));
    // Idempotent, mutable parameters are not part of the volume's identity.
    c.create_volume(req).await?;

    let modify = |params: &[(&str, &str)]| ControllerModifyVolumeRequest {
        volume_id: v.volume_id.clone(),
        secrets: e.secrets.clone(),
        mutable_parameters: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    c.controller_modify_volume(modify(&[("qosIopsLimit", "0"), ("qosWriteBpsLimit", "1048576")]))
        .await?;
    ensure!(option("rbd_qos_iops_limit")?.is_none(), "0 removes the limit");
    ensure!(option("rbd_qos_write_bps_limit")?.as_deref() == Some("1048576"));
    for bad in [
        vec![("qosIopsLimit", "-5")],
        vec![("qosIopsLimit", "lots")],
        vec![("iopsLimit", "5")],
    ] {
        ensure!(
            code(c.controller_modify_volume(modify(&bad)).await) == Code::InvalidArgument,
            "{bad:?}"
        );
        let mut create = e.create_req("pvc-bad-qos", 8 * MIB);
        create.mutable_parameters = bad.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        ensure!(
            code(c.create_volume(create).await) == Code::InvalidArgument,
            "{bad:?}"
        );
    }
    ensure!(
        option("rbd_qos_write_bps_limit")?.as_deref() == Some("1048576"),
        "a refused modify changed it"
    );
    let mut missing = modify(&[("qosIopsLimit", "5")]);
    missing.volume_id = format!(
        "rbd:test:{}:{}",
        e.pool,
        lifeboat_csi::rbd::images::image_name("nope")
    );
    ensure!(code(c.controller_modify_volume(missing).await) == Code::NotFound);
    let mut empty = modify(&[]);
    empty.volume_id.clear();
    ensure!(code(c.controller_modify_volume(empty).await) == Code::InvalidArgument);
    c.controller_modify_volume(modify(&[])).await?;
    c.delete_volume(e.delete_req(&v.volume_id)).await?;
    Ok(())
}

#[tokio::test]
async fn forged_rbd_ids_touch_nothing_and_defaults_are_pacific_features() -> Result<()> {
    let e = env("csi-forged", serde_json::json!([]), vec![]).await?;
    let ceph = lifeboat_tests::ceph()?;
    let mut c = e.driver.clients().await?.controller;
    // An image someone else made in the same pool, and one named like the driver's.
    let theirs = "someones-database";
    let lookalike = format!("csi-vol-{}", lifeboat_csi::ids::name_hash("never-requested"));
    for image in [theirs, &lookalike] {
        let out = ceph
            .rbd_cmd()
            .args(["create", &format!("{}/{image}", e.pool), "--size", "8M"])
            .output()?;
        ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let mut req = e.create_req("pvc-default-features", 8 * MIB);
    req.parameters.remove("imageFeatures");
    let v = c.create_volume(req).await?.into_inner().volume.context("v")?;
    let info = rbd_json(&["info", &format!("{}/{}", e.pool, v.volume_context["imageName"])])?;
    let features: Vec<&str> = info["features"]
        .as_array()
        .context("features")?
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    ensure!(
        features
            == [
                "layering",
                "exclusive-lock",
                "object-map",
                "fast-diff",
                "deep-flatten"
            ],
        "{features:?}"
    );
    let pool = &e.pool;
    for id in [
        format!("rbd:test:{pool}:{theirs}"),
        format!("rbd:test:{pool}:{lookalike}"),
        format!("rbd:test:{pool}:{}", lookalike.to_uppercase()),
        format!("rbd:test:{pool}:{}x", v.volume_context["imageName"]),
        format!("rbd:test:{pool}/x:{}", v.volume_context["imageName"]),
        format!("rbd:test:..:{}", v.volume_context["imageName"]),
        format!("rbd:test:{pool}:{}:csi-snap-x", v.volume_context["imageName"]),
    ] {
        c.delete_volume(e.delete_req(&id))
            .await
            .with_context(|| id.clone())?;
        let got = c
            .controller_get_volume(ControllerGetVolumeRequest {
                volume_id: id.clone(),
            })
            .await;
        ensure!(code(got) == Code::NotFound, "{id}");
    }
    let images = lifeboat_tests::csi::rbd_ls(ceph, &e.pool)?;
    ensure!(
        images.contains(&theirs.to_string())
            && images.contains(&lookalike)
            && images.contains(&v.volume_context["imageName"]),
        "{images:?}"
    );
    // A snapshot id with a name the driver never gives is not deleted either.
    let out = ceph
        .rbd_cmd()
        .args(["snap", "create", &format!("{}/{theirs}@keep", e.pool)])
        .output()?;
    ensure!(out.status.success());
    c.delete_snapshot(DeleteSnapshotRequest {
        snapshot_id: format!("rbd:test:{pool}:{theirs}:keep"),
        secrets: e.secrets.clone(),
    })
    .await?;
    let snaps = rbd_json(&["snap", "ls", &format!("{}/{theirs}", e.pool)])?;
    ensure!(snaps.as_array().is_some_and(|a| a.len() == 1), "{snaps}");
    c.delete_volume(e.delete_req(&v.volume_id)).await?;
    Ok(())
}

#[tokio::test]
async fn a_snapshot_name_used_in_another_pool_is_already_exists() -> Result<()> {
    let a = env("csi-snapname-a", serde_json::json!([]), vec![]).await?;
    let ceph = lifeboat_tests::ceph()?;
    let other_pool = ceph.new_pool("csi-snapname-b")?;
    let mut c = a.driver.clients().await?.controller;
    let va = c
        .create_volume(a.create_req("vol-a", 8 * MIB))
        .await?
        .into_inner()
        .volume
        .context("a")?;
    let mut in_b = a.create_req("vol-b", 8 * MIB);
    in_b.parameters.insert("pool".into(), other_pool.clone());
    let vb = c.create_volume(in_b).await?.into_inner().volume.context("b")?;
    let snap = |volume: &str| CreateSnapshotRequest {
        source_volume_id: volume.into(),
        name: "shared-name".into(),
        secrets: a.secrets.clone(),
        parameters: HashMap::new(),
    };
    let s = c
        .create_snapshot(snap(&va.volume_id))
        .await?
        .into_inner()
        .snapshot
        .context("s")?;
    let status = c
        .create_snapshot(snap(&vb.volume_id))
        .await
        .expect_err("reuse across pools");
    ensure!(status.code() == Code::AlreadyExists, "{status:?}");
    ensure!(
        status.message().contains(&a.pool),
        "names the pool it is used in: {status:?}"
    );
    c.delete_snapshot(DeleteSnapshotRequest {
        snapshot_id: s.snapshot_id,
        secrets: a.secrets.clone(),
    })
    .await?;
    let moved = c
        .create_snapshot(snap(&vb.volume_id))
        .await?
        .into_inner()
        .snapshot
        .context("s")?;
    c.delete_snapshot(DeleteSnapshotRequest {
        snapshot_id: moved.snapshot_id,
        secrets: a.secrets.clone(),
    })
    .await?;
    for id in [va.volume_id, vb.volume_id] {
        c.delete_volume(a.delete_req(&id)).await?;
    }
    let _ = ceph.delete_pool(&other_pool);
    Ok(())
}

/// gRPC C-core (Python's grpcio) sends the socket path as `:authority`; every service answers it.
#[tokio::test]
async fn a_python_grpc_client_is_served() -> Result<()> {
    let e = env("csi-python", serde_json::json!([]), vec![]).await?;
    let script = r#"
import sys, grpc
ch = grpc.insecure_channel("unix:" + sys.argv[1])
def call(method, body=b""):
    f = ch.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
    return f(body, timeout=30)
info = call("/csi.v1.Identity/GetPluginInfo")
assert b"csi.lifeboat.dev" in info, info
call("/csi.v1.Identity/Probe")
node = call("/csi.v1.Node/NodeGetInfo")
assert b"test-node" in node, node
caps = call("/csi.v1.GroupController/GroupControllerGetCapabilities")
assert caps, caps
try:
    call("/csi.v1.Controller/DeleteVolume")
    raise SystemExit("DeleteVolume without an id succeeded")
except grpc.RpcError as e:
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
print("ok")
"#;
    let out = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&e.driver.socket)
        .output()
        .await
        .context("python3 (scripts/install-deps.sh installs grpcio)")?;
    ensure!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
        "python grpcio client: {}\n{}\ndriver log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        e.driver.log()
    );
    let _ = &e.pool;
    Ok(())
}
