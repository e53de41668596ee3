//! The command line surface, following kubectl's habits (`--context`, `-n`, `-o`).

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Keep Kubernetes clusters' data alive through disasters.
#[derive(Debug, Parser)]
#[command(name = "drctl", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command accepts.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Path to the kubeconfig file (defaults to $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, env = "KUBECONFIG")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Namespace for namespaced objects.
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Output {
    /// Aligned columns for people.
    Table,
    /// JSON for scripts.
    Json,
    /// YAML for scripts and kubectl users.
    Yaml,
}

/// A command group's not-yet-parsed arguments.
#[derive(Debug, Args)]
pub struct Pending {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub args: Vec<String>,
}

/// The command groups.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, inspect, check and prune backup repositories.
    Repo(Pending),
    /// Back up files, Kubernetes objects or volumes.
    Backup(Pending),
    /// Restore from a backup or snapshot.
    Restore(Pending),
    /// Manage scheduled backups and their retention.
    Schedule(Pending),
    /// Snapshot and restore etcd.
    Etcd(Pending),
    /// Register clusters and watch their health.
    Cluster(Pending),
    /// Plan and run a failover to another cluster.
    Failover(Pending),
    /// Run a failover drill and measure RPO and RTO.
    Drill(Pending),
}

impl Command {
    /// The group's name and what will build it.
    pub fn not_built(&self) -> (&'static str, &'static str) {
        match self {
            Command::Repo(_) => ("repo", "the backup engine, issue #3"),
            Command::Backup(_) => ("backup", "the backup engine, issue #3"),
            Command::Restore(_) => ("restore", "the backup engine, issue #3"),
            Command::Schedule(_) => ("schedule", "the controller, issue #5"),
            Command::Etcd(_) => ("etcd", "etcd snapshots, issue #6"),
            Command::Cluster(_) => ("cluster", "federation, not yet scheduled"),
            Command::Failover(_) => ("failover", "federation, not yet scheduled"),
            Command::Drill(_) => ("drill", "federation, not yet scheduled"),
        }
    }
}
