//! Backing up objects: discover, list every resource type in pages (several types at once),
//! leave out what must not be restored, and store each object as one blob.

mod list;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use kube::Client;
use kube::api::{Api, ListParams};
use lifeboat_backup::blob::BlobKind;
use lifeboat_backup::progress::Progress;
use lifeboat_backup::repository::LockKind;
use lifeboat_backup::session::BlobSink;
use lifeboat_backup::snapshot::{KubernetesObjects, Node, Snapshot, SnapshotDetails, Summary};
use lifeboat_backup::{RepoError, Repository};
use tokio::sync::mpsc;

use self::list::{Lists, PAGE_SIZE, Take, Tally};
use super::discover::{DiscoveryDeadlines, ResourceRecord, discover};
use super::filter::{NamespaceFilter, ObjectFilter, ResourceFilter};
use super::needs::{Needs, dependency_order};
use super::skip::{SkipContext, skipped_resource};
use super::{BACKUP_TAG, ObjectsError, RESOURCES_PATH};
use crate::crd::{BackupSpec, ItemMessage};

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
    /// How long each discovery request may take.
    pub discovery: DiscoveryDeadlines,
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
            discovery: DiscoveryDeadlines::default(),
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
    /// Resource types or objects that could not be read (the backup is PartiallyFailed).
    pub errors: Vec<ItemMessage>,
    /// Aggregated API group versions left out because their server is unavailable, each
    /// with why (`metrics.k8s.io/v1beta1`): their objects are kept by that server, so the
    /// backup is not failed for them.
    pub skipped_groups: Vec<ItemMessage>,
    /// Group versions the API server serves itself (built-in, CRDs) that could not be
    /// discovered: their objects are missing, and each is in `errors` too.
    pub unreadable_groups: Vec<String>,
}

impl BackupOutcome {
    /// Skipped API groups first, then the other warnings: everything a person should read.
    pub fn all_warnings(&self) -> Vec<ItemMessage> {
        self.skipped_groups
            .iter()
            .chain(&self.warnings)
            .cloned()
            .collect()
    }
}

/// Backs up the objects `request` selects into `repo`. Objects that cannot be read are
/// reported in the outcome and do not stop the others; the snapshot is written last.
///
/// Order: the selected types first (with the label selector); then what they need, listed
/// without it: Namespace objects, bound PersistentVolumes and CRDs; then StorageClasses.
pub async fn backup_objects(
    client: &Client,
    repo: &Repository,
    request: &BackupRequest,
    progress: Arc<Progress>,
) -> Result<BackupOutcome, ObjectsError> {
    let started = Instant::now();
    let time = Utc::now();
    let discovered = discover(client, request.discovery).await?;
    let mut warnings: Vec<ItemMessage> = discovered
        .notes
        .iter()
        .map(|n| ItemMessage {
            item: "discovery".to_string(),
            message: n.clone(),
        })
        .collect();
    let mut errors = Vec::new();
    let mut skipped_groups = Vec::new();
    let mut unreadable_groups = Vec::new();
    for u in &discovered.unavailable {
        let m = ItemMessage {
            item: u.group_version.clone(),
            message: u.message(),
        };
        if u.loses_data() {
            unreadable_groups.push(u.group_version.clone());
            errors.push(m);
        } else {
            skipped_groups.push(m);
        }
    }
    let filter = &request.filter;
    let mut taken = Vec::new();
    for r in discovered.resources {
        let dependency = dependency_order(&r.group, &r.plural).is_some();
        // What selected objects need comes along unless excluded by name.
        let wanted = filter.resources.matches(&r.plural, &r.group)
            || (dependency && !filter.resources.excludes(&r.plural, &r.group));
        if !wanted {
            continue;
        }
        if let Some(why) = skipped_resource(&r.plural, &r.group) {
            warnings.push(ItemMessage {
                item: r.key(),
                message: format!("not backed up: {why}"),
            });
            continue;
        }
        if !r.namespaced && !dependency && !filter.all_cluster_scoped() {
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
        let order = |r: &ResourceRecord| dependency_order(&r.group, &r.plural);
        let selected: Vec<&ResourceRecord> = taken.iter().filter(|r| order(r).is_none()).collect();
        let lists = Lists {
            client,
            filter,
            ctx: &ctx,
            tx: &tx,
            progress: &progress,
            parallelism: request.parallelism.max(1),
            aggregated: &discovered.aggregated,
        };
        let mut needs = Needs::default();
        let mut tallies: Vec<(String, Tally)> = Vec::new();
        let mut collect = |results: Vec<(String, Tally, Needs)>, needs: &mut Needs| {
            for (key, tally, n) in results {
                needs.merge(n);
                tallies.push((key, tally));
            }
        };
        collect(lists.run(&selected, Take::Selected).await, &mut needs);
        for stage in [0, 1] {
            let deps: Vec<&ResourceRecord> = taken.iter().filter(|r| order(r) == Some(stage)).collect();
            let found = lists.run(&deps, Take::Dependencies(&needs)).await;
            collect(found, &mut needs);
        }
        drop(tx);
        let mut nodes = writer.await.map_err(|e| RepoError::Task(e.to_string()))??;
        nodes.sort_by(|a, b| a.path.cmp(&b.path));

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
            if let Some(w) = t.warning {
                skipped_groups.push(ItemMessage {
                    item: key.clone(),
                    message: w,
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
                warnings: skipped_groups
                    .iter()
                    .chain(&warnings)
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
            skipped_groups,
            unreadable_groups,
        })
    };
    repo.while_locked(LockKind::Shared, "kubernetes objects backup", work)
        .await
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
