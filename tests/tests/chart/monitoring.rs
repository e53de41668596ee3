//! The dashboard and the alerts name only metrics the controller exports. The exported names,
//! labels and label values are read from the controller's own registry
//! (`lifeboat_controller::metrics::Metrics`, rendered as its /metrics text), not from a list
//! kept here; every PromQL expression — PrometheusRule `expr`s and the dashboard's panel
//! targets, Grafana variables substituted — is parsed with promql-parser (Prometheus' grammar)
//! and each selector's metric, label names and `=` values are checked against it.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use anyhow::{Context, Result, bail, ensure};
use lifeboat_controller::metrics::{DestinationLabels, Metrics, ScheduleLabels};
use promql_parser::label::MatchOp;
use promql_parser::parser::{self, Expr, LabelModifier, VectorSelector};
use promql_parser::util::{ExprVisitor, walk_expr};
use serde_json::Value;

use crate::{Case, RELEASE, cases, schema};

/// Labels Prometheus adds to every series it scrapes from a Kubernetes target (the
/// ServiceMonitor's), on top of the metric's own.
const TARGET_LABELS: &[&str] = &[
    "namespace",
    "job",
    "instance",
    "pod",
    "service",
    "container",
    "endpoint",
];

/// What the controller's /metrics exposes: sample names and, per name, label → values seen.
struct Exported {
    series: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
}

impl Exported {
    /// The registry of a fresh controller, with one Schedule's last success recorded and one
    /// finished run of each kind, so every family has series.
    fn from_controller() -> Result<Self> {
        let metrics = Metrics::new();
        metrics
            .last_success
            .get_or_create(&ScheduleLabels {
                namespace: "shop".into(),
                schedule: "nightly".into(),
            })
            .set(1_700_000_000);
        for operation in lifeboat_controller::metrics::OPERATIONS {
            for result in ["Completed", "PartiallyFailed", "Failed"] {
                metrics.finished(operation, result, 1.0, 1, 1);
            }
        }
        // One replication destination with a copy, a failure and a newest snapshot (the lag).
        let destination = DestinationLabels {
            namespace: "shop".into(),
            replication: "offsite".into(),
            destination: "dr-azure".into(),
        };
        let r = &metrics.replication;
        r.set_newest(&destination, 1_700_000_000);
        r.bytes.get_or_create(&destination).inc_by(1);
        r.snapshots.get_or_create(&destination).inc();
        r.errors.get_or_create(&destination).inc();
        r.last_success.get_or_create(&destination).set(1_700_000_000);
        let text = metrics.encode();
        let mut families = Vec::new();
        let mut series: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                families.push(rest.split_whitespace().next().unwrap_or_default().to_string());
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (name, labels) = match line.split_once('{') {
                Some((name, rest)) => (name, rest.split_once('}').map(|(l, _)| l).unwrap_or_default()),
                None => (line.split_whitespace().next().unwrap_or_default(), ""),
            };
            let entry = series.entry(name.to_string()).or_default();
            for pair in labels.split(',').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').context("label pair")?;
                entry
                    .entry(k.to_string())
                    .or_default()
                    .insert(v.trim_matches('"').to_string());
            }
        }
        for f in &families {
            ensure!(
                series
                    .keys()
                    .any(|s| s == f || s.strip_prefix(f.as_str()).is_some_and(|x| x.starts_with('_'))),
                "metric family {f} has no series in this test: record one in Exported::from_controller"
            );
        }
        ensure!(series.len() >= families.len(), "no metrics parsed from:\n{text}");
        Ok(Self { series })
    }

    /// Checks one PromQL expression; the error names the expression and what is wrong.
    fn check_expr(&self, expr: &str) -> Result<BTreeSet<String>> {
        let ast = parser::parse(expr).map_err(|e| anyhow::anyhow!("{expr:?} is not PromQL: {e}"))?;
        let mut visitor = Selectors::default();
        walk_expr(&mut visitor, &ast).map_err(|e: String| anyhow::anyhow!(e))?;
        ensure!(!visitor.names.is_empty(), "{expr:?} selects no metric");
        let mut metric_labels = BTreeSet::new();
        for (name, matchers) in &visitor.selectors {
            let labels = self
                .series
                .get(name)
                .with_context(|| format!("{expr:?} names {name}, which the controller does not export"))?;
            metric_labels.extend(labels.keys().cloned());
            for (label, value) in matchers {
                if label == "__name__" {
                    continue;
                }
                match labels.get(label) {
                    Some(values) => {
                        if let Some(v) = value {
                            ensure!(
                                values.contains(v),
                                "{expr:?}: {name} never has {label}={v:?} (it has {values:?})"
                            );
                        }
                    }
                    None => ensure!(
                        TARGET_LABELS.contains(&label.as_str()),
                        "{expr:?}: {name} has no label {label:?} (it has {:?})",
                        labels.keys().collect::<Vec<_>>()
                    ),
                }
            }
        }
        for label in &visitor.grouping {
            ensure!(
                metric_labels.contains(label) || TARGET_LABELS.contains(&label.as_str()),
                "{expr:?} groups by {label:?}, which none of its metrics has"
            );
        }
        Ok(visitor.names)
    }
}

