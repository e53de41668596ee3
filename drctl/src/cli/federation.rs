//! Flags of the federation commands: `cluster …`, `failover`, `failback`, `relocate`,
//! `drill`, `audit`.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use super::KeyArgs;

/// Where the federation state is and how to reach the clusters.
#[derive(Debug, Clone, Args)]
pub struct FederationArgs {
    /// Repositories holding the federation state (comma-separated, or repeat the flag); with
    /// --plan FILE the plan's own repositories are used.
    #[arg(long = "repo", env = "DRCTL_REPO", value_delimiter = ',')]
    pub repos: Vec<String>,
    /// S3 endpoint for non-AWS services (applies to s3:// repositories the plan gives none for).
    #[arg(long, env = "DRCTL_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 region.
    #[arg(long)]
    pub s3_region: Option<String>,
    /// Azure Blob endpoint (Azurite, sovereign clouds) for az:// repositories.
    #[arg(long, env = "DRCTL_AZURE_ENDPOINT")]
    pub azure_endpoint: Option<String>,
    #[command(flatten)]
    pub key: KeyArgs,
    /// The kubeconfig of one cluster, `NAME=FILE` (repeatable); others use --kubeconfig with
    /// the context their registration names.
    #[arg(long = "kubeconfig-for", value_parser = parse_assignment)]
    pub kubeconfig_for: Vec<(String, PathBuf)>,
}

/// `drctl cluster …`
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Register a cluster (its kubeconfig stays in files and Secrets, never in the registry).
    Add(Box<ClusterAddArgs>),
    /// List the registered clusters.
    List {
        #[command(flatten)]
        fed: FederationArgs,
    },
    /// Probe clusters from here, record the observations, and print every observer's verdict.
    Status {
        /// Only this cluster.
        name: Option<String>,
        #[command(flatten)]
        fed: FederationArgs,
        /// Probes per cluster (at least 1).
        #[arg(long, default_value_t = 1, value_parser = crate::cli::at_least_one::<u32>)]
        probes: u32,
        /// Seconds between probes (at least 1).
        #[arg(long, default_value_t = 2, value_parser = crate::cli::at_least_one::<u64>)]
        interval: u64,
        /// Failed probes in a row one observer must see (at least 1).
        #[arg(long, default_value_t = 3, value_parser = crate::cli::at_least_one::<u32>)]
        failure_threshold: u32,
        /// Observers that must agree (at least 1).
        #[arg(long, default_value_t = 2, value_parser = crate::cli::at_least_one::<u32>)]
        confirmations: u32,
        /// Record the probes as this observer (default `drctl@HOST`): one name per vantage
        /// point, e.g. a bastion in the standby's network and a laptop elsewhere.
        #[arg(long, value_parser = parse_observer)]
        observer: Option<String>,
    },
    /// Unregister a cluster (and remove what `add --kubeconfig-secret` installed elsewhere).
    Remove {
        /// The cluster.
        name: String,
        #[command(flatten)]
        fed: FederationArgs,
    },
}

/// `--role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// Runs the applications.
    Primary,
    /// Takes them over.
    Standby,
}

/// `drctl cluster add`.
#[derive(Debug, Clone, Args)]
pub struct ClusterAddArgs {
    /// The cluster's name (a DNS label).
    pub name: String,
    #[command(flatten)]
    pub fed: FederationArgs,
    /// Region.
    #[arg(long, default_value = "")]
    pub region: String,
    /// Cloud or site.
    #[arg(long, default_value = "")]
    pub cloud: String,
    /// Primary or standby.
    #[arg(long, value_enum, default_value_t = RoleArg::Standby)]
    pub role: RoleArg,
    /// Install its kubeconfig (reduced to its context) as this Secret, with a Cluster
    /// resource, in every other registered cluster, and theirs in it, so the federation
    /// agents can probe each other.
    #[arg(long)]
    pub kubeconfig_secret: Option<String>,
    /// Lifeboat's namespace in the cluster.
    #[arg(long, default_value = lifeboat_controller::DEFAULT_NAMESPACE)]
    pub controller_namespace: String,
    /// ceph.conf of the cluster's Ceph, to blocklist its RBD clients when it is fenced.
    #[arg(long)]
    pub ceph_conf: Option<PathBuf>,
    /// cephx user for the blocklist.
    #[arg(long, requires = "ceph_conf")]
    pub ceph_user: Option<String>,
}

