//! Backing up objects: discover, list every resource type in pages (several types at once),
//! leave out what must not be restored, and store each object as one blob.

mod list;
mod owners;

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use kube::Client;
use kube::api::Api;
use lifeboat_backup::archiver::Writer;
use lifeboat_backup::progress::Progress;
use lifeboat_backup::snapshot::{KubernetesObjects, SkippedPath, Snapshot, SnapshotDetails, Summary};
use lifeboat_backup::{BackupOptions, Repository, Source, Written};

pub(crate) use self::list::for_each_page;
use self::list::{Lists, Take, Tally};
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
    /// Extra files stored in the snapshot's tree, `(path, content)` (the volume catalog).
    pub files: Vec<(String, Vec<u8>)>,
}

impl BackupRequest {
    /// The request a Backup resource describes; bad globs and label selectors are reported
    /// naming the field (a selector the API server would refuse would fail every list).
    pub fn from_spec(name: &str, spec: &BackupSpec) -> Result<Self, ObjectsError> {
        // The name may become a Backup resource (synced from the repository by a controller).
        if !crate::reconcile::backup_sync::valid_name(name) {
            return Err(ObjectsError::Invalid(format!(
                "backup name {name:?} is not a valid Kubernetes name: lowercase letters, digits, '-' \
                 and '.', starting and ending with a letter or digit, at most 253 characters"
            )));
        }
        if let Some(selector) = &spec.label_selector {
            crate::volumes::LabelSelector::parse(selector)
                .map_err(|e| ObjectsError::Invalid(format!("labelSelector {selector:?}: {e}")))?;
        }
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
            files: Vec::new(),
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
    /// What became of each claim's volume data (empty when volumes were not taken).
    pub volumes: Vec<crate::volumes::CatalogEntry>,
    /// The etcd snapshot taken in the same recovery point, when one was asked for.
    pub etcd: Option<crate::volumes::EtcdPoint>,
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

/// Files whose content is known only once the objects have been listed (the volume catalog,
/// complete once the volumes' data is read), as `(path, content)`: awaited after the last
/// list, before the snapshot is written. An error fails the backup.
pub type LateFiles<'a> = Pin<Box<dyn Future<Output = Result<Vec<(String, Vec<u8>)>, ObjectsError>> + 'a>>;

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
    let none: LateFiles<'_> = Box::pin(std::future::ready(Ok(Vec::new())));
    backup_objects_with_late_files(client, repo, request, progress, none).await
}

/// [`backup_objects`], storing `late`'s files too: the objects are read while `late` is
/// still being worked out, and the snapshot waits for it.
pub async fn backup_objects_with_late_files(
    client: &Client,
    repo: &Repository,
    request: &BackupRequest,
    progress: Arc<Progress>,
    late: LateFiles<'_>,
) -> Result<BackupOutcome, ObjectsError> {
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
    // kubectl's names (`deploy`, `Deployment`) become the types they name; a name that
    // names none is an error to include and a warning to exclude.
    let all: Vec<&ResourceRecord> = discovered.resources.iter().collect();
    let (resources, unknown) = request.filter.resources.resolve(&all)?;
    // Each message names its field (includedResources, excludedResources).
    warnings.extend(unknown.into_iter().map(|message| ItemMessage {
        item: "resource filter".to_string(),
        message,
    }));
    let filter = ObjectFilter {
        resources,
        ..request.filter.clone()
    };
    // Owners are looked up among every discovered type, not only those taken.
    let owners = owners::Owners::new(client, &filter, &discovered.resources);
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
    let ctx = skip_context(client, &taken).await?;

    let mut source = ObjectsSource {
        client,
        request,
        filter: &filter,
        owners: &owners,
        taken: &taken,
        aggregated: &discovered.aggregated,
        ctx: &ctx,
        cluster_id,
        late: Some(late),
        report: Report {
            items: 0,
            skipped: 0,
            warnings,
            errors,
            skipped_groups,
        },
    };
    let mut tags = request.tags.clone();
    tags.insert(BACKUP_TAG.to_string(), request.name.clone());
    let snapshot = repo
        .backup(
            &mut source,
            &BackupOptions {
                tags,
                host: None,
                progress,
            },
        )
        .await?;
    let Report {
        items,
        skipped,
        warnings,
        errors,
        skipped_groups,
    } = source.report;
    Ok(BackupOutcome {
        snapshot,
        items,
        skipped,
        warnings,
        errors,
        skipped_groups,
        unreadable_groups,
        volumes: Vec::new(),
        etcd: None,
    })
}

/// What the listing found beyond the snapshot itself.
struct Report {
    items: u64,
    skipped: u64,
    warnings: Vec<ItemMessage>,
    errors: Vec<ItemMessage>,
    skipped_groups: Vec<ItemMessage>,
}

/// The Kubernetes objects source: the discovered types `taken`, listed in dependency order,
/// one blob per object. The lifecycle around it is [`Repository::backup`]'s.
struct ObjectsSource<'a> {
    client: &'a Client,
    request: &'a BackupRequest,
    /// The request's filter, its resource names resolved against discovery.
    filter: &'a ObjectFilter,
    owners: &'a owners::Owners<'a>,
    taken: &'a [ResourceRecord],
    aggregated: &'a HashSet<String>,
    ctx: &'a SkipContext,
    cluster_id: String,
    /// Files stored after the lists (taken by the first `write`).
    late: Option<LateFiles<'a>>,
    /// Discovery's notes going in; the listing's tallies added by `write`.
    report: Report,
}

