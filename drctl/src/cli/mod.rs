//! The command line surface, following kubectl's habits (`--context`, `-n`, `-o`).

use std::path::PathBuf;

mod federation;
mod kube_objects;

use clap::{Args, Parser, Subcommand, ValueEnum};
pub use federation::*;
pub use kube_objects::*;

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
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Namespace for namespaced objects.
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// Output format (`-o json` as with kubectl; the long form is --format because
    /// `etcd restore --output FILE` names a file).
    #[arg(short = 'o', long = "format", global = true, value_enum, default_value_t = Output::Table)]
    pub format: Output,
    /// Never show progress bars.
    #[arg(long, global = true)]
    pub quiet: bool,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns for people.
    Table,
    /// JSON for scripts.
    Json,
    /// YAML for scripts and kubectl users.
    Yaml,
}

/// Where the repository is and how to reach it.
#[derive(Debug, Clone, Args)]
pub struct RepoArgs {
    /// Repository: a path, file:///path, s3://bucket/prefix, gs://bucket/prefix or az://container/prefix.
    #[arg(long, env = "DRCTL_REPO")]
    pub repo: String,
    /// S3 endpoint for non-AWS services such as Ceph RGW or MinIO (AWS_ENDPOINT_URL also works).
    #[arg(long, env = "DRCTL_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 region (AWS_REGION also works).
    #[arg(long)]
    pub s3_region: Option<String>,
}

/// How to open the repository.
#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// age identity file or unencrypted OpenSSH private key that opens the repository.
    #[arg(long, env = "DRCTL_IDENTITY")]
    pub identity: Option<PathBuf>,
    /// File whose first line is the repository passphrase.
    #[arg(long, env = "DRCTL_PASSPHRASE_FILE")]
    pub passphrase_file: Option<PathBuf>,
}

/// The command groups.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, inspect, check and prune backup repositories.
    #[command(subcommand)]
    Repo(RepoCommand),
    /// Back up Kubernetes objects (through the controller or directly) or files.
    #[command(subcommand)]
    Backup(BackupCommand),
    /// List the snapshots in a repository.
    Snapshots {
        #[command(flatten)]
        repo: RepoArgs,
        #[command(flatten)]
        key: KeyArgs,
        /// Accepted as restic accepts it: listing snapshots takes no lock, so it works on a
        /// read-only repository without this flag.
        #[arg(long)]
        no_lock: bool,
    },
    /// Remove snapshots by a retention policy, or by id (data goes with `repo prune`).
    Forget(ForgetArgs),
    /// Restore from a snapshot.
    #[command(subcommand)]
    Restore(RestoreCommand),
    /// Manage scheduled backups and their retention.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Print the CustomResourceDefinitions (YAML) for `kubectl apply -f -`.
    Crds(CrdsArgs),
    /// Snapshot and restore etcd.
    #[command(subcommand)]
    Etcd(EtcdCommand),
    /// Back up and restore Ceph RBD volumes directly (no Kubernetes needed).
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Register clusters and watch their health.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Fail a plan's applications over to another cluster (unplanned: newest recovery point).
    Failover(Box<FailoverArgs>),
    /// Move a plan's applications back to its primary (planned: no data loss).
    Failback(Box<FailbackArgs>),
    /// Move a plan's applications to another cluster (planned: no data loss).
    Relocate(Box<RelocateArgs>),
    /// Rehearse a failover in isolation and measure RPO and RTO.
    Drill(Box<DrillArgs>),
    /// List the federation's audit log of DR actions.
    Audit(Box<AuditArgs>),
    /// Print a shell completion script.
    #[command(long_about = COMPLETION_HELP)]
    Completion(CompletionArgs),
    /// Print drctl's man page, or write one page per command into a directory.
    Man(ManArgs),
}

const COMPLETION_HELP: &str = "Print a shell completion script for drctl, as `kubectl completion` does.

  bash:        source <(drctl completion bash)        # in ~/.bashrc
               drctl completion bash > /etc/bash_completion.d/drctl
  zsh:         drctl completion zsh > \"${fpath[1]}/_drctl\"
  fish:        drctl completion fish > ~/.config/fish/completions/drctl.fish
  powershell:  drctl completion powershell | Out-String | Invoke-Expression";

