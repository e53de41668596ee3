//! One function per command: call the library, print the result.

mod backup;
mod completion;
mod copy;
mod etcd;
mod federation;
mod kube_objects;
mod repo;
mod restore;
mod snapshots;
mod volume;

use anyhow::Result;

use crate::cli::{Cli, Command};

/// Runs the parsed command; returns the exit code.
pub async fn run(cli: Cli) -> Result<u8> {
    let g = &cli.global;
    match cli.command {
        Command::Repo(cmd) => repo::run(cmd, g).await,
        Command::Backup(cmd) => backup::run(cmd, g).await,
        Command::Snapshots {
            repo,
            key,
            no_lock: _,
        } => snapshots::list(&repo, &key, g).await,
        Command::Forget(args) => snapshots::forget(&args, g).await,
        Command::Restore(cmd) => restore::run(cmd, g).await,
        Command::Schedule(cmd) => kube_objects::schedule::run(&cmd, g).await,
        Command::Crds(args) => crds(&args),
        Command::Etcd(cmd) => etcd::run(cmd, g).await,
        Command::Volume(cmd) => volume::run(cmd, g).await,
        Command::Cluster(cmd) => federation::cluster(&cmd, g).await,
        Command::Failover(args) => federation::failover(&args, g).await,
        Command::Failback(args) => federation::failback(&args, g).await,
        Command::Relocate(args) => federation::relocate(&args, g).await,
        Command::Drill(args) => federation::drill(&args, g).await,
        Command::Audit(args) => federation::audit(&args, g).await,
        Command::Completion(args) => completion::script(args.shell),
        Command::Man(args) => completion::man(args.dir.as_deref()),
    }
}

fn crds(args: &crate::cli::CrdsArgs) -> Result<u8> {
    let mut yaml = lifeboat_controller::crd::to_yaml()?;
    yaml.push_str(&lifeboat_federation::crd::to_yaml()?);
    match &args.write {
        Some(path) => std::fs::write(path, yaml)?,
        None => crate::output::write(yaml.as_bytes())?,
    }
    Ok(0)
}
