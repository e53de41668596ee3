//! Kubernetes objects commands. Each decides first whether the controller does the work
//! (a Backup/Restore/Schedule resource) or drctl does it here (`--direct`, `--repo`, or no
//! controller running), then calls the same library the controller uses.

pub mod backup;
pub mod restore;
pub mod schedule;

use anyhow::{Result, bail};
use lifeboat_backup::Repository;
use lifeboat_controller::crd::ItemMessage;
use lifeboat_controller::volumes::{CephAccess, SecretRef};

use crate::cli::{ModeArgs, RepoArgs, VolumeCephArgs};
use crate::kube::{Target, controller_running};
use crate::open;

/// How drctl reaches Ceph for volume data: the operator's ceph.conf, else the cluster's CSI
/// ConfigMaps and Secrets (keys through a short-lived file in `$TMPDIR`).
pub fn ceph_access(args: &VolumeCephArgs) -> Result<CephAccess> {
    access(args.ceph_conf.as_deref(), &args.ceph_id)
}

/// [`CephAccess`] from `--ceph-conf` (checked now, before anything is written) and
/// `--ceph-id`, else through the cluster's CSI configuration.
pub fn access(ceph_conf: Option<&std::path::Path>, ceph_id: &str) -> Result<CephAccess> {
    match ceph_conf {
        Some(path) => {
            if let Err(e) = std::fs::File::open(path) {
                bail!(
                    "--ceph-conf {}: {e}; give a readable ceph.conf naming the monitors and the keyring",
                    path.display()
                );
            }
            Ok(CephAccess::Conf {
                path: path.to_path_buf(),
                user: ceph_id.to_string(),
            })
        }
        None => Ok(CephAccess::FromCluster {
            dir: std::env::temp_dir(),
        }),
    }
}

/// `--ceph-secret NAME`, a Secret in the target namespace.
pub fn ceph_secret(args: &VolumeCephArgs, namespace: &str) -> Option<SecretRef> {
    args.ceph_secret.as_ref().map(|name| SecretRef {
        namespace: namespace.to_string(),
        name: name.clone(),
    })
}

/// Who does the work.
pub enum Mode {
    /// drctl, against this repository.
    Direct(Box<Repository>),
    /// The controller, through resources.
    Controller,
}

/// Decides the mode; a direct run opens the repository now so key problems show first.
pub async fn decide(mode: &ModeArgs, target: &Target) -> Result<Mode> {
    let direct = mode.direct || mode.repo.is_some();
    if !direct && controller_running(&target.client, &mode.controller_namespace).await? {
        return Ok(Mode::Controller);
    }
    let Some(url) = &mode.repo else {
        if mode.direct {
            bail!("--direct needs the repository: pass --repo URL (or set DRCTL_REPO) and --identity");
        }
        bail!(
            "no Lifeboat controller is running (Lease {}/{} is missing or expired) and no --repo was given: \
             pass --repo URL and --identity to do the work here, or install the controller",
            mode.controller_namespace,
            lifeboat_controller::LEASE_NAME
        );
    };
    let repo_args = RepoArgs {
        repo: url.clone(),
        s3_endpoint: mode.s3_endpoint.clone(),
        s3_region: mode.s3_region.clone(),
    };
    Ok(Mode::Direct(Box::new(
        open::repository(&repo_args, &mode.key).await?,
    )))
}

/// Who does the work of a command that reads or forgets snapshots: with `--repo` it needs no
/// cluster at all (a laptop during a disaster), so none is contacted.
pub enum Resolved {
    /// drctl, against this repository.
    Direct(Box<Repository>),
    /// The controller, through this cluster.
    Controller(Target),
}

/// Decides like [`decide`], connecting to a cluster only when `--repo` is not given.
pub async fn resolve(mode: &ModeArgs, g: &crate::cli::GlobalArgs) -> Result<Resolved> {
    if let Some(url) = &mode.repo {
        let repo_args = RepoArgs {
            repo: url.clone(),
            s3_endpoint: mode.s3_endpoint.clone(),
            s3_region: mode.s3_region.clone(),
        };
        return Ok(Resolved::Direct(Box::new(
            open::repository(&repo_args, &mode.key).await?,
        )));
    }
    let target = crate::kube::connect(g).await?;
    Ok(match decide(mode, &target).await? {
        Mode::Direct(repo) => Resolved::Direct(repo),
        Mode::Controller => Resolved::Controller(target),
    })
}

/// Explains a failed write of a Lifeboat resource; a 404 means the CRDs are not installed.
pub fn resource_error(e: kube::Error, what: String) -> anyhow::Error {
    match &e {
        kube::Error::Api(ae) if ae.code == 404 => anyhow::anyhow!(
            "{what}: the Lifeboat CRDs are not installed in this cluster; install them with \
             `drctl crds | kubectl apply -f -` (or the Helm chart), or run with --direct --repo URL"
        ),
        _ => anyhow::Error::new(e).context(what),
    }
}

/// Prints warnings and errors to stderr, one per line.
pub fn print_items(label: &str, items: &[ItemMessage]) {
    for i in items {
        note!("{label}: {}: {}", i.item, i.message);
    }
}

/// Age of an RFC 3339 time for tables (`5m`, `3h`, `2d`).
pub fn age(rfc3339: Option<&str>) -> String {
    let Some(t) = rfc3339.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()) else {
        return "-".to_string();
    };
    let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}
