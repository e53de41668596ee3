//! Backing up objects: discover, list every resource type in pages (several types at once),
//! leave out what must not be restored, and store each object as one blob.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use futures::StreamExt;
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams};
use lifeboat_backup::blob::BlobKind;
use lifeboat_backup::progress::Progress;
use lifeboat_backup::repository::LockKind;
use lifeboat_backup::session::BlobSink;
use lifeboat_backup::snapshot::{KubernetesObjects, Node, Snapshot, SnapshotDetails, Summary};
use lifeboat_backup::{RepoError, Repository};
use serde_json::Value;
use tokio::sync::mpsc;

use super::discover::{ResourceRecord, discover};
use super::filter::{NamespaceFilter, ObjectFilter, ResourceFilter};
use super::skip::{SkipContext, skipped_object, skipped_resource};
use super::{BACKUP_TAG, ObjectsError, RESOURCES_PATH, object_path};
use crate::crd::{BackupSpec, ItemMessage};

/// Objects per list page.
const PAGE_SIZE: u32 = 500;

/// What to back up.
#[derive(Debug, Clone)]
pub struct BackupRequest {
    /// The Backup's name, recorded as the snapshot's `backup` tag.
    pub name: String,
    /// Which objects.
    pub filter: ObjectFilter,
    /// Extra snapshot tags.
    pub tags: BTreeMap<String, String>,
    /// Resource types listed at once.
    pub parallelism: usize,
}

impl BackupRequest {
    /// The request a Backup resource describes; bad globs are reported naming the field.
    pub fn from_spec(name: &str, spec: &BackupSpec) -> Result<Self, ObjectsError> {
        Ok(Self {
            name: name.to_string(),
            filter: ObjectFilter {
                namespaces: NamespaceFilter::new(&spec.included_namespaces, &spec.excluded_namespaces)?,
                resources: ResourceFilter::new(&spec.included_resources, &spec.excluded_resources)?,
                cluster_scoped: spec.cluster_scoped,
                label_selector: spec.label_selector.clone(),
            },
            tags: spec.tags.clone(),
            parallelism: 8,
        })
    }
}

/// What a backup stored.
#[derive(Debug, Clone)]
pub struct BackupOutcome {
    /// The snapshot (with its id).
    pub snapshot: Snapshot,
    /// Objects stored.
    pub items: u64,
    /// Objects left out on purpose.
    pub skipped: u64,
    /// Skips and other notes, per resource type.
    pub warnings: Vec<ItemMessage>,
    /// Resource types or objects that could not be read.
    pub errors: Vec<ItemMessage>,
}

/// Per-resource tallies.
#[derive(Default)]
struct Tally {
    stored: u64,
    skipped: u64,
    example: Option<String>,
    error: Option<String>,
}

