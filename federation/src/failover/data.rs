//! Moving an application's data: the last backup of a planned move and the restore from a
//! recovery point, each with its claims' volume data when a [`VolumeMover`] is given (the
//! same `backup_with_volumes` / `restore_with_volumes` a Backup and a Restore use), and the
//! drill's verification against the recovery point's catalog.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::StreamExt;
use kube::Client;
use kube::api::{Api, DynamicObject};
use lifeboat_backup::progress::Progress;
use lifeboat_backup::snapshot::Snapshot;
use lifeboat_backup::{RepoError, Repository};
use lifeboat_controller::crd::{ClusterScoped, ExistingResourcePolicy};
use lifeboat_controller::kube_objects::{
    BackupRequest, DiscoveryDeadlines, NamespaceFilter, ObjectFilter, ObjectPath, ObjectsError,
    RESOURCES_PATH, ResourceFilter, ResourceRecord, RestoreOptions, backup_objects, restore_objects,
};
use lifeboat_controller::volumes::{
    CephAccess, RestoredOutcome, RestoredVolume, SecretRef, VolumeRequest, VolumeRestoreRequest,
    backup_with_volumes, restore_with_volumes,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::crd::Application;

/// Tag naming the plan on snapshots a run takes.
pub const PLAN_TAG: &str = "lifeboat.dev/plan";
/// Tag naming the application.
pub const APPLICATION_TAG: &str = "lifeboat.dev/application";
/// Tag naming the run.
pub const RUN_TAG: &str = "lifeboat.dev/run";
/// Label on every object a run restored.
pub const RESTORED_BY: &str = "lifeboat.dev/restored-by";

/// Why moving an application's data failed, naming the step and keeping the cause.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The application's namespaces do not make a filter.
    #[error("the application's namespaces: {0}")]
    Filter(#[source] ObjectsError),
    /// The final backup failed.
    #[error("final backup: {0}")]
    Backup(#[source] ObjectsError),
    /// The final backup could not read some objects: a partial backup is no recovery point.
    #[error("final backup could not read {count} item(s): {first}")]
    BackupIncomplete {
        /// Items that failed.
        count: usize,
        /// The first few, each `item: why`, joined by `; `.
        first: String,
    },
    /// The restore failed.
    #[error("restore: {0}")]
    Restore(#[source] ObjectsError),
    /// The recovery point holds none of the application's objects.
    #[error(
        "recovery point {snapshot} holds no objects in namespaces {namespaces}; check the application's \
         namespaces and snapshotTags"
    )]
    EmptyRecoveryPoint {
        /// The snapshot id (12 hex digits).
        snapshot: String,
        /// The application's namespaces, joined by `, `.
        namespaces: String,
    },
    /// Objects could not be restored.
    #[error("{count} object(s) could not be restored: {first}")]
    RestoreIncomplete {
        /// Objects that failed.
        count: usize,
        /// The first few, each `item: why`, joined by `; `.
        first: String,
    },
    /// The repository could not give what verification needs.
    #[error("{what}: {source}")]
    Repository {
        /// What was being read.
        what: String,
        /// Why it failed.
        source: RepoError,
    },
    /// The recovery point's catalog of objects is missing or does not parse.
    #[error("the recovery point's {RESOURCES_PATH}: {0}")]
    Catalog(String),
    /// A backed-up object does not parse.
    #[error("{path}: {source}")]
    Object {
        /// The object.
        path: String,
        /// Why.
        source: serde_json::Error,
    },
    /// Claims the target already had kept their volumes, whose data predates the recovery
    /// point.
    #[error(
        "claims {claims} already exist on the target, bound to volumes holding the data they had \
         before, so the recovery point's data was not written into them: delete those claims on \
         the target (with reclaim policy Delete their volumes go too; copy what matters first) and \
         run again with --resume"
    )]
    StaleVolumes {
        /// `namespace/claim`, joined by `, `.
        claims: String,
    },
    /// Volume data could not be checked (Ceph unreachable, the image unreadable).
    #[error("volumes: {0}")]
    Volumes(String),
    /// The target cluster could not be read.
    #[error("read {path} on the target: {source}")]
    Target {
        /// The object.
        path: String,
        /// Why.
        source: kube::Error,
    },
}

