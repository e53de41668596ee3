//! RBAC shape, for every combination: no wildcard verbs anywhere, no verbs that grant more
//! than they name (`escalate`, `bind`, `impersonate`), none of the CSI driver's rules use a
//! wildcard, and the controller's only wildcard rules are the two its job needs — backups
//! read (`get`, `list`) every kind they are asked to take, and restores (only with
//! `controller.allowRestore`) create and update every kind they restore. That every other
//! grant is used, and every request the controller makes is granted, is checked by running
//! it: `tests/tests/controller_rbac.rs`.

use anyhow::{Result, ensure};
use serde_json::{Value, json};

use crate::{Case, RELEASE, each_case};

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

fn check(case: &Case) -> Result<()> {
    let restore = case.values["controller"]["allowRestore"] != false;
    let controller_role = format!("{RELEASE}-controller");
    for role in case.of_kind("ClusterRole").chain(case.of_kind("Role")) {
        let name = role["metadata"]["name"].as_str().unwrap_or_default();
        for rule in role["rules"].as_array().into_iter().flatten() {
            let verbs = strings(&rule["verbs"]);
            let groups = strings(&rule["apiGroups"]);
            let resources = strings(&rule["resources"]);
            ensure!(!verbs.contains(&"*"), "{name}: wildcard verb in {rule}");
            for v in ["escalate", "bind", "impersonate"] {
                ensure!(!verbs.contains(&v), "{name}: {v} in {rule}");
            }
            ensure!(
                rule["nonResourceURLs"].is_null(),
                "{name}: nonResourceURLs in {rule}"
            );
            let wildcard = groups.contains(&"*") || resources.iter().any(|r| r.contains('*'));
            if !wildcard {
                continue;
            }
            ensure!(
                role["kind"] == "ClusterRole" && name == controller_role,
                "{name}: wildcard in {rule}: only the backup controller's ClusterRole may read or restore every kind"
            );
            ensure!(
                groups == ["*"] && resources == ["*"] && rule["resourceNames"].is_null(),
                "{name}: a partial wildcard in {rule}"
            );
            let read = verbs == ["get", "list"];
            let write = verbs == ["create", "update"];
            ensure!(
                read || (write && restore),
                "{name}: wildcard rule {rule} grants more than reading (get, list) or, with \
                 allowRestore, restoring (create, update)"
            );
        }
    }
    if let Ok(role) = case.object("ClusterRole", &controller_role) {
        let wildcard_rules: Vec<&Value> = role["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["apiGroups"] == json!(["*"]))
            .collect();
        ensure!(
            wildcard_rules.len() == 1 + usize::from(restore),
            "{controller_role}: wildcard rules {wildcard_rules:?} with allowRestore={restore}"
        );
    }
    Ok(())
}

#[test]
fn rbac_uses_wildcards_only_where_the_job_needs_every_kind() -> Result<()> {
    each_case(check)
}