/// Which plan, and what to do about an interrupted run.
#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// The FailoverPlan: a YAML/JSON file, or the name of a plan stored by an earlier run.
    #[arg(long)]
    pub plan: String,
    #[command(flatten)]
    pub fed: FederationArgs,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Continue the interrupted run of this plan instead of starting one.
    #[arg(long, conflicts_with = "dry_run")]
    pub resume: bool,
    #[command(flatten)]
    pub volumes: RunVolumeArgs,
}

/// Whether and how a run moves the claims' volume data (RBD images, NFS directories).
#[derive(Debug, Clone, Args)]
pub struct RunVolumeArgs {
    /// Move no volume data: claims come back without it (unbound, so the target's
    /// StorageClass provisions them empty).
    #[arg(long)]
    pub no_volumes: bool,
    /// Volumes moved at once (at least 1).
    #[arg(long, default_value_t = 4, value_parser = crate::cli::at_least_one::<usize>)]
    pub volume_parallelism: usize,
    /// ceph.conf (monitors and keyring) to reach every RBD image with, instead of each
    /// cluster's CSI driver ConfigMaps and StorageClass Secrets.
    #[arg(long, conflicts_with = "no_volumes")]
    pub ceph_conf: Option<PathBuf>,
    /// cephx user for --ceph-conf, without `client.`.
    #[arg(long, default_value = "admin", requires = "ceph_conf")]
    pub ceph_id: String,
}

/// `drctl failover`.
#[derive(Debug, Clone, Args)]
pub struct FailoverArgs {
    #[command(flatten)]
    pub plan: PlanArgs,
    /// The cluster to fail over to (the first healthy standby if unset).
    #[arg(long)]
    pub to: Option<String>,
    /// Fail over even though the holder is reachable or not confirmed failed by a second
    /// observer (it will be fenced).
    #[arg(long)]
    pub force: bool,
}

/// `drctl failback`.
#[derive(Debug, Clone, Args)]
pub struct FailbackArgs {
    #[command(flatten)]
    pub plan: PlanArgs,
}

/// `drctl relocate`.
#[derive(Debug, Clone, Args)]
pub struct RelocateArgs {
    #[command(flatten)]
    pub plan: PlanArgs,
    /// The cluster to move the applications to.
    #[arg(long)]
    pub to: String,
}

/// `drctl drill`.
#[derive(Debug, Clone, Args)]
pub struct DrillArgs {
    /// The FailoverPlan: a file, or the name of a stored plan.
    #[arg(long)]
    pub plan: String,
    #[command(flatten)]
    pub fed: FederationArgs,
    /// The cluster to restore into (the plan's first healthy standby if unset).
    #[arg(long)]
    pub to: Option<String>,
    /// Suffix for the restored namespaces (`-drill`; a leading hyphen is fine).
    #[arg(long, allow_hyphen_values = true)]
    pub namespace_suffix: Option<String>,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Directory for report.json, report.md and report.html (default: ./drill-<run>).
    #[arg(long)]
    pub report_dir: Option<PathBuf>,
    #[command(flatten)]
    pub volumes: RunVolumeArgs,
}

/// `drctl audit`.
#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub fed: FederationArgs,
    /// Only this plan.
    #[arg(long)]
    pub plan: Option<String>,
    /// Only records newer than this (`30m`, `24h`, `7d`).
    #[arg(long)]
    pub since: Option<String>,
}

fn parse_observer(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '@'));
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not an observer name: use letters, digits, '-', '.', '_' and '@', like drctl@bastion-us-east"
        ))
    }
}

fn parse_assignment(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() && !v.is_empty() => Ok((k.to_string(), PathBuf::from(v))),
        _ => Err(format!("{s:?} must be NAME=FILE")),
    }
}
