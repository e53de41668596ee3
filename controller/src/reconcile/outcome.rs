//! How a run that could not finish is classified, and the limits on what goes into status.

use crate::crd::ItemMessage;
use crate::kube_objects::ObjectsError;
use crate::repository::AccessError;

/// Item messages kept in a status (the rest are counted in a last entry), so one status
/// stays far below the API server's object size limit.
pub const MAX_ITEMS_IN_STATUS: usize = 200;
/// Claims listed in a Backup's or Restore's `status.volumes` at most (a backup's catalog in
/// its snapshot has them all; errors name every failed one).
pub const MAX_VOLUMES_IN_STATUS: usize = 500;

/// Why a run did not produce a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The resource is wrong (unknown repository, missing Secret, bad glob): `Valid=False`.
    Invalid(String),
    /// The run itself failed; the message says why and the fix.
    Failed(String),
    /// Temporary (API unreachable): leave it InProgress for the next attempt.
    Transient(String),
}

impl From<AccessError> for Failure {
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::NoRepository { .. } | AccessError::Secret { .. } => Self::Invalid(e.to_string()),
            AccessError::Kube(_) => Self::Transient(e.to_string()),
            AccessError::Repository { .. } => Self::Failed(e.to_string()),
        }
    }
}

impl From<ObjectsError> for Failure {
    fn from(e: ObjectsError) -> Self {
        match e {
            ObjectsError::Invalid(_)
            | ObjectsError::UnknownResource { .. }
            | ObjectsError::NothingToRestore
            | ObjectsError::NoSnapshotOfBackup { .. }
            | ObjectsError::VolumeTargets(_) => Self::Invalid(e.to_string()),
            _ => Self::Failed(e.to_string()),
        }
    }
}

/// Keeps the first [`MAX_ITEMS_IN_STATUS`] messages and says how many were left out.
pub fn capped(mut items: Vec<ItemMessage>) -> Vec<ItemMessage> {
    if items.len() > MAX_ITEMS_IN_STATUS {
        let more = items.len() - (MAX_ITEMS_IN_STATUS - 1);
        items.truncate(MAX_ITEMS_IN_STATUS - 1);
        items.push(ItemMessage {
            item: "…".to_string(),
            message: format!("{more} more not shown"),
        });
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lists_are_capped_and_counted() {
        let items: Vec<ItemMessage> = (0..250)
            .map(|i| ItemMessage {
                item: format!("configmaps/ns/{i}"),
                message: "rejected".into(),
            })
            .collect();
        let c = capped(items);
        assert_eq!(c.len(), MAX_ITEMS_IN_STATUS);
        assert_eq!(c[MAX_ITEMS_IN_STATUS - 1].message, "51 more not shown");
    }
}
