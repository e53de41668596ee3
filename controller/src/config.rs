//! How a controller process runs: the knobs `main` takes from flags and tests set directly.

use std::time::Duration;

use crate::{DEFAULT_NAMESPACE, LEASE_NAME};

/// Settings of one controller process.
#[derive(Debug, Clone)]
pub struct Config {
    /// The controller's own namespace (where its Lease lives).
    pub namespace: String,
    /// Name of the Lease used for leader election.
    pub lease_name: String,
    /// This process's identity in the Lease (the pod name in a cluster).
    pub identity: String,
    /// Whether to elect a leader; off means this process always reconciles.
    pub leader_elect: bool,
    /// How long a Lease stays valid without renewal; renewals happen every third of it.
    pub lease_duration: Duration,
    /// Objects of each kind reconciled at once.
    pub concurrency: u16,
    /// How often a running backup or restore writes its progress to status.
    pub progress_interval: Duration,
    /// How often each BackupRepository is checked.
    pub repository_check_interval: Duration,
    /// Only watch this namespace for Lifeboat resources; all namespaces when `None`.
    pub watch_namespace: Option<String>,
}

impl Config {
    /// Defaults for a controller in `namespace` (POD_NAMESPACE, else [`DEFAULT_NAMESPACE`]).
    pub fn new(namespace: Option<String>, identity: String) -> Self {
        Self {
            namespace: namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.to_string()),
            lease_name: LEASE_NAME.to_string(),
            identity,
            leader_elect: true,
            lease_duration: Duration::from_secs(15),
            concurrency: 4,
            progress_interval: Duration::from_secs(5),
            repository_check_interval: Duration::from_secs(300),
            watch_namespace: None,
        }
    }
}