/// `drctl completion SHELL`
#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `drctl man`
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write drctl.1 and a page per command (drctl-repo-init.1, …) into this directory,
    /// e.g. /usr/local/share/man/man1, instead of printing drctl.1.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// `drctl repo …`
#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// Create a repository; prints its id.
    Init {
        #[command(flatten)]
        repo: RepoArgs,
        /// Public key that may open the repository: age (age1…) or SSH (ssh-ed25519 …). Repeatable.
        #[arg(long = "recipient")]
        recipients: Vec<String>,
        /// File whose first line is a passphrase that may open the repository.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        /// zstd compression level: 1 (the default: fast) to 19 (smaller, slower), 20–22 (much
        /// memory), negative (faster than 1, larger), or 0 (zstd's default, 3); recorded in
        /// the repository's config.
        #[arg(long, default_value_t = 1, allow_negative_numbers = true, value_parser = parse_compression_level)]
        compression_level: i32,
    },
    /// Manage the user keys that open the repository.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Verify the repository's structure, and with --read-data every byte.
    Check {
        #[command(flatten)]
        repo: RepoArgs,
        #[command(flatten)]
        key: KeyArgs,
        /// Download and verify every pack.
        #[arg(long)]
        read_data: bool,
        /// Take no repository lock (restic's --no-lock), for a repository that cannot be
        /// written: a read-only mount or bucket. A prune running meanwhile may then delete
        /// what this reads.
        #[arg(long)]
        no_lock: bool,
    },
    /// Sizes and counts.
    Stats {
        #[command(flatten)]
        repo: RepoArgs,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Remove locks left by processes that are gone.
    ///
    /// Removes expired locks, and locks whose holder ran on this host and no longer runs
    /// (killed, crashed, host rebooted). Locks held on other hosts or in other containers stay
    /// unless --remove-all is given.
    Unlock {
        #[command(flatten)]
        repo: RepoArgs,
        #[command(flatten)]
        key: KeyArgs,
        /// Also remove locks whose holders cannot be checked from here (other hosts, other
        /// containers) and live ones. Only after making sure those processes are gone: a
        /// prune running beside an unprotected backup deletes data the backup needs.
        #[arg(long, alias = "all")]
        remove_all: bool,
    },
    /// Copy snapshots into another store (another cloud): a complete repository the same
    /// keys open. Incremental and resumable; run it again after an interruption.
    Copy(Box<CopyArgs>),
    /// Repair the repository's metadata.
    #[command(subcommand)]
    Repair(RepairCommand),
    /// Delete data no snapshot references (takes an exclusive lock).
    ///
    /// Refuses, deleting nothing, while the index lists packs that storage lacks or while
    /// packs no index lists hold blobs snapshots need: run `drctl repo repair index` first.
    Prune {
        #[command(flatten)]
        repo: RepoArgs,
        #[command(flatten)]
        key: KeyArgs,
        /// Print the plan without changing anything.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `drctl repo repair …`
#[derive(Debug, Subcommand)]
pub enum RepairCommand {
    /// Rebuild the index from the packs in storage (as restic's `repair index`).
    ///
    /// Every pack ends in a list of the blobs it holds. Packs that no readable index file
    /// lists (a lost or damaged index file, an interrupted backup) are read and indexed;
    /// entries of packs missing from storage are dropped, so the next backup stores those
    /// blobs again where the source still has them. New index files are written before the
    /// old ones are deleted. Takes an exclusive lock.
    Index {
        #[command(flatten)]
        repo: RepoArgs,
        #[command(flatten)]
        key: KeyArgs,
        /// Read every pack's blob list, not only those of packs no index lists correctly.
        #[arg(long)]
        read_all_packs: bool,
    },
}

/// `drctl repo copy`. The destination's credentials come from the usual variables
/// (`AWS_*`, `AZURE_STORAGE_*`), or from `DRCTL_TO_AWS_ACCESS_KEY_ID`,
/// `DRCTL_TO_AWS_SECRET_ACCESS_KEY`, `DRCTL_TO_AZURE_STORAGE_ACCOUNT_NAME` and
/// `DRCTL_TO_AZURE_STORAGE_ACCOUNT_KEY` when they differ from the source's.
#[derive(Debug, Args)]
pub struct CopyArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    #[command(flatten)]
    pub key: KeyArgs,
    /// Destination: a path, s3://bucket/prefix, gs://bucket/prefix or az://container/prefix.
    #[arg(long)]
    pub to: String,
    /// S3 endpoint of the destination (RGW, MinIO), when it differs from the source's.
    #[arg(long, env = "DRCTL_TO_S3_ENDPOINT")]
    pub to_s3_endpoint: Option<String>,
    /// S3 region of the destination.
    #[arg(long)]
    pub to_s3_region: Option<String>,
    /// Azure Blob endpoint of the destination (Azurite, sovereign clouds).
    #[arg(long, env = "DRCTL_TO_AZURE_ENDPOINT")]
    pub to_azure_endpoint: Option<String>,
    /// Copy these snapshots: ids, unique prefixes, or `latest`.
    #[arg(long, num_args = 1.., conflicts_with_all = ["tags", "all"])]
    pub snapshots: Vec<String>,
    /// Copy the snapshots carrying this tag (key=value; repeated, all must match).
    #[arg(long = "tag", value_parser = parse_tag, conflicts_with = "all")]
    pub tags: Vec<(String, String)>,
    /// Copy every snapshot (the default).
    #[arg(long)]
    pub all: bool,
    /// Packs transferred at once (at least 1).
    #[arg(long, default_value_t = lifeboat_backup::copy::DEFAULT_PARALLELISM, value_parser = at_least_one::<usize>)]
    pub parallel: usize,
    /// Bandwidth limit for all transfers together, per second: 50MiB, 10M, 800KiB.
    #[arg(long, value_parser = lifeboat_backup::copy::parse_rate)]
    pub bandwidth: Option<u64>,
    /// Write every copied object with S3 Object Lock in this mode (the bucket must have been
    /// created with object lock enabled).
    #[arg(long, value_enum, requires = "lock_days")]
    pub lock_mode: Option<LockModeArg>,
    /// Days each copied object stays locked.
    #[arg(long, requires = "lock_mode")]
    pub lock_days: Option<u32>,
    /// Print the plan (what the destination lacks) without copying.
    #[arg(long)]
    pub dry_run: bool,
}

/// `--lock-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LockModeArg {
    /// Users with s3:BypassGovernanceRetention may still remove the lock.
    Governance,
    /// Nobody can delete a copied object before its date.
    Compliance,
}

