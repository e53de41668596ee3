//! One function per command: call the library, print the result.

mod backup;
mod completion;
mod copy;
mod etcd;
mod objects;
mod repo;
mod restore;
mod snapshots;

use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::exit;

/// Runs the parsed command; returns the exit code.
pub async fn run(cli: Cli) -> Result<u8> {
    let g = &cli.global;
    match cli.command {
        Command::Repo(cmd) => repo::run(cmd, g).await,
        Command::Backup(cmd) => backup::run(cmd, g).await,
        Command::Snapshots { repo, key } => snapshots::list(&repo, &key, g).await,
        Command::Forget(args) => snapshots::forget(&args, g).await,
        Command::Restore(cmd) => restore::run(cmd, g).await,
        Command::Schedule(cmd) => objects::schedule::run(&cmd, g).await,
        Command::Crds(args) => crds(&args),
        Command::Etcd(cmd) => etcd::run(cmd, g).await,
        Command::Cluster(_) => not_built("cluster", "federation, not yet scheduled"),
        Command::Failover(_) => not_built("failover", "federation, not yet scheduled"),
        Command::Drill(_) => not_built("drill", "federation, not yet scheduled"),
        Command::Completion(args) => completion::script(args.shell),
        Command::Man(args) => completion::man(args.dir.as_deref()),
    }
}

fn crds(args: &crate::cli::CrdsArgs) -> Result<u8> {
    let yaml = lifeboat_controller::crd::to_yaml()?;
    match &args.write {
        Some(path) => std::fs::write(path, yaml)?,
        None => print!("{yaml}"),
    }
    Ok(0)
}

fn not_built(group: &str, arrives_with: &str) -> Result<u8> {
    eprintln!("drctl {group}: not built yet (arrives with {arrives_with}); nothing was done");
    Ok(exit::NOT_BUILT)
}
