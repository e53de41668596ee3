//! Which resources the cluster serves, asked group by group with a deadline, so one API whose
//! server is down costs seconds and not the backup.
//!
//! - The core API and the list of groups (`/api/v1`, `/apis`) come from the API server
//!   itself; if they fail, nothing can be backed up and discovery fails.
//! - Every other group version is asked on its own (eight at a time): an aggregated API
//!   (an APIService with `spec.service`) within [`DiscoveryDeadlines::aggregated`], and not
//!   at all when its APIService already says it is unavailable; a group the API server
//!   serves itself within [`DiscoveryDeadlines::local`].
//! - A group version that does not answer is reported in [`Discovered::unavailable`] with
//!   who serves it: an aggregated API keeps its objects in its own server (the backup goes
//!   on without them), a CRD group's objects are in this cluster and are lost to the backup.
//! - Custom resources are read at their CRD's storage version (`spec.versions[].storage`),
//!   not the group's preferred one: with conversion `None` a served version other than the
//!   stored one drops the fields its schema lacks.

mod groups;
mod record;

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use kube::Client;
use kube::api::{Api, ListParams};

pub use groups::{AggregatedApi, CrdVersions, GroupSource, Query, plan};
pub use record::{ResourceRecord, records_from};

use super::ObjectsError;

/// How long one discovery request may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscoveryDeadlines {
    /// A group version served by another server through the aggregation layer (its server
    /// may be down or hanging): 5 s, as kube-aggregator gives its own discovery checks.
    pub aggregated: Duration,
    /// Anything the API server answers itself (built-in groups, CRDs, the group list).
    pub local: Duration,
}

impl Default for DiscoveryDeadlines {
    fn default() -> Self {
        Self {
            aggregated: Duration::from_secs(5),
            local: Duration::from_secs(30),
        }
    }
}

/// A group version discovery could not read, who serves it and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnavailableGroup {
    /// `group/version`.
    pub group_version: String,
    /// Who serves it.
    pub source: GroupSource,
    /// The server's answer, the deadline, or the APIService's `Available` condition.
    pub why: String,
}

impl UnavailableGroup {
    /// Whether the backup misses objects of this cluster because of it: groups the API
    /// server serves itself (built-in, CRDs) keep their objects in this cluster's etcd; an
    /// aggregated API keeps its own.
    pub fn loses_data(&self) -> bool {
        !matches!(self.source, GroupSource::Aggregated { .. })
    }

    /// What happened and what to do, for the Backup's warnings or errors.
    pub fn message(&self) -> String {
        match &self.source {
            GroupSource::Aggregated { apiservice, service } => format!(
                "API group not backed up: its aggregated API server is unavailable (APIService \
                 {apiservice}, Service {service}: {}); the objects it serves are kept by that \
                 server, not in this cluster, and the APIService itself is backed up. Bring \
                 the server back and back up again if you need them",
                self.why
            ),
            GroupSource::Crds(names) => format!(
                "could not discover it ({}): the custom resources of CRD {} were not backed \
                 up; check the API server and back up again",
                self.why,
                names.join(", ")
            ),
            GroupSource::ApiServer => format!(
                "could not discover it ({}): its objects were not backed up; check the API \
                 server and back up again",
                self.why
            ),
        }
    }
}

/// What discovery found.
#[derive(Debug, Clone, Default)]
pub struct Discovered {
    /// The resource types to back up, sorted by key.
    pub resources: Vec<ResourceRecord>,
    /// Group versions that could not be read.
    pub unavailable: Vec<UnavailableGroup>,
    /// Keys of the resource types served by aggregated APIs (their list errors are
    /// warnings, like their discovery errors).
    pub aggregated: HashSet<String>,
    /// Things worth knowing (a CRD read at a version other than its storage version).
    pub notes: Vec<String>,
}

/// Runs `fut` with a deadline; a timeout becomes a message.
async fn within<T>(
    deadline: Duration,
    fut: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(deadline, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} s", deadline.as_secs())),
    }
}

