//! Listing one resource type for a backup: pages of 500, the objects the selection takes
//! (minus those left out on purpose) sent to the writer, and what the taken objects need
//! from outside the selection.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams};
use lifeboat_backup::archiver::ItemUpload;
use lifeboat_backup::progress::Progress;
use serde_json::Value;

use super::super::discover::ResourceRecord;
use super::super::filter::ObjectFilter;
use super::super::needs::Needs;
use super::super::object_path;
use super::super::skip::{SkipContext, recreated_by_owner, skipped_object};
use super::owners::{OwnerRef, Owners};
use crate::crd::ClusterScoped;

/// Objects per list page.
pub const PAGE_SIZE: u32 = 500;

/// Lists every object `api` reaches, a page of [`PAGE_SIZE`] at a time, handing each page to
/// `each`; `what` names the type in the error (`list {what}: …`).
pub(crate) async fn for_each_page<K>(
    api: &Api<K>,
    what: &str,
    mut each: impl FnMut(Vec<K>),
) -> Result<(), super::super::ObjectsError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut token: Option<String> = None;
    loop {
        let mut params = ListParams::default().limit(PAGE_SIZE);
        if let Some(t) = &token {
            params = params.continue_token(t);
        }
        let page = api
            .list(&params)
            .await
            .map_err(|e| super::super::ObjectsError::kube(format!("list {what}"), e))?;
        each(page.items);
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            return Ok(());
        }
    }
}

/// How long one page of an aggregated API may take: its server may hang.
const AGGREGATED_PAGE_DEADLINE: Duration = Duration::from_secs(60);

/// Per-resource tallies.
#[derive(Default)]
pub struct Tally {
    pub stored: u64,
    pub skipped: u64,
    pub example: Option<String>,
    /// The type could not be (fully) listed: objects of this cluster are missing.
    pub error: Option<String>,
    /// An aggregated API could not be listed: its objects live in its own server.
    pub warning: Option<String>,
}

/// Which objects of a type a listing takes.
#[derive(Clone, Copy)]
pub enum Take<'a> {
    /// The selection: label selector, namespace filter, and cluster-scoped objects when the
    /// filter takes them wholesale.
    Selected,
    /// A dependency kind (Namespaces, PersistentVolumes, CRDs, StorageClasses): those the
    /// selection takes (as `Selected`), and those the selected objects need.
    Dependencies(&'a Needs),
}

/// Lists resource types, several at once, into the writer.
pub struct Lists<'a> {
    pub client: &'a Client,
    pub filter: &'a ObjectFilter,
    pub ctx: &'a SkipContext,
    pub upload: &'a ItemUpload,
    pub progress: &'a Progress,
    pub parallelism: usize,
    /// Keys of types served by aggregated APIs.
    pub aggregated: &'a HashSet<String>,
    /// Whether the backup takes what recreates an owned object.
    pub owners: &'a Owners<'a>,
}