/// The first five of `errors` as `item: why`, joined by `; `.
fn first_five(errors: &[lifeboat_controller::crd::ItemMessage]) -> String {
    let first: Vec<String> = errors
        .iter()
        .take(5)
        .map(|e| format!("{}: {}", e.item, e.message))
        .collect();
    first.join("; ")
}

/// How a run moves the claims' volume data (RBD images, NFS directories), as a Backup and a
/// Restore do: Ceph reached through `access`, with `secret` instead of each StorageClass's
/// provisioner Secret when set.
#[derive(Debug, Clone)]
pub struct VolumeMover {
    /// How Ceph is reached.
    pub access: CephAccess,
    /// The Secret to read and write every image with (`None`: each StorageClass's).
    pub secret: Option<SecretRef>,
    /// Volumes moved at once (0: 4).
    pub parallelism: usize,
}

impl VolumeMover {
    fn backup_request(&self) -> VolumeRequest {
        VolumeRequest {
            selection: None,
            access: self.access.clone(),
            secret: self.secret.clone(),
            parallelism: self.parallelism,
            workers: 0,
        }
    }

    fn restore_request(&self) -> VolumeRestoreRequest {
        VolumeRestoreRequest {
            enabled: true,
            access: self.access.clone(),
            secret: self.secret.clone(),
            parallelism: self.parallelism,
            workers: 0,
        }
    }
}

/// The final backup of a planned move, with the data of every bound claim in the
/// application's namespaces when `volumes` is given: a claim whose data cannot be taken
/// (another CSI driver's) makes it incomplete, so the move stops before anything is lost.
pub async fn final_backup(
    client: &Client,
    repo: &Repository,
    plan: &str,
    run: &str,
    app: &Application,
    volumes: Option<&VolumeMover>,
    progress: Arc<Progress>,
) -> Result<Snapshot, DataError> {
    let mut tags = app.snapshot_tags.clone();
    tags.insert(PLAN_TAG.to_string(), plan.to_string());
    tags.insert(APPLICATION_TAG.to_string(), app.name.clone());
    tags.insert(RUN_TAG.to_string(), run.to_string());
    let request = BackupRequest {
        name: format!("{run}-{}", app.name),
        filter: ObjectFilter {
            namespaces: NamespaceFilter::new(&app.namespaces, &[]).map_err(DataError::Filter)?,
            resources: ResourceFilter::default(),
            cluster_scoped: ClusterScoped::Auto,
            label_selector: app.selector.clone(),
        },
        tags,
        parallelism: 8,
        discovery: DiscoveryDeadlines::default(),
        files: Vec::new(),
    };
    let outcome = match volumes {
        Some(mover) => {
            let each = progress.clone();
            backup_with_volumes(
                client,
                repo,
                &request,
                &mover.backup_request(),
                None,
                progress,
                &|_| each.clone(),
            )
            .await
        }
        None => backup_objects(client, repo, &request, progress).await,
    }
    .map_err(DataError::Backup)?;
    if !outcome.errors.is_empty() {
        return Err(DataError::BackupIncomplete {
            count: outcome.errors.len(),
            first: first_five(&outcome.errors),
        });
    }
    Ok(outcome.snapshot)
}

/// What a restore did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Restored {
    /// The snapshot restored.
    pub snapshot: String,
    /// Objects created.
    pub created: u64,
    /// Objects replaced.
    pub updated: u64,
    /// Objects already as backed up.
    pub unchanged: u64,
    /// Objects left alone (existing, policy none).
    pub skipped: u64,
    /// What became of each claim's volume data (empty when the recovery point has none or
    /// no volume mover was given).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<RestoredVolume>,
}

