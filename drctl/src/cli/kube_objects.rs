//! Flags of the Kubernetes objects commands: `backup create|list|describe|delete`,
//! `restore create|describe`, `schedule …`.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use super::KeyArgs;

/// Where the work happens: through the controller (CRs) or in drctl itself.
#[derive(Debug, Clone, Args)]
pub struct ModeArgs {
    /// Do the work here instead of asking the controller (implied by --repo, and when no
    /// controller is running).
    #[arg(long)]
    pub direct: bool,
    /// Repository URL for --direct: a path, s3://, gs:// or az:// URL.
    #[arg(long, env = "DRCTL_REPO")]
    pub repo: Option<String>,
    /// S3 endpoint for non-AWS services such as Ceph RGW or MinIO.
    #[arg(long, env = "DRCTL_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 region.
    #[arg(long)]
    pub s3_region: Option<String>,
    #[command(flatten)]
    pub key: KeyArgs,
    /// Namespace the controller runs in (where its Lease is).
    #[arg(long, env = "DRCTL_CONTROLLER_NAMESPACE", default_value = lifeboat_controller::DEFAULT_NAMESPACE)]
    pub controller_namespace: String,
}

/// Which objects, as in a Backup's spec.
#[derive(Debug, Clone, Args)]
pub struct SelectionArgs {
    /// Namespaces to include (globs, comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub include_namespaces: Vec<String>,
    /// Namespaces to leave out (globs, comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub exclude_namespaces: Vec<String>,
    /// Resources to include, as kubectl names them (`deployments`, `deploy`, `Deployment`,
    /// `deployments.apps`) or globs of `plural[.group]`, comma-separated; a name that names
    /// no resource type is refused.
    #[arg(long, value_delimiter = ',')]
    pub include_resources: Vec<String>,
    /// Resources to leave out, named as for --include-resources (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub exclude_resources: Vec<String>,
}

/// `drctl backup create`.
#[derive(Debug, Clone, Args)]
pub struct BackupCreateArgs {
    /// The Backup's name.
    pub name: String,
    #[command(flatten)]
    pub mode: ModeArgs,
    #[command(flatten)]
    pub selection: SelectionArgs,
    /// Label selector (`app=web,tier!=cache`).
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Cluster-scoped objects: auto (all, or those the selected namespaces need), include, exclude.
    #[arg(long, value_enum, default_value_t = ClusterScopedArg::Auto)]
    pub cluster_scoped: ClusterScopedArg,
    /// BackupRepository (in the namespace) the controller writes to.
    #[arg(long, default_value = "default")]
    pub repository: String,
    /// How long to keep it (`720h`).
    #[arg(long)]
    pub ttl: Option<String>,
    /// Wait for the controller to finish it (direct runs always wait).
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub volumes: VolumeArgs,
    #[command(flatten)]
    pub etcd: BackupEtcdArgs,
}

/// An etcd cluster taken in the same recovery point as the objects and volumes (`spec.etcd`
/// with `includedNamespaces`; without `--include-namespaces`, every namespace).
#[derive(Debug, Clone, Args)]
pub struct BackupEtcdArgs {
    /// Also take a full snapshot of this etcd cluster, in the same recovery point (client
    /// URLs, comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,
    /// Secret in the namespace with `ca.crt`, `tls.crt` and `tls.key` for etcd (controller runs).
    #[arg(long, requires = "etcd_endpoints")]
    pub etcd_tls_secret: Option<String>,
    /// CA certificate of etcd's server certificates (--direct).
    #[arg(long, requires = "etcd_endpoints")]
    pub etcd_cacert: Option<PathBuf>,
    /// Client certificate for etcd (--direct; kubeadm: /etc/kubernetes/pki/etcd/healthcheck-client.crt).
    #[arg(long, requires_all = ["etcd_key", "etcd_endpoints"])]
    pub etcd_cert: Option<PathBuf>,
    /// Client key for etcd (--direct).
    #[arg(long, requires_all = ["etcd_cert", "etcd_endpoints"])]
    pub etcd_key: Option<PathBuf>,
}

