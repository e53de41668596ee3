//! Restoring objects: plan ([`objects_plan::plan`]), then apply stage by stage with a bounded number
//! of creates in flight, reporting every object that fails and carrying on.

mod apply;
mod by_labels;
pub mod compare;
pub mod listing;
pub mod objects_plan;
pub mod transform;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use kube::Client;
use lifeboat_backup::pack::PackError;
use lifeboat_backup::progress::Progress;
use lifeboat_backup::snapshot::Snapshot;
use lifeboat_backup::{RepoError, Repository, Sink, SnapshotReader};
use serde_json::Value;

pub use apply::Applied;
use listing::Listing;
use objects_plan::{PlanItem, Stage};

use super::discover::ResourceRecord;
use super::filter::{NamespaceFilter, ResourceFilter};
use super::{ObjectsError, RESOURCES_PATH, SNAPSHOT_KIND};
use crate::crd::{ExistingResourcePolicy, ItemMessage, RestoreSpec, RestoreSummary};
use crate::label_selector::LabelSelector;

/// How to restore.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Namespaces to restore (by their name in the backup).
    pub namespaces: NamespaceFilter,
    /// Resource types to restore.
    pub resources: ResourceFilter,
    /// Whether cluster-scoped objects are restored wholesale; when not (a restore narrowed
    /// to some namespaces), only what the selected namespaces need: their Namespace objects,
    /// the CRDs of their custom resources, their bound PersistentVolumes and StorageClasses.
    pub cluster_scoped: bool,
    /// Only objects whose labels match, with what they need (see `RestoreSpec::label_selector`).
    pub label_selector: Option<LabelSelector>,
    /// Old namespace → new.
    pub namespace_mapping: BTreeMap<String, String>,
    /// What to do with objects that exist.
    pub existing: ExistingResourcePolicy,
    /// Also write `status` (through the status subresource where there is one, else in the
    /// object), and compare it under the `update` policy.
    pub restore_status: bool,
    /// Labels added to every object.
    pub labels: BTreeMap<String, String>,
    /// StorageClass in the backup → StorageClass in the target cluster, for
    /// PersistentVolumeClaims and PersistentVolumes (Velero's change-storage-class).
    pub storage_class_mapping: BTreeMap<String, String>,
    /// Claims whose volume data the volume restore handled: (namespace in the backup, claim)
    /// → their new volume. Each such claim is created bound to it (`spec.volumeName`), or not
    /// at all, and the volume it had in the backup is not restored.
    pub volume_bindings: BTreeMap<(String, String), VolumeBinding>,
    /// Change nothing; report what would change.
    pub dry_run: bool,
    /// Creates in flight.
    pub parallelism: usize,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        Self {
            namespaces: NamespaceFilter::default(),
            resources: ResourceFilter::default(),
            cluster_scoped: true,
            label_selector: None,
            namespace_mapping: BTreeMap::new(),
            existing: ExistingResourcePolicy::None,
            restore_status: false,
            labels: BTreeMap::new(),
            storage_class_mapping: BTreeMap::new(),
            volume_bindings: BTreeMap::new(),
            dry_run: false,
            parallelism: 32,
        }
    }
}

/// What the volume restore did with a claim whose data the backup holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeBinding {
    /// The new PersistentVolume holding its data, which the claim is created bound to; `None`:
    /// the claim is not restored (its data could not be written, or it exists already).
    pub volume: Option<String>,
    /// The PersistentVolume it was bound to in the backup, which is not restored: it names
    /// the backed-up image, which a restored claim must never be bound to (nor delete).
    pub replaces: Option<String>,
}

impl RestoreOptions {
    /// The options a Restore resource describes.
    pub fn from_spec(spec: &RestoreSpec) -> Result<Self, ObjectsError> {
        Ok(Self {
            namespaces: NamespaceFilter::new(&spec.included_namespaces, &spec.excluded_namespaces)?,
            resources: ResourceFilter::new(&spec.included_resources, &spec.excluded_resources)?,
            // `*` is every namespace, as in a Backup (see `NamespaceFilter::new`).
            cluster_scoped: spec.included_namespaces.is_empty()
                || spec.included_namespaces.iter().any(|n| n == "*"),
            label_selector: spec
                .label_selector
                .as_deref()
                .map(LabelSelector::parse)
                .transpose()
                .map_err(|e| ObjectsError::Invalid(format!("label selector: {e}")))?,
            namespace_mapping: spec.namespace_mapping.clone(),
            existing: spec.existing_resource_policy,
            restore_status: spec.restore_status,
            labels: spec.labels.clone(),
            storage_class_mapping: spec.storage_class_mapping.clone(),
            dry_run: spec.dry_run,
            ..Self::default()
        })
    }
}

