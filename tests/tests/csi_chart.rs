//! Renders the chart's CSI templates offline (helm is not on these machines) with a small
//! renderer for the subset they use — `.Values`/`.Release` paths, `if`/`end`, `quote`,
//! `toJson` — and checks the result is valid YAML a cluster would accept for this driver:
//! the objects and sidecars are there, RBAC has no wildcards, and the StorageClass
//! parameters and driver config parse with the driver's own parsers.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use serde_yaml::Value;

fn lookup<'a>(root: &'a Value, path: &str) -> Result<&'a Value> {
    let mut v = root;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        v = v.get(part).with_context(|| format!("no value {path}"))?;
    }
    Ok(v)
}

fn scalar(v: &Value) -> Result<String> {
    Ok(match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => bail!("not a scalar: {other:?}"),
    })
}

fn truthy(v: &Value) -> bool {
    !matches!(v, Value::Null | Value::Bool(false)) && v != &Value::String(String::new())
}

fn eval(expr: &str, values: &Value, release: &Value) -> Result<Value> {
    let mut parts = expr.split('|').map(str::trim);
    let head = parts.next().unwrap_or("");
    let resolve = |p: &str| -> Result<Value> {
        if let Some(rest) = p.strip_prefix(".Values") {
            lookup(values, rest).cloned()
        } else if let Some(rest) = p.strip_prefix(".Release") {
            lookup(release, rest).cloned()
        } else {
            bail!("unsupported expression {p:?}")
        }
    };
    let mut v = if let Some(arg) = head.strip_prefix("toJson ") {
        Value::String(serde_json::to_string(&serde_json::to_value(resolve(
            arg.trim(),
        )?)?)?)
    } else {
        resolve(head)?
    };
    for f in parts {
        v = match f {
            "quote" => Value::String(serde_json::to_string(&scalar(&v)?)?),
            other => bail!("unsupported function {other:?}"),
        };
    }
    Ok(v)
}

fn render(template: &str, values: &Value, release: &Value) -> Result<String> {
    let mut out = String::new();
    let mut active: Vec<bool> = vec![];
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let (text, after) = rest.split_at(start);
        let end = after.find("}}").context("unclosed {{")?;
        let mut inner = &after[2..end];
        let mut text = text.to_string();
        if let Some(i) = inner.strip_prefix('-') {
            inner = i;
            text = text.trim_end_matches([' ', '\t', '\n']).to_string();
        }
        rest = &after[end + 2..];
        if let Some(i) = inner.strip_suffix('-') {
            inner = i;
            rest = rest.trim_start_matches([' ', '\t', '\n']);
        }
        if active.iter().all(|a| *a) {
            out.push_str(&text);
        }
        let inner = inner.trim();
        if let Some(cond) = inner.strip_prefix("if ") {
            active.push(truthy(&eval(cond.trim(), values, release)?));
        } else if inner == "end" {
            active.pop().context("end without if")?;
        } else if active.iter().all(|a| *a) {
            out.push_str(&scalar(&eval(inner, values, release)?)?);
        }
    }
    ensure!(active.is_empty(), "unclosed if");
    out.push_str(rest);
    Ok(out)
}

fn documents(text: &str) -> Result<Vec<Value>> {
    let mut docs = Vec::new();
    for d in serde_yaml::Deserializer::from_str(text) {
        let v = <Value as serde::Deserialize>::deserialize(d)?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}

fn string_map(v: &Value) -> HashMap<String, String> {
    v.as_mapping()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), scalar(v).ok()?)))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn csi_templates_render_to_objects_this_driver_accepts() -> Result<()> {
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/lifeboat");
    let values: Value = serde_yaml::from_str(&std::fs::read_to_string(chart.join("values.yaml"))?)?;
    let release: Value = serde_yaml::from_str("{Namespace: lifeboat-system, Name: lifeboat}")?;
    let mut docs = Vec::new();
    for entry in std::fs::read_dir(chart.join("templates"))? {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if !name.starts_with("csi-") {
            continue;
        }
        let text = render(&std::fs::read_to_string(&path)?, &values, &release)
            .with_context(|| format!("render {name}"))?;
        docs.extend(documents(&text).with_context(|| format!("{name} is not valid YAML:\n{text}"))?);
    }
    let kinds: Vec<String> = docs
        .iter()
        .filter_map(|d| d["kind"].as_str().map(str::to_string))
        .collect();
    for k in [
        "CSIDriver",
        "Deployment",
        "DaemonSet",
        "ClusterRole",
        "Role",
        "VolumeSnapshotClass",
        "ConfigMap",
    ] {
        ensure!(kinds.iter().any(|x| x == k), "no {k} in {kinds:?}");
    }
    ensure!(kinds.iter().filter(|k| *k == "StorageClass").count() == 3);
    let containers = |kind: &str| -> Vec<String> {
        docs.iter()
            .filter(|d| d["kind"] == kind)
            .flat_map(|d| {
                d["spec"]["template"]["spec"]["containers"]
                    .as_sequence()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|c| c["name"].as_str().map(str::to_string))
            .collect()
    };
    ensure!(
        containers("Deployment")
            == [
                "lifeboat-csi",
                "csi-provisioner",
                "csi-snapshotter",
                "csi-resizer",
                "liveness-probe"
            ]
    );
    ensure!(containers("DaemonSet") == ["lifeboat-csi", "node-driver-registrar", "liveness-probe"]);
    for d in docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
    {
        let text = serde_yaml::to_string(&d["rules"])?;
        ensure!(!text.contains('*'), "wildcard in RBAC: {text}");
    }
    let driver = docs
        .iter()
        .find(|d| d["kind"] == "CSIDriver")
        .context("CSIDriver")?;
    ensure!(driver["metadata"]["name"] == "csi.lifeboat.dev");
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .context("ConfigMap")?;
    let config: lifeboat_csi::config::DriverConfig =
        serde_json::from_str(cm["data"]["config.json"].as_str().context("config.json")?)?;
    ensure!(config.rbd.len() == 1);
    for sc in docs.iter().filter(|d| d["kind"] == "StorageClass") {
        ensure!(sc["provisioner"] == "csi.lifeboat.dev");
        let params = string_map(&sc["parameters"]);
        match params.get("backend").map(String::as_str) {
            Some("rbd") => {
                lifeboat_csi::rbd::params::RbdParams::parse(&params)?;
            }
            Some("nfs") => {
                lifeboat_csi::nfs::NfsParams::parse(&params)?;
            }
            other => bail!("backend {other:?}"),
        }
    }
    Ok(())
}
