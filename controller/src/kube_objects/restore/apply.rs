//! The executor's single step: put one prepared object into the cluster, honouring the
//! existing-resource policy, and say what happened in words a person can act on.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;
use kube::Client;
use kube::api::{Api, DynamicObject, PostParams};
use serde_json::{Value, json};

use super::compare::{changed_fields, extra_fields, is_subset};
use super::objects_plan::{PlanItem, RestorePlan, Stage};
use super::transform::{Rewrite, bind_claim, map_storage_class, prepare, unbind_claim};
use super::{RestoreOptions, RestoreOutcome, VolumeBinding};
use crate::crd::{ExistingResourcePolicy, ItemMessage};
use crate::kube_objects::discover::ResourceRecord;

/// Creates of one object answered 409 `Conflict` (not `AlreadyExists`) before the restore
/// reports it failed.
const CREATE_CONFLICT_ATTEMPTS: u32 = 5;
/// Pause after the first such answer; the n-th waits n times as long.
const CREATE_CONFLICT_PAUSE: Duration = Duration::from_millis(50);

/// What happened to one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// It was created (or would be, in a dry run).
    Created,
    /// It was created, changed as the note says (a warning).
    CreatedWithNote(String),
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
            Self::CreatedWithNote(note) => Some(format!("create {item} ({note})")),
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
    volume_bindings: BTreeMap<(String, String), VolumeBinding>,
    /// Volumes not restored (see `objects_plan::volumes_without_data`): claims bound to them
    /// are restored unbound.
    without_data: BTreeSet<String>,
    namespaces_done: Mutex<HashSet<String>>,
    /// Target namespaces found Terminating: nothing can be created in them.
    terminating: Mutex<HashSet<String>>,
}