/// What a restore did (or, for a dry run, would do).
#[derive(Debug, Clone, Default)]
pub struct RestoreOutcome {
    /// Counts.
    pub summary: RestoreSummary,
    /// Every object that failed, and why.
    pub errors: Vec<ItemMessage>,
    /// Notes that did not fail anything.
    pub warnings: Vec<ItemMessage>,
    /// For a dry run, each change that would be made: `create …`, `update …` with the fields
    /// that differ, `skip …`; for a restore, each update and skip made (its creates are only
    /// counted, in `summary`).
    pub changes: Vec<String>,
    /// The checks the repository needs because this restore met damage in it; empty when it
    /// met none. The caller words them (drctl names its commands).
    pub repository_advice: BTreeSet<RepositoryAdvice>,
    /// What became of each claim's volume data (empty when the backup has none, or the
    /// restore leaves it out).
    pub volumes: Vec<crate::volumes::RestoredVolume>,
}

/// A check of the repository that a restore's damage calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RepositoryAdvice {
    /// Blobs the snapshot needs are missing: check the index against the packs.
    Check,
    /// A pack is not what its id or the index says (damaged or forged): check every pack's
    /// content, which finds every such pack.
    CheckReadingData,
}

impl RestoreOutcome {
    fn record(&mut self, item: &PlanItem<'_>, result: Result<Applied, String>, dry_run: bool) {
        match result {
            Ok(applied) => {
                match &applied {
                    Applied::Created => self.summary.created += 1,
                    Applied::CreatedWithNote(note) => {
                        self.summary.created += 1;
                        self.warnings.push(ItemMessage {
                            item: item.display(),
                            message: note.clone(),
                        });
                    }
                    Applied::Updated(_) => self.summary.updated += 1,
                    Applied::Unchanged => self.summary.unchanged += 1,
                    Applied::SkippedExisting => self.summary.skipped_existing += 1,
                }
                // A restore's creates are counted, not listed: a line per object would grow
                // its memory with the backup (a dry run lists them: that is what it is for).
                let listed = dry_run || !matches!(applied, Applied::Created);
                if let Some(line) = applied.describe(&item.display()).filter(|_| listed) {
                    self.changes.push(line);
                }
            }
            Err(message) => self.errors.push(ItemMessage {
                item: item.display(),
                message,
            }),
        }
    }
}

/// Restores `snapshot` into the cluster behind `client`. The lifecycle around it (kind
/// check, lock, index, tree) is [`Repository::restore`]'s; this reads only through the
/// [`SnapshotReader`].
pub async fn restore_objects(
    client: &Client,
    repo: &Repository,
    snapshot: &Snapshot,
    options: &RestoreOptions,
    progress: Arc<Progress>,
) -> Result<RestoreOutcome, ObjectsError> {
    let sink = ObjectsSink {
        client,
        options,
        progress,
    };
    repo.restore(snapshot, sink).await
}

/// A cluster receiving a Kubernetes objects snapshot.
struct ObjectsSink<'a> {
    client: &'a Client,
    options: &'a RestoreOptions,
    progress: Arc<Progress>,
}

impl Sink for ObjectsSink<'_> {
    type Output = RestoreOutcome;
    type Error = ObjectsError;

    fn purpose(&self) -> &'static str {
        "kubernetes objects restore"
    }

    fn accepts(&self, snapshot: &Snapshot) -> Result<(), ObjectsError> {
        Self::accepts_kind(snapshot)
    }

    async fn restore(self, reader: &SnapshotReader<'_>) -> Result<RestoreOutcome, ObjectsError> {
        restore_from(self.client, reader, self.options, &self.progress).await
    }
}

impl ObjectsSink<'_> {
    /// Refuses snapshots of other kinds, naming the kind.
    fn accepts_kind(snapshot: &Snapshot) -> Result<(), ObjectsError> {
        if snapshot.kind() != SNAPSHOT_KIND {
            return Err(ObjectsError::WrongKind {
                id: snapshot.id.map(|i| i.to_hex()).unwrap_or_default(),
                kind: snapshot.kind().to_string(),
            });
        }
        Ok(())
    }
}

/// `options` with the resource names it gives resolved as the objects restore resolves them
/// (against `snapshot`'s recorded types and the target's), for deciding beforehand what else
/// the selection takes: the volume restore writes the data of the claims it selects before
/// any object is restored, and `pvc` must select `persistentvolumeclaims` there too. Options
/// naming no types come back as they are, without reading anything. Errors: an included name
/// that names no type ([`ObjectsError::UnknownResource`]), before anything is written.
pub async fn resolve_resource_names(
    client: &Client,
    repo: &Repository,
    snapshot: &Snapshot,
    options: &RestoreOptions,
) -> Result<RestoreOptions, ObjectsError> {
    if !options.resources.names_types() {
        return Ok(options.clone());
    }
    let records = repo.restore(snapshot, RecordsReader).await?;
    Ok(resolve_resources(client, options, &records).await?.0)
}