/// The CRDs of the cluster, a page at a time (their schemas can be large).
async fn crds(client: &Client, deadline: Duration) -> Result<Vec<CrdVersions>, String> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut lp = ListParams::default().limit(100);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = within(deadline, api.list(&lp)).await?;
        out.extend(page.items.iter().map(CrdVersions::from_crd));
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            return Ok(out);
        }
    }
}

/// The aggregated APIs of the cluster.
async fn aggregated_apis(client: &Client, deadline: Duration) -> Result<Vec<AggregatedApi>, String> {
    let api: Api<APIService> = Api::all(client.clone());
    let list = within(deadline, api.list(&ListParams::default())).await?;
    Ok(list
        .items
        .iter()
        .filter_map(AggregatedApi::from_apiservice)
        .collect())
}

/// Discovers the resource types a backup can take (listable and creatable), every group
/// version with its own deadline. Fails only when the core API or the group list cannot be
/// read.
pub async fn discover(client: &Client, deadlines: DiscoveryDeadlines) -> Result<Discovered, ObjectsError> {
    let local = deadlines.local;
    let core = within(local, client.list_core_api_resources("v1"))
        .await
        .map_err(|m| ObjectsError::Kube {
            what: "discover the core API (/api/v1)".to_string(),
            message: m,
        })?;
    let groups = within(local, client.list_api_groups())
        .await
        .map_err(|m| ObjectsError::Kube {
            what: "discover API groups (/apis)".to_string(),
            message: m,
        })?;
    let mut found = Discovered {
        resources: records_from(&core, "", "v1"),
        ..Discovered::default()
    };
    let has_group = |name: &str| groups.groups.iter().any(|g| g.name == name);
    let crds = match has_group("apiextensions.k8s.io") {
        true => crds(client, local).await.unwrap_or_else(|e| {
            found.notes.push(format!(
                "could not list CRDs ({e}); custom resources are read at their group's preferred version"
            ));
            Vec::new()
        }),
        false => Vec::new(),
    };
    let aggregated = match has_group("apiregistration.k8s.io") {
        true => aggregated_apis(client, local).await.unwrap_or_else(|e| {
            found.notes.push(format!(
                "could not list APIServices ({e}); aggregated APIs are found by asking them"
            ));
            Vec::new()
        }),
        false => Vec::new(),
    };
    let (queries, notes) = plan(&groups, &crds, &aggregated);
    found.notes.extend(notes);
    let answers: Vec<(Query, Result<Vec<ResourceRecord>, String>)> = futures::stream::iter(queries)
        .map(|q| async move {
            if let Some(why) = &q.known_unavailable {
                let why = format!("its APIService is not Available: {why}");
                return (q, Err(why));
            }
            let deadline = match q.source {
                GroupSource::Aggregated { .. } => deadlines.aggregated,
                _ => deadlines.local,
            };
            let gv = q.group_version();
            let answer = within(deadline, client.list_api_group_resources(&gv))
                .await
                .map(|list| records_from(&list, &q.group, &q.version));
            (q, answer)
        })
        .buffer_unordered(8)
        .collect()
        .await;
    for (q, answer) in answers {
        match answer {
            Ok(records) => {
                let aggregated = matches!(q.source, GroupSource::Aggregated { .. });
                for r in records {
                    if q.only.as_ref().is_some_and(|only| !only.contains(&r.plural)) {
                        continue;
                    }
                    if aggregated {
                        found.aggregated.insert(r.key());
                    }
                    found.resources.push(r);
                }
            }
            Err(why) => found.unavailable.push(UnavailableGroup {
                group_version: q.group_version(),
                source: q.source,
                why,
            }),
        }
    }
    found.resources.sort_by_key(ResourceRecord::key);
    found.resources.dedup_by_key(|r| r.key());
    found
        .unavailable
        .sort_by(|a, b| a.group_version.cmp(&b.group_version));
    Ok(found)
}
