//! A repository: its config, its key, and typed access to the objects in it.
//!
//! Layout (see docs/FORMAT.md): `config` (plaintext), `keys/<id>` (the repository key wrapped
//! per user key), `data/<xx>/<pack id>`, `index/<id>`, `snapshots/<id>`, `locks/<id>`.

mod config;
mod error;
pub mod holder;
mod indexed;
mod keys;
mod lock;
mod names;
pub(crate) mod object_io;
mod retention;

pub use config::{Config, InitOptions};
pub use error::{LockAdvice, RepoError, StoreFailure};
pub use indexed::IndexedRepository;
pub use keys::KeyInfo;
pub use lock::hostname;
pub use lock::{LockGuard, LockInfo, LockKind, LockTimings, UnlockReport, finish_dropped_releases};

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;

use crate::blob::SnapshotId;
use crate::crypto::{RepoKey, UserKey, UserRecipient};
use crate::index::{Index, IndexFile};
use crate::snapshot::{Snapshot, snapshot_key};
use crate::store::{ObjectLock, Store, StoreOptions};

/// How many metadata objects (snapshots, index files) are fetched at once.
const METADATA_FETCH_CONCURRENCY: usize = 16;

/// Which snapshots `latest` may pick: one kind, optionally one host and snapshots holding
/// every one of some paths (restic's `--host` / `--path`).
#[derive(Debug, Clone, Default)]
pub struct SnapshotFilter {
    /// `files`, `etcd`, `kubernetes`.
    pub kind: String,
    /// Only snapshots this host made.
    pub host: Option<String>,
    /// Only snapshots whose `paths` include all of these (absolute, normalised).
    pub paths: Vec<String>,
}

impl SnapshotFilter {
    /// Whether `snap` passes.
    pub fn matches(&self, snap: &Snapshot) -> bool {
        snap.kind() == self.kind
            && self.host.as_ref().is_none_or(|h| *h == snap.hostname)
            && self.paths.iter().all(|p| snap.paths.contains(p))
    }
}

impl std::fmt::Display for SnapshotFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} snapshot", self.kind)?;
        if let Some(h) = &self.host {
            write!(f, " of host {h}")?;
        }
        if !self.paths.is_empty() {
            write!(f, " with paths {}", self.paths.join(", "))?;
        }
        Ok(())
    }
}

/// An open repository: config read, key unwrapped. Reading snapshot content needs its index
/// too: [`Repository::indexed`] loads it and gives an [`IndexedRepository`]. Cheap to clone.
#[derive(Clone)]
pub struct Repository {
    store: Arc<dyn ObjectStore>,
    url: String,
    config: Config,
    key: Arc<RepoKey>,
    key_id: String,
    lock_timings: LockTimings,
    /// S3 Object Lock on the repository's bucket, when the store has the feature.
    lock: Option<Arc<ObjectLock>>,
    /// Whether operations take repository locks (`locks/`); off only for read-only commands
    /// given `--no-lock` ([`Repository::without_locks`]).
    locking: bool,
    /// Attempts for a write or delete whose connection broke mid-request
    /// ([`StoreOptions::max_retries`]; see `Objects`).
    retries: usize,
}

impl Repository {
    /// Creates a repository at `store` with its key wrapped for each of `recipients`.
    /// Refuses if one exists there already.
    pub async fn init(
        store: &Store,
        recipients: &[UserRecipient],
        options: InitOptions,
    ) -> Result<Self, RepoError> {
        let mut repo = Self::init_in(
            store.object_store().clone(),
            &store.location().to_string(),
            recipients,
            options,
            store.max_retries(),
        )
        .await?;
        repo.lock = store.object_lock().cloned();
        Ok(repo)
    }

    /// [`Repository::init`] on any object store (tests inject faulty ones).
    pub async fn init_with(
        store: Arc<dyn ObjectStore>,
        url: &str,
        recipients: &[UserRecipient],
        options: InitOptions,
    ) -> Result<Self, RepoError> {
        Self::init_in(
            store,
            url,
            recipients,
            options,
            StoreOptions::default().max_retries,
        )
        .await
    }