/// Backs up the objects `request` selects into `repo`. Objects that cannot be read are
/// reported in the outcome and do not stop the others; the snapshot is written last.
pub async fn backup_objects(
    client: &Client,
    repo: &Repository,
    request: &BackupRequest,
    progress: Arc<Progress>,
) -> Result<BackupOutcome, ObjectsError> {
    let started = Instant::now();
    let time = Utc::now();
    let resources = discover(client).await?;
    let mut warnings = Vec::new();
    let mut taken = Vec::new();
    for r in resources {
        if !request.filter.resources.matches(&r.plural, &r.group) {
            continue;
        }
        if let Some(why) = skipped_resource(&r.plural, &r.group) {
            warnings.push(ItemMessage {
                item: r.key(),
                message: format!("not backed up: {why}"),
            });
            continue;
        }
        if !r.namespaced
            && !request.filter.all_cluster_scoped()
            && !needed_cluster_scoped(&r, &request.filter)
        {
            continue;
        }
        taken.push(r);
    }
    let cluster_id = cluster_id(client).await;
    let ctx = Arc::new(skip_context(client, &taken).await?);

    let work = async {
        let session = repo.indexed().await?.start_session();
        let (tx, rx) = mpsc::channel::<(String, Vec<u8>)>(256);
        let shared = session.shared().clone();
        let writer = tokio::task::spawn_blocking(move || store_objects(shared, rx));

        let table = serde_json::to_vec_pretty(&taken).map_err(|e| ObjectsError::Invalid(e.to_string()))?;
        let _ = tx.send((RESOURCES_PATH.to_string(), table)).await;
        // CRDs wanted only for what the selected namespaces hold go last, once it is known
        // which custom resource types had objects.
        let narrowed = !request.filter.all_cluster_scoped();
        let (later, first): (Vec<&ResourceRecord>, Vec<&ResourceRecord>) =
            taken.iter().partition(|r| narrowed && is_crd(r));
        let lists = Lists {
            client,
            filter: &request.filter,
            ctx: &ctx,
            tx: &tx,
            progress: &progress,
            parallelism: request.parallelism.max(1),
        };
        let mut tallies = lists.run(&first, &HashSet::new()).await;
        let used: HashSet<String> = tallies
            .iter()
            .filter(|(_, t)| t.stored > 0)
            .map(|(k, _)| k.clone())
            .collect();
        tallies.extend(lists.run(&later, &used).await);
        drop(tx);
        let mut nodes = writer.await.map_err(|e| RepoError::Task(e.to_string()))??;
        nodes.sort_by(|a, b| a.path.cmp(&b.path));

        let mut errors = Vec::new();
        let (mut items, mut skipped) = (0, 0);
        for (key, t) in tallies {
            items += t.stored;
            skipped += t.skipped;
            if let Some(e) = t.error {
                errors.push(ItemMessage {
                    item: key.clone(),
                    message: e,
                });
            }
            if t.skipped > 0 {
                warnings.push(ItemMessage {
                    item: key,
                    message: format!("{} skipped, e.g. {}", t.skipped, t.example.unwrap_or_default()),
                });
            }
        }
        let bytes = nodes.iter().map(|n| n.size).sum();
        let (tree, session) = tokio::task::spawn_blocking(move || (session.write_tree(&nodes), session))
            .await
            .map_err(|e| RepoError::Task(e.to_string()))?;
        let tree = tree?;
        let stats = session.finish().await?;
        let mut tags = request.tags.clone();
        tags.insert(BACKUP_TAG.to_string(), request.name.clone());
        let mut snapshot = Snapshot {
            id: None,
            time,
            hostname: lifeboat_backup::repository::hostname(),
            details: SnapshotDetails::Kubernetes(KubernetesObjects {
                cluster_id: cluster_id.clone(),
                backup: request.name.clone(),
                items,
            }),
            source: format!("kubernetes:{cluster_id}"),
            paths: Vec::new(),
            tags,
            parent: None,
            tree,
            summary: Summary {
                files: items,
                bytes,
                files_read: items,
                new_bytes: stats.new_bytes,
                stored_bytes: stats.stored_bytes,
                new_blobs: stats.new_blobs,
                duration_ms: started.elapsed().as_millis() as u64,
                warnings: warnings
                    .iter()
                    .map(|w| format!("{}: {}", w.item, w.message))
                    .collect(),
                ..Summary::default()
            },
        };
        snapshot.id = Some(repo.save_snapshot(&snapshot).await?);
        Ok::<_, ObjectsError>(BackupOutcome {
            snapshot,
            items,
            skipped,
            warnings,
            errors,
        })
    };
    repo.while_locked(LockKind::Shared, "kubernetes objects backup", work)
        .await
}

/// In `Auto` mode with a namespace filter, the cluster-scoped types the namespaced objects
/// need: their Namespaces, the PersistentVolumes bound to their claims, and CRDs.
fn needed_cluster_scoped(r: &ResourceRecord, _filter: &ObjectFilter) -> bool {
    matches!(
        (r.group.as_str(), r.plural.as_str()),
        ("", "namespaces")
            | ("", "persistentvolumes")
            | ("apiextensions.k8s.io", "customresourcedefinitions")
    )
}