/// `drctl repo key …`
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Let one more user key open the repository.
    Add {
        #[command(flatten)]
        repo: RepoArgs,
        #[command(flatten)]
        key: KeyArgs,
        /// The new key: age (age1…) or SSH public key.
        #[arg(long, conflicts_with = "new_passphrase_file")]
        recipient: Option<String>,
        /// The new key: a passphrase in this file.
        #[arg(long)]
        new_passphrase_file: Option<PathBuf>,
    },
    /// List the user keys.
    List {
        #[command(flatten)]
        repo: RepoArgs,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Remove a user key: never the last one, nor the one given to this command unless
    /// --force (check first that another key opens the repository).
    Remove {
        #[command(flatten)]
        repo: RepoArgs,
        #[command(flatten)]
        key: KeyArgs,
        /// The key id, from `repo key list`.
        id: String,
        /// Remove the key that opened the repository for this command too (another key must
        /// remain).
        #[arg(long)]
        force: bool,
    },
}

/// `drctl backup …`
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Back up Kubernetes objects: as a Backup the controller runs, or here (--direct / --repo).
    Create(Box<BackupCreateArgs>),
    /// List Backups (or, with --repo, the object snapshots in the repository).
    List(BackupRefArgs),
    /// Show one Backup: phase, counts, every warning and error.
    Describe(BackupRefArgs),
    /// Delete a Backup (its snapshot goes per its deletion policy; with --repo, forget it).
    Delete(BackupRefArgs),
    /// Back up files and directories; prints the snapshot id.
    Files {
        #[command(flatten)]
        repo: RepoArgs,
        #[command(flatten)]
        key: KeyArgs,
        /// Paths to back up.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Tag the snapshot (key=value, repeatable).
        #[arg(long = "tag", value_parser = parse_tag)]
        tags: Vec<(String, String)>,
        /// Read every file, even those unchanged since the last snapshot.
        #[arg(long)]
        force: bool,
        /// Host name to record instead of this machine's (as restic's --host): retention
        /// groups and the parent snapshot go by it. Give a fixed name where the host name
        /// changes each run (Kubernetes CronJob pods).
        #[arg(long, value_parser = parse_host)]
        host: Option<String>,
        /// Leave out paths matching PATTERN (repeatable), as restic's --exclude: matched
        /// against each absolute path; * ? [abc] stay within one name, ** spans any depth; a
        /// leading / anchors at the root (/var/cache), any other pattern matches at any depth
        /// (*.tmp, node_modules, build/out); a trailing / matches directories only (cache/);
        /// {a,b} is either; ? and [abc] match one byte (for é, two bytes, use * or é itself).
        /// Patterns are cleaned as paths are (./a is a). An excluded directory is left out
        /// with all it holds.
        #[arg(long = "exclude", value_name = "PATTERN")]
        excludes: Vec<String>,
        /// Read exclude patterns from FILE (repeatable): one per line; blank lines and lines
        /// starting with # are skipped.
        #[arg(long = "exclude-file", value_name = "FILE")]
        exclude_files: Vec<PathBuf>,
        /// Stay on the filesystem of each path given: mount points below them (/proc, /sys,
        /// a mounted volume) are saved as empty directories and listed.
        #[arg(short = 'x', long)]
        one_file_system: bool,
        /// Leave out the content of cache directories, those holding a CACHEDIR.TAG file
        /// that starts with the specification's signature (bford.info/cachedir): the
        /// directory and its tag are saved, so a restored cache stays marked (as tar's
        /// --exclude-caches).
        #[arg(long)]
        exclude_caches: bool,
    },
}