impl Applier {
    /// An applier for `options`.
    pub fn new(
        client: Client,
        options: &RestoreOptions,
        without_data: &BTreeMap<String, Option<(String, String)>>,
    ) -> Self {
        Self {
            client,
            existing: options.existing,
            restore_status: options.restore_status,
            dry_run: options.dry_run,
            mapping: options.namespace_mapping.clone(),
            labels: options.labels.clone(),
            storage_classes: options.storage_class_mapping.clone(),
            volume_bindings: options.volume_bindings.clone(),
            without_data: without_data.keys().cloned().collect(),
            namespaces_done: Mutex::new(HashSet::new()),
            terminating: Mutex::new(HashSet::new()),
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
        item: &PlanItem<'_>,
        value: Value,
    ) -> Result<Applied, String> {
        let rewrite = Rewrite {
            namespace_mapping: &self.mapping,
            labels: &self.labels,
            restore_status: self.restore_status,
        };
        let (mut desired, status) = prepare(value, record, &rewrite);
        map_storage_class(&mut desired, record, &self.storage_classes);
        if record.group.is_empty()
            && record.plural == "persistentvolumeclaims"
            && let Some(ns) = item.source.namespace.as_deref()
            && let Some(volume) = self
                .volume_bindings
                .get(&(ns.to_string(), item.name().to_string()))
                .and_then(|b| b.volume.as_deref())
        {
            bind_claim(&mut desired, volume);
        } else if record.group.is_empty()
            && record.plural == "persistentvolumeclaims"
            && desired["spec"]["volumeName"]
                .as_str()
                .is_some_and(|v| self.without_data.contains(v))
        {
            unbind_claim(&mut desired);
        }
        let note = self.unbind_if_held_elsewhere(record, item, &mut desired).await;
        let want = Desired {
            body: &desired,
            status: status.as_ref(),
        };
        let api = self.api(record, item.namespace.as_deref());
        if let Some(ns) = item.namespace.as_deref().filter(|ns| self.is_terminating(ns)) {
            // Only existing objects can still be updated there.
            return match api.get_opt(item.name()).await.map_err(explain)? {
                Some(existing) if self.dry_run => Ok(self.compare(item, &want, &existing)),
                Some(_) => self.existing_object(&api, item, &want).await,
                None => Err(terminating(ns, item)),
            };
        }
        let made = || match note.clone() {
            Some(note) => Applied::CreatedWithNote(note),
            None => Applied::Created,
        };
        if self.dry_run {
            return match api.get_opt(item.name()).await.map_err(explain)? {
                None => Ok(made()),
                Some(existing) => Ok(self.compare(item, &want, &existing)),
            };
        }
        let mut conflicts = 0;
        let created = loop {
            match self.create(&api, &desired).await {
                // A 409 that is not AlreadyExists (a Conflict: the create lost a race inside
                // the API server, e.g. on a ResourceQuota's usage) created nothing: unless the
                // object is there after all, create it again.
                Err(kube::Error::Api(e)) if e.code == 409 && e.reason != "AlreadyExists" => {
                    if api.get_opt(item.name()).await.map_err(explain)?.is_some() {
                        break Err(kube::Error::Api(e));
                    }
                    conflicts += 1;
                    if conflicts >= CREATE_CONFLICT_ATTEMPTS {
                        return Err(format!(
                            "the API server answered {} {} to each of {CREATE_CONFLICT_ATTEMPTS} creates ({}) and \
                             the object does not exist; run the restore again",
                            e.code, e.reason, e.message
                        ));
                    }
                    tokio::time::sleep(CREATE_CONFLICT_PAUSE * conflicts).await;
                }
                other => break other,
            }
        };
        match created {
            Ok(()) => {
                if let Some(status) = &status {
                    self.write_status(&api, item.name(), status)
                        .await
                        .map_err(|e| format!("created, but its status could not be written: {e}"))?;
                }
                Ok(made())
            }
            Err(kube::Error::Api(e)) if e.code == 409 => self.existing_object(&api, item, &want).await,
            // The API server checks a fixed node port before it finds the name taken: the
            // Service may be there already, holding that very port.
            Err(kube::Error::Api(e))
                if e.code == 422 && e.message.contains("provided port is already allocated") =>
            {
                match api.get_opt(item.name()).await.map_err(explain)? {
                    Some(_) => self.existing_object(&api, item, &want).await,
                    // Another Service holds the port here. Ports the user set (kubectl
                    // apply's last-applied configuration names them; a load balancer outside
                    // may point at them) are kept, and the Service fails; ports the source's
                    // API server had assigned are assigned anew, as Velero does.
                    None if sets_node_ports(&desired) => Err(format!(
                        "the API server rejected it: {}; another Service holds that node port, which \
                         this Service sets explicitly: free it, or restore into another namespace \
                         with --namespace-mapping (a copy gives up its node ports)",
                        e.message
                    )),
                    None => {
                        let mut fresh = desired.clone();
                        let ports = strip_node_ports(&mut fresh);
                        match self.create(&api, &fresh).await {
                            Ok(()) => {}
                            Err(kube::Error::Api(e2)) if e2.code == 409 => {
                                return self.existing_object(&api, item, &want).await;
                            }
                            Err(e2) => {
                                return Err(format!(
                                    "the API server rejected it: {}; and without its node ports: {}",
                                    e.message,
                                    explain(e2)
                                ));
                            }
                        }
                        if let Some(status) = &status {
                            self.write_status(&api, item.name(), status)
                                .await
                                .map_err(|e| format!("created, but its status could not be written: {e}"))?;
                        }
                        Ok(Applied::CreatedWithNote(format!(
                            "node port(s) {ports}, which the API server had assigned, are held by another \
                             Service in this cluster: restored with node ports it assigned anew"
                        )))
                    }
                }
            }
            Err(kube::Error::Api(e)) if is_namespace_terminating(&e) => {
                let ns = item.namespace.as_deref().unwrap_or_default().to_string();
                self.terminating
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(ns.clone());
                Err(terminating(&ns, item))
            }
            Err(e) => Err(explain(e)),
        }
    }

    /// POSTs `body` as it is (no round trip through a typed object), reading nothing of the
    /// answer but its status: a restore creates many objects, and each conversion costs.
    async fn create(&self, api: &Api<DynamicObject>, body: &Value) -> Result<(), kube::Error> {
        let bytes = serde_json::to_vec(body).map_err(kube::Error::SerdeError)?;
        let req = kube::core::Request::new(api.resource_url())
            .create(&PostParams::default(), bytes)
            .map_err(kube::Error::BuildRequest)?;
        self.client
            .request::<serde::de::IgnoredAny>(req)
            .await
            .map(|_| ())
    }

    fn is_terminating(&self, ns: &str) -> bool {
        self.terminating
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(ns)
    }

    /// A claim that names a PersistentVolume this cluster has bound to another claim (a copy
    /// restored beside its original, `--namespace-mapping` in the same cluster) could never
    /// bind: it is restored unbound, for its class to provision a new (empty) volume, and the
    /// returned note says so.
    async fn unbind_if_held_elsewhere(
        &self,
        record: &ResourceRecord,
        item: &PlanItem<'_>,
        desired: &mut Value,
    ) -> Option<String> {
        if !(record.group.is_empty() && record.plural == "persistentvolumeclaims") {
            return None;
        }
        let volume = desired["spec"]["volumeName"].as_str()?.to_string();
        let volumes: Api<DynamicObject> = Api::all_with(
            self.client.clone(),
            &kube::api::ApiResource::erase::<k8s_openapi::api::core::v1::PersistentVolume>(&()),
        );
        // A volume that cannot be read (no right to get PersistentVolumes: a namespace
        // admin's restore) is left named, as before this check.
        let pv = volumes.get_opt(&volume).await.ok()??;
        let claim_ref = &pv.data["spec"]["claimRef"];
        let (ns, name) = (claim_ref["namespace"].as_str()?, claim_ref["name"].as_str()?);
        if Some(ns) == item.namespace.as_deref() && name == item.name() {
            return None;
        }
        unbind_claim(desired);
        Some(format!(
            "PersistentVolume {volume} is bound to claim {ns}/{name} in this cluster: restored unbound, \
             for its StorageClass to provision a new (empty) volume"
        ))
    }

    /// What the existing object is, given what the backup wants: unchanged if every field
    /// the backup sets (with `restoreStatus`, status too) matches and the object has gained
    /// no field where only users put them ([`extra_fields`]). An object only brought
    /// along ([`PlanItem::brought_along`]) is the target's own when it exists: never updated.
    fn compare(&self, item: &PlanItem<'_>, want: &Desired<'_>, existing: &DynamicObject) -> Applied {
        let existing = serde_json::to_value(existing).unwrap_or(Value::Null);
        let full = want.full();
        let extra = extra_fields(&item.source.key, &full, &existing);
        if is_subset(&full, &existing) && extra.is_empty() {
            Applied::Unchanged
        } else if self.existing == ExistingResourcePolicy::Update && !item.brought_along {
            let mut changes = changed_fields(&full, &existing);
            changes.extend(extra);
            Applied::Updated(changes)
        } else {
            Applied::SkippedExisting
        }
    }

    /// The object exists: leave it, or make it match, as the policy says (the object, then
    /// its status through the status subresource). A concurrent writer (409 on update) gets
    /// one more try with a fresh copy.
    async fn existing_object(
        &self,
        api: &Api<DynamicObject>,
        item: &PlanItem<'_>,
        want: &Desired<'_>,
    ) -> Result<Applied, String> {
        for _ in 0..2 {
            let existing = api.get(item.name()).await.map_err(explain)?;
            let verdict = self.compare(item, want, &existing);
            let Applied::Updated(_) = &verdict else {
                return Ok(verdict);
            };
            if self.dry_run {
                return Ok(verdict);
            }
            let current = serde_json::to_value(&existing).unwrap_or(Value::Null);
            let extras = extra_fields(&item.source.key, want.body, &current);
            let only_extras = is_subset(&want.full(), &current);
            let mut latest = current;
            if !is_subset(want.body, &latest) || !extras.is_empty() {
                let mut update = want.body.clone();
                update["metadata"]["resourceVersion"] =
                    Value::String(existing.metadata.resource_version.clone().unwrap_or_default());
                let obj: DynamicObject =
                    serde_json::from_value(update).map_err(|e| format!("not a valid object: {e}"))?;
                match api.replace(item.name(), &PostParams::default(), &obj).await {
                    Ok(updated) => latest = serde_json::to_value(&updated).unwrap_or(Value::Null),
                    Err(kube::Error::Api(e)) if e.code == 409 => continue,
                    Err(e) => return Err(explain(e)),
                }
                // Fields only the server puts back (a default the backup's older server did
                // not have) were never the user's: the object matched.
                if only_extras && extra_fields(&item.source.key, want.body, &latest) == extras {
                    return Ok(Applied::Unchanged);
                }
            }
            if let Some(status) = want.status
                && !is_subset(&json!({"status": status}), &latest)
            {
                self.write_status(api, item.name(), status)
                    .await
                    .map_err(|e| format!("updated, but its status could not be written: {e}"))?;
            }
            return Ok(verdict);
        }
        Err("it kept changing while being updated (409 Conflict twice); run the restore again".to_string())
    }

    /// Writes `status` through the status subresource: the object as it is now, with the
    /// backup's status, replaced (the `update` verb on `*/status`, which the chart's restore
    /// rule grants; a merge patch would need `patch` on every resource). A concurrent writer
    /// (409) gets one more try with a fresh copy.
    async fn write_status(&self, api: &Api<DynamicObject>, name: &str, status: &Value) -> Result<(), String> {
        for _ in 0..2 {
            let mut current = api.get(name).await.map_err(explain)?;
            current.data["status"] = status.clone();
            match api.replace_status(name, &PostParams::default(), &current).await {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                Err(e) => return Err(explain(e)),
            }
        }
        Err(
            "it kept changing while its status was written (409 Conflict twice); run the restore again"
                .to_string(),
        )
    }

    /// Creates the namespaces objects will land in that neither exist nor were restored, and
    /// notes those that are Terminating. A dry run created none of the plan's Namespace
    /// objects but listed them already: their creation is not listed again.
    pub async fn ensure_namespaces(&self, plan: &RestorePlan<'_>, outcome: &Mutex<RestoreOutcome>) {
        let planned: HashSet<&str> = plan
            .stages
            .iter()
            .filter(|(stage, _)| self.dry_run && *stage == Stage::Namespaces)
            .flat_map(|(_, items)| items.iter().map(PlanItem::name))
            .collect();
        let fresh: Vec<&String> = plan
            .namespaces
            .iter()
            .filter(|ns| {
                self.namespaces_done
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert((*ns).clone())
            })
            .collect();
        futures::stream::iter(fresh)
            .for_each_concurrent(32, |ns| {
                self.ensure_namespace(ns, planned.contains(ns.as_str()), outcome)
            })
            .await;
    }

    /// Creates namespace `ns` unless it exists; notes it if it is Terminating. A dry run lists
    /// its creation unless `listed` (the plan's Namespace object listed it already).
    async fn ensure_namespace(&self, ns: &str, listed: bool, outcome: &Mutex<RestoreOutcome>) {
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
        match api.get_opt(ns).await {
            Ok(Some(existing)) => {
                if existing.metadata.deletion_timestamp.is_some() {
                    self.terminating
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(ns.to_string());
                }
                return;
            }
            Ok(None) if self.dry_run => {
                if !listed {
                    outcome
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .changes
                        .push(format!("create namespaces/{ns}"));
                }
                return;
            }
            Ok(None) => {}
            Err(e) => {
                push_error(outcome, format!("namespaces/{ns}"), explain(e));
                return;
            }
        }
        let mut obj = k8s_openapi::api::core::v1::Namespace::default();
        obj.metadata.name = Some(ns.to_string());
        if !self.labels.is_empty() {
            obj.metadata.labels = Some(self.labels.clone());
        }
        let mut conflicts = 0;
        loop {
            match api.create(&PostParams::default(), &obj).await {
                Ok(_) => {
                    let mut o = outcome.lock().unwrap_or_else(|p| p.into_inner());
                    o.summary.created += 1;
                    o.changes.push(format!("create namespaces/{ns}"));
                }
                // Made meanwhile (by a concurrent restore, or an earlier attempt).
                Err(kube::Error::Api(e)) if e.code == 409 && e.reason == "AlreadyExists" => {}
                // A Conflict created nothing (as for objects, see `apply`): try again.
                Err(kube::Error::Api(e)) if e.code == 409 && conflicts + 1 < CREATE_CONFLICT_ATTEMPTS => {
                    conflicts += 1;
                    tokio::time::sleep(CREATE_CONFLICT_PAUSE * conflicts).await;
                    continue;
                }
                Err(e) => push_error(outcome, format!("namespaces/{ns}"), explain(e)),
            }
            return;
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

/// What the backup wants an object to be.
struct Desired<'a> {
    /// The object to create or replace.
    body: &'a Value,
    /// Its status, written through the status subresource afterwards.
    status: Option<&'a Value>,
}

impl Desired<'_> {
    /// The object as it should read back, status included.
    fn full(&self) -> Value {
        let mut full = self.body.clone();
        if let Some(s) = self.status {
            full["status"] = s.clone();
        }
        full
    }
}

/// Whether a Service's node ports were set by its user rather than assigned by the API
/// server: its `kubectl.kubernetes.io/last-applied-configuration` names one (as Velero tells
/// them apart). Without that annotation they count as assigned.
fn sets_node_ports(obj: &Value) -> bool {
    obj.pointer("/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration")
        .and_then(Value::as_str)
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
        .and_then(|applied| applied.pointer("/spec/ports").and_then(Value::as_array).cloned())
        .is_some_and(|ports| {
            ports
                .iter()
                .any(|p| p.get("nodePort").is_some_and(|n| !n.is_null()))
        })
}

/// Removes a Service's node ports; returns them, comma-separated.
fn strip_node_ports(obj: &mut Value) -> String {
    let mut taken = Vec::new();
    if let Some(ports) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            if let Some(port) = p.remove("nodePort") {
                taken.push(port.to_string());
            }
        }
    }
    taken.join(", ")
}

/// Whether the API server refused a create because the namespace is being deleted (the
/// NamespaceLifecycle admission plugin's 403 with the `NamespaceTerminating` cause).
fn is_namespace_terminating(e: &kube::core::Status) -> bool {
    e.code == 403
        && (e
            .details
            .as_ref()
            .is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating"))
            || e.message.contains("because it is being terminated"))
}

/// The error for an object whose target namespace is being deleted.
fn terminating(ns: &str, item: &PlanItem<'_>) -> String {
    let from = item.source.namespace.as_deref().unwrap_or(ns);
    format!(
        "namespace {ns} is being deleted (Terminating): the API server refuses new objects in it \
         until the deletion finishes; wait until the namespace is gone and restore again, or \
         restore into another namespace with --namespace-mapping {from}:NEW-NAME \
         (spec.namespaceMapping)"
    )
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
            403 if is_namespace_terminating(&ae) => format!(
                "forbidden: {}; the namespace is being deleted: wait until it is gone, or restore \
                 into another namespace with --namespace-mapping",
                ae.message
            ),
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