impl Restored {
    /// Volumes whose data is in place from the recovery point (written now, or by an
    /// earlier attempt of the same run).
    pub fn volumes_in_place(&self) -> u64 {
        self.volumes
            .iter()
            .filter(|v| matches!(v.outcome, RestoredOutcome::Restored | RestoredOutcome::Reused))
            .count() as u64
    }
}

/// Restores `app`'s objects from `snapshot` and, when `volumes` is given, its claims' volume
/// data first (each claim then comes back bound to its new volume). A claim whose data could
/// not be written makes the restore incomplete.
#[allow(clippy::too_many_arguments)]
pub async fn restore(
    client: &Client,
    repo: &Repository,
    snapshot: &Snapshot,
    app: &Application,
    namespace_mapping: &BTreeMap<String, String>,
    storage_class_mapping: &BTreeMap<String, String>,
    drill: bool,
    run: &str,
    volumes: Option<&VolumeMover>,
    progress: Arc<Progress>,
) -> Result<Restored, DataError> {
    let excluded: Vec<String> = if drill {
        vec!["*.lifeboat.dev".to_string()]
    } else {
        Vec::new()
    };
    let options = RestoreOptions {
        namespaces: NamespaceFilter::new(&app.namespaces, &[]).map_err(DataError::Filter)?,
        resources: ResourceFilter::new(&[], &excluded).map_err(DataError::Filter)?,
        cluster_scoped: false,
        namespace_mapping: namespace_mapping.clone(),
        existing: if drill {
            ExistingResourcePolicy::None
        } else {
            ExistingResourcePolicy::Update
        },
        labels: BTreeMap::from([(RESTORED_BY.to_string(), run.to_string())]),
        storage_class_mapping: storage_class_mapping.clone(),
        ..RestoreOptions::default()
    };
    let outcome = match volumes {
        Some(mover) => {
            let each = progress.clone();
            restore_with_volumes(
                client,
                repo,
                snapshot,
                &options,
                &mover.restore_request(),
                progress,
                &|_| each.clone(),
            )
            .await
        }
        None => restore_objects(client, repo, snapshot, &options, progress).await,
    }
    .map_err(DataError::Restore)?;
    let s = &outcome.summary;
    let id = snapshot.id.map(|i| i.to_hex()).unwrap_or_default();
    if s.created + s.updated + s.unchanged + s.skipped_existing == 0 && outcome.errors.is_empty() {
        return Err(DataError::EmptyRecoveryPoint {
            snapshot: id[..id.len().min(12)].to_string(),
            namespaces: app.namespaces.join(", "),
        });
    }
    if !outcome.errors.is_empty() {
        return Err(DataError::RestoreIncomplete {
            count: outcome.errors.len(),
            first: first_five(&outcome.errors),
        });
    }
    // A claim the target already has keeps its volume: in a failback or a second relocate
    // that is the data from before the move, which the application must not start on.
    let stale: Vec<String> = outcome
        .volumes
        .iter()
        .filter(|v| v.outcome == RestoredOutcome::Skipped)
        .map(|v| format!("{}/{}", v.namespace, v.claim))
        .collect();
    if !stale.is_empty() {
        return Err(DataError::StaleVolumes {
            claims: stale.join(", "),
        });
    }
    Ok(Restored {
        snapshot: id,
        created: s.created,
        updated: s.updated,
        unchanged: s.unchanged,
        skipped: s.skipped_existing,
        volumes: outcome.volumes,
    })
}

