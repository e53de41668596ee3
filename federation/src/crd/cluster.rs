//! `Cluster`: a member of the federation as the agent in this cluster sees it — how to reach
//! it (a Secret with its kubeconfig; never the kubeconfig itself) and, in status, its health
//! as this agent and the other observers measured it.

use kube::CustomResource;
use lifeboat_controller::crd::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::clusters::{KubeconfigSecret, Role};

/// A registered cluster.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "lifeboat.dev",
    version = "v1alpha1",
    kind = "Cluster",
    namespaced,
    status = "ClusterStatus",
    shortname = "lbcluster",
    category = "lifeboat",
    printcolumn = r#"{"name":"Role","type":"string","jsonPath":".spec.role"}"#,
    printcolumn = r#"{"name":"Region","type":"string","jsonPath":".spec.region"}"#,
    printcolumn = r#"{"name":"Health","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Failures","type":"integer","jsonPath":".status.consecutiveFailures"}"#,
    printcolumn = r#"{"name":"Last Probe","type":"date","jsonPath":".status.lastProbeTime"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    /// Region.
    #[serde(default)]
    pub region: String,
    /// Cloud or site.
    #[serde(default)]
    pub cloud: String,
    /// Primary or standby.
    #[serde(default)]
    pub role: Role,
    /// The Secret (same namespace) with its kubeconfig; unset for the cluster the agent runs
    /// in, which it reaches in-cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig_secret: Option<KubeconfigSecret>,
    /// The kubeconfig context to use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Lifeboat's namespace in that cluster (where the controller's Lease is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_namespace: Option<String>,
}

/// What the probes found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// `Healthy`, `Suspect`, `Failed` or `Unknown`, over every observer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// This agent's failed probes in a row.
    #[serde(default)]
    pub consecutive_failures: u32,
    /// When this agent last probed it (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe_time: Option<String>,
    /// The last probe that passed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_time: Option<String>,
    /// The checks of this agent's latest probe.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckStatus>,
    /// Every observer's latest view.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub observers: Vec<ObserverStatus>,
    /// The verdict in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `Healthy`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// One check of a probe.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckStatus {
    /// Which check.
    pub name: String,
    /// Passed.
    pub ok: bool,
    /// What was seen.
    #[serde(default)]
    pub message: String,
}

/// One observer's latest view.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObserverStatus {
    /// The observer (a cluster, or `drctl@host`).
    pub observer: String,
    /// Its latest probe passed.
    pub ok: bool,
    /// Its failed probes in a row.
    pub consecutive_failures: u32,
    /// When (RFC 3339).
    pub time: String,
}
