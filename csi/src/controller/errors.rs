//! One error type per controller operation, each carrying the object it was about (request
//! name, volume id, snapshot id) and the cause, and each mapped to its gRPC code here and
//! nowhere else. A variant's message gives its own context; the cause's text follows it once
//! in the gRPC status message (`context: cause`).

use tonic::{Code, Status};

use crate::error::CsiError;

fn status(context: &dyn std::fmt::Display, code: Code, cause: Option<&CsiError>) -> Status {
    match cause {
        Some(c) => Status::new(code, format!("{context}: {c}")),
        None => Status::new(code, context.to_string()),
    }
}

/// Why CreateVolume failed.
#[derive(Debug, thiserror::Error)]
pub enum CreateVolumeError {
    /// The request cannot be served as given (missing name, capabilities, bad parameters,
    /// unknown content source, impossible capacity).
    #[error("CreateVolume {name:?}")]
    Request {
        /// The CO's request name.
        name: String,
        /// What is wrong.
        source: CsiError,
    },
    /// None of the requisite topologies is one the backend can be reached from.
    #[error("CreateVolume {name:?}: cannot provision in the requested topology")]
    Topology {
        /// The CO's request name.
        name: String,
        /// Which backend and where it is reachable.
        source: CsiError,
    },
    /// Another operation on this name is running.
    #[error("CreateVolume {name:?}: another operation on this name is in flight")]
    InFlight {
        /// The CO's request name.
        name: String,
    },
    /// The backend refused or failed.
    #[error("CreateVolume {name:?}")]
    Backend {
        /// The CO's request name.
        name: String,
        /// The backend's error.
        source: CsiError,
    },
}

impl From<CreateVolumeError> for Status {
    fn from(e: CreateVolumeError) -> Self {
        match &e {
            CreateVolumeError::Request { source, .. } | CreateVolumeError::Backend { source, .. } => {
                status(&e, source.code(), Some(source))
            }
            CreateVolumeError::Topology { source, .. } => status(&e, Code::ResourceExhausted, Some(source)),
            CreateVolumeError::InFlight { .. } => status(&e, Code::Aborted, None),
        }
    }
}

/// Why an operation on one existing volume (DeleteVolume, ControllerExpandVolume,
/// ControllerModifyVolume, ControllerGetVolume, ValidateVolumeCapabilities) failed.
#[derive(Debug, thiserror::Error)]
pub enum VolumeOpError {
    /// No volume id in the request.
    #[error("{op}: volume_id is required")]
    MissingId {
        /// The RPC.
        op: &'static str,
    },
    /// The request is malformed (capabilities, capacity, mutable parameters).
    #[error("{op} {id}")]
    Request {
        /// The RPC.
        op: &'static str,
        /// The volume id as given.
        id: String,
        /// What is wrong.
        source: CsiError,
    },
    /// The id names nothing this driver made, so no such volume exists.
    #[error("{op} {id}: no such volume")]
    NotFound {
        /// The RPC.
        op: &'static str,
        /// The volume id as given.
        id: String,
        /// Why it cannot be one of the driver's volumes, or that the backend has none.
        source: CsiError,
    },
    /// Another operation on this volume is running.
    #[error("{op} {id}: another operation on this volume is in flight")]
    InFlight {
        /// The RPC.
        op: &'static str,
        /// The volume id.
        id: String,
    },
    /// The backend refused or failed.
    #[error("{op} {id}")]
    Backend {
        /// The RPC.
        op: &'static str,
        /// The volume id.
        id: String,
        /// The backend's error.
        source: CsiError,
    },
}

impl From<VolumeOpError> for Status {
    fn from(e: VolumeOpError) -> Self {
        match &e {
            VolumeOpError::MissingId { .. } => status(&e, Code::InvalidArgument, None),
            VolumeOpError::NotFound { source, .. } => status(&e, Code::NotFound, Some(source)),
            VolumeOpError::InFlight { .. } => status(&e, Code::Aborted, None),
            VolumeOpError::Request { source, .. } | VolumeOpError::Backend { source, .. } => {
                status(&e, source.code(), Some(source))
            }
        }
    }
}

