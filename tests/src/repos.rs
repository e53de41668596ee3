//! Repositories for tests: on local disk or in a fresh RGW bucket, with an age identity.

use std::path::{Path, PathBuf};
use std::process::Command;

use lifeboat_backup::Repository;
use lifeboat_backup::blob::BlobKind;
use lifeboat_backup::crypto::{UserKey, UserRecipient};
use lifeboat_backup::index::Index;
use lifeboat_backup::repository::RepoError;
use lifeboat_backup::session::{BlobSink, Session};
use lifeboat_backup::snapshot::{Node, NodeKind, Snapshot, SnapshotDetails, Summary};
use lifeboat_backup::store::{Secret, Store, StoreOptions};
use tempfile::TempDir;

use crate::HarnessError;

/// Where a test repository lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A temporary directory.
    Local,
    /// A fresh bucket on the run's Ceph RGW.
    Rgw,
    /// A fresh container on the run's Azurite.
    Azurite,
    /// A fresh bucket on the run's Ceph RGW created with S3 Object Lock enabled.
    RgwObjectLock,
}

/// A test repository location plus an age identity that may open it.
pub struct TestRepo {
    /// The repository URL.
    pub url: String,
    /// How to reach it.
    pub options: StoreOptions,
    /// The age identity file.
    pub identity: PathBuf,
    /// The identity's public key.
    pub recipient: String,
    /// Scratch space for the test (data to back up, restore targets).
    pub dir: TempDir,
}

impl TestRepo {
    /// A new, empty location on `backend` (the repository is not initialised).
    pub fn new(backend: Backend) -> Result<Self, HarnessError> {
        let dir = tempfile::Builder::new()
            .prefix("lifeboat-repo-test-")
            .tempdir()
            .map_err(|e| HarnessError::io("create temp dir", e))?;
        let (identity, recipient) = make_identity(dir.path(), "me")?;
        let (url, options) = match backend {
            Backend::Local => {
                let repo = dir.path().join("repo");
                std::fs::create_dir(&repo).map_err(|e| HarnessError::io("create repo dir", e))?;
                (repo.display().to_string(), StoreOptions::default())
            }
            Backend::Rgw | Backend::RgwObjectLock => {
                let rgw = crate::ceph()?.rgw();
                let bucket = if backend == Backend::Rgw {
                    rgw.new_bucket("repo")?
                } else {
                    rgw.new_object_lock_bucket("locked")?
                };
                (
                    format!("s3://{bucket}/lifeboat"),
                    StoreOptions {
                        s3_endpoint: Some(rgw.endpoint.clone()),
                        s3_region: Some(rgw.region.clone()),
                        access_key_id: Some(rgw.access_key.clone()),
                        secret_access_key: Some(Secret::new(rgw.secret_key.clone())),
                        ..StoreOptions::default()
                    },
                )
            }
            Backend::Azurite => {
                let azurite = crate::azurite()?;
                let container = azurite.new_container("repo")?;
                (
                    format!("az://{container}/lifeboat"),
                    StoreOptions {
                        azure_endpoint: Some(azurite.endpoint()),
                        azure_account: Some(crate::services::azurite::ACCOUNT.to_string()),
                        azure_access_key: Some(Secret::new(crate::services::azurite::KEY)),
                        ..StoreOptions::default()
                    },
                )
            }
        };
        Ok(Self {
            url,
            options,
            identity,
            recipient,
            dir,
        })
    }

    /// Opens the store.
    pub fn store(&self) -> Store {
        Store::open(&self.url, &self.options).expect("test store opens")
    }

    /// The identity as a recipient for `init`.
    pub fn user_recipient(&self) -> UserRecipient {
        UserRecipient::parse(&self.recipient).expect("test recipient parses")
    }

    /// The identity as a key for `open`.
    pub fn user_key(&self) -> UserKey {
        UserKey::identity_file(&self.identity).expect("test identity loads")
    }