    async fn init_in(
        store: Arc<dyn ObjectStore>,
        url: &str,
        recipients: &[UserRecipient],
        options: InitOptions,
        retries: usize,
    ) -> Result<Self, RepoError> {
        if recipients.is_empty() {
            return Err(RepoError::NoRecipients);
        }
        options.chunker.validate()?;
        let probe = object_io::Objects::new(store.clone(), url);
        if probe.exists("config").await? {
            return Err(RepoError::AlreadyExists { url: url.to_string() });
        }
        // Something else lives here: a repository would mix with it, and `prune` would one
        // day delete what it does not recognise. (Keys alone are what an interrupted init
        // leaves; they open nothing without a config.)
        let mut listing = store.list(None);
        while let Some(item) = listing.next().await {
            let found = item.map_err(|e| RepoError::store("list", "", url, e))?;
            if !found.location.as_ref().starts_with("keys/") {
                return Err(RepoError::NotEmpty {
                    url: url.to_string(),
                    found: found.location.to_string(),
                });
            }
        }
        drop(listing);
        let key = RepoKey::generate();
        let config = Config::new(&key, options);
        let mut repo = Self {
            store,
            url: url.to_string(),
            config,
            key: Arc::new(key),
            key_id: String::new(),
            lock_timings: LockTimings::default(),
            lock: None,
            locking: true,
            retries,
        };
        for r in recipients {
            let id = repo.add_key(r).await?;
            if repo.key_id.is_empty() {
                repo.key_id = id;
            }
        }
        // The config goes last: its presence is what makes the repository exist.
        repo.objects()
            .put_new("config", repo.config.to_json()?.into())
            .await?;
        Ok(repo)
    }

    /// Opens the repository at `store` with the first of `keys` that unwraps a repository key.
    pub async fn open(store: &Store, keys: &[UserKey]) -> Result<Self, RepoError> {
        let mut repo = Self::open_in(
            store.object_store().clone(),
            &store.location().to_string(),
            keys,
            store.max_retries(),
        )
        .await?;
        repo.lock = store.object_lock().cloned();
        Ok(repo)
    }

    /// [`Repository::open`] on any object store.
    pub async fn open_with(
        store: Arc<dyn ObjectStore>,
        url: &str,
        keys: &[UserKey],
    ) -> Result<Self, RepoError> {
        Self::open_in(store, url, keys, StoreOptions::default().max_retries).await
    }

    async fn open_in(
        store: Arc<dyn ObjectStore>,
        url: &str,
        keys: &[UserKey],
        retries: usize,
    ) -> Result<Self, RepoError> {
        let objects = object_io::Objects::new(store.clone(), url).with_retries(retries);
        let config = match objects.get("config").await {
            Ok(bytes) => Config::from_json(&bytes, url)?,
            Err(RepoError::NotFound { .. }) => {
                return Err(RepoError::NotARepository { url: url.to_string() });
            }
            Err(e) => return Err(e),
        };
        if keys.is_empty() {
            return Err(RepoError::NoKeyGiven { url: url.to_string() });
        }
        let (key, key_id) = keys::unlock(&objects, &config, keys).await?;
        tracing::debug!(repository = url, key_file = %key_id, "repository opened");
        Ok(Self {
            store,
            url: url.to_string(),
            config,
            key: Arc::new(key),
            key_id,
            lock_timings: LockTimings::default(),
            lock: None,
            locking: true,
            retries,
        })
    }

    /// The same repository with other lock timings (tests shorten them; stores where a
    /// refresh can take minutes lengthen them).
    pub fn with_lock_timings(mut self, timings: LockTimings) -> Self {
        self.lock_timings = timings;
        self
    }

    /// The same repository in another store (a replica that `copy` writes): same config and
    /// key, opened without unwrapping a key file there.
    pub(crate) fn replica(&self, store: &Store) -> Self {
        Self {
            store: store.object_store().clone(),
            url: store.location().to_string(),
            config: self.config.clone(),
            key: self.key.clone(),
            key_id: self.key_id.clone(),
            lock_timings: self.lock_timings,
            lock: store.object_lock().cloned(),
            locking: self.locking,
            retries: store.max_retries(),
        }
    }

    /// This repository, with operations that would take a lock (restore, check) running
    /// without one: restic's `--no-lock`, for a repository that cannot be written (a read-only
    /// mount, a bucket this user may only read). Nothing then stops a concurrent `prune` from
    /// deleting what such a read uses; only for commands that write nothing to the repository.
    pub fn without_locks(mut self) -> Self {
        self.locking = false;
        self
    }

    /// S3 Object Lock requests for this repository's bucket, if its store has the feature.
    pub fn object_lock(&self) -> Option<&Arc<ObjectLock>> {
        self.lock.as_ref()
    }

    pub(crate) fn objects(&self) -> object_io::Objects {
        object_io::Objects::new(self.store.clone(), &self.url).with_retries(self.retries)
    }

