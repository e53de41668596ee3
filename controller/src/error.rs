//! Errors of the controller runtime. Each says what was being done to which object; problems
//! a user must fix end up in the object's status instead of here.

use crate::kube_objects::ObjectsError;
use crate::repository::AccessError;

/// A failure the controller retries (or, at start-up, reports and exits with).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or could not be reached.
    #[error("Kubernetes API: {what}: {source}")]
    Kube {
        /// What was being done.
        what: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// A repository could not be opened.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// An object backup or restore could not run.
    #[error(transparent)]
    Objects(#[from] ObjectsError),
    /// The metrics/health server could not start.
    #[error("HTTP server on {addr}: {source}")]
    Http {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An object lacks something the API server always sets (namespace, name).
    #[error("{0}")]
    Malformed(String),
}

impl Error {
    /// Wraps a client error with what was being done.
    pub fn kube(what: impl Into<String>, source: kube::Error) -> Self {
        Self::Kube {
            what: what.into(),
            source,
        }
    }
}

/// Short for results of this crate's runtime.
pub type Result<T, E = Error> = std::result::Result<T, E>;