impl Source for ObjectsSource<'_> {
    type Error = ObjectsError;

    fn source_id(&self) -> String {
        format!("kubernetes:{}", self.cluster_id)
    }

    fn purpose(&self) -> &'static str {
        "kubernetes objects backup"
    }

    async fn write(&mut self, writer: &Writer<'_>) -> Result<Written, ObjectsError> {
        let upload = writer.items();
        let table =
            serde_json::to_vec_pretty(self.taken).map_err(|e| ObjectsError::Invalid(e.to_string()))?;
        upload.send(RESOURCES_PATH.to_string(), table).await;
        for (path, content) in &self.request.files {
            upload.send(path.clone(), content.clone()).await;
        }
        let order = |r: &ResourceRecord| dependency_order(&r.group, &r.plural);
        let selected: Vec<&ResourceRecord> = self.taken.iter().filter(|r| order(r).is_none()).collect();
        let lists = Lists {
            client: self.client,
            filter: self.filter,
            owners: self.owners,
            ctx: self.ctx,
            upload: &upload,
            progress: writer.progress(),
            parallelism: self.request.parallelism.max(1),
            aggregated: self.aggregated,
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
            let deps: Vec<&ResourceRecord> = self.taken.iter().filter(|r| order(r) == Some(stage)).collect();
            let found = lists.run(&deps, Take::Dependencies(&needs)).await;
            collect(found, &mut needs);
        }
        if let Some(late) = self.late.take() {
            for (path, content) in late.await? {
                upload.send(path, content).await;
            }
        }
        let nodes = upload.finish().await?;

        let report = &mut self.report;
        for (key, t) in tallies {
            report.items += t.stored;
            report.skipped += t.skipped;
            if let Some(e) = t.error {
                report.errors.push(ItemMessage {
                    item: key.clone(),
                    message: e,
                });
            }
            if let Some(w) = t.warning {
                report.skipped_groups.push(ItemMessage {
                    item: key.clone(),
                    message: w,
                });
            }
            if t.skipped > 0 {
                report.warnings.push(ItemMessage {
                    item: key,
                    message: format!("{} skipped, e.g. {}", t.skipped, t.example.unwrap_or_default()),
                });
            }
        }
        let items = report.items;
        let summary = Summary {
            files: items,
            bytes: nodes.iter().map(|n| n.size).sum(),
            files_read: items,
            warnings: report
                .skipped_groups
                .iter()
                .chain(&report.warnings)
                .map(|w| format!("{}: {}", w.item, w.message))
                .collect(),
            // What could not be read makes the snapshot partial, as listings then show it.
            skipped: report
                .errors
                .iter()
                .map(|e| SkippedPath {
                    path: e.item.clone(),
                    error: e.message.clone(),
                })
                .collect(),
            ..Summary::default()
        };
        Ok(Written {
            nodes,
            details: SnapshotDetails::Kubernetes(KubernetesObjects {
                cluster_id: self.cluster_id.clone(),
                backup: self.request.name.clone(),
                items,
            }),
            paths: Vec::new(),
            summary,
        })
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
    for_each_page(&api, "services", |services| {
        for svc in services {
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
    })
    .await?;
    Ok(ctx)
}
