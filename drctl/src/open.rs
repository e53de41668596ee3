//! Turning flags into an opened store and the user's keys.

use anyhow::{Context, Result};
use lifeboat_backup::Repository;
use lifeboat_backup::crypto::UserKey;
use lifeboat_backup::store::{Location, Secret, Store, StoreOptions};

use crate::cli::{CopyArgs, KeyArgs, RepoArgs};

fn store_options(args: &RepoArgs) -> StoreOptions {
    StoreOptions {
        s3_endpoint: args.s3_endpoint.clone(),
        s3_region: args.s3_region.clone(),
        ..StoreOptions::default()
    }
}

/// Opens the object store the flags point at.
pub fn store(args: &RepoArgs) -> Result<Store> {
    Ok(Store::open(&args.repo, &store_options(args))?)
}

/// Opens the object store for `repo init`, creating a local directory that does not exist.
pub fn store_for_init(args: &RepoArgs) -> Result<Store> {
    Ok(Store::create(&args.repo, &store_options(args))?)
}

/// Opens the destination of `repo copy`: its own endpoint flags, and credentials from
/// `DRCTL_TO_*` variables when they are set (else the usual `AWS_*` / `AZURE_STORAGE_*`).
pub fn destination_store(args: &CopyArgs) -> Result<Store> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let options = StoreOptions {
        s3_endpoint: args.to_s3_endpoint.clone(),
        s3_region: args.to_s3_region.clone(),
        access_key_id: var("DRCTL_TO_AWS_ACCESS_KEY_ID"),
        secret_access_key: var("DRCTL_TO_AWS_SECRET_ACCESS_KEY").map(Secret::new),
        azure_endpoint: args.to_azure_endpoint.clone(),
        azure_account: var("DRCTL_TO_AZURE_STORAGE_ACCOUNT_NAME"),
        azure_access_key: var("DRCTL_TO_AZURE_STORAGE_ACCOUNT_KEY").map(Secret::new),
        ..StoreOptions::default()
    };
    // A local destination directory is created, as `cp -r` would.
    if let Ok(Location::Local { path }) = Location::parse(&args.to)
        && !path.exists()
    {
        std::fs::create_dir_all(&path).with_context(|| format!("create destination {}", path.display()))?;
    }
    Store::open(&args.to, &options).with_context(|| format!("open destination {}", args.to))
}

/// The user keys given by `--identity` / `DRCTL_IDENTITY` and `--passphrase-file`.
pub fn user_keys(args: &KeyArgs) -> Result<Vec<UserKey>> {
    let mut keys = Vec::new();
    if let Some(path) = &args.identity {
        keys.push(UserKey::identity_file(path)?);
    }
    if let Some(path) = &args.passphrase_file {
        keys.push(UserKey::passphrase_file(path)?);
    }
    Ok(keys)
}

/// Opens the repository.
pub async fn repository(repo: &RepoArgs, key: &KeyArgs) -> Result<Repository> {
    let store = store(repo)?;
    let keys = user_keys(key)?;
    Repository::open(&store, &keys)
        .await
        .with_context(|| format!("open repository {}", repo.repo))
}