/// `drctl restore …`
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per run; boxing buys nothing
pub enum RestoreCommand {
    /// Restore Kubernetes objects from a Backup or snapshot.
    Create(Box<RestoreCreateArgs>),
    /// Show one Restore: phase, counts, every error.
    Describe(RestoreRefArgs),
    /// Restore a files snapshot into a directory
    ///
    /// Restores file content (sparse files stay sparse), directories, symlinks (targets byte
    /// for byte), hard links (as hard links, among the paths restored), FIFOs, sockets (as
    /// unbound socket files, like cp -a) and device nodes (as root only: otherwise each is
    /// listed as not restored), names exactly as
    /// backed up (including names that are not UTF-8), and each entry's mode (with set-user-ID,
    /// set-group-ID and sticky bits), modification time, extended attributes and POSIX ACLs
    /// (system.posix_acl_access / system.posix_acl_default) where the target filesystem
    /// supports them. Run as root, owners (uid/gid) and trusted.* / security.* attributes
    /// (file capabilities, SELinux labels) are restored too; otherwise files belong to the
    /// user running the restore, and those attributes are skipped with a warning.
    ///
    /// Nothing outside --target is ever written: symlinks already in the target are never
    /// followed, existing files, hard links and symlinks where the snapshot has a file are
    /// replaced (written under a temporary name, then renamed over), never written into, and
    /// entries of a damaged snapshot (a name listed twice) are refused. Exit code 3 when
    /// anything could not be restored; every such path is listed.
    #[command(verbatim_doc_comment)]
    Files {
        #[command(flatten)]
        repo: RepoArgs,
        #[command(flatten)]
        key: KeyArgs,
        /// Snapshot id, unique prefix, or `latest`: the newest files snapshot (of --host,
        /// holding every --path, when given).
        snapshot: String,
        /// Directory to restore into (created if missing).
        #[arg(long)]
        target: PathBuf,
        /// With `latest` only: only snapshots made on this host. Refused (exit 2) with a
        /// snapshot id, which names one snapshot already.
        #[arg(long, value_parser = parse_host)]
        host: Option<String>,
        /// With `latest` only: only snapshots that backed up this path (repeatable: all of
        /// them). Refused (exit 2) with a snapshot id.
        #[arg(long = "path")]
        paths: Vec<PathBuf>,
        /// Only restore paths matching this glob (repeatable), with the directories above them.
        /// Patterns match paths as stored: absolute, without the leading `/` (a leading `/` in
        /// a pattern is ignored), so `/srv/app/conf` or `srv/app/conf` for that directory and
        /// everything in it, `srv/app/**/*.log`, `srv/{a,b}/x`. `*` and `?` match any
        /// characters, `/` included; `[abc]` one of them. A pattern that matches nothing is
        /// named and the restore exits 3; one that is not a glob exits 2. A trailing `/`
        /// (`srv/app/`) means that directory and everything below it, as in restic and rsync.
        #[arg(long)]
        include: Vec<String>,
        /// Leave out paths matching PATTERN (repeatable), as restic's restore --exclude, with
        /// `backup files --exclude`'s rules: matched against the absolute path each entry was
        /// backed up from (/srv/app/cache anchored, *.tmp or cache at any depth, cache/ for
        /// directories only); ? and [abc] match one byte (for é, use * or é itself). An
        /// excluded directory is left out with all it holds. Applied after --include, so it
        /// can take a part of an included directory back out.
        #[arg(long = "exclude", value_name = "PATTERN")]
        excludes: Vec<String>,
        /// Read exclude patterns from FILE (repeatable), as `backup files --exclude-file`.
        #[arg(long = "exclude-file", value_name = "FILE")]
        exclude_files: Vec<PathBuf>,
        /// Take no repository lock (restic's --no-lock), for a repository that cannot be
        /// written: a read-only mount or bucket. A prune running meanwhile may then delete
        /// what this reads.
        #[arg(long)]
        no_lock: bool,
    },
}