/// Which claims' volume data a backup takes (`spec.volumes`); by default every bound claim
/// in the backup's namespaces.
#[derive(Debug, Clone, Args)]
pub struct VolumeArgs {
    /// Take no volume data (objects only).
    #[arg(long, conflicts_with = "volumes")]
    pub no_volumes: bool,
    /// Take volume data (the default; for scripts that want to say so).
    #[arg(long)]
    pub volumes: bool,
    /// Only claims matching this label selector (`app=db`).
    #[arg(long)]
    pub volume_selector: Option<String>,
    /// Only claims of these StorageClasses (globs, comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub volume_include_storage_class: Vec<String>,
    /// Leave out claims of these StorageClasses (globs, comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub volume_exclude_storage_class: Vec<String>,
    /// Volumes backed up at once (--direct; at least 1).
    #[arg(long, default_value_t = 4, value_parser = crate::cli::at_least_one::<usize>)]
    pub volume_parallelism: usize,
    #[command(flatten)]
    pub ceph: VolumeCephArgs,
}

/// How drctl itself reaches Ceph for volume data (--direct); by default through the CSI
/// drivers' ConfigMaps and the StorageClasses' secrets, as the controller does.
#[derive(Debug, Clone, Args)]
pub struct VolumeCephArgs {
    /// ceph.conf (monitors and keyring) to reach every RBD image with, instead of the CSI
    /// drivers' ConfigMaps and the StorageClasses' secrets (--direct).
    #[arg(long)]
    pub ceph_conf: Option<PathBuf>,
    /// cephx user for --ceph-conf, without `client.`.
    #[arg(long, default_value = "admin", requires = "ceph_conf")]
    pub ceph_id: String,
    /// A Secret in --namespace with the cephx user and key (`userID`/`userKey`) to use for
    /// every RBD image instead of the StorageClasses' provisioner Secrets (`cephSecret`).
    #[arg(long, conflicts_with = "ceph_conf")]
    pub ceph_secret: Option<String>,
}

/// Whether and how a restore writes volume data (`spec.restorePVs`).
#[derive(Debug, Clone, Args)]
pub struct RestoreVolumeArgs {
    /// Restore no volume data: claims and volumes come back as objects only, bound as in the
    /// backup (Velero's --restore-volumes=false).
    #[arg(long)]
    pub no_volumes: bool,
    /// Volumes written at once (--direct; at least 1).
    #[arg(long, default_value_t = 4, value_parser = crate::cli::at_least_one::<usize>)]
    pub volume_parallelism: usize,
    #[command(flatten)]
    pub ceph: VolumeCephArgs,
}

/// `--cluster-scoped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClusterScopedArg {
    /// All when no namespace filter, else what the namespaces need.
    Auto,
    /// Always.
    Include,
    /// Never.
    Exclude,
}

/// `drctl backup list|describe|delete`.
#[derive(Debug, Clone, Args)]
pub struct BackupRefArgs {
    /// The Backup's name (list: none).
    pub name: Option<String>,
    #[command(flatten)]
    pub mode: ModeArgs,
}

/// `--existing-resource-policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExistingPolicyArg {
    /// Leave existing objects alone.
    None,
    /// Make them match the backup.
    Update,
}