/// A selector's label matchers: label → `Some(value)` for `=`, `None` for the others.
type Matchers = Vec<(String, Option<String>)>;

/// Every vector selector (metric name and matchers) and every `by (…)` label of an
/// expression.
#[derive(Default)]
struct Selectors {
    names: BTreeSet<String>,
    selectors: Vec<(String, Matchers)>,
    grouping: BTreeSet<String>,
}

impl Selectors {
    fn add(&mut self, vs: &VectorSelector) -> Result<(), String> {
        let name = vs
            .name
            .clone()
            .or_else(|| {
                vs.matchers
                    .matchers
                    .iter()
                    .find(|m| m.name == "__name__" && matches!(m.op, MatchOp::Equal))
                    .map(|m| m.value.clone())
            })
            .ok_or_else(|| format!("selector {vs} names no metric"))?;
        let matchers = vs
            .matchers
            .matchers
            .iter()
            .chain(vs.matchers.or_matchers.iter().flatten())
            .map(|m| {
                let value = matches!(m.op, MatchOp::Equal).then(|| m.value.clone());
                (m.name.clone(), value)
            })
            .collect();
        self.names.insert(name.clone());
        self.selectors.push((name, matchers));
        Ok(())
    }
}

impl ExprVisitor for Selectors {
    type Error = String;

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, String> {
        match expr {
            Expr::VectorSelector(vs) => self.add(vs)?,
            Expr::MatrixSelector(ms) => self.add(&ms.vs)?,
            Expr::Aggregate(agg) => {
                if let Some(LabelModifier::Include(labels) | LabelModifier::Exclude(labels)) = &agg.modifier {
                    self.grouping.extend(labels.labels.iter().cloned());
                }
            }
            _ => {}
        }
        Ok(true)
    }
}

/// A Grafana query with its variables replaced by values Grafana could give them: the
/// built-in intervals by durations, others (used in regex matchers) by `.*`.
fn substitute_grafana_variables(query: &str) -> String {
    let mut out = query
        .replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1d");
    for var in ["${datasource}", "$datasource", "${namespace}", "$namespace"] {
        out = out.replace(var, ".*");
    }
    out
}

fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for p in dashboard["panels"].as_array().into_iter().flatten() {
        all.push(p);
        all.extend(p["panels"].as_array().into_iter().flatten());
    }
    all
}

fn check_dashboard(exported: &Exported, dashboard: &Value) -> Result<BTreeSet<String>> {
    ensure!(
        dashboard["uid"].is_string() && dashboard["title"].is_string(),
        "dashboard uid and title"
    );
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str())
        .collect();
    ensure!(
        variables.contains(&"datasource"),
        "no datasource variable: dashboards must not name one data source"
    );
    let mut used = BTreeSet::new();
    let mut ids = HashSet::new();
    for v in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        if let Some(def) = v["definition"].as_str() {
            // Grafana's label_values(METRIC, LABEL): the metric is exported and has the label.
            let inner = def
                .strip_prefix("label_values(")
                .and_then(|d| d.strip_suffix(')'))
                .with_context(|| format!("variable query {def:?}"))?;
            let (metric, label) = inner.split_once(',').context("label_values(metric, label)")?;
            let labels = exported
                .series
                .get(metric.trim())
                .with_context(|| format!("variable {def:?}: {metric} is not exported"))?;
            ensure!(
                labels.contains_key(label.trim()),
                "variable {def:?}: {metric} has no label {label}"
            );
            used.insert(metric.trim().to_string());
        }
    }
    for p in panels(dashboard) {
        let title = p["title"].as_str().unwrap_or_default();
        ensure!(
            p["id"].as_u64().is_some_and(|id| ids.insert(id)),
            "panel {title:?}: missing or repeated id"
        );
        ensure!(
            p["gridPos"]["w"].is_u64() && p["gridPos"]["h"].is_u64(),
            "panel {title:?}: gridPos"
        );
        if p["type"] == "row" {
            continue;
        }
        ensure!(
            p["datasource"]["uid"] == "${datasource}",
            "panel {title:?}: use the datasource variable"
        );
        let targets = p["targets"]
            .as_array()
            .with_context(|| format!("panel {title:?}: no targets"))?;
        ensure!(!targets.is_empty(), "panel {title:?}: no targets");
        for t in targets {
            let expr = t["expr"]
                .as_str()
                .with_context(|| format!("panel {title:?}: target without expr"))?;
            used.extend(
                exported
                    .check_expr(&substitute_grafana_variables(expr))
                    .with_context(|| format!("panel {title:?}"))?,
            );
        }
    }
    Ok(used)
}