impl Lists<'_> {
    /// Lists `records` as `take` says; returns each type's tally and what its objects need.
    pub async fn run(&self, records: &[&ResourceRecord], take: Take<'_>) -> Vec<(String, Tally, Needs)> {
        futures::stream::iter(records)
            .map(|r| async move {
                let (tally, needs) = match take {
                    Take::Selected => self.selected(r).await,
                    Take::Dependencies(needs) => self.dependencies(r, needs).await,
                };
                (r.key(), tally, needs)
            })
            .buffer_unordered(self.parallelism)
            .collect()
            .await
    }

    async fn selected(&self, r: &ResourceRecord) -> (Tally, Needs) {
        let filter = self.filter;
        let take = |obj: &Value| match obj["metadata"]["namespace"].as_str() {
            Some(ns) => filter.namespaces.matches(ns),
            None => filter.all_cluster_scoped(),
        };
        let mut taken = HashSet::new();
        self.list(r, filter.label_selector.as_deref(), &take, &mut taken, false)
            .await
    }

    /// First what the selection itself takes (with the label selector, when cluster-scoped
    /// objects are taken wholesale and the resource filter names this type), then, without
    /// the selector, what it needs: the Namespace
    /// objects of selected namespaces and of namespaces holding selected objects, and (unless
    /// cluster-scoped objects are excluded) the volumes, classes and CRDs they use.
    async fn dependencies(&self, r: &ResourceRecord, needs: &Needs) -> (Tally, Needs) {
        let filter = self.filter;
        let selector = filter.label_selector.as_deref();
        let mut taken = HashSet::new();
        // Wholesale only when cluster-scoped objects are and the resource filter names it.
        let wholesale = filter.all_cluster_scoped() && filter.resources.matches(&r.plural, &r.group);
        let (mut tally, mut found) = if wholesale {
            self.list(r, selector, &|_: &Value| true, &mut taken, true).await
        } else {
            (Tally::default(), Needs::default())
        };
        if wholesale && selector.is_none() {
            return (tally, found);
        }
        let is_namespace = r.group.is_empty() && r.plural == "namespaces";
        if !is_namespace && filter.cluster_scoped == ClusterScoped::Exclude {
            return (tally, found);
        }
        let named = filter.namespaces.is_narrowed();
        let needed = |obj: &Value| {
            needs.needs(&r.group, &r.plural, obj)
                || (is_namespace
                    && named
                    && obj["metadata"]["name"]
                        .as_str()
                        .is_some_and(|n| filter.namespaces.matches(n)))
        };
        let (more, more_needs) = self.list(r, None, &needed, &mut taken, false).await;
        tally.stored += more.stored;
        tally.skipped += more.skipped;
        tally.example = tally.example.or(more.example);
        tally.error = tally.error.or(more.error);
        tally.warning = tally.warning.or(more.warning);
        found.merge(more_needs);
        (tally, found)
    }

    /// Lists one resource type page by page and sends the objects `take` accepts (and that
    /// are not already in `taken`, by `namespace/name`) to the writer; with `remember`, adds
    /// what it sends to `taken`.
    async fn list(
        &self,
        r: &ResourceRecord,
        selector: Option<&str>,
        take: &dyn Fn(&Value) -> bool,
        taken: &mut HashSet<String>,
        remember: bool,
    ) -> (Tally, Needs) {
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &r.api_resource());
        let key = r.key();
        let aggregated = self.aggregated.contains(&key);
        let mut tally = Tally::default();
        let mut needs = Needs::default();
        let mut token: Option<String> = None;
        let mut restarted = false;
        // What this listing added to `taken`, to forget on a restart.
        let mut added: Vec<String> = Vec::new();
        loop {
            let mut params = ListParams::default().limit(PAGE_SIZE);
            if let Some(sel) = selector {
                params = params.labels(sel);
            }
            if let Some(t) = &token {
                params = params.continue_token(t);
            }
            let page = if aggregated {
                match tokio::time::timeout(AGGREGATED_PAGE_DEADLINE, api.list(&params)).await {
                    Ok(r) => r,
                    Err(_) => {
                        tally.warning = Some(format!(
                            "could not list {key}: its aggregated API server gave no answer within {} s",
                            AGGREGATED_PAGE_DEADLINE.as_secs()
                        ));
                        return (tally, needs);
                    }
                }
            } else {
                api.list(&params).await
            };
            let page = match page {
                Ok(page) => page,
                // The continue token expired (410 Gone) mid-listing: list again from the start,
                // forgetting what this listing sent (it is sent again, to the same path) but
                // not what an earlier listing of the type took.
                Err(kube::Error::Api(e)) if e.code == 410 && !restarted => {
                    restarted = true;
                    token = None;
                    tally = Tally::default();
                    needs = Needs::default();
                    for id in added.drain(..) {
                        taken.remove(&id);
                    }
                    continue;
                }
                Err(e) if aggregated => {
                    tally.warning = Some(format!(
                        "could not list {key} from its aggregated API server: {e}; its objects are kept by that server"
                    ));
                    return (tally, needs);
                }
                Err(e) => {
                    tally.error = Some(format!("could not list {key}: {e}"));
                    return (tally, needs);
                }
            };
            self.progress.add_total(0, page.items.len() as u64);
            for obj in page.items {
                self.progress.add_done(0, 1);
                let mut value = match serde_json::to_value(&obj) {
                    Ok(v) => v,
                    Err(e) => {
                        tally.error = Some(format!("could not encode an object: {e}"));
                        continue;
                    }
                };
                drop(obj);
                let ns = value["metadata"]["namespace"].as_str().map(str::to_string);
                let name = value["metadata"]["name"].as_str().unwrap_or_default().to_string();
                let id = match &ns {
                    Some(ns) => format!("{ns}/{name}"),
                    None => name.clone(),
                };
                if taken.contains(&id) || !take(&value) {
                    continue;
                }
                let mut why = skipped_object(&r.plural, &r.group, &value, self.ctx);
                if why.is_none()
                    && recreated_by_owner(&r.plural, &r.group)
                    && let Some(owner) = OwnerRef::of(&value["metadata"])
                {
                    let shown = format!("{} {}", owner.kind, owner.name);
                    if self.owners.recreates(ns.as_deref(), owner).await {
                        why = Some(format!("owned by {shown}, which recreates it"));
                    }
                }
                if let Some(why) = why {
                    tally.skipped += 1;
                    tally.example.get_or_insert_with(|| format!("{id}: {why}"));
                    continue;
                }
                needs.note(&r.group, &r.plural, &value);
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
                if !self.upload.send(path, bytes).await {
                    tally.error = Some("the repository writer stopped".to_string());
                    return (tally, needs);
                }
                if remember && taken.insert(id.clone()) {
                    added.push(id);
                }
                tally.stored += 1;
            }
            token = page.metadata.continue_.filter(|t| !t.is_empty());
            if token.is_none() {
                return (tally, needs);
            }
        }
    }
}
