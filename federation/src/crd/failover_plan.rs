//! `FailoverPlan`: which applications move, between which clusters, from which repositories,
//! to what targets, and how traffic follows. The same document is a resource (for the
//! federation agent, which keeps the fencing leases and runs drills) and a file (for
//! `drctl failover --plan FILE`, when no cluster may be left to hold it).

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A failover plan.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "lifeboat.dev",
    version = "v1alpha1",
    kind = "FailoverPlan",
    namespaced,
    shortname = "lbplan",
    category = "lifeboat",
    printcolumn = r#"{"name":"Primary","type":"string","jsonPath":".spec.primary"}"#,
    printcolumn = r#"{"name":"Standbys","type":"string","jsonPath":".spec.standbys"}"#,
    printcolumn = r#"{"name":"RPO","type":"integer","jsonPath":".spec.rpoSeconds"}"#,
    printcolumn = r#"{"name":"RTO","type":"integer","jsonPath":".spec.rtoSeconds"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct FailoverPlanSpec {
    /// The applications protected together.
    pub applications: Vec<Application>,
    /// The cluster that runs them normally (and gets them back on `drctl failback`).
    pub primary: String,
    /// Clusters that take them over, in order of preference (the first healthy one wins
    /// unless `--to` names one).
    pub standbys: Vec<String>,
    /// Repositories holding the backups and the federation state, in order of preference;
    /// each cluster writes every one it can reach.
    pub repositories: Vec<PlanRepository>,
    /// Recovery point objective: the newest usable backup may be at most this old.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpo_seconds: Option<u64>,
    /// Recovery time objective: from the start of a failover or drill to the application
    /// ready on the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rto_seconds: Option<u64>,
    /// Per target cluster: namespace and StorageClass mappings.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub targets: BTreeMap<String, TargetMapping>,
    /// What "ready" means after a restore.
    #[serde(default)]
    pub readiness: Readiness,
    /// How traffic is switched once the data is ready (never before), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub traffic: Vec<TrafficHook>,
    /// When a cluster counts as failed.
    #[serde(default)]
    pub health: HealthSpec,
}

/// One protected application.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Application {
    /// Its name (a DNS label; part of the fencing lease's key).
    pub name: String,
    /// Its namespaces on the primary.
    pub namespaces: Vec<String>,
    /// A label selector narrowing it within them (`app.kubernetes.io/part-of=shop`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Tags an object snapshot must carry to be a recovery point of this application (for
    /// example the Schedule's `tags`); any object snapshot of the holding cluster if empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub snapshot_tags: BTreeMap<String, String>,
}

/// A repository of the plan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanRepository {
    /// Its URL (`s3://bucket/prefix`, `az://container/prefix`, `gs://…`, a path).
    pub url: String,
    /// S3 endpoint for non-AWS services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_endpoint: Option<String>,
    /// S3 region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_region: Option<String>,
    /// Azure Blob endpoint (Azurite, sovereign clouds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_endpoint: Option<String>,
    /// The BackupRepository that points at it in each cluster (in the federation agent's
    /// namespace), which the agent opens with its key Secret. Default `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_repository: Option<String>,
}

/// How the applications land on one target cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetMapping {
    /// Namespace on the primary → namespace on this target.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub namespace_mapping: BTreeMap<String, String>,
    /// StorageClass on the primary → StorageClass on this target (claims and volumes).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub storage_class_mapping: BTreeMap<String, String>,
}

/// Readiness gates after a restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Readiness {
    /// Give up after this many seconds.
    #[serde(default = "default_ready_timeout")]
    pub timeout_seconds: u64,
    /// Wait for every Deployment and StatefulSet to have all its replicas available.
    #[serde(default = "yes")]
    pub workloads: bool,
    /// Wait for every PersistentVolumeClaim to be Bound.
    #[serde(default = "yes")]
    pub volume_claims: bool,
    /// HTTP endpoints that must answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<HttpCheck>,
}

impl Default for Readiness {
    fn default() -> Self {
        Self {
            timeout_seconds: default_ready_timeout(),
            workloads: true,
            volume_claims: true,
            http: Vec::new(),
        }
    }
}

fn default_ready_timeout() -> u64 {
    600
}

fn yes() -> bool {
    true
}

/// An HTTP readiness check, made from the machine running the failover.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpCheck {
    /// The URL; `{target}` is replaced by the target cluster's name.
    pub url: String,
    /// The status code expected (any 2xx if unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_status: Option<u16>,
}

/// One way of moving traffic; exactly one field is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficHook {
    /// A name for progress and audit lines.
    pub name: String,
    /// Move an external-dns hostname annotation from the source's Service to the target's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_dns: Option<ExternalDnsHook>,
    /// POST the switch to a DNS (or load balancer) webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookHook>,
    /// Run a command on the machine running the failover, with `LIFEBOAT_*` variables set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
}

/// external-dns: the hostname annotation moves with the application.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalDnsHook {
    /// The Service's namespace on the primary (mapped per target).
    pub namespace: String,
    /// The Service.
    pub service: String,
    /// The DNS name (`shop.example.com`).
    pub hostname: String,
}

/// A webhook that switches DNS or a global load balancer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookHook {
    /// The URL to POST `{"plan", "application", "from", "to", "epoch", "run"}` to; 2xx is success.
    pub url: String,
}

/// Health policy of the plan's clusters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthSpec {
    /// Consecutive failed probes an observer must see.
    #[serde(default = "three")]
    pub failure_threshold: u32,
    /// Observers that must agree before a cluster counts as failed.
    #[serde(default = "two")]
    pub confirmations: u32,
    /// Seconds between probes of the federation agent.
    #[serde(default = "ten")]
    pub interval_seconds: u64,
}

impl Default for HealthSpec {
    fn default() -> Self {
        Self {
            failure_threshold: three(),
            confirmations: two(),
            interval_seconds: ten(),
        }
    }
}

fn three() -> u32 {
    3
}
fn two() -> u32 {
    2
}
fn ten() -> u64 {
    10
}

impl HealthSpec {
    /// The verdict policy: observations count for twelve probe intervals (at least two
    /// minutes).
    pub fn policy(&self) -> crate::health::Policy {
        crate::health::Policy {
            failure_threshold: self.failure_threshold,
            confirmations: self.confirmations,
            freshness_secs: (self.interval_seconds * 12).max(120),
        }
    }
}