fn check_rules(exported: &Exported, case: &Case) -> Result<BTreeSet<String>> {
    let mut used = BTreeSet::new();
    let mut names = HashSet::new();
    for obj in case.of_kind("PrometheusRule") {
        for rule in schema::prometheus_rules(obj)? {
            let alert = rule
                .alert
                .clone()
                .context("recording rules are not expected here")?;
            ensure!(names.insert(alert.clone()), "alert {alert} twice");
            let labels = rule.labels.clone().unwrap_or_default();
            let severity = labels
                .get("severity")
                .with_context(|| format!("{alert}: no severity"))?;
            let allowed = &case.values["monitoring"]["rules"]["severity"];
            if allowed.is_object() {
                ensure!(
                    allowed
                        .as_object()
                        .into_iter()
                        .flatten()
                        .any(|(_, v)| v == severity.as_str()),
                    "{alert}: severity {severity} is not one of the values' severities"
                );
            }
            let annotations = rule.annotations.clone().unwrap_or_default();
            for a in ["summary", "description"] {
                ensure!(annotations.contains_key(a), "{alert}: no {a} annotation");
            }
            if let Some(f) = &rule.for_ {
                promql_parser::util::parse_duration(f)
                    .map_err(|e| anyhow::anyhow!("{alert}: for {f:?}: {e}"))?;
            }
            used.extend(
                exported
                    .check_expr(&rule.expr)
                    .with_context(|| format!("alert {alert}"))?,
            );
        }
    }
    Ok(used)
}

/// Each of the dashboard's tables turns red where its alert fires: the schedules table with
/// LifeboatScheduleBackupTooOld, the replication table with LifeboatReplicationLagging.
fn same_thresholds_as_the_alerts(case: &Case, dashboard: &Value) -> Result<()> {
    for (alert, value, default, table_title) in [
        (
            "LifeboatScheduleBackupTooOld",
            "scheduleMaxAgeHours",
            26,
            "Newest successful backup per Schedule",
        ),
        (
            "LifeboatReplicationLagging",
            "replicationMaxLagHours",
            28,
            "Replication lag per destination",
        ),
    ] {
        let hours = case.values["monitoring"]["rules"][value]
            .as_u64()
            .unwrap_or(default);
        let rule = case
            .of_kind("PrometheusRule")
            .flat_map(|r| schema::prometheus_rules(r).unwrap_or_default())
            .find(|r| r.alert.as_deref() == Some(alert))
            .with_context(|| format!("no {alert} alert"))?;
        ensure!(
            rule.expr.ends_with(&format!("> {}", hours * 3600)),
            "case {}: {alert} threshold in {:?}, want {hours} h",
            case.name,
            rule.expr
        );
        let table = panels(dashboard)
            .into_iter()
            .find(|p| p["type"] == "table" && p["title"] == table_title)
            .with_context(|| format!("no table {table_title:?}"))?;
        let steps = &table["fieldConfig"]["defaults"]["thresholds"]["steps"];
        ensure!(
            steps
                .as_array()
                .and_then(|s| s.last())
                .is_some_and(|s| s["value"] == hours * 3600),
            "case {}: {table_title:?} turns red at {steps}, {alert} at {hours} h",
            case.name
        );
    }
    Ok(())
}

#[test]
fn dashboard_and_alerts_name_only_metrics_the_controller_exports() -> Result<()> {
    let exported = Exported::from_controller()?;
    let mut monitored = 0;
    let mut used = BTreeSet::new();
    for case in cases() {
        if case.of_kind("PrometheusRule").next().is_none() {
            continue;
        }
        monitored += 1;
        used.extend(check_rules(&exported, case).with_context(|| format!("case {}", case.name))?);
        let dashboard = case
            .of_kind("ConfigMap")
            .find(|c| c["metadata"]["name"] == format!("{RELEASE}-dashboard"))
            .with_context(|| format!("case {}: no dashboard", case.name))?;
        let text = dashboard["data"]["lifeboat.json"]
            .as_str()
            .context("lifeboat.json")?;
        let json: Value = serde_json::from_str(text).context("the dashboard is not JSON")?;
        same_thresholds_as_the_alerts(case, &json)?;
        used.extend(
            check_dashboard(&exported, &json).with_context(|| format!("case {}: dashboard", case.name))?,
        );
    }
    ensure!(monitored >= 2, "only {monitored} combinations render monitoring");
    eprintln!(
        "{} metrics named by alerts and dashboard, all exported: {used:?}",
        used.len()
    );
    Ok(())
}

/// A wrong metric, label or value is caught, so the test above can fail.
#[test]
fn names_the_controller_does_not_export_are_caught() -> Result<()> {
    let exported = Exported::from_controller()?;
    exported.check_expr(r#"sum by (operation) (rate(lifeboat_failures_total{result="Failed"}[5m]))"#)?;
    for (bad, why) in [
        ("rate(lifeboat_backup_failures_total[5m])", "does not export"),
        (r#"lifeboat_failures_total{opration="backup"}"#, "no label"),
        (r#"lifeboat_failures_total{result="failed"}"#, "never has"),
        ("sum by (schedule) (lifeboat_leader)", "groups by"),
        ("sum(rate(lifeboat_attempts_total[5m]) by", "not PromQL"),
    ] {
        match exported.check_expr(bad) {
            Ok(_) => bail!("{bad:?} passed"),
            Err(e) => ensure!(e.to_string().contains(why), "{bad:?}: {e}"),
        }
    }
    Ok(())
}
