//! Looking at both sides before a copy: is the destination empty, a replica of the source,
//! or something else; what it already stores; what each selected snapshot needs. Shared
//! locks on both repositories are taken first and held until the copy ends, so a `prune` on
//! either side cannot remove what the plan counts on.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};

use super::copy_plan::{CopyPlan, DestinationState, PackSizes, PlanBuilder};
use super::{CopyError, CopyOptions};
use crate::blob::{BlobId, PackId, SnapshotId};
use crate::index::{Index, IndexPack};
use crate::read::BlobReader;
use crate::repository::object_io::Objects;
use crate::repository::{Config, LockGuard, LockKind, RepoError, Repository};
use crate::store::{Location, Store};

/// A surveyed copy: the plan, and what the executor needs to carry it out.
pub struct Prepared {
    /// What will be done.
    pub plan: CopyPlan,
    pub(super) replica: Repository,
    pub(super) destination: Objects,
    /// Index entries of the source's packs, to index them at the destination.
    pub(super) source_packs: HashMap<PackId, IndexPack>,
    /// The destination's index files and the packs each lists (for retention extension).
    pub(super) destination_index_files: Vec<(String, Vec<PackId>)>,
    /// Key files at the destination before the copy.
    pub(super) destination_keys: Vec<String>,
    /// When each selected snapshot was taken.
    pub(super) times: HashMap<SnapshotId, DateTime<Utc>>,
    /// Snapshots the destination held before the copy (selected or not).
    pub(super) destination_snapshots: usize,
    locks: Vec<LockGuard>,
}

impl Prepared {
    /// Releases the locks without copying (after a dry run); a lock that cannot be removed is
    /// warned about ([`LockGuard::release_or_warn`]).
    pub async fn release(self) {
        release(self.locks).await
    }

    pub(super) fn take_locks(&mut self) -> Vec<LockGuard> {
        std::mem::take(&mut self.locks)
    }
}

/// Releases every lock, warning about any that cannot be removed.
pub(super) async fn release(locks: Vec<LockGuard>) {
    for lock in locks {
        lock.release_or_warn().await;
    }
}

