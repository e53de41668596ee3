//! The executor's single step: put one prepared object into the cluster, honouring the
//! existing-resource policy, and say what happened in words a person can act on.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use kube::Client;
use kube::api::{Api, DynamicObject, PostParams};
use serde_json::Value;

use super::compare::{changed_fields, is_subset};
use super::plan::{PlanItem, RestorePlan};
use super::transform::{Rewrite, map_storage_class, prepare};
use super::{RestoreOptions, RestoreOutcome};
use crate::crd::{ExistingResourcePolicy, ItemMessage};
use crate::objects::discover::ResourceRecord;

/// What happened to one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// It was created (or would be, in a dry run).
    Created,
    /// It existed and was changed to match (these fields).
    Updated(Vec<String>),
    /// It existed and already matched.
    Unchanged,
    /// It existed, differed, and the policy left it alone.
    SkippedExisting,
}

impl Applied {
    /// A change-log line, for changes only.
    pub fn describe(&self, item: &str) -> Option<String> {
        match self {
            Self::Created => Some(format!("create {item}")),
            Self::Updated(fields) => Some(format!("update {item}: {}", fields.join("; "))),
            Self::SkippedExisting => Some(format!("skip {item}: exists and differs (policy none)")),
            Self::Unchanged => None,
        }
    }
}

/// Applies objects with one client and one set of options.
pub struct Applier {
    client: Client,
    existing: ExistingResourcePolicy,
    restore_status: bool,
    dry_run: bool,
    mapping: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    storage_classes: BTreeMap<String, String>,
    namespaces_done: Mutex<HashSet<String>>,
}

impl Applier {
    /// An applier for `options`.
    pub fn new(client: Client, options: &RestoreOptions) -> Self {
        Self {
            client,
            existing: options.existing,
            restore_status: options.restore_status,
            dry_run: options.dry_run,
            mapping: options.namespace_mapping.clone(),
            labels: options.labels.clone(),
            storage_classes: options.storage_class_mapping.clone(),
            namespaces_done: Mutex::new(HashSet::new()),
        }
    }

    fn api(&self, record: &ResourceRecord, namespace: Option<&str>) -> Api<DynamicObject> {
        let ar = record.api_resource();
        match namespace {
            Some(ns) if record.namespaced => Api::namespaced_with(self.client.clone(), ns, &ar),
            _ => Api::all_with(self.client.clone(), &ar),
        }
    }