/// `drctl etcd …`
#[derive(Debug, Subcommand)]
pub enum EtcdCommand {
    /// Take a full snapshot of etcd into the repository; prints the snapshot id.
    Snapshot {
        #[command(flatten)]
        repo: RepoArgs,
        #[command(flatten)]
        repo_key: KeyArgs,
        /// etcd client URLs, comma-separated; the leader (or a healthy member) is used.
        #[arg(long, value_delimiter = ',', required = true)]
        endpoints: Vec<String>,
        /// CA certificate of etcd's server certificates.
        #[arg(long)]
        cacert: Option<PathBuf>,
        /// Client certificate (kubeadm: /etc/kubernetes/pki/etcd/healthcheck-client.crt).
        #[arg(long, requires = "key")]
        cert: Option<PathBuf>,
        /// Client key.
        #[arg(long, requires = "cert")]
        key: Option<PathBuf>,
        /// Tag the snapshot (key=value, repeatable).
        #[arg(long = "tag", value_parser = parse_tag)]
        tags: Vec<(String, String)>,
        /// After the full snapshot, keep watching and store delta snapshots until Ctrl-C (or
        /// SIGTERM); resumes an existing chain. A compaction gap starts a new full snapshot.
        #[arg(long)]
        watch: bool,
        /// With --watch: store a delta at least this often (seconds, at least 1): the recovery
        /// point.
        #[arg(long, default_value_t = 10, value_parser = at_least_one::<u64>)]
        interval: u64,
        /// With --watch: store a delta once this many MiB of changes are buffered (at least 1).
        #[arg(long, default_value_t = 8, value_parser = at_least_one::<usize>)]
        max_delta_mib: usize,
    },
    /// List etcd snapshots.
    Snapshots {
        #[command(flatten)]
        repo: RepoArgs,
        #[command(flatten)]
        repo_key: KeyArgs,
    },
    /// Write a snapshot's database to a file for `etcdctl snapshot restore` / `etcdutl`.
    Restore {
        #[command(flatten)]
        repo: RepoArgs,
        #[command(flatten)]
        repo_key: KeyArgs,
        /// Snapshot id, unique prefix, or `latest` (the newest etcd snapshot).
        snapshot: String,
        /// Replay the chain's deltas up to this revision.
        #[arg(long, conflicts_with = "latest")]
        to_revision: Option<i64>,
        /// Replay every delta of the chain.
        #[arg(long)]
        latest: bool,
        /// The database file to write.
        #[arg(long)]
        output: PathBuf,
        /// Replace the output file if it exists.
        #[arg(long)]
        force: bool,
    },
}