    /// The repository's URL, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Its key.
    pub fn key(&self) -> &Arc<RepoKey> {
        &self.key
    }

    /// The `keys/` entry that opened it.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The raw object store (keys relative to the repository root).
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Reads every index file: the keys of the objects and their contents. A damaged index
    /// file (fails to decrypt or parse) is [`RepoError::DamagedIndex`], which names the fix.
    pub async fn index_files(&self) -> Result<Vec<(String, IndexFile)>, RepoError> {
        let (files, mut damaged) = self.index_files_checked().await?;
        match damaged.pop() {
            Some(e) => Err(e),
            None => Ok(files),
        }
    }

    /// Reads every index file, setting damaged ones aside ([`RepoError::DamagedIndex`] each)
    /// instead of failing: for `repo check` and `repo repair index`. The store failing is
    /// still an error.
    pub async fn index_files_checked(&self) -> Result<(Vec<(String, IndexFile)>, Vec<RepoError>), RepoError> {
        let mut keys = self.objects().list_keys("index/").await?;
        names::keep_valid(&mut keys, &self.url);
        let read: Vec<(String, Result<IndexFile, RepoError>)> = futures::stream::iter(keys)
            .map(|k| async move {
                let file = self.objects().get_json(&self.key, &k).await;
                (k, file)
            })
            .buffer_unordered(METADATA_FETCH_CONCURRENCY)
            .collect()
            .await;
        let (mut files, mut damaged) = (Vec::new(), Vec::new());
        for (key, file) in read {
            match file {
                Ok(f) => files.push((key, f)),
                Err(e @ (RepoError::Crypto(_) | RepoError::Corrupt { .. })) => {
                    damaged.push(RepoError::DamagedIndex {
                        key,
                        url: self.url.clone(),
                        message: e.to_string(),
                    });
                }
                Err(e) => return Err(e),
            }
        }
        Ok((files, damaged))
    }

    /// Loads the whole index into memory: what reading snapshot content, and writing with
    /// deduplication, needs. A damaged index file is set aside with a warning naming it: what
    /// the other files index can still be restored (a file needing a blob only it listed is
    /// reported by the restore as not restorable), and a backup stores such blobs anew. Prune
    /// and copy read the index files strictly instead ([`Repository::index_files`]).
    pub async fn indexed(&self) -> Result<IndexedRepository, RepoError> {
        let (files, damaged) = self.index_files_checked().await?;
        for e in &damaged {
            tracing::warn!("{e}; read without it (a repository check names the fix)");
        }
        Ok(self.with_index(Index::from_files(files.iter().map(|(_, f)| f))))
    }

    /// This repository with `index`, as loaded from its index files (check and prune read the
    /// files themselves, since they need them too).
    pub fn with_index(&self, index: Index) -> IndexedRepository {
        IndexedRepository::new(self.clone(), index)
    }

    /// Every snapshot, oldest first. Objects under `snapshots/` whose name is not a snapshot
    /// id (a stray README, an rsync temporary file) are not snapshots and are skipped; so is a
    /// validly named one that does not decrypt or parse (damaged, or encrypted to another
    /// repository's key), with a warning naming it and `drctl repo check`: one bad object
    /// must not hide every other snapshot.
    pub async fn snapshots(&self) -> Result<Vec<Snapshot>, RepoError> {
        let (snaps, damaged) = self.snapshots_checked().await?;
        for (key, why) in damaged {
            tracing::warn!(
                "{key} in {} cannot be read, skipped (a repository check reports it): {why}",
                self.url
            );
        }
        Ok(snaps)
    }

    /// Every readable snapshot, oldest first, and the validly named snapshot objects that
    /// cannot be read (do not decrypt with this repository's key, or do not parse), each with
    /// why. The store failing is still an error.
    pub async fn snapshots_checked(&self) -> Result<(Vec<Snapshot>, Vec<(String, String)>), RepoError> {
        let mut keys = self.objects().list_keys("snapshots/").await?;
        names::keep_valid(&mut keys, &self.url);
        let read: Vec<(String, Result<Snapshot, RepoError>)> = futures::stream::iter(keys)
            .map(|k| async move {
                let snap = async {
                    let id: SnapshotId =
                        k.trim_start_matches("snapshots/")
                            .parse()
                            .map_err(|_| RepoError::Corrupt {
                                object: k.clone(),
                                message: "name is not a snapshot id".to_string(),
                            })?;
                    let mut snap: Snapshot = self.objects().get_json(&self.key, &k).await?;
                    snap.id = Some(id);
                    Ok::<_, RepoError>(snap)
                }
                .await;
                (k, snap)
            })
            .buffer_unordered(METADATA_FETCH_CONCURRENCY)
            .collect()
            .await;
        let (mut snaps, mut damaged) = (Vec::new(), Vec::new());
        for (key, snap) in read {
            match snap {
                Ok(snap) => snaps.push(snap),
                Err(e @ (RepoError::Crypto(_) | RepoError::Corrupt { .. })) => {
                    damaged.push((key, e.to_string()))
                }
                Err(e) => return Err(e),
            }
        }
        snaps.sort_by_key(|s| s.time);
        damaged.sort();
        Ok((snaps, damaged))
    }