    /// Restores one object.
    pub async fn apply(
        &self,
        record: &ResourceRecord,
        item: &PlanItem,
        value: Value,
    ) -> Result<Applied, String> {
        let rewrite = Rewrite {
            namespace_mapping: &self.mapping,
            labels: &self.labels,
        };
        let (mut desired, status) = prepare(value, record, &rewrite);
        map_storage_class(&mut desired, record, &self.storage_classes);
        let api = self.api(record, item.namespace.as_deref());
        if self.dry_run {
            return match api.get_opt(&item.name).await.map_err(explain)? {
                None => Ok(Applied::Created),
                Some(existing) => Ok(self.compare(&desired, &existing)),
            };
        }
        let obj: DynamicObject =
            serde_json::from_value(desired.clone()).map_err(|e| format!("not a valid object: {e}"))?;
        match api.create(&PostParams::default(), &obj).await {
            Ok(created) => {
                if self.restore_status
                    && let Some(status) = status
                {
                    self.write_status(&api, &created, status).await?;
                }
                Ok(Applied::Created)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => self.existing_object(&api, item, &desired).await,
            Err(e) => Err(explain(e)),
        }
    }

    fn compare(&self, desired: &Value, existing: &DynamicObject) -> Applied {
        let existing = serde_json::to_value(existing).unwrap_or(Value::Null);
        if is_subset(desired, &existing) {
            Applied::Unchanged
        } else if self.existing == ExistingResourcePolicy::Update {
            Applied::Updated(changed_fields(desired, &existing))
        } else {
            Applied::SkippedExisting
        }
    }

    /// The object exists: leave it, or make it match, as the policy says. A concurrent
    /// writer (409 on update) gets one more try with a fresh copy.
    async fn existing_object(
        &self,
        api: &Api<DynamicObject>,
        item: &PlanItem,
        desired: &Value,
    ) -> Result<Applied, String> {
        for _ in 0..2 {
            let existing = api.get(&item.name).await.map_err(explain)?;
            let verdict = self.compare(desired, &existing);
            let Applied::Updated(_) = &verdict else {
                return Ok(verdict);
            };
            let mut update = desired.clone();
            update["metadata"]["resourceVersion"] =
                Value::String(existing.metadata.resource_version.clone().unwrap_or_default());
            let obj: DynamicObject =
                serde_json::from_value(update).map_err(|e| format!("not a valid object: {e}"))?;
            match api.replace(&item.name, &PostParams::default(), &obj).await {
                Ok(_) => return Ok(verdict),
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                Err(e) => return Err(explain(e)),
            }
        }
        Err("it kept changing while being updated (409 Conflict twice); run the restore again".to_string())
    }

    async fn write_status(
        &self,
        api: &Api<DynamicObject>,
        created: &DynamicObject,
        status: Value,
    ) -> Result<(), String> {
        let mut with_status = created.clone();
        with_status.data["status"] = status;
        let name = created.metadata.name.clone().unwrap_or_default();
        api.replace_status(&name, &PostParams::default(), &with_status)
            .await
            .map(|_| ())
            .map_err(|e| format!("created, but its status could not be written: {}", explain(e)))
    }

    /// Creates the namespaces objects will land in that neither exist nor were restored.
    pub async fn ensure_namespaces(&self, plan: &RestorePlan, outcome: &Mutex<RestoreOutcome>) {
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
        for ns in &plan.namespaces {
            if !self
                .namespaces_done
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(ns.clone())
            {
                continue;
            }
            match api.get_opt(ns).await {
                Ok(Some(_)) => continue,
                Ok(None) if self.dry_run => {
                    outcome
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .changes
                        .push(format!("create namespaces/{ns}"));
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    push_error(outcome, format!("namespaces/{ns}"), explain(e));
                    continue;
                }
            }
            let mut obj = k8s_openapi::api::core::v1::Namespace::default();
            obj.metadata.name = Some(ns.clone());
            if !self.labels.is_empty() {
                obj.metadata.labels = Some(self.labels.clone());
            }
            match api.create(&PostParams::default(), &obj).await {
                Ok(_) => {
                    let mut o = outcome.lock().unwrap_or_else(|p| p.into_inner());
                    o.summary.created += 1;
                    o.changes.push(format!("create namespaces/{ns}"));
                }
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => push_error(outcome, format!("namespaces/{ns}"), explain(e)),
            }
        }
    }

    /// Waits (up to a minute) until restored CRDs are Established, so their custom
    /// resources can be created; returns a warning for each that is not.
    pub async fn wait_established(&self, names: &[String]) -> Vec<ItemMessage> {
        use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut pending: Vec<String> = names.to_vec();
        while !pending.is_empty() && tokio::time::Instant::now() < deadline {
            let mut still = Vec::new();
            for name in pending {
                let established = api.get_opt(&name).await.ok().flatten().is_some_and(|crd| {
                    crd.status
                        .and_then(|s| s.conditions)
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Established" && c.status == "True"))
                });
                if !established {
                    still.push(name);
                }
            }
            pending = still;
            if !pending.is_empty() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        pending
            .into_iter()
            .map(|name| ItemMessage {
                item: format!("customresourcedefinitions.apiextensions.k8s.io/{name}"),
                message: "not Established after 60 s; its custom resources may fail to restore".to_string(),
            })
            .collect()
    }
}

fn push_error(outcome: &Mutex<RestoreOutcome>, item: String, message: String) {
    outcome
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .errors
        .push(ItemMessage { item, message });
}

/// The server's answer plus what to do about it.
pub fn explain(e: kube::Error) -> String {
    match e {
        kube::Error::Api(ae) => match ae.code {
            403 => format!(
                "forbidden: {}; grant the restoring identity create/update on this resource",
                ae.message
            ),
            404 => format!(
                "{}; the resource type is not served by this cluster: install its CRD or exclude it",
                ae.message
            ),
            422 => format!("the API server rejected it: {}", ae.message),
            _ => format!("{} ({} {})", ae.message, ae.code, ae.reason),
        },
        other => other.to_string(),
    }
}