/// Why CreateSnapshot, DeleteSnapshot or ListSnapshots failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotOpError {
    /// The request is malformed (missing name or source, bad token).
    #[error("{op} {object:?}")]
    Request {
        /// The RPC.
        op: &'static str,
        /// The snapshot name, id or source volume id as given.
        object: String,
        /// What is wrong.
        source: CsiError,
    },
    /// The source volume does not exist.
    #[error("{op} {object:?}: source volume {volume:?} does not exist")]
    NoSource {
        /// The RPC.
        op: &'static str,
        /// The snapshot name.
        object: String,
        /// The source volume id.
        volume: String,
    },
    /// Another operation on this snapshot name or its volume is running.
    #[error("{op} {object:?}: another operation on it is in flight")]
    InFlight {
        /// The RPC.
        op: &'static str,
        /// The snapshot name or id.
        object: String,
    },
    /// The backend refused or failed.
    #[error("{op} {object:?}")]
    Backend {
        /// The RPC.
        op: &'static str,
        /// The snapshot name or id.
        object: String,
        /// The backend's error.
        source: CsiError,
    },
}

impl From<SnapshotOpError> for Status {
    fn from(e: SnapshotOpError) -> Self {
        match &e {
            SnapshotOpError::NoSource { .. } => status(&e, Code::NotFound, None),
            SnapshotOpError::InFlight { .. } => status(&e, Code::Aborted, None),
            SnapshotOpError::Request { source, .. } | SnapshotOpError::Backend { source, .. } => {
                status(&e, source.code(), Some(source))
            }
        }
    }
}

/// Why ListVolumes or GetCapacity failed.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// The request is malformed (negative max_entries, a token this driver did not make,
    /// bad parameters or capabilities).
    #[error("{op}")]
    Request {
        /// The RPC.
        op: &'static str,
        /// What is wrong.
        source: CsiError,
    },
    /// A configured backend could not be asked.
    #[error("{op}: {backend}")]
    Backend {
        /// The RPC.
        op: &'static str,
        /// The cluster or export, as configured.
        backend: String,
        /// The backend's error.
        source: CsiError,
    },
}

impl From<InventoryError> for Status {
    fn from(e: InventoryError) -> Self {
        match &e {
            InventoryError::Request { source, .. } | InventoryError::Backend { source, .. } => {
                status(&e, source.code(), Some(source))
            }
        }
    }
}

/// Why CreateVolumeGroupSnapshot, DeleteVolumeGroupSnapshot or GetVolumeGroupSnapshot failed.
#[derive(Debug, thiserror::Error)]
pub enum GroupSnapshotError {
    /// The request is malformed (no name or id, no volumes, volumes the driver cannot group).
    #[error("{op} {object:?}")]
    Request {
        /// The RPC.
        op: &'static str,
        /// The group snapshot name or id as given.
        object: String,
        /// What is wrong.
        source: CsiError,
    },
    /// The group snapshot does not exist.
    #[error("{op} {object:?}: no such group snapshot")]
    NotFound {
        /// The RPC.
        op: &'static str,
        /// The group snapshot id.
        object: String,
    },
    /// Another operation on this group snapshot is running.
    #[error("{op} {object:?}: another operation on it is in flight")]
    InFlight {
        /// The RPC.
        op: &'static str,
        /// The group snapshot name or id.
        object: String,
    },
    /// The backend refused or failed.
    #[error("{op} {object:?}")]
    Backend {
        /// The RPC.
        op: &'static str,
        /// The group snapshot name or id.
        object: String,
        /// The backend's error.
        source: CsiError,
    },
}

impl From<GroupSnapshotError> for Status {
    fn from(e: GroupSnapshotError) -> Self {
        match &e {
            GroupSnapshotError::NotFound { .. } => status(&e, Code::NotFound, None),
            GroupSnapshotError::InFlight { .. } => status(&e, Code::Aborted, None),
            GroupSnapshotError::Request { source, .. } | GroupSnapshotError::Backend { source, .. } => {
                status(&e, source.code(), Some(source))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_variant_has_its_code_and_the_cause_once() {
        let s: Status = CreateVolumeError::Topology {
            name: "pvc".into(),
            source: CsiError::InvalidArgument("cluster c is reachable in zone=a only".into()),
        }
        .into();
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert_eq!(s.message().matches("zone=a").count(), 1, "{}", s.message());
        let s: Status = VolumeOpError::NotFound {
            op: "ControllerGetVolume",
            id: "x".into(),
            source: CsiError::InvalidArgument("not ours".into()),
        }
        .into();
        assert_eq!(s.code(), Code::NotFound);
        let s: Status = VolumeOpError::Backend {
            op: "DeleteVolume",
            id: "x".into(),
            source: CsiError::FailedPrecondition("has snapshots".into()),
        }
        .into();
        assert_eq!(s.code(), Code::FailedPrecondition);
        let s: Status = GroupSnapshotError::InFlight {
            op: "CreateVolumeGroupSnapshot",
            object: "g".into(),
        }
        .into();
        assert_eq!(s.code(), Code::Aborted);
    }
}