/// `drctl restore create`.
#[derive(Debug, Clone, Args)]
pub struct RestoreCreateArgs {
    /// The Restore's name (generated from the backup's if omitted).
    pub name: Option<String>,
    /// The Backup to restore (in direct mode: the newest snapshot tagged with that name).
    #[arg(long, required_unless_present = "from_snapshot")]
    pub from_backup: Option<String>,
    /// Or a snapshot id (or unique prefix).
    #[arg(long, conflicts_with = "from_backup")]
    pub from_snapshot: Option<String>,
    #[command(flatten)]
    pub mode: ModeArgs,
    #[command(flatten)]
    pub selection: SelectionArgs,
    /// Label selector (`app=web,tier!=cache`, `env in (a,b)`, `!legacy`): only objects whose
    /// labels match, with what they need (their Namespace objects, the CRDs of their custom
    /// resources, the volumes bound to their claims and those classes); volume data only of
    /// matching claims (Velero's --selector).
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Namespace mapping `old:new`, comma-separated.
    #[arg(long, value_delimiter = ',', value_parser = parse_mapping)]
    pub namespace_mapping: Vec<(String, String)>,
    /// StorageClass mapping `old:new`, comma-separated: the class claims and volumes get, and
    /// whose parameters and provisioner Secret say where their data is written.
    #[arg(long, value_delimiter = ',', value_parser = parse_mapping)]
    pub storage_class_mapping: Vec<(String, String)>,
    #[command(flatten)]
    pub volumes: RestoreVolumeArgs,
    /// What to do with objects that already exist.
    #[arg(long, value_enum, default_value_t = ExistingPolicyArg::None)]
    pub existing_resource_policy: ExistingPolicyArg,
    /// Also restore `status`.
    #[arg(long)]
    pub restore_status: bool,
    /// Labels to add to every restored object (key=value, comma-separated).
    #[arg(long, value_delimiter = ',', value_parser = super::parse_tag)]
    pub labels: Vec<(String, String)>,
    /// Print what would change, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Creates in flight (direct mode; at least 1).
    #[arg(long, default_value_t = 32, value_parser = crate::cli::at_least_one::<usize>)]
    pub parallelism: usize,
    /// Wait for the controller to finish it (direct runs always wait).
    #[arg(long)]
    pub wait: bool,
}

/// `drctl restore describe`.
#[derive(Debug, Clone, Args)]
pub struct RestoreRefArgs {
    /// The Restore's name.
    pub name: String,
}

/// `drctl schedule …`
#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Create a Schedule.
    Create(Box<ScheduleCreateArgs>),
    /// List Schedules.
    List,
    /// Stop creating Backups.
    Pause {
        /// The Schedule.
        name: String,
    },
    /// Resume creating Backups.
    Unpause {
        /// The Schedule.
        name: String,
    },
}

/// `drctl schedule create`.
#[derive(Debug, Clone, Args)]
pub struct ScheduleCreateArgs {
    /// The Schedule's name.
    pub name: String,
    /// Cron expression (`0 2 * * *`, `@daily`).
    #[arg(long)]
    pub schedule: String,
    /// IANA time zone for the expression (`Europe/Berlin`); UTC if unset.
    #[arg(long)]
    pub time_zone: Option<String>,
    /// BackupRepository the backups go to.
    #[arg(long, default_value = "default")]
    pub repository: String,
    #[command(flatten)]
    pub selection: SelectionArgs,
    /// Label selector.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Keep the newest N backups.
    #[arg(long)]
    pub keep_last: Option<u32>,
    /// Keep one per hour for N hours.
    #[arg(long)]
    pub keep_hourly: Option<u32>,
    /// Keep one per day for N days.
    #[arg(long)]
    pub keep_daily: Option<u32>,
    /// Keep one per week for N weeks.
    #[arg(long)]
    pub keep_weekly: Option<u32>,
    /// Keep one per month for N months.
    #[arg(long)]
    pub keep_monthly: Option<u32>,
    /// Create it paused.
    #[arg(long)]
    pub paused: bool,
}

/// `drctl crds`.
#[derive(Debug, Clone, Args)]
pub struct CrdsArgs {
    /// Write to this file instead of standard output.
    #[arg(long)]
    pub write: Option<PathBuf>,
}

fn parse_mapping(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((a, b)) if !a.is_empty() && !b.is_empty() => Ok((a.to_string(), b.to_string())),
        _ => Err(format!("namespace mapping {s:?} must be old:new")),
    }
}