    /// A path in the scratch directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Environment for running `drctl` against this repository.
    pub fn drctl_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("DRCTL_REPO".to_string(), self.url.clone()),
            ("DRCTL_IDENTITY".to_string(), self.identity.display().to_string()),
        ];
        if let Some(e) = &self.options.s3_endpoint {
            env.push(("DRCTL_S3_ENDPOINT".to_string(), e.clone()));
            env.push((
                "AWS_REGION".to_string(),
                self.options.s3_region.clone().unwrap_or_default(),
            ));
            env.push((
                "AWS_ACCESS_KEY_ID".to_string(),
                self.options.access_key_id.clone().unwrap_or_default(),
            ));
            env.push((
                "AWS_SECRET_ACCESS_KEY".to_string(),
                self.options
                    .secret_access_key
                    .as_ref()
                    .map(|s| s.expose().to_string())
                    .unwrap_or_default(),
            ));
        }
        if self.options.azure_endpoint.is_some() {
            env.extend(crate::azurite().map(|a| a.env()).unwrap_or_default());
        }
        env
    }

    /// Arguments and environment for `drctl repo copy --to` this repository (its credentials
    /// through the `DRCTL_TO_*` variables, so they may differ from the source's).
    pub fn copy_destination(&self) -> (Vec<String>, Vec<(String, String)>) {
        let mut args = vec!["--to".to_string(), self.url.clone()];
        let mut env = Vec::new();
        if let Some(e) = &self.options.s3_endpoint {
            args.extend(["--to-s3-endpoint".to_string(), e.clone()]);
            if let Some(r) = &self.options.s3_region {
                args.extend(["--to-s3-region".to_string(), r.clone()]);
            }
            env.push((
                "DRCTL_TO_AWS_ACCESS_KEY_ID".to_string(),
                self.options.access_key_id.clone().unwrap_or_default(),
            ));
            env.push((
                "DRCTL_TO_AWS_SECRET_ACCESS_KEY".to_string(),
                self.options
                    .secret_access_key
                    .as_ref()
                    .map(|s| s.expose().to_string())
                    .unwrap_or_default(),
            ));
        }
        if let Some(e) = &self.options.azure_endpoint {
            args.extend(["--to-azure-endpoint".to_string(), e.clone()]);
            env.push((
                "DRCTL_TO_AZURE_STORAGE_ACCOUNT_NAME".to_string(),
                self.options.azure_account.clone().unwrap_or_default(),
            ));
            env.push((
                "DRCTL_TO_AZURE_STORAGE_ACCOUNT_KEY".to_string(),
                self.options
                    .azure_access_key
                    .as_ref()
                    .map(|s| s.expose().to_string())
                    .unwrap_or_default(),
            ));
        }
        (args, env)
    }
}

/// Makes an age identity with the stock `age-keygen`; returns (file, public key).
pub fn make_identity(dir: &Path, name: &str) -> Result<(PathBuf, String), HarnessError> {
    let path = dir.join(format!("{name}.age"));
    crate::process::run("age-keygen", Command::new("age-keygen").arg("-o").arg(&path))?;
    let text = std::fs::read_to_string(&path).map_err(|e| HarnessError::io("read identity", e))?;
    let public = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap_or_default()
        .to_string();
    Ok((path, public))
}

/// Writes a `files` snapshot whose tree is exactly `nodes`, in that order, through the engine's
/// own lower-level API, as someone holding the repository key could (hostile and damaged trees
/// for tests). With `content`, every file node gets it as its one chunk, and its length as size
/// unless the node gives a size of its own.
pub async fn write_snapshot(
    repo: &Repository,
    mut nodes: Vec<Node>,
    content: Option<Vec<u8>>,
) -> Result<Snapshot, RepoError> {
    let session = Session::start(repo, std::sync::Arc::new(Index::default()));
    let shared = session.shared().clone();
    let (tree, session) = tokio::task::spawn_blocking(move || {
        let written = || -> Result<_, RepoError> {
            if let Some(content) = content {
                let mut sink = BlobSink::new(shared, BlobKind::Data);
                let id = sink.put(&content)?;
                sink.finish()?;
                for n in nodes.iter_mut().filter(|n| n.kind == NodeKind::File) {
                    n.chunks = vec![id];
                    // A size given stays (a forger's lie, for tests of damaged trees).
                    if n.size == 0 {
                        n.size = content.len() as u64;
                    }
                }
            }
            session.write_tree(&nodes)
        };
        (written(), session)
    })
    .await
    .map_err(|e| RepoError::Task(e.to_string()))?;
    let tree = tree?;
    session.finish().await?;
    let mut snap = Snapshot {
        id: None,
        time: chrono::Utc::now(),
        hostname: "forger".into(),
        details: SnapshotDetails::Files(Default::default()),
        source: "files:/forged".into(),
        paths: vec![],
        tags: Default::default(),
        parent: None,
        tree,
        summary: Summary::default(),
    };
    snap.id = Some(repo.save_snapshot(&snap).await?);
    Ok(snap)
}
