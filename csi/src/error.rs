//! One error type for every RPC, mapped to the gRPC code the CSI spec asks for.

use lifeboat_rbd::RbdError;

/// Why an RPC failed. The variant picks the gRPC code; the message never carries secrets.
#[derive(Debug, thiserror::Error)]
pub enum CsiError {
    /// A required field is missing or a value is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The volume, snapshot or path does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The name is taken by something incompatible with the request.
    #[error("{0}")]
    AlreadyExists(String),
    /// The capacity cannot be satisfied.
    #[error("{0}")]
    OutOfRange(String),
    /// Nothing the driver is configured for can provision in the requested topology.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The object is in a state that forbids the operation (snapshots, children, in use).
    #[error("{0}")]
    FailedPrecondition(String),
    /// Another operation on the same volume or name is running; the CO retries.
    #[error("an operation on {0} is already in flight")]
    Aborted(String),
    /// A ListVolumes/ListSnapshots token this driver did not hand out.
    #[error("invalid starting token {0:?}")]
    BadToken(String),
    /// The backend did not answer in time or could not be reached.
    #[error("{0}")]
    Unavailable(String),
    /// The RPC or capability is not offered.
    #[error("{0}")]
    Unimplemented(String),
    /// Anything else: a failed command, an unexpected backend answer.
    #[error("{0}")]
    Internal(String),
}

impl CsiError {
    /// Wraps a librbd/librados failure, choosing the meaning from its errno.
    pub fn rbd(e: RbdError) -> Self {
        let text = e.to_string();
        match e.errno() {
            Some(libc::ENOENT) => CsiError::NotFound(text),
            Some(libc::EEXIST) => CsiError::AlreadyExists(text),
            Some(libc::EBUSY) | Some(libc::ENOTEMPTY) => CsiError::FailedPrecondition(text),
            Some(libc::ETIMEDOUT) | Some(libc::ECONNREFUSED) => CsiError::Unavailable(text),
            None => CsiError::Unavailable(text),
            Some(_) => CsiError::Internal(text),
        }
    }
}

impl CsiError {
    /// The gRPC code the CSI spec asks for in this case.
    pub fn code(&self) -> tonic::Code {
        match self {
            CsiError::InvalidArgument(_) => tonic::Code::InvalidArgument,
            CsiError::NotFound(_) => tonic::Code::NotFound,
            CsiError::AlreadyExists(_) => tonic::Code::AlreadyExists,
            CsiError::OutOfRange(_) => tonic::Code::OutOfRange,
            CsiError::ResourceExhausted(_) => tonic::Code::ResourceExhausted,
            CsiError::FailedPrecondition(_) => tonic::Code::FailedPrecondition,
            CsiError::Aborted(_) | CsiError::BadToken(_) => tonic::Code::Aborted,
            CsiError::Unavailable(_) => tonic::Code::Unavailable,
            CsiError::Unimplemented(_) => tonic::Code::Unimplemented,
            CsiError::Internal(_) => tonic::Code::Internal,
        }
    }
}

impl From<CsiError> for tonic::Status {
    fn from(e: CsiError) -> Self {
        tonic::Status::new(e.code(), e.to_string())
    }
}

/// Shorthand for the driver's results.
pub type Result<T> = std::result::Result<T, CsiError>;

/// Builds an `InvalidArgument` error.
pub fn invalid(msg: impl Into<String>) -> CsiError {
    CsiError::InvalidArgument(msg.into())
}

/// Turns an RPC's result into the gRPC reply, logging a failure once with the RPC's name
/// (messages never carry secrets: see [`CsiError`]). Works for [`CsiError`] and for the
/// controller's per-operation errors alike.
pub fn reply<T, E>(
    rpc: &'static str,
    r: std::result::Result<T, E>,
) -> std::result::Result<tonic::Response<T>, tonic::Status>
where
    E: std::fmt::Display + Into<tonic::Status>,
{
    match r {
        Ok(v) => Ok(tonic::Response::new(v)),
        Err(e) => {
            tracing::info!(rpc, error = %e, "failed");
            Err(e.into())
        }
    }
}
