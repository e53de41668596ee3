//! Reading a `FailoverPlan` file and checking a plan before anything runs: every problem is
//! reported at once, naming the field and the fix.

use std::collections::BTreeSet;
use std::path::Path;

use kube::ResourceExt;

use super::failover_plan::FailoverPlan;
use crate::clusters::valid_name;

/// Why a plan cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PlanFileError {
    /// The file could not be read.
    #[error("read plan {path}: {message}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        message: String,
    },
    /// The file is not a FailoverPlan.
    #[error("plan {path} is not a FailoverPlan: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What the parser said.
        message: String,
    },
    /// The plan is inconsistent.
    #[error("plan {name} is invalid:\n  - {}", problems.join("\n  - "))]
    Invalid {
        /// The plan's name.
        name: String,
        /// Every problem found, each naming the field and the fix.
        problems: Vec<String>,
    },
}

impl FailoverPlan {
    /// Reads a plan from a YAML or JSON file (`kind: FailoverPlan`) and validates it.
    pub fn load(path: &Path) -> Result<Self, PlanFileError> {
        let text = std::fs::read_to_string(path).map_err(|e| PlanFileError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates a plan's text; `source` names it in errors.
    pub fn parse(text: &str, source: &str) -> Result<Self, PlanFileError> {
        let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| PlanFileError::Parse {
            path: source.to_string(),
            message: e.to_string(),
        })?;
        let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or("");
        if kind != "FailoverPlan" {
            return Err(PlanFileError::Parse {
                path: source.to_string(),
                message: format!(
                    "kind is {kind:?}; expected FailoverPlan (apiVersion lifeboat.dev/v1alpha1)"
                ),
            });
        }
        let plan: FailoverPlan = serde_yaml::from_value(value).map_err(|e| PlanFileError::Parse {
            path: source.to_string(),
            message: e.to_string(),
        })?;
        plan.validate()?;
        Ok(plan)
    }

    /// Every inconsistency of the plan.
    pub fn problems(&self) -> Vec<String> {
        let s = &self.spec;
        let mut p = Vec::new();
        let name = self.name_any();
        if let Err(e) = valid_name(&name) {
            p.push(format!("metadata.name: {e}"));
        }
        if s.applications.is_empty() {
            p.push("spec.applications is empty: list at least one application with its namespaces".into());
        }
        let mut apps = BTreeSet::new();
        for (i, a) in s.applications.iter().enumerate() {
            if let Err(e) = valid_name(&a.name) {
                p.push(format!("spec.applications[{i}].name: {e}"));
            }
            if !apps.insert(&a.name) {
                p.push(format!("spec.applications[{i}].name {:?} is used twice", a.name));
            }
            if a.namespaces.is_empty() {
                p.push(format!(
                    "spec.applications[{i}].namespaces is empty: name the namespaces of {:?}",
                    a.name
                ));
            }
            for ns in &a.namespaces {
                if valid_name(ns).is_err() {
                    p.push(format!(
                        "spec.applications[{i}].namespaces: {ns:?} is not a namespace name"
                    ));
                }
            }
        }
        if let Err(e) = valid_name(&s.primary) {
            p.push(format!("spec.primary: {e}"));
        }
        if s.standbys.is_empty() {
            p.push("spec.standbys is empty: name at least one cluster to fail over to".into());
        }
        let mut clusters = BTreeSet::from([&s.primary]);
        for (i, c) in s.standbys.iter().enumerate() {
            if let Err(e) = valid_name(c) {
                p.push(format!("spec.standbys[{i}]: {e}"));
            }
            if !clusters.insert(c) {
                p.push(format!("spec.standbys[{i}] {c:?} is the primary or listed twice"));
            }
        }
        for t in s.targets.keys() {
            if !clusters.contains(t) {
                p.push(format!(
                    "spec.targets.{t}: not a cluster of this plan (primary or standby)"
                ));
            }
        }
        for (t, m) in &s.targets {
            for (from, to) in &m.namespace_mapping {
                if valid_name(to).is_err() {
                    p.push(format!(
                        "spec.targets.{t}.namespaceMapping.{from}: {to:?} is not a namespace name"
                    ));
                }
            }
        }
        if s.repositories.is_empty() {
            p.push(
                "spec.repositories is empty: name the repository (or repositories) holding the backups"
                    .into(),
            );
        }
        for (i, r) in s.repositories.iter().enumerate() {
            if let Err(e) = lifeboat_backup::store::Location::parse(&r.url) {
                p.push(format!("spec.repositories[{i}].url: {e}"));
            }
        }
        for (i, h) in s.traffic.iter().enumerate() {
            let set = [h.external_dns.is_some(), h.webhook.is_some(), h.command.is_some()]
                .iter()
                .filter(|b| **b)
                .count();
            if set != 1 {
                p.push(format!(
                    "spec.traffic[{i}] ({:?}) must set exactly one of externalDns, webhook, command",
                    h.name
                ));
            }
            if h.command.as_ref().is_some_and(|c| c.is_empty()) {
                p.push(format!("spec.traffic[{i}].command is empty"));
            }
        }
        if s.health.confirmations == 0 || s.health.failure_threshold == 0 {
            p.push("spec.health: failureThreshold and confirmations must be at least 1".into());
        }
        if s.rto_seconds == Some(0) || s.rpo_seconds == Some(0) {
            p.push("spec.rpoSeconds and spec.rtoSeconds must be positive when set".into());
        }
        p
    }

    /// Fails with every problem if there is any.
    pub fn validate(&self) -> Result<(), PlanFileError> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(PlanFileError::Invalid {
                name: self.name_any(),
                problems,
            })
        }
    }

    /// Every cluster of the plan: the primary, then the standbys in order.
    pub fn clusters(&self) -> Vec<&str> {
        std::iter::once(self.spec.primary.as_str())
            .chain(self.spec.standbys.iter().map(String::as_str))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
apiVersion: lifeboat.dev/v1alpha1
kind: FailoverPlan
metadata: {name: shop}
spec:
  applications:
    - name: shop
      namespaces: [shop]
  primary: c1
  standbys: [c2, c3]
  repositories: [{url: "s3://bucket/lifeboat"}]
  rpoSeconds: 30
  rtoSeconds: 60
  targets:
    c2: {namespaceMapping: {shop: shop-dr}, storageClassMapping: {fast: standard}}
  traffic:
    - name: dns
      externalDns: {namespace: shop, service: web, hostname: shop.example.com}
"#;

    #[test]
    fn a_good_plan_parses_with_defaults() {
        let p = FailoverPlan::parse(GOOD, "good.yaml").expect("parses");
        assert_eq!(p.clusters(), ["c1", "c2", "c3"]);
        assert_eq!(p.spec.readiness.timeout_seconds, 600);
        assert!(p.spec.readiness.workloads && p.spec.readiness.volume_claims);
        assert_eq!(p.spec.health.confirmations, 2);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let bad = GOOD
            .replace("standbys: [c2, c3]", "standbys: [c1, c2]")
            .replace(
                "name: shop\n      namespaces: [shop]",
                "name: Shop\n      namespaces: []",
            )
            .replace("s3://bucket/lifeboat", "ftp://x")
            .replace("externalDns:", "command: [x]\n      externalDns:");
        let err = FailoverPlan::parse(&bad, "bad.yaml")
            .expect_err("invalid")
            .to_string();
        for needle in [
            "spec.standbys[0] \"c1\" is the primary",
            "spec.applications[0].name",
            "spec.applications[0].namespaces is empty",
            "spec.repositories[0].url",
            "exactly one of externalDns",
        ] {
            assert!(err.contains(needle), "{needle} missing from:\n{err}");
        }
        let wrong = FailoverPlan::parse("kind: Backup\n", "x.yaml")
            .expect_err("kind")
            .to_string();
        assert!(wrong.contains("expected FailoverPlan"), "{wrong}");
        let targets = GOOD.replace("    c2: {", "    c9: {");
        let err = FailoverPlan::parse(&targets, "t.yaml")
            .expect_err("target")
            .to_string();
        assert!(err.contains("spec.targets.c9"), "{err}");
    }
}