/// What a drill's verification found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// Objects of the application in the recovery point.
    pub expected: u64,
    /// Of those, found on the target.
    pub found: u64,
    /// Missing ones (the first 20).
    pub missing: Vec<String>,
    /// ConfigMaps and Secrets whose data was compared byte for byte.
    pub data_compared: u64,
    /// Those whose data differs (the first 20).
    pub data_mismatches: Vec<String>,
    /// Claims of the application with data in the recovery point's volume catalog.
    #[serde(default)]
    pub volumes_expected: u64,
    /// Whether the run restored volume data, so the fields below were checked.
    #[serde(default)]
    pub volumes_checked: bool,
    /// Of those, bound on the target to a volume written from the volume snapshot the
    /// catalog names (checked only when the run restored volume data).
    #[serde(default)]
    pub volumes_restored: u64,
    /// Of those, RBD images and NFS directories read back whole and matching the volume
    /// snapshot chunk for chunk (and, for NFS, entry for entry).
    #[serde(default)]
    pub volumes_data_checked: u64,
    /// Bytes read back from them.
    #[serde(default)]
    pub volume_bytes_checked: u64,
    /// Claims not bound as the catalog says, or whose bytes differ, each `namespace/claim:
    /// why` (the first 20).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mismatches: Vec<String>,
}

impl Verification {
    /// Everything matched.
    pub fn ok(&self) -> bool {
        self.expected == self.found && self.data_mismatches.is_empty() && self.volume_mismatches.is_empty()
    }

    /// One line: `50/50 objects present, 48 ConfigMaps/Secrets compared, 0 differ, 1/1
    /// volumes restored from the recovery point (1 read back, 1024.0 MiB, matching)`.
    pub fn summary(&self) -> String {
        format!(
            "{}/{} objects present, {} ConfigMaps/Secrets compared, {} differ, {}",
            self.found,
            self.expected,
            self.data_compared,
            self.data_mismatches.len(),
            self.volume_summary()
        )
    }

    /// The volume part of [`Self::summary`]: `1/1 volumes restored from the recovery point
    /// (1 read back, 1024.0 MiB, matching)`.
    pub fn volume_summary(&self) -> String {
        let mut line = if self.volumes_checked || self.volumes_expected == 0 {
            format!(
                "{}/{} volumes restored from the recovery point",
                self.volumes_restored, self.volumes_expected
            )
        } else {
            format!(
                "{} volumes in the recovery point, not restored by this run",
                self.volumes_expected
            )
        };
        if self.volumes_data_checked > 0 {
            line.push_str(&format!(
                " ({} read back, {:.1} MiB, matching)",
                self.volumes_data_checked,
                self.volume_bytes_checked as f64 / (1 << 20) as f64
            ));
        }
        line
    }

    /// Takes the volume fields from `read_back` (a check made before the workloads started),
    /// keeping this one's objects.
    pub fn take_volumes(&mut self, read_back: Verification) {
        self.volumes_expected = read_back.volumes_expected;
        self.volumes_checked = read_back.volumes_checked;
        self.volumes_restored = read_back.volumes_restored;
        self.volumes_data_checked = read_back.volumes_data_checked;
        self.volume_bytes_checked = read_back.volume_bytes_checked;
        self.volume_mismatches = read_back.volume_mismatches;
    }
}

