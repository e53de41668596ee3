//! What an operator can do about a federation error, by meaning. The library never names a
//! drctl command or flag (the federation agent reports the same errors in statuses); drctl
//! words each [`Advice`] as the command to type (`drctl/src/hint.rs`).

/// A next step, with what the command needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advice {
    /// Read the audit trail of runs (who started, changed or stopped which run), then retry.
    ReviewRuns,
    /// A `kind` run (failover, failback, relocate, drill) of `plan` is in progress: resume it.
    ResumeRun {
        /// `failover`, `failback`, `relocate` or `drill`.
        kind: String,
        /// The plan.
        plan: String,
    },
    /// The source still answers: move the applications with a planned relocation of `plan`
    /// (no data loss), or fail over anyway, forced (the source is fenced).
    RelocateOrForce {
        /// The plan.
        plan: String,
    },
    /// Relocate the applications of `plan` to `to` (a failback only returns to the primary).
    RelocateTo {
        /// The plan.
        plan: String,
        /// The target cluster.
        to: String,
    },
    /// The source cannot be reached: fail over `plan` (restores the newest recovery point).
    FailOver {
        /// The plan.
        plan: String,
    },
    /// Back up the application's namespaces (a Schedule on its cluster, or a one-off backup).
    BackUpApplication,
    /// Register the clusters in the federation.
    RegisterClusters {
        /// The clusters not registered.
        clusters: Vec<String>,
    },
    /// Store the cluster's kubeconfig in Secret `secret` (`None`: a Secret to name) and record
    /// it with the cluster's registration.
    StoreKubeconfig {
        /// The cluster.
        cluster: String,
        /// The Secret.
        secret: Option<String>,
    },
    /// Give a kubeconfig file for `cluster` (with context `context`).
    GiveKubeconfig {
        /// The cluster.
        cluster: String,
        /// The context to use in it.
        context: String,
    },
    /// Drill into namespaces of their own (a suffix), or into another target cluster.
    DrillBesideTheApplications,
    /// Name the target cluster of a relocation.
    NameTarget,
    /// Name the kubeconfig context to use.
    NameContext,
    /// Name the repositories that hold the federation state (or list them in the plan).
    NameStateRepositories,
}
