//! The append-only audit log of DR actions. Every failover, failback, relocate, drill, fence
//! and unfence is one object created once (`If-None-Match: *`) under a name that sorts by
//! time, in every repository of the plan, and nothing ever rewrites or deletes one (buckets
//! with S3 Object Lock keep them tamper-proof). The same actions are published as Kubernetes
//! Events on the clusters involved, best effort.

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use serde::{Deserialize, Serialize};

use crate::state::{StateError, StateStore, WriteReport, key};

/// One DR action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// When.
    pub time: DateTime<Utc>,
    /// `failover`, `failback`, `relocate`, `drill`, `fence`, `unfence`, `cluster-add`,
    /// `cluster-remove`.
    pub action: String,
    /// `started`, `succeeded`, `failed`, `enforced`, `done`.
    pub outcome: String,
    /// Who: `drctl@<host>` or `agent@<cluster>`.
    pub actor: String,
    /// The plan, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// The run, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// From which cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// To which cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The fencing epoch involved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// What happened, in words.
    pub message: String,
}

impl AuditRecord {
    /// A record of `action` with `outcome` by `actor`, now.
    pub fn new(action: &str, outcome: &str, actor: &str, message: impl Into<String>) -> Self {
        Self {
            time: Utc::now(),
            action: action.to_string(),
            outcome: outcome.to_string(),
            actor: actor.to_string(),
            plan: None,
            run: None,
            from: None,
            to: None,
            epoch: None,
            message: message.into(),
        }
    }
}

/// This process as an actor: `drctl@<hostname>` and the like.
pub fn actor(program: &str) -> String {
    format!("{program}@{}", lifeboat_backup::repository::hostname())
}

/// Appends a record to every repository.
pub async fn append(state: &StateStore, record: &AuditRecord) -> Result<WriteReport, StateError> {
    let name = format!(
        "{}-{:08x}",
        record.time.format("%Y%m%dT%H%M%S%.6fZ"),
        rand::random::<u32>()
    );
    state.create_all(&key(&["audit", &name]), record).await
}

/// Every record in the reachable repositories (the union), oldest first.
pub async fn list(state: &StateStore, since: Option<DateTime<Utc>>) -> Result<Vec<AuditRecord>, StateError> {
    let mut out = Vec::new();
    for k in state.list_union(&key(&["audit"])).await? {
        if let Some(since) = since {
            // Names start with the time: skip older ones without reading them.
            let stamp = k.rsplit('/').next().unwrap_or("");
            if stamp < since.format("%Y%m%dT%H%M%S").to_string().as_str() {
                continue;
            }
        }
        let copies: Vec<AuditRecord> = state.read_values(&k).await?;
        out.extend(copies.into_iter().next());
    }
    out.sort_by_key(|r| r.time);
    Ok(out)
}

/// Publishes an Event about the FailoverPlan `plan` (in `namespace`) on a cluster; failures
/// are logged, not returned: Events are best effort and a cluster may be half gone.
pub async fn event(client: &Client, namespace: &str, plan: &str, warning: bool, reason: &str, note: &str) {
    let reporter = Reporter {
        controller: "lifeboat-federation".to_string(),
        instance: Some(actor("federation")),
    };
    let reference = ObjectReference {
        api_version: Some("lifeboat.dev/v1alpha1".to_string()),
        kind: Some("FailoverPlan".to_string()),
        name: Some(plan.to_string()),
        namespace: Some(namespace.to_string()),
        ..ObjectReference::default()
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let mut note = note.to_string();
    // Event notes are limited to 1 KiB by the API server.
    if note.len() > 1000 {
        let mut cut = 1000;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
    }
    let event = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.to_string(),
        note: Some(note),
        action: reason.to_string(),
        secondary: None,
    };
    let publish = recorder.publish(&event, &reference);
    match tokio::time::timeout(std::time::Duration::from_secs(10), publish).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!("event {reason} on FailoverPlan {namespace}/{plan}: {e}"),
        Err(_) => tracing::debug!("event {reason} on FailoverPlan {namespace}/{plan}: timed out"),
    }
}
