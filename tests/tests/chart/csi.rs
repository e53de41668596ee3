//! The CSI objects are ones this driver accepts: the driver name, the sidecars, and
//! StorageClass parameters and driver config that parse with the driver's own parsers.

use std::collections::HashMap;

use anyhow::{Context, Result, bail, ensure};

use crate::{Case, each_case, string_map};

fn containers(case: &Case, kind: &str, name: &str) -> Result<Vec<String>> {
    Ok(case.object(kind, name)?["spec"]["template"]["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect())
}

fn check(case: &Case) -> Result<()> {
    if case.values["csi"]["enabled"] == false {
        return Ok(());
    }
    let driver_name = case.values["csi"]["driverName"]
        .as_str()
        .unwrap_or("csi.lifeboat.dev");
    case.object("CSIDriver", driver_name)?;
    ensure!(
        containers(case, "Deployment", "lifeboat-csi-controller")?
            == [
                "lifeboat-csi",
                "csi-provisioner",
                "csi-snapshotter",
                "csi-resizer",
                "liveness-probe"
            ]
    );
    ensure!(
        containers(case, "DaemonSet", "lifeboat-csi-node")?
            == ["lifeboat-csi", "node-driver-registrar", "liveness-probe"]
    );
    let cm = case.object("ConfigMap", "lifeboat-csi-config")?;
    let config: lifeboat_csi::config::DriverConfig =
        serde_json::from_str(cm["data"]["config.json"].as_str().context("config.json")?)
            .context("the driver rejects config.json")?;
    let values_config = &case.values["csi"]["config"];
    if let Some(rbd) = values_config["rbd"].as_array() {
        ensure!(
            config.rbd.len() == rbd.len(),
            "config.json has {} RBD clusters",
            config.rbd.len()
        );
    }
    if let Some(nfs) = values_config["nfs"].as_array() {
        ensure!(
            config.nfs.len() == nfs.len(),
            "config.json has {} NFS exports",
            config.nfs.len()
        );
    }
    for sc in case.of_kind("StorageClass") {
        let name = sc["metadata"]["name"].as_str().unwrap_or_default();
        ensure!(
            sc["provisioner"] == driver_name,
            "StorageClass {name}: provisioner"
        );
        let params: HashMap<String, String> = string_map(&sc["parameters"]);
        match params.get("backend").map(String::as_str) {
            Some("rbd") => {
                lifeboat_csi::rbd::params::RbdParams::parse(&params)
                    .with_context(|| format!("StorageClass {name}"))?;
            }
            Some("nfs") => {
                lifeboat_csi::nfs::NfsParams::parse(&params)
                    .with_context(|| format!("StorageClass {name}"))?;
            }
            other => bail!("StorageClass {name}: backend {other:?}"),
        }
    }
    for vsc in case.of_kind("VolumeSnapshotClass") {
        ensure!(vsc["driver"] == driver_name, "VolumeSnapshotClass driver");
    }
    Ok(())
}

#[test]
fn csi_objects_are_ones_this_driver_accepts() -> Result<()> {
    each_case(check)
}