/// Surveys `source` and `destination` and plans the copy. Holds shared locks on both (the
/// destination's only once it is a repository) until [`super::execute`] or
/// [`Prepared::release`].
pub async fn prepare(
    source: &Repository,
    destination: &Store,
    options: &CopyOptions,
) -> Result<Prepared, CopyError> {
    let url = destination.location().to_string();
    // (Two S3 URLs may name the same bucket on different services, so only local paths can
    // be told the same; copying a repository onto itself elsewhere would find nothing to do.)
    if let (Ok(Location::Local { path: from }), Location::Local { path: to }) =
        (Location::parse(source.url()), destination.location())
        && from
            .canonicalize()
            .ok()
            .is_some_and(|f| Some(f) == to.canonicalize().ok())
    {
        return Err(CopyError::SameLocation { url });
    }
    let dst = Objects::new(destination.object_store().clone(), &url);
    let config = match dst.get("config").await {
        Ok(bytes) => Some(Config::from_json(&bytes, &url)?),
        Err(RepoError::NotFound { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let source_keys = source.objects().list_keys("keys/").await?;
    let destination_keys = dst.list_keys("keys/").await?;
    match &config {
        Some(c) if c.id != source.config().id || c.recipient != source.config().recipient => {
            return Err(CopyError::DifferentRepository {
                origin: source.url().to_string(),
                destination: url,
                expected: source.config().id.clone(),
                found: c.id.clone(),
            });
        }
        Some(_) => {}
        None => refuse_foreign(&dst, &url, &source_keys, &destination_keys).await?,
    }
    if let Some(settings) = &options.object_lock {
        let support = destination.lock_support().await;
        if !support.enabled() {
            return Err(CopyError::LockUnavailable {
                destination: url,
                support: format!("{support} ({} {} days asked)", settings.mode, settings.days),
            });
        }
    }

    let replica = source.replica(destination);
    let mut locks = vec![source.lock(LockKind::Shared, &format!("copy to {url}")).await?];
    let destination_lock = if config.is_some() {
        replica
            .lock(LockKind::Shared, &format!("copy from {}", source.url()))
            .await
            .map(Some)
    } else {
        Ok(None)
    };
    let surveyed = match destination_lock {
        Ok(lock) => {
            locks.extend(lock);
            survey(
                source,
                replica,
                options,
                config.is_some(),
                source_keys,
                destination_keys,
                dst,
            )
            .await
        }
        Err(e) => Err(e.into()),
    };
    match surveyed {
        Ok(mut prepared) => {
            prepared.locks = locks;
            Ok(prepared)
        }
        Err(e) => {
            // The survey's error wins; a lock left behind lapses after its TTL.
            release(locks).await;
            Err(e)
        }
    }
}

/// A destination without `config` may only hold key files of this repository (a copy killed
/// before it wrote `config`), and nothing else at all.
async fn refuse_foreign(
    dst: &Objects,
    url: &str,
    source_keys: &[String],
    destination_keys: &[String],
) -> Result<(), CopyError> {
    let known: HashSet<&String> = source_keys.iter().collect();
    if let Some(k) = destination_keys.iter().find(|k| !known.contains(k)) {
        return Err(CopyError::NotEmpty {
            destination: url.to_string(),
            what: format!("key file {k} of another repository"),
        });
    }
    // Anything but `keys/` (a directory of the user's files, another tool's bucket prefix).
    if let Some(k) = dst.list_top().await?.into_iter().find(|k| k != "keys/") {
        return Err(CopyError::NotEmpty {
            destination: url.to_string(),
            what: format!("object {k}"),
        });
    }
    Ok(())
}

async fn survey(
    source: &Repository,
    replica: Repository,
    options: &CopyOptions,
    is_repository: bool,
    source_keys: Vec<String>,
    destination_keys: Vec<String>,
    dst: Objects,
) -> Result<Prepared, CopyError> {
    // The destination: what is indexed, stored, and which snapshots it has.
    let (destination_files, present) = if is_repository {
        let files = replica.index_files().await?;
        let present: HashSet<SnapshotId> = dst
            .list_keys("snapshots/")
            .await?
            .iter()
            .filter_map(|k| k.trim_start_matches("snapshots/").parse().ok())
            .collect();
        (files, present)
    } else {
        (Vec::new(), HashSet::new())
    };
    let state = DestinationState {
        index: Index::from_files(destination_files.iter().map(|(_, f)| f)),
        stored: replica.list("data/").await?.into_iter().collect(),
    };
    let destination_index_files = if options.object_lock.is_some() {
        destination_files
            .iter()
            .map(|(k, f)| (k.clone(), f.packs.iter().map(|p| p.id).collect()))
            .collect()
    } else {
        Vec::new()
    };
    drop(destination_files);

    // The source: its index, and the snapshots selected.
    let source_files = source.index_files().await?;
    let index = Index::from_files(source_files.iter().map(|(_, f)| f));
    let mut source_packs: HashMap<PackId, IndexPack> = HashMap::new();
    for (_, file) in source_files {
        for p in file.packs {
            source_packs.entry(p.id).or_insert(p);
        }
    }
    let sizes: PackSizes = source_packs.iter().map(|(id, p)| (*id, p.size)).collect();
    let snapshots = source.snapshots().await?;
    let selected = options
        .selection
        .select(&snapshots)
        .map_err(CopyError::Selection)?;
    let chosen: HashSet<SnapshotId> = selected.iter().copied().collect();

    let known: BTreeSet<&String> = destination_keys.iter().collect();
    let plan = CopyPlan {
        source: source.url().to_string(),
        destination: replica.url().to_string(),
        create_repository: !is_repository,
        keys: source_keys.into_iter().filter(|k| !known.contains(k)).collect(),
        ..CopyPlan::default()
    };
    let mut builder = PlanBuilder::new(&index, &sizes, &state, plan);
    let reader = BlobReader::new(source, &index);
    let mut times = HashMap::new();
    for snap in snapshots
        .iter()
        .filter(|s| s.id.is_some_and(|id| chosen.contains(&id)))
    {
        let Some(id) = snap.id else { continue };
        times.insert(id, snap.time);
        if present.contains(&id) {
            builder.present(id);
            continue;
        }
        match needed_blobs(&reader, &snap.tree).await {
            Ok(blobs) => builder.add(id, snap.time, blobs),
            Err(e) => builder.skip(id, format!("its tree cannot be read from the source: {e}")),
        }
    }
    Ok(Prepared {
        plan: builder.finish(),
        replica,
        destination: dst,
        source_packs,
        destination_index_files,
        destination_keys,
        times,
        destination_snapshots: present.len(),
        locks: Vec::new(),
    })
}

/// Every blob a snapshot needs: its tree blobs and every file's chunks.
async fn needed_blobs(reader: &BlobReader<'_>, tree: &[BlobId]) -> Result<Vec<BlobId>, RepoError> {
    let mut blobs: Vec<BlobId> = tree.to_vec();
    for node in reader.read_tree(tree).await? {
        if node.has_content() {
            blobs.extend(node.chunks);
        }
    }
    blobs.sort_unstable();
    blobs.dedup();
    Ok(blobs)
}