/// How to reach Ceph: the files the `rbd` CLI reads. The key stays in the keyring file
/// ceph.conf names; it is never passed on the command line nor logged.
#[derive(Debug, Args)]
pub struct CephArgs {
    /// ceph.conf naming the monitors and the keyring.
    #[arg(long, env = "CEPH_CONF", default_value = "/etc/ceph/ceph.conf")]
    pub ceph_conf: PathBuf,
    /// cephx user id, without `client.` (as `rbd --id`).
    #[arg(long, env = "CEPH_ID", default_value = "admin")]
    pub ceph_id: String,
}

/// `drctl volume …`
#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Back up an RBD image: the first backup reads its allocated extents, later ones only the
    /// extents changed since the previous backup's RBD snapshot; prints the snapshot id.
    Backup {
        #[command(flatten)]
        repo: RepoArgs,
        #[command(flatten)]
        repo_key: KeyArgs,
        #[command(flatten)]
        ceph: CephArgs,
        /// The pool holding the image.
        #[arg(long)]
        pool: String,
        /// The image.
        #[arg(long)]
        image: String,
        /// Read every allocated extent even when an incremental is possible.
        #[arg(long)]
        full: bool,
        /// Reader threads (at least 1).
        #[arg(long, default_value_t = 4, value_parser = at_least_one::<usize>)]
        workers: usize,
        /// Tag the snapshot (key=value, repeatable).
        #[arg(long = "tag", value_parser = parse_tag)]
        tags: Vec<(String, String)>,
    },
    /// Restore a volume snapshot into a new RBD image, written sparsely through librbd.
    Restore {
        #[command(flatten)]
        repo: RepoArgs,
        #[command(flatten)]
        repo_key: KeyArgs,
        #[command(flatten)]
        ceph: CephArgs,
        /// Snapshot id or unique prefix (`drctl snapshots` lists them).
        snapshot: String,
        /// The pool to create the image in.
        #[arg(long)]
        pool: String,
        /// The new image's name.
        #[arg(long)]
        image: String,
        /// Replace an existing image of that name (it must have no snapshots).
        #[arg(long)]
        force: bool,
        /// Write parallelism: 4 × this many writes in flight through one image handle (at
        /// least 1).
        #[arg(long, default_value_t = 4, value_parser = at_least_one::<usize>)]
        workers: usize,
    },
}

/// `drctl forget …`
#[derive(Debug, Args)]
pub struct ForgetArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    #[command(flatten)]
    pub key: KeyArgs,
    /// Snapshots to remove, by id or unique prefix (restic's `forget ID...`), instead of a
    /// --keep-* policy; damaged snapshot objects that `repo check` names are removed so too.
    #[arg(value_name = "SNAPSHOT", conflicts_with_all = ["keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly"])]
    pub ids: Vec<String>,
    /// Keep the N most recent snapshots.
    #[arg(long, default_value_t = 0)]
    pub keep_last: u32,
    /// Keep the newest snapshot of each of the last N hours that have one.
    #[arg(long, default_value_t = 0)]
    pub keep_hourly: u32,
    /// Keep the newest snapshot of each of the last N days that have one.
    #[arg(long, default_value_t = 0)]
    pub keep_daily: u32,
    /// Keep the newest snapshot of each of the last N weeks that have one.
    #[arg(long, default_value_t = 0)]
    pub keep_weekly: u32,
    /// Keep the newest snapshot of each of the last N months that have one.
    #[arg(long, default_value_t = 0)]
    pub keep_monthly: u32,
    /// Keep every snapshot made within this long before the newest one (`7d`, `36h`).
    #[arg(long, value_parser = parse_duration)]
    pub keep_within: Option<chrono::Duration>,
    /// Keep every snapshot with this tag (`key=value`, or `key` for any value); repeatable.
    #[arg(long = "keep-tag")]
    pub keep_tags: Vec<String>,
    /// Print what would be removed without removing it.
    #[arg(long)]
    pub dry_run: bool,
    /// What makes snapshots one group that the policy applies to, besides their kind: any of
    /// host, paths, tags, comma-separated (restic's --group-by). Leave host out when the host
    /// name changes each run (Kubernetes CronJob pods), or back up with a fixed --host.
    #[arg(long, default_value = "host,paths", value_parser = parse_group_by)]
    pub group_by: lifeboat_backup::maintenance::forget::GroupBy,
}