/// Lists resource types, several at once, into the writer.
struct Lists<'a> {
    client: &'a Client,
    filter: &'a ObjectFilter,
    ctx: &'a SkipContext,
    tx: &'a mpsc::Sender<(String, Vec<u8>)>,
    progress: &'a Progress,
    parallelism: usize,
}

impl Lists<'_> {
    async fn run(&self, records: &[&ResourceRecord], needed_crds: &HashSet<String>) -> Vec<(String, Tally)> {
        let scope = Scope {
            filter: self.filter,
            ctx: self.ctx,
            needed_crds,
        };
        futures::stream::iter(records)
            .map(|r| {
                let scope = &scope;
                async move {
                    let tally = backup_resource(self.client, r, scope, self.tx, self.progress).await;
                    (r.key(), tally)
                }
            })
            .buffer_unordered(self.parallelism)
            .collect()
            .await
    }
}

fn is_crd(r: &ResourceRecord) -> bool {
    r.group == "apiextensions.k8s.io" && r.plural == "customresourcedefinitions"
}

/// What decides whether one object of a resource is taken.
struct Scope<'a> {
    filter: &'a ObjectFilter,
    ctx: &'a SkipContext,
    /// `plural.group` of custom resource types that had objects in the selection.
    needed_crds: &'a HashSet<String>,
}

/// Whether a cluster-scoped object is needed by the selected namespaces (narrowed `Auto`).
fn cluster_object_needed(r: &ResourceRecord, obj: &Value, scope: &Scope<'_>) -> bool {
    let filter = scope.filter;
    if filter.all_cluster_scoped() {
        return true;
    }
    match (r.group.as_str(), r.plural.as_str()) {
        ("", "namespaces") => obj["metadata"]["name"]
            .as_str()
            .is_some_and(|n| filter.namespaces.matches(n)),
        ("", "persistentvolumes") => obj["spec"]["claimRef"]["namespace"]
            .as_str()
            .is_some_and(|n| filter.namespaces.matches(n)),
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            let key = format!(
                "{}.{}",
                obj["spec"]["names"]["plural"].as_str().unwrap_or_default(),
                obj["spec"]["group"].as_str().unwrap_or_default()
            );
            scope.needed_crds.contains(&key)
        }
        _ => false,
    }
}

/// The cluster's identity: the uid of `kube-system`, which lives as long as the cluster.
async fn cluster_id(client: &Client) -> String {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    match api.get_opt("kube-system").await {
        Ok(Some(ns)) => ns.metadata.uid.unwrap_or_else(|| "unknown".to_string()),
        _ => "unknown".to_string(),
    }
}

/// Services with selectors, whose Endpoints the cluster generates.
async fn skip_context(client: &Client, taken: &[ResourceRecord]) -> Result<SkipContext, ObjectsError> {
    let mut ctx = SkipContext::default();
    if !taken
        .iter()
        .any(|r| r.group.is_empty() && r.plural == "endpoints")
    {
        return Ok(ctx);
    }
    let api: Api<k8s_openapi::api::core::v1::Service> = Api::all(client.clone());
    let mut token: Option<String> = None;
    loop {
        let mut params = ListParams::default().limit(PAGE_SIZE);
        if let Some(t) = &token {
            params = params.continue_token(t);
        }
        let list = api
            .list(&params)
            .await
            .map_err(|e| ObjectsError::kube("list services", e))?;
        for svc in list.items {
            if svc
                .spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .is_some_and(|s| !s.is_empty())
            {
                ctx.selector_services.insert(format!(
                    "{}/{}",
                    svc.metadata.namespace.unwrap_or_default(),
                    svc.metadata.name.unwrap_or_default()
                ));
            }
        }
        token = list.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            return Ok(ctx);
        }
    }
}