/// Compares what the target holds with `app`'s objects in `snapshot`: every object present
/// (under its mapped namespace), the data of every ConfigMap and Secret identical, and, when
/// the run restored volume data (`volumes`, the mover it used), every claim the recovery point
/// holds data of bound to a volume written from the volume snapshot its catalog names, each
/// RBD image's bytes read back and matching that snapshot chunk for chunk.
pub async fn verify(
    client: &Client,
    repo: &Repository,
    snapshot: &Snapshot,
    app: &Application,
    namespace_mapping: &BTreeMap<String, String>,
    volumes: Option<&VolumeMover>,
) -> Result<Verification, DataError> {
    let mut v =
        super::volume_check::verify_volumes(client, repo, snapshot, app, namespace_mapping, volumes).await?;
    let read = |what: &str| {
        let what = what.to_string();
        move |source| DataError::Repository { what, source }
    };
    let repo = repo.indexed().await.map_err(read("load the index"))?;
    let index = repo.index();
    let reader = repo.reader();
    let nodes = repo
        .tree(snapshot)
        .await
        .map_err(read("read the recovery point"))?;
    let table = nodes
        .iter()
        .find(|n| n.path == RESOURCES_PATH)
        .ok_or_else(|| DataError::Catalog("missing".to_string()))?;
    let records: Vec<ResourceRecord> = serde_json::from_slice(
        &reader
            .read_stream(&table.chunks)
            .await
            .map_err(read(&format!("read {RESOURCES_PATH}")))?,
    )
    .map_err(|e| DataError::Catalog(e.to_string()))?;
    let records: HashMap<String, ResourceRecord> = records.into_iter().map(|r| (r.key(), r)).collect();
    let mut expected = Vec::new();
    for n in &nodes {
        let Some(path) = ObjectPath::parse(&n.path) else {
            continue;
        };
        let Some(ns) = &path.namespace else { continue };
        if !app.namespaces.contains(ns) || path.key.ends_with(".lifeboat.dev") {
            continue;
        }
        let Some(record) = records.get(&path.key) else {
            continue;
        };
        expected.push((path.clone(), record.clone(), n.chunks.clone()));
    }
    v.expected = expected.len() as u64;
    // Present on the target? 32 reads in flight (owned values: a stream of references in a
    // spawned future trips rustc's higher-ranked Send check).
    let lookups: Vec<(ObjectPath, Api<DynamicObject>)> = expected
        .iter()
        .map(|(path, record, _)| {
            let ns = path.namespace.clone().unwrap_or_default();
            let ns = namespace_mapping.get(&ns).cloned().unwrap_or(ns);
            (
                path.clone(),
                Api::namespaced_with(client.clone(), &ns, &record.api_resource()),
            )
        })
        .collect();
    let looked: Vec<(ObjectPath, Result<Option<DynamicObject>, kube::Error>)> =
        futures::stream::iter(lookups)
            .map(get_one)
            .buffer_unordered(32)
            .collect()
            .await;
    let mut live: BTreeMap<ObjectPath, DynamicObject> = BTreeMap::new();
    for (path, got) in looked {
        match got {
            Ok(Some(obj)) => {
                v.found += 1;
                live.insert(path, obj);
            }
            Ok(None) => {
                if v.missing.len() < 20 {
                    v.missing.push(path.display());
                }
            }
            Err(source) => {
                return Err(DataError::Target {
                    path: path.display(),
                    source,
                });
            }
        }
    }
    // Data of ConfigMaps and Secrets, read from the repository pack by pack.
    let mut with_data: Vec<&(ObjectPath, ResourceRecord, Vec<lifeboat_backup::blob::BlobId>)> = expected
        .iter()
        .filter(|(p, _, _)| matches!(p.key.as_str(), "configmaps" | "secrets") && live.contains_key(p))
        .collect();
    with_data.sort_by_key(|(_, _, chunks)| chunks.first().and_then(|c| index.get(c)).map(|l| l.pack));
    for (path, _, chunks) in with_data {
        let bytes = reader
            .read_stream(chunks)
            .await
            .map_err(read(&format!("read {} from the repository", path.display())))?;
        let backed: Value = serde_json::from_slice(&bytes).map_err(|source| DataError::Object {
            path: path.display(),
            source,
        })?;
        let restored = live.get(path).map(|o| &o.data).cloned().unwrap_or(Value::Null);
        v.data_compared += 1;
        let same = ["data", "binaryData"]
            .iter()
            .all(|f| digest(&backed[f]) == digest(&restored[f]));
        if !same && v.data_mismatches.len() < 20 {
            v.data_mismatches.push(path.display());
        }
    }
    Ok(v)
}

async fn get_one(
    (path, api): (ObjectPath, Api<DynamicObject>),
) -> (ObjectPath, Result<Option<DynamicObject>, kube::Error>) {
    let got = api.get_opt(&path.name).await;
    (path, got)
}

/// BLAKE3 of a JSON value's canonical text (object keys sorted, as serde_json's map is).
fn digest(v: &Value) -> String {
    let normal = match v {
        Value::Null => Value::Object(Default::default()),
        other => other.clone(),
    };
    blake3::hash(serde_json::to_string(&normal).unwrap_or_default().as_bytes())
        .to_hex()
        .to_string()
}
