//! Turning flags into an opened store and the user's keys.

use anyhow::{Context, Result};
use lifeboat_backup::Repository;
use lifeboat_backup::crypto::UserKey;
use lifeboat_backup::store::{Store, StoreOptions};

use crate::cli::{KeyArgs, RepoArgs};

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