    /// The lock objects' keys (`locks/<24 hex>`); anything else there is skipped with a
    /// warning (never read as a lock, never removed by `repo unlock` or prune).
    pub(crate) async fn lock_keys(&self) -> Result<Vec<String>, RepoError> {
        let mut keys = self.objects().list_keys("locks/").await?;
        names::keep_valid(&mut keys, &self.url);
        Ok(keys)
    }

    /// Objects in the id-named directories (`keys/`, `data/`, `index/`, `snapshots/`, `locks/`) whose
    /// names are not ids for their directory: not Lifeboat's (a README, an rsync temporary
    /// file). Every command skips them; `repo check` lists them.
    pub async fn stray_objects(&self) -> Result<Vec<String>, RepoError> {
        let mut stray = Vec::new();
        for dir in names::ID_DIRS {
            let keys = self.objects().list_keys(dir).await?;
            stray.extend(keys.into_iter().filter(|k| !names::is_valid(k)));
        }
        stray.sort();
        Ok(stray)
    }

    /// Resolves snapshot ids or unique prefixes among every validly named snapshot object,
    /// readable or not (so `forget ID` removes a damaged one too), in the order given,
    /// without duplicates. Fails on the first that matches none or several.
    pub async fn resolve_snapshot_ids(
        &self,
        ids_or_prefixes: &[String],
    ) -> Result<Vec<SnapshotId>, RepoError> {
        let mut keys = self.objects().list_keys("snapshots/").await?;
        names::keep_valid(&mut keys, &self.url);
        let all: Vec<SnapshotId> = keys
            .iter()
            .filter_map(|k| k.trim_start_matches("snapshots/").parse().ok())
            .collect();
        let mut out: Vec<SnapshotId> = Vec::new();
        for prefix in ids_or_prefixes {
            let mut found = all.iter().filter(|id| id.to_hex().starts_with(prefix.as_str()));
            match (found.next(), found.next()) {
                (Some(id), None) if !prefix.is_empty() => {
                    if !out.contains(id) {
                        out.push(*id);
                    }
                }
                (Some(_), Some(_)) => {
                    return Err(RepoError::AmbiguousSnapshot {
                        prefix: prefix.clone(),
                    });
                }
                _ => {
                    return Err(RepoError::SnapshotNotFound {
                        id: prefix.clone(),
                        url: self.url.clone(),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Every snapshot, oldest first; one that cannot be read is an error
    /// ([`RepoError::DamagedSnapshot`], naming it and the fix). For prune, which must know
    /// every blob every snapshot uses before it deletes anything.
    pub async fn snapshots_strict(&self) -> Result<Vec<Snapshot>, RepoError> {
        let (snaps, mut damaged) = self.snapshots_checked().await?;
        match damaged.pop() {
            Some((key, message)) => Err(RepoError::DamagedSnapshot {
                id: key.trim_start_matches("snapshots/").to_string(),
                key,
                url: self.url.clone(),
                message,
            }),
            None => Ok(snaps),
        }
    }

    /// Finds a snapshot by full id or unique prefix (`latest` for the newest).
    pub async fn find_snapshot(&self, id_or_prefix: &str) -> Result<Snapshot, RepoError> {
        let snaps = self.snapshots().await?;
        if id_or_prefix == "latest" {
            return snaps.into_iter().last().ok_or(RepoError::SnapshotNotFound {
                id: id_or_prefix.to_string(),
                url: self.url.clone(),
            });
        }
        let mut found = snaps
            .into_iter()
            .filter(|s| s.id.is_some_and(|id| id.to_hex().starts_with(id_or_prefix)));
        match (found.next(), found.next()) {
            (Some(s), None) if !id_or_prefix.is_empty() => Ok(s),
            (Some(_), Some(_)) => Err(RepoError::AmbiguousSnapshot {
                prefix: id_or_prefix.to_string(),
            }),
            _ => Err(RepoError::SnapshotNotFound {
                id: id_or_prefix.to_string(),
                url: self.url.clone(),
            }),
        }
    }

    /// Reads one snapshot manifest by its full id.
    pub async fn load_snapshot(&self, id: &SnapshotId) -> Result<Snapshot, RepoError> {
        let mut snap: Snapshot = match self.objects().get_json(&self.key, &snapshot_key(id)).await {
            Err(RepoError::NotFound { .. }) => {
                return Err(RepoError::SnapshotNotFound {
                    id: id.to_hex(),
                    url: self.url.clone(),
                });
            }
            other => other?,
        };
        snap.id = Some(*id);
        Ok(snap)
    }

    /// Finds a snapshot of one kind: `latest` is the newest that `filter` matches (restic's
    /// `latest` with `--host` / `--path`); an id or prefix must name a snapshot of
    /// `filter.kind`, else [`RepoError::WrongSnapshotKind`].
    pub async fn find_snapshot_matching(
        &self,
        id_or_prefix: &str,
        filter: &SnapshotFilter,
    ) -> Result<Snapshot, RepoError> {
        if id_or_prefix != "latest" {
            let snap = self.find_snapshot(id_or_prefix).await?;
            if snap.kind() != filter.kind {
                return Err(RepoError::WrongSnapshotKind {
                    id: snap.id.map(|i| i.short()).unwrap_or_default(),
                    kind: snap.kind().to_string(),
                    wanted: filter.kind.clone(),
                });
            }
            return Ok(snap);
        }
        self.snapshots()
            .await?
            .into_iter()
            .rfind(|s| filter.matches(s))
            .ok_or_else(|| RepoError::NoMatchingSnapshot {
                what: filter.to_string(),
                url: self.url.clone(),
            })
    }

    /// Writes a snapshot manifest: the last step of a backup. Sources never call it: the
    /// engine does, in [`Repository::backup`] (public only until the Kubernetes objects
    /// source runs through it too).
    #[doc(hidden)]
    pub async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<SnapshotId, RepoError> {
        let id = SnapshotId::random();
        self.objects()
            .put_json(&self.key, &snapshot_key(&id), snapshot)
            .await?;
        tracing::debug!(repository = %self.url, snapshot = %id, "snapshot saved");
        Ok(id)
    }

    /// Deletes snapshot manifests under a shared lock, which is released whatever happens
    /// (a failed delete does not leave it to lapse). Their data stays until `prune`. Ids that
    /// are already gone are not an error. Refuses with [`RepoError::Retained`] at the first
    /// manifest S3 Object Lock still retains.
    pub async fn forget_snapshots(&self, ids: &[SnapshotId]) -> Result<(), RepoError> {
        self.while_locked(LockKind::Shared, "forget", async {
            for id in ids {
                self.delete_snapshot_locked(id).await?;
            }
            Ok(())
        })
        .await
    }

    /// Deletes a snapshot manifest (its data stays until `prune`); the caller holds a lock.
    /// Refuses with [`RepoError::Retained`] while S3 Object Lock retains it.
    pub(crate) async fn delete_snapshot_locked(&self, id: &SnapshotId) -> Result<(), RepoError> {
        let key = snapshot_key(id);
        if let Some(r) = self
            .retained([key.clone()], chrono::Utc::now())
            .await?
            .remove(&key)
        {
            return Err(RepoError::Retained {
                key,
                url: self.url.clone(),
                until: r.until,
            });
        }
        self.objects().delete(&key).await
    }

    /// Lists object keys under a prefix with their sizes. In the id-named directories
    /// (`data/`, `index/`, …) objects whose names are not ids are skipped with a warning
    /// naming them (see [`Repository::stray_objects`]): no command reads, counts or deletes
    /// what is not Lifeboat's.
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, RepoError> {
        let p = ObjectPath::from(prefix.trim_end_matches('/'));
        let listed: Vec<(String, u64)> = self
            .store
            .list(Some(&p))
            .map_ok(|m| (m.location.to_string(), m.size))
            .try_collect()
            .await
            .map_err(|e| RepoError::store("list", prefix, &self.url, e))?;
        Ok(listed
            .into_iter()
            .filter(|(k, _)| names::valid_or_warn(k, &self.url))
            .collect())
    }
}
