//! The federation commands: open the plan's (or `--repo`'s) repositories, build the engine's
//! environment, call the library, print.

mod audit;
mod cluster;
mod drill;
mod failover;

pub use audit::audit;
pub use cluster::run as cluster;
pub use drill::drill;
pub use failover::{failback, failover, relocate};

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use lifeboat_backup::Repository;
use lifeboat_backup::progress::Progress;
use lifeboat_backup::store::{Location, Store, StoreOptions};
use lifeboat_federation::clusters::{self, Connector};
use lifeboat_federation::crd::{FailoverPlan, PlanRepository};
use lifeboat_federation::failover::data::VolumeMover;
use lifeboat_federation::failover::{Env, Event, StepState};
use lifeboat_federation::state::{Replica, StateStore};

use crate::cli::{FederationArgs, GlobalArgs, RunVolumeArgs};
use crate::open;

/// The repositories `--repo` names, as plan entries.
fn flag_repositories(fed: &FederationArgs) -> Vec<PlanRepository> {
    fed.repos
        .iter()
        .filter(|r| !r.trim().is_empty())
        .map(|url| PlanRepository {
            url: url.trim().to_string(),
            ..PlanRepository::default()
        })
        .collect()
}

/// Opens every repository it can; fails only if none opens.
async fn open_repositories(
    list: &[PlanRepository],
    fed: &FederationArgs,
) -> Result<BTreeMap<String, Arc<Repository>>> {
    if list.is_empty() {
        bail!("no repository given: pass --repo URL (comma-separated for several) or a plan that names them");
    }
    let keys = open::user_keys(&fed.key)?;
    let mut out = BTreeMap::new();
    let mut failures = Vec::new();
    for r in list {
        let location = Location::parse(&r.url)?;
        let options = StoreOptions {
            s3_endpoint: match location {
                Location::S3 { .. } => r.s3_endpoint.clone().or_else(|| fed.s3_endpoint.clone()),
                _ => None,
            },
            s3_region: r.s3_region.clone().or_else(|| fed.s3_region.clone()),
            azure_endpoint: match location {
                Location::Azure { .. } => r.azure_endpoint.clone().or_else(|| fed.azure_endpoint.clone()),
                _ => None,
            },
            ..StoreOptions::default()
        };
        let opened = async {
            let store = Store::open(&r.url, &options)?;
            Ok::<_, anyhow::Error>(Repository::open(&store, &keys).await?)
        };
        match opened.await {
            Ok(repo) => {
                out.insert(r.url.clone(), Arc::new(repo));
            }
            Err(e) => failures.push(format!("{}: {e:#}", r.url)),
        }
    }
    for f in &failures {
        note!("warning: repository {f}");
    }
    if out.is_empty() {
        bail!(
            "none of the repositories could be opened:\n  {}",
            failures.join("\n  ")
        );
    }
    Ok(out)
}

/// Prints step events as lines on stderr.
fn printer(quiet: bool) -> Arc<dyn Fn(&Event) + Send + Sync> {
    Arc::new(move |e: &Event| {
        if quiet {
            return;
        }
        match e {
            Event::Started {
                index,
                total,
                title,
                attempt,
            } => {
                let again = if *attempt > 1 {
                    format!(" (attempt {attempt})")
                } else {
                    String::new()
                };
                note!("[{}/{}] {title}{again} …", index + 1, total);
            }
            Event::Ended {
                index,
                total,
                title,
                state,
                message,
                seconds,
            } => {
                let word = match state {
                    StepState::Done => "done",
                    StepState::Skipped => "skipped",
                    StepState::Failed => "FAILED",
                    StepState::Pending | StepState::Running => "?",
                };
                note!(
                    "[{}/{}] {title}: {word} in {seconds:.1} s{}",
                    index + 1,
                    total,
                    message.as_deref().map(|m| format!(" — {m}")).unwrap_or_default()
                );
            }
        }
    })
}

/// How a run moves volume data: the operator's ceph.conf, else each cluster's CSI driver
/// ConfigMaps and StorageClass Secrets (keys through a short-lived file in `$TMPDIR`), as
/// `drctl restore create --direct` does; `None` with --no-volumes.
fn volume_mover(args: &RunVolumeArgs) -> Result<Option<VolumeMover>> {
    if args.no_volumes {
        return Ok(None);
    }
    Ok(Some(VolumeMover {
        access: crate::commands::kube_objects::access(args.ceph_conf.as_deref(), &args.ceph_id)?,
        secret: None,
        parallelism: args.volume_parallelism.max(1),
    }))
}

/// The engine's environment over `repos`, moving volume data with `volumes`.
async fn env(
    g: &GlobalArgs,
    fed: &FederationArgs,
    repos: BTreeMap<String, Arc<Repository>>,
    volumes: Option<VolumeMover>,
) -> Result<Env> {
    let state = StateStore::new(repos.values().map(|r| Replica::new(r)).collect())?;
    let records = clusters::list(&state)
        .await
        .context("read the registered clusters")?
        .into_iter()
        .map(|r| (r.name.clone(), r))
        .collect();
    Ok(Env {
        state,
        repositories: repos,
        connector: Connector::Local {
            default: g.kubeconfig.clone(),
            overrides: fed.kubeconfig_for.iter().cloned().collect(),
        },
        records,
        actor: lifeboat_federation::audit::actor("drctl"),
        volumes,
        items: Arc::new(Progress::default()),
        events: printer(g.quiet),
    })
}

/// An environment over `--repo`.
async fn env_from_flags(g: &GlobalArgs, fed: &FederationArgs) -> Result<Env> {
    let repos = open_repositories(&flag_repositories(fed), fed).await?;
    env(g, fed, repos, None).await
}

/// Loads `--plan` (a file, or a plan stored in `--repo`'s repositories) and builds the
/// environment over its repositories.
async fn plan_env(
    g: &GlobalArgs,
    fed: &FederationArgs,
    volumes: &RunVolumeArgs,
    plan: &str,
) -> Result<(FailoverPlan, Env)> {
    // Bad volume flags are named before the plan or any cluster is read.
    let mover = volume_mover(volumes)?;
    let path = Path::new(plan);
    if path.is_file() {
        let fp = FailoverPlan::load(path)?;
        let mut list = fp.spec.repositories.clone();
        for extra in flag_repositories(fed) {
            if !list.iter().any(|r| r.url == extra.url) {
                list.push(extra);
            }
        }
        let repos = open_repositories(&list, fed).await?;
        let env = env(g, fed, repos, mover).await?;
        return Ok((fp, env));
    }
    if plan.contains('/') || plan.ends_with(".yaml") || plan.ends_with(".yml") || plan.ends_with(".json") {
        bail!("plan file {plan} does not exist");
    }
    let env = env_from_flags(g, fed).await.with_context(|| {
        format!("{plan} is not a file, so it names a stored plan: the repositories must be given")
    })?;
    let Some(fp) = lifeboat_federation::failover::stored_plan(&env.state, plan).await? else {
        bail!("no plan {plan} is stored in the repositories (and no such file): pass the plan file");
    };
    fp.validate()?;
    // Reopen over the plan's own repositories, which may be more than --repo named.
    let mut list = fp.spec.repositories.clone();
    for extra in flag_repositories(fed) {
        if !list.iter().any(|r| r.url == extra.url) {
            list.push(extra);
        }
    }
    let repos = open_repositories(&list, fed).await?;
    Ok((fp, self::env(g, fed, repos, mover).await?))
}