/// A sink that reads only the backup's table of resource types ([`RESOURCES_PATH`]).
struct RecordsReader;

impl Sink for RecordsReader {
    type Output = HashMap<String, ResourceRecord>;
    type Error = ObjectsError;

    fn purpose(&self) -> &'static str {
        "read the backup's resource types"
    }

    fn accepts(&self, snapshot: &Snapshot) -> Result<(), ObjectsError> {
        ObjectsSink::accepts_kind(snapshot)
    }

    async fn restore(self, reader: &SnapshotReader<'_>) -> Result<Self::Output, ObjectsError> {
        let mut table = None;
        reader
            .for_each_node(|node| {
                if node.path == RESOURCES_PATH {
                    table = Some(node.chunks);
                }
            })
            .await?;
        let table = table.ok_or_else(|| {
            ObjectsError::Invalid(format!("snapshot has no {RESOURCES_PATH}; it is damaged"))
        })?;
        read_records(reader, &table).await
    }
}

/// The backup's resource types, by key, from the blobs of [`RESOURCES_PATH`].
async fn read_records(
    reader: &SnapshotReader<'_>,
    table: &[lifeboat_backup::blob::BlobId],
) -> Result<HashMap<String, ResourceRecord>, ObjectsError> {
    let records: Vec<ResourceRecord> = serde_json::from_slice(&reader.read_blobs(table).await?)
        .map_err(|e| ObjectsError::Invalid(format!("{RESOURCES_PATH} is unreadable: {e}")))?;
    Ok(records.into_iter().map(|r| (r.key(), r)).collect())
}

/// `options` with its resource names resolved ([`ResourceFilter::resolve`]) against the
/// backup's types and the target's, and the warnings that gives; the target is asked only
/// when names are given.
async fn resolve_resources(
    client: &Client,
    options: &RestoreOptions,
    records: &HashMap<String, ResourceRecord>,
) -> Result<(RestoreOptions, Vec<String>), ObjectsError> {
    if !options.resources.names_types() {
        return Ok((options.clone(), Vec::new()));
    }
    let target = super::discover(client, super::DiscoveryDeadlines::default()).await?;
    let mut types: Vec<&ResourceRecord> = records.values().collect();
    types.extend(target.resources.iter());
    let (resources, unknown) = options.resources.resolve(&types)?;
    Ok((
        RestoreOptions {
            resources,
            ..options.clone()
        },
        unknown,
    ))
}

