//! The node operations' error: each carries the RPC, the volume it was about and the cause,
//! and is mapped to its gRPC code here and nowhere else (the cause's kind decides it:
//! [`CsiError::code`]). The status message is `<RPC> <volume id>: <cause>`.

use tonic::Status;

use crate::error::CsiError;

/// Why NodeStageVolume, NodeUnstageVolume, NodePublishVolume, NodeUnpublishVolume,
/// NodeGetVolumeStats or NodeExpandVolume failed.
#[derive(Debug, thiserror::Error)]
#[error("{op} {}", if volume_id.is_empty() { "(no volume_id)" } else { volume_id.as_str() })]
pub struct NodeOpError {
    /// The RPC.
    pub op: &'static str,
    /// The volume id as given (empty when the request had none).
    pub volume_id: String,
    /// What went wrong; its kind is the gRPC code.
    pub source: CsiError,
}

impl From<NodeOpError> for Status {
    fn from(e: NodeOpError) -> Self {
        Status::new(e.source.code(), format!("{e}: {}", e.source))
    }
}

/// Wraps a node operation's result with its RPC and volume id.
pub(crate) fn on_volume<T>(
    op: &'static str,
    volume_id: String,
    r: Result<T, CsiError>,
) -> Result<T, NodeOpError> {
    r.map_err(|source| NodeOpError {
        op,
        volume_id,
        source,
    })
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    #[test]
    fn the_cause_decides_the_code_and_the_message_names_the_volume() {
        let e = NodeOpError {
            op: "NodePublishVolume",
            volume_id: "0001-0009-rbd-0000000000000002-pvc-1".into(),
            source: CsiError::NotFound("image pvc-1 does not exist".into()),
        };
        let s = Status::from(e);
        assert_eq!(s.code(), Code::NotFound);
        assert!(
            s.message()
                .starts_with("NodePublishVolume 0001-0009-rbd-0000000000000002-pvc-1: ")
                && s.message().contains("image pvc-1 does not exist"),
            "{}",
            s.message()
        );
        let missing = NodeOpError {
            op: "NodeStageVolume",
            volume_id: String::new(),
            source: CsiError::InvalidArgument("volume_id is required".into()),
        };
        let s = Status::from(missing);
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(
            s.message().starts_with("NodeStageVolume (no volume_id): "),
            "{}",
            s.message()
        );
    }
}