/// Lists one resource type page by page and sends its objects to the writer.
async fn backup_resource(
    client: &Client,
    r: &ResourceRecord,
    scope: &Scope<'_>,
    tx: &mpsc::Sender<(String, Vec<u8>)>,
    progress: &Progress,
) -> Tally {
    let ar = r.api_resource();
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let key = r.key();
    let mut tally = Tally::default();
    let mut token: Option<String> = None;
    let mut restarted = false;
    loop {
        let mut params = ListParams::default().limit(PAGE_SIZE);
        if let Some(sel) = &scope.filter.label_selector {
            params = params.labels(sel);
        }
        if let Some(t) = &token {
            params = params.continue_token(t);
        }
        let page = match api.list(&params).await {
            Ok(page) => page,
            // The continue token expired (410 Gone) mid-listing: list again from the start.
            Err(kube::Error::Api(e)) if e.code == 410 && !restarted => {
                restarted = true;
                token = None;
                tally = Tally::default();
                continue;
            }
            Err(e) => {
                tally.error = Some(format!("could not list {key}: {e}"));
                return tally;
            }
        };
        progress.add_total(0, page.items.len() as u64);
        for obj in page.items {
            let mut value = match serde_json::to_value(&obj) {
                Ok(v) => v,
                Err(e) => {
                    tally.error = Some(format!("could not encode an object: {e}"));
                    continue;
                }
            };
            progress.add_done(0, 1);
            let ns = value["metadata"]["namespace"].as_str().map(str::to_string);
            let name = value["metadata"]["name"].as_str().unwrap_or_default().to_string();
            if let Some(ns) = &ns
                && !scope.filter.namespaces.matches(ns)
            {
                continue;
            }
            if !r.namespaced && !cluster_object_needed(r, &value, scope) {
                continue;
            }
            if let Some(why) = skipped_object(&r.plural, &r.group, &value, scope.ctx) {
                tally.skipped += 1;
                tally
                    .example
                    .get_or_insert_with(|| format!("{}: {why}", ns_name(ns.as_deref(), &name)));
                continue;
            }
            value["apiVersion"] = Value::String(r.api_version());
            value["kind"] = Value::String(r.kind.clone());
            if let Some(meta) = value["metadata"].as_object_mut() {
                // Server bookkeeping that changes without the object changing; restores drop it.
                meta.remove("managedFields");
            }
            let Ok(bytes) = serde_json::to_vec(&value) else {
                continue;
            };
            let path = object_path(&key, ns.as_deref(), &name);
            if tx.send((path, bytes)).await.is_err() {
                tally.error = Some("the repository writer stopped".to_string());
                return tally;
            }
            tally.stored += 1;
        }
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            return tally;
        }
    }
}

fn ns_name(ns: Option<&str>, name: &str) -> String {
    match ns {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

/// The writer: one blob per object, deduplicated against the repository.
fn store_objects(
    shared: Arc<lifeboat_backup::session::SessionShared>,
    mut rx: mpsc::Receiver<(String, Vec<u8>)>,
) -> Result<Vec<Node>, ObjectsError> {
    // Nodes carry no time of their own (the snapshot has it), so an unchanged object's
    // tree line is byte-identical in the next backup and the tree deduplicates too.
    let time = chrono::DateTime::UNIX_EPOCH;
    let mut sink = BlobSink::new(shared, BlobKind::Data);
    let mut nodes = Vec::new();
    let mut seen: HashMap<String, ()> = HashMap::new();
    while let Some((path, bytes)) = rx.blocking_recv() {
        if seen.insert(path.clone(), ()).is_some() {
            continue;
        }
        let id = sink.put(&bytes)?;
        nodes.push(Node::stream(&path, bytes.len() as u64, vec![id], time));
    }
    sink.finish()?;
    Ok(nodes)
}