async fn restore_from(
    client: &Client,
    reader: &SnapshotReader<'_>,
    options: &RestoreOptions,
    progress: &Progress,
) -> Result<RestoreOutcome, ObjectsError> {
    // A server that cannot be reached fails the restore once, here, not each object.
    client
        .apiserver_version()
        .await
        .map_err(|e| ObjectsError::kube("reach the API server (GET /version)", e))?;
    // The tree is read a node at a time into a compact listing: a backup of 100,000 objects
    // has a tree of 100,000 nodes, and the restore holds every object until it is done.
    let mut listing = Listing::default();
    let mut table = None;
    reader
        .for_each_node(|node| {
            if node.path == RESOURCES_PATH {
                table = Some(node.chunks);
            } else {
                listing.push(&node);
            }
        })
        .await?;
    listing.objects.shrink_to_fit();
    let table = table
        .ok_or_else(|| ObjectsError::Invalid(format!("snapshot has no {RESOURCES_PATH}; it is damaged")))?;
    let records = read_records(reader, &table).await?;
    // kubectl's names (`deploy`, `Deployment`) become the types they name, among the
    // backup's and the target's (whose discovery knows short and singular names).
    let (resolved, unknown) = resolve_resources(client, options, &records).await?;
    let options = &resolved;
    let unselected = match &options.label_selector {
        Some(selector) => {
            by_labels::keep_selected(reader, &mut listing.objects, &records, options, selector).await
        }
        None => 0,
    };
    // A restore narrowed to some namespaces takes the volumes bound to their claims and the
    // classes of both: read those objects first (claims and volumes are few).
    let (mut claims, mut volumes) = (Vec::new(), Vec::new());
    {
        let sources = objects_plan::dependency_sources(&listing.objects, &records, options);
        let mut read = std::pin::pin!(reader.read_items(sources.into_iter().map(|l| (l, l.blob)), 2));
        while let Some((listed, content)) = read.next().await {
            let Ok(value) = serde_json::from_slice::<Value>(&content?) else {
                continue;
            };
            match listed.namespace {
                Some(_) => claims.push(value),
                None => volumes.push(value),
            }
        }
    }
    let mut deps = objects_plan::dependencies(&claims, &volumes);
    deps.without_data = objects_plan::volumes_without_data(&volumes, options);
    let plan = objects_plan::plan(&listing.objects, &records, options, &deps)?;
    progress.add_total(0, plan.len() as u64);

    let outcome = Mutex::new(RestoreOutcome::default());
    lock(&outcome).summary.filtered = plan.filtered + unselected;
    lock(&outcome)
        .warnings
        .extend(unknown.into_iter().map(|message| ItemMessage {
            item: "resource filter".to_string(),
            message,
        }));
    let all_volumes = options.cluster_scoped
        && options.label_selector.is_none()
        && options.resources.matches("persistentvolumes", "");
    for (volume, claim) in deps
        .without_data
        .iter()
        .filter(|(v, _)| all_volumes || deps.volumes.contains(*v))
    {
        let restored = claim
            .as_ref()
            .filter(|(ns, _)| options.namespaces.matches(ns))
            .map(|(ns, c)| {
                let ns = options.namespace_mapping.get(ns).unwrap_or(ns);
                format!("; its claim {ns}/{c} is restored unbound, for its class to provision anew (empty)")
            })
            .unwrap_or_default();
        lock(&outcome).warnings.push(ItemMessage {
            item: format!("persistentvolumes/{volume}"),
            message: format!(
                "not restored: the backup holds no data of it and its reclaim policy is Delete, so \
                 a copy would name (and on its claim's deletion delete) the volume the original \
                 uses{restored}"
            ),
        });
    }
    let applier = apply::Applier::new(client.clone(), options, &deps.without_data);
    let mut namespaces_ensured = false;
    for (stage, items) in &plan.stages {
        if *stage > Stage::Namespaces && !namespaces_ensured {
            namespaces_ensured = true;
            applier.ensure_namespaces(&plan, &outcome).await;
        }
        let created_crds = Mutex::new(Vec::new());
        // Each pack is fetched once per stage, two at a time, and decoded as it downloads,
        // with `parallelism` creates in flight: memory holds a few decoded objects ahead of
        // the creates, never a pack. Each object is parsed only when its turn comes.
        let wanted = items.iter().map(|i| (i, i.blob()));
        let decoded = reader.read_items(wanted, 2).filter_map(|(item, content)| {
            let value = match content {
                Ok(bytes) => serde_json::from_slice::<Value>(&bytes).map_err(|e| e.to_string()),
                Err(RepoError::MissingBlob { .. }) => {
                    let mut outcome = lock(&outcome);
                    outcome.repository_advice.insert(RepositoryAdvice::Check);
                    outcome.errors.push(ItemMessage {
                        item: item.display(),
                        message: format!(
                            "its data (blob {}) is missing from the repository",
                            item.blob().to_hex()
                        ),
                    });
                    return std::future::ready(None);
                }
                Err(RepoError::PackUnreadable { why, .. }) => {
                    Err(format!("its pack could not be read: {why}"))
                }
                // Not the content its id names: none of it is applied.
                Err(RepoError::Pack(e @ PackError::BlobMismatch { .. })) => {
                    lock(&outcome)
                        .repository_advice
                        .insert(RepositoryAdvice::CheckReadingData);
                    Err(e.to_string())
                }
                Err(e) => Err(e.to_string()),
            };
            std::future::ready(Some((item, value)))
        });
        decoded
            .for_each_concurrent(options.parallelism.max(1), |(item, value)| {
                let applier = &applier;
                let records = &records;
                let outcome = &outcome;
                let created_crds = &created_crds;
                async move {
                    let result = match (value, records.get(&*item.source.key)) {
                        (Ok(value), Some(record)) => applier.apply(record, item, value).await,
                        (Err(e), _) => Err(format!("could not read it from the repository: {e}")),
                        (_, None) => Err("its resource type is not in the backup's table".to_string()),
                    };
                    if *stage == Stage::Crds && matches!(result, Ok(Applied::Created)) {
                        lock(created_crds).push(item.name().to_string());
                    }
                    lock(outcome).record(item, result, options.dry_run);
                    progress.add_done(0, 1);
                }
            })
            .await;
        if *stage == Stage::Crds {
            let names = created_crds.into_inner().unwrap_or_else(|p| p.into_inner());
            for warning in applier.wait_established(&names).await {
                lock(&outcome).warnings.push(warning);
            }
        }
    }
    let mut outcome = outcome.into_inner().unwrap_or_else(|p| p.into_inner());
    for why in reader.damaged_packs() {
        outcome
            .repository_advice
            .insert(RepositoryAdvice::CheckReadingData);
        outcome.warnings.push(ItemMessage {
            item: "repository".to_string(),
            message: format!(
                "{why}; every object read from it matched its id and was restored, but the pack \
                 is not what the index says"
            ),
        });
    }
    outcome.changes.sort();
    Ok(outcome)
}

/// The guarded value, even when another holder panicked.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
