//! Types shared by several resources.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A key in a Secret of the resource's own namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// The Secret's name.
    pub name: String,
    /// The key inside it; each use documents its default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// A status condition in the Kubernetes convention (`type`, `status`, `reason`, `message`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// What the condition is about (`Ready`, `Valid`…).
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A CamelCase word for programs.
    #[serde(default)]
    pub reason: String,
    /// What a person should know, including the fix.
    #[serde(default)]
    pub message: String,
    /// When `status` last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

impl Condition {
    /// A condition that is true or false now.
    pub fn new(type_: &str, ok: bool, reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_: type_.to_string(),
            status: if ok { "True" } else { "False" }.to_string(),
            reason: reason.to_string(),
            message: message.into(),
            last_transition_time: Some(chrono::Utc::now().to_rfc3339()),
        }
    }

    /// Replaces the condition of the same type in `list`, keeping its transition time when
    /// the status did not change (so the time says when it changed, not when it was seen).
    pub fn set(list: &mut Vec<Condition>, mut new: Condition) {
        if let Some(old) = list.iter_mut().find(|c| c.type_ == new.type_) {
            if old.status == new.status {
                new.last_transition_time = old.last_transition_time.clone();
            }
            *old = new;
        } else {
            list.push(new);
        }
    }
}

/// One item (an object, a resource type) that was skipped or failed, and why: a
/// PartiallyFailed result always says which items and why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ItemMessage {
    /// `resource[.group]/namespace/name`, or a resource type.
    pub item: String,
    /// What went wrong and, where known, the fix.
    pub message: String,
}

/// How far a long operation has got.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// Items known so far (grows while listing).
    pub total_items: u64,
    /// Items done.
    pub items_done: u64,
    /// Bytes to read (volume data of a Backup, an etcd snapshot), summed over what runs at
    /// once; grows as each volume's read is planned.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub total_bytes: u64,
    /// Bytes read so far.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bytes_done: u64,
}

/// How far one claim's volume data has got while a Backup or Restore runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeProgress {
    /// `namespace/claim`.
    pub claim: String,
    /// Bytes to read (backup) or write (restore), known once its plan is made.
    pub total_bytes: u64,
    /// Bytes done.
    pub bytes_done: u64,
    /// Whether it is finished.
    pub done: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