fn parse_group_by(s: &str) -> Result<lifeboat_backup::maintenance::forget::GroupBy, String> {
    let mut g = lifeboat_backup::maintenance::forget::GroupBy {
        host: false,
        paths: false,
        tags: false,
    };
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part {
            "host" => g.host = true,
            "paths" => g.paths = true,
            "tags" => g.tags = true,
            other => return Err(format!("{other:?} is not one of host, paths, tags")),
        }
    }
    Ok(g)
}

fn parse_duration(s: &str) -> Result<chrono::Duration, String> {
    lifeboat_backup::duration::parse_duration(s).map_err(|e| e.to_string())
}

fn parse_compression_level(s: &str) -> Result<i32, String> {
    let levels = lifeboat_backup::blob::Compression::levels();
    let level: i32 = s.parse().map_err(|_| format!("{s:?} is not a whole number"))?;
    if levels.contains(&level) {
        Ok(level)
    } else {
        Err(format!(
            "{level} is not a zstd level: give {} to {} (1 is fast, 19 is small)",
            levels.start(),
            levels.end()
        ))
    }
}

pub(crate) fn parse_tag(s: &str) -> Result<(String, String), String> {
    if s.chars().any(char::is_control) {
        return Err(format!(
            "{s:?} holds a control character (a newline?): give key=value on one line"
        ));
    }
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} must be key=value")),
    }
}

/// `key=value` pairs as a map, refusing a key given twice with different values (one would
/// silently win). `what` names the flag in the error (`--tag`).
pub(crate) fn pairs_to_map(
    what: &str,
    pairs: &[(String, String)],
) -> Result<std::collections::BTreeMap<String, String>, crate::UsageError> {
    let mut map = std::collections::BTreeMap::new();
    for (k, v) in pairs {
        if let Some(earlier) = map.insert(k.clone(), v.clone())
            && earlier != *v
        {
            return Err(crate::UsageError(format!(
                "{what} gives {k:?} twice ({k}={earlier}, {k}={v}): give each key once"
            )));
        }
    }
    Ok(map)
}

/// A count or interval that must be at least 1 (`--workers`, `--parallel`, `--interval`…).
pub(crate) fn at_least_one<T: std::str::FromStr + PartialOrd + From<u8>>(s: &str) -> Result<T, String> {
    match s.parse::<T>() {
        Ok(n) if n >= T::from(1) => Ok(n),
        Ok(_) => Err(format!("{s} is too small: give at least 1")),
        Err(_) => Err(format!("{s:?} is not a whole number of at least 1")),
    }
}

/// A host name to record or look for: not empty, no control characters (it is printed in
/// tables), no spaces around it (`" h"` would be a host of its own that `h` never matches).
fn parse_host(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err("the host name is empty".to_string())
    } else if s.chars().any(char::is_control) {
        Err(format!(
            "{s:?} holds a control character (a newline?): give the host name on one line"
        ))
    } else if s.trim() != s {
        Err(format!(
            "{s:?} has spaces around it: give the host name without them ({:?})",
            s.trim()
        ))
    } else {
        Ok(s.to_string())
    }
}
