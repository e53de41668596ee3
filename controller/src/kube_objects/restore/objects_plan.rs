//! The restore plan: which objects, in which stage, under which namespace. A plain function
//! of the snapshot's listing and the options, so tests and `--dry-run` see exactly what the
//! executor will do.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use lifeboat_backup::blob::BlobId;
use serde_json::Value;

use super::RestoreOptions;
use super::listing::Listed;
use crate::kube_objects::ObjectsError;
use crate::kube_objects::discover::ResourceRecord;
use crate::kube_objects::needs::{Needs, dependency_order, is_builtin_group};

/// Restore stages, in order: each one's objects are created (in parallel) before the next
/// stage starts, so what an object refers to exists first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// CustomResourceDefinitions, then wait until Established.
    Crds,
    /// Namespaces (and any the mapping or the objects need).
    Namespaces,
    /// StorageClasses.
    StorageClasses,
    /// PersistentVolumes.
    PersistentVolumes,
    /// PersistentVolumeClaims.
    PersistentVolumeClaims,
    /// ServiceAccounts, Secrets, ConfigMaps, LimitRanges, ResourceQuotas.
    Config,
    /// Roles, ClusterRoles and their bindings.
    Rbac,
    /// Services.
    Services,
    /// Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs, Pods.
    Workloads,
    /// Every other built-in resource.
    Other,
    /// Custom resources, once their CRDs are served.
    Custom,
    /// Admission control (Validating/MutatingWebhookConfigurations, ValidatingAdmissionPolicies
    /// and their bindings), after everything else: the objects were admitted once already, and
    /// in a disaster a webhook's server is down and would refuse them.
    AdmissionControl,
}

/// The stage a resource belongs to.
pub fn stage_of(group: &str, plural: &str) -> Stage {
    match (group, plural) {
        ("apiextensions.k8s.io", "customresourcedefinitions") => Stage::Crds,
        ("", "namespaces") => Stage::Namespaces,
        ("storage.k8s.io", "storageclasses") => Stage::StorageClasses,
        ("", "persistentvolumes") => Stage::PersistentVolumes,
        ("", "persistentvolumeclaims") => Stage::PersistentVolumeClaims,
        ("", "serviceaccounts" | "secrets" | "configmaps" | "limitranges" | "resourcequotas") => {
            Stage::Config
        }
        ("rbac.authorization.k8s.io", _) => Stage::Rbac,
        ("", "services") => Stage::Services,
        ("apps", _) | ("batch", _) | ("", "pods" | "replicationcontrollers") => Stage::Workloads,
        ("admissionregistration.k8s.io", _) => Stage::AdmissionControl,
        (g, _) if is_builtin_group(g) => Stage::Other,
        _ => Stage::Custom,
    }
}

/// One object to restore: an object of the backup's [`Listing`](super::listing::Listing),
/// borrowed, and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanItem<'a> {
    /// The object in the backup.
    pub source: &'a Listed,
    /// The namespace it goes to (after mapping), shared by the objects going there.
    pub namespace: Option<Arc<str>>,
    /// Its new name, when it gets one (a mapped Namespace).
    pub renamed: Option<Arc<str>>,
    /// Restored only because selected objects need it (a StorageClass or PersistentVolume
    /// of a claim, a CRD, a Namespace the resource filter leaves out), not because the
    /// restore selects it: created when missing, and an existing one is the target's own,
    /// left as it is whatever the existing-resource policy (a failover must not rewrite the
    /// target's StorageClass with the source's pool, which is immutable anyway).
    pub brought_along: bool,
}

impl PlanItem<'_> {
    /// The name it gets.
    pub fn name(&self) -> &str {
        self.renamed.as_deref().unwrap_or(&self.source.name)
    }

    /// Its blob.
    pub fn blob(&self) -> BlobId {
        self.source.blob
    }

    /// `resource/namespace/name` as restored, for messages.
    pub fn display(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{}/{}/{}", self.source.key, ns, self.name()),
            None => format!("{}/{}", self.source.key, self.name()),
        }
    }
}

/// The whole plan, borrowing the listing it was made from.
#[derive(Debug, Clone, Default)]
pub struct RestorePlan<'a> {
    /// Stages in order, each with its objects.
    pub stages: Vec<(Stage, Vec<PlanItem<'a>>)>,
    /// Namespaces the restored objects live in (created if missing).
    pub namespaces: BTreeSet<String>,
    /// Objects left out by the filters.
    pub filtered: u64,
}

impl RestorePlan<'_> {
    /// Objects to restore.
    pub fn len(&self) -> usize {
        self.stages.iter().map(|(_, items)| items.len()).sum()
    }

    /// True when nothing is to be restored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// True for a valid namespace name (an RFC 1123 label).
pub fn valid_namespace(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// What a restore narrowed to some namespaces takes from the cluster scope besides their
/// Namespace objects and the CRDs of their custom resources (both known from paths): the
/// PersistentVolumes bound to their claims and the StorageClasses of both, which only the
/// objects' content says. See [`dependency_sources`] and [`dependencies`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dependencies {
    /// PersistentVolume names.
    pub volumes: BTreeSet<String>,
    /// StorageClass names.
    pub storage_classes: BTreeSet<String>,
    /// PersistentVolumes not restored because the backup holds no data of them and their
    /// reclaim policy is `Delete` (see [`volumes_without_data`]), with the claim each was
    /// bound to.
    pub without_data: BTreeMap<String, Option<(String, String)>>,
}

/// The objects whose content decides [`Dependencies`]: every PersistentVolume, and the
/// selected namespaces' PersistentVolumeClaims unless volumes and classes are restored
/// wholesale anyway.
pub fn dependency_sources<'a>(
    listing: &'a [Listed],
    resources: &HashMap<String, ResourceRecord>,
    options: &RestoreOptions,
) -> Vec<&'a Listed> {
    // A label selector takes volumes and classes only as its claims need them.
    let wholesale = |group: &str, plural: &str| {
        options.cluster_scoped && options.label_selector.is_none() && options.resources.matches(plural, group)
    };
    let claims_needed =
        !(wholesale("", "persistentvolumes") && wholesale("storage.k8s.io", "storageclasses"));
    listing
        .iter()
        .filter(|l| {
            resources.get(&*l.key).is_some_and(|r| {
                r.group.is_empty()
                    && match (l.namespace.as_deref(), r.plural.as_str()) {
                        (Some(ns), "persistentvolumeclaims") => {
                            claims_needed && options.namespaces.matches(ns)
                        }
                        (None, "persistentvolumes") => true,
                        _ => false,
                    }
            })
        })
        .collect()
}

/// [`Dependencies`] from the content of the [`dependency_sources`]: volumes bound to the
/// claims, classes named by the claims and those volumes.
pub fn dependencies(claims: &[Value], volumes: &[Value]) -> Dependencies {
    let mut needs = Needs::default();
    for c in claims {
        needs.note("", "persistentvolumeclaims", c);
    }
    let mut out = Dependencies::default();
    for v in volumes {
        if needs.needs("", "persistentvolumes", v) {
            needs.note("", "persistentvolumes", v);
            if let Some(name) = v["metadata"]["name"].as_str() {
                out.volumes.insert(name.to_string());
            }
        }
    }
    out.storage_classes = needs.storage_classes;
    out
}

/// Checks what can be checked of the options before anything is read or written: every
/// namespace mapping names a valid namespace, every label to add is one the API server takes
/// (else every object would be refused, one by one).
pub fn check_options(options: &RestoreOptions) -> Result<(), ObjectsError> {
    for (key, value) in &options.labels {
        label_problem(key, value).map_or(Ok(()), |why| {
            Err(ObjectsError::Invalid(format!("label {key}={value}: {why}")))
        })?;
    }
    for (from, to) in &options.namespace_mapping {
        if !valid_namespace(to) {
            return Err(ObjectsError::Invalid(format!(
                "namespace mapping {from}:{to}: `{to}` is not a valid namespace name \
                 (lowercase letters, digits and '-', at most 63, starting and ending with a letter or digit)"
            )));
        }
    }
    Ok(())
}

/// Why `key=value` is not a Kubernetes label, as the API server's validation would say
/// (`IsQualifiedName` for the key, `IsValidLabelValue` for the value), or `None`.
pub fn label_problem(key: &str, value: &str) -> Option<String> {
    // Names and values: at most 63 of [A-Za-z0-9-_.], beginning and ending alphanumeric.
    let name_like = |s: &str| {
        s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && s.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
    };
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && !crate::reconcile::backup_sync::valid_name(prefix)
    {
        return Some(format!(
            "the key's prefix {prefix:?} is not a DNS subdomain (lowercase letters, digits, '-' and '.', at most 253)"
        ));
    }
    if !name_like(name) {
        return Some(format!(
            "the key's name {name:?} must be 1 to 63 of letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
        ));
    }
    if !value.is_empty() && !name_like(value) {
        return Some(
            "the value must be empty or at most 63 of letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
                .to_string(),
        );
    }
    None
}

/// The PersistentVolumes a restore must not recreate: reclaim policy `Delete`, and no data of
/// them restored (no volume binding replaces them). Recreated, such a volume names the image
/// or disk it was made for — in a cluster sharing the storage, the one the original still uses
/// — and deleting its claim would delete that (Velero skips them likewise). Their claims are
/// restored unbound, for their class to provision anew. Each maps to the claim it was bound to.
pub fn volumes_without_data(
    volumes: &[Value],
    options: &RestoreOptions,
) -> BTreeMap<String, Option<(String, String)>> {
    let replaced: BTreeSet<&str> = options
        .volume_bindings
        .values()
        .filter_map(|b| b.replaces.as_deref())
        .collect();
    volumes
        .iter()
        .filter(|v| v["spec"]["persistentVolumeReclaimPolicy"].as_str() == Some("Delete"))
        .filter_map(|v| {
            let name = v["metadata"]["name"].as_str()?;
            let claim = &v["spec"]["claimRef"];
            let bound = match (claim["namespace"].as_str(), claim["name"].as_str()) {
                (Some(ns), Some(c)) => Some((ns.to_string(), c.to_string())),
                _ => None,
            };
            (!replaced.contains(name)).then(|| (name.to_string(), bound))
        })
        .collect()
}

/// Computes the plan. Besides the selected objects, a restore takes what they need, as a
/// backup does, whatever the resource filter's inclusions say (but not what it excludes by
/// name): the Namespace objects they live in, the CRDs of their custom resources, and the
/// volumes and classes in `deps`. Cluster-scoped objects are otherwise taken only when
/// `cluster_scoped` (no namespace filter) and the resource filter names them.
pub fn plan<'a>(
    listing: &'a [Listed],
    resources: &HashMap<String, ResourceRecord>,
    options: &RestoreOptions,
    deps: &Dependencies,
) -> Result<RestorePlan<'a>, ObjectsError> {
    check_options(options)?;
    // Each namespace's name after mapping, made once and shared by its objects.
    let mut mapped: HashMap<&'a str, Arc<str>> = HashMap::new();
    let mut map_ns = |ns: &'a str| -> Arc<str> {
        mapped
            .entry(ns)
            .or_insert_with(|| Arc::from(options.namespace_mapping.get(ns).map_or(ns, String::as_str)))
            .clone()
    };
    let known = || listing.iter().filter_map(|l| Some((l, resources.get(&*l.key)?)));
    // The selected namespaced objects: their namespaces and the CRDs of their custom resources.
    let selected = || {
        known().filter(|(l, r)| {
            l.namespace
                .as_deref()
                .is_some_and(|ns| options.namespaces.matches(ns))
                && options.resources.matches(&r.plural, &r.group)
        })
    };
    let crds: BTreeSet<&str> = selected()
        .filter(|(_, r)| !is_builtin_group(&r.group))
        .map(|(l, _)| &*l.key)
        .collect();
    let holding: BTreeSet<&str> = selected().filter_map(|(l, _)| l.namespace.as_deref()).collect();
    let needed = |l: &Listed, record: &ResourceRecord| {
        if options.resources.excludes(&record.plural, &record.group) {
            return false;
        }
        match (record.group.as_str(), record.plural.as_str()) {
            ("", "namespaces") => holding.contains(&*l.name),
            ("apiextensions.k8s.io", "customresourcedefinitions") => crds.contains(&*l.name),
            ("", "persistentvolumes") => deps.volumes.contains(&*l.name),
            // A class mapped to another is not brought along: the target has its own.
            ("storage.k8s.io", "storageclasses") => {
                deps.storage_classes.contains(&*l.name)
                    && !options.storage_class_mapping.contains_key(&*l.name)
            }
            _ => false,
        }
    };
    // Volumes whose claims' data the volume restore handled are not restored themselves, nor
    // are the claims it withheld (their data could not be written, or they exist).
    let replaced: BTreeSet<&str> = options
        .volume_bindings
        .values()
        .filter_map(|b| b.replaces.as_deref())
        .collect();
    let withheld = |l: &Listed| {
        l.namespace.as_deref().is_some_and(|ns| {
            options
                .volume_bindings
                .get(&(ns.to_string(), l.name.to_string()))
                .is_some_and(|b| b.volume.is_none())
        })
    };
    let mut stages: BTreeMap<Stage, Vec<PlanItem<'a>>> = BTreeMap::new();
    let mut namespaces = BTreeSet::new();
    let mut filtered = 0;
    for (l, record) in known() {
        let handled = match (l.namespace.is_some(), record.plural.as_str()) {
            (false, "persistentvolumes") => {
                replaced.contains(&*l.name) || deps.without_data.contains_key(&*l.name)
            }
            (true, "persistentvolumeclaims") => withheld(l),
            _ => false,
        };
        if record.group.is_empty() && handled {
            continue;
        }
        let is_namespace = record.group.is_empty() && record.plural == "namespaces";
        let named = options.resources.matches(&record.plural, &record.group);
        let dependency = dependency_order(&record.group, &record.plural).is_some();
        // Covered, and whether only as something the selected objects need.
        let (covered, brought_along) = match (l.namespace.as_deref(), is_namespace) {
            (Some(ns), _) => (options.namespaces.matches(ns) && named, false),
            // An object a label selector did not match comes only as something needed.
            (None, true) => (
                options.namespaces.matches(&l.name) && ((named && !l.unselected) || needed(l, record)),
                !named || l.unselected,
            ),
            (None, false) if options.cluster_scoped && named && !l.unselected => (true, false),
            (None, false) => (dependency && needed(l, record), true),
        };
        if !covered {
            filtered += 1;
            continue;
        }
        let namespace = l.namespace.as_deref().map(&mut map_ns);
        let renamed = Some(&*l.name)
            .filter(|_| is_namespace)
            .map(&mut map_ns)
            .filter(|n| **n != *l.name);
        if let Some(ns) = &namespace
            && !namespaces.contains(&**ns)
        {
            namespaces.insert(ns.to_string());
        }
        stages
            .entry(stage_of(&record.group, &record.plural))
            .or_default()
            .push(PlanItem {
                source: l,
                namespace,
                renamed,
                brought_along,
            });
    }
    let mut stages: Vec<(Stage, Vec<PlanItem<'a>>)> = stages.into_iter().collect();
    for (_, items) in &mut stages {
        items.shrink_to_fit();
    }
    Ok(RestorePlan {
        stages,
        namespaces,
        filtered,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_checked_as_the_api_server_checks_them() {
        for (k, v) in [
            ("app", "web"),
            ("app.kubernetes.io/name", "my_app-1.2"),
            ("a-b.c0/k", "v"),
            ("restored", ""),
            ("x", &"a".repeat(63)),
        ] {
            assert_eq!(label_problem(k, v), None, "{k}={v}");
        }
        for (k, v) in [
            ("", "x"),
            ("-app", "x"),
            ("app", "-x"),
            ("app", "x y"),
            ("app", "line\nbreak"),
            ("Example.COM/app", "x"),
            ("/app", "x"),
            ("a..com/k", "v"),
            ("a.-b.com/k", "v"),
            ("a-.com/k", "v"),
            ("a/b/c", "x"),
            ("app", &"a".repeat(64)),
        ] {
            assert!(label_problem(k, v).is_some(), "{k:?}={v:?} accepted");
        }
    }
    use crate::kube_objects::restore::listing::Listing;
    use lifeboat_backup::snapshot::Node;

    #[test]
    fn stages_follow_dependencies() {
        assert!(stage_of("apiextensions.k8s.io", "customresourcedefinitions") < stage_of("", "namespaces"));
        assert!(stage_of("", "namespaces") < stage_of("", "persistentvolumes"));
        assert!(stage_of("", "persistentvolumeclaims") < stage_of("", "secrets"));
        assert!(stage_of("", "secrets") < stage_of("rbac.authorization.k8s.io", "rolebindings"));
        assert!(stage_of("", "services") < stage_of("apps", "deployments"));
        assert!(stage_of("apps", "deployments") < stage_of("networking.k8s.io", "ingresses"));
        assert_eq!(stage_of("example.com", "widgets"), Stage::Custom);
    }

    fn record(group: &str, plural: &str, namespaced: bool) -> ResourceRecord {
        ResourceRecord {
            group: group.to_string(),
            version: "v1".to_string(),
            kind: "K".to_string(),
            plural: plural.to_string(),
            namespaced,
            status_subresource: false,
            singular: String::new(),
            short_names: Vec::new(),
        }
    }

    fn node(path: &str) -> Node {
        Node::stream(
            path,
            1,
            vec![BlobId::of(path.as_bytes())],
            chrono::DateTime::UNIX_EPOCH,
        )
    }

    fn listing() -> (Vec<Listed>, HashMap<String, ResourceRecord>) {
        let records = [
            record("", "namespaces", false),
            record("", "configmaps", true),
            record("", "persistentvolumeclaims", true),
            record("", "persistentvolumes", false),
            record("storage.k8s.io", "storageclasses", false),
            record("apiextensions.k8s.io", "customresourcedefinitions", false),
            record("example.com", "widgets", true),
            record("example.com", "gadgets", true),
            record("rbac.authorization.k8s.io", "clusterroles", false),
            record(
                "admissionregistration.k8s.io",
                "validatingwebhookconfigurations",
                false,
            ),
            record(
                "admissionregistration.k8s.io",
                "mutatingwebhookconfigurations",
                false,
            ),
            record(
                "admissionregistration.k8s.io",
                "validatingadmissionpolicybindings",
                false,
            ),
        ];
        let nodes = [
            "resources/namespaces/cluster/shop-1.json",
            "resources/namespaces/cluster/other.json",
            "resources/configmaps/namespaces/shop-1/c.json",
            "resources/configmaps/namespaces/other/c.json",
            "resources/persistentvolumeclaims/namespaces/shop-1/data.json",
            "resources/persistentvolumes/cluster/pv-shop.json",
            "resources/persistentvolumes/cluster/pv-other.json",
            "resources/storageclasses.storage.k8s.io/cluster/fast.json",
            "resources/storageclasses.storage.k8s.io/cluster/slow.json",
            "resources/customresourcedefinitions.apiextensions.k8s.io/cluster/widgets.example.com.json",
            "resources/customresourcedefinitions.apiextensions.k8s.io/cluster/gadgets.example.com.json",
            "resources/widgets.example.com/namespaces/shop-1/w.json",
            "resources/gadgets.example.com/namespaces/other/g.json",
            "resources/clusterroles.rbac.authorization.k8s.io/cluster/admin.json",
            "resources/validatingwebhookconfigurations.admissionregistration.k8s.io/cluster/guard.json",
            "resources/mutatingwebhookconfigurations.admissionregistration.k8s.io/cluster/inject.json",
            "resources/validatingadmissionpolicybindings.admissionregistration.k8s.io/cluster/b.json",
        ]
        .map(node);
        let nodes = Listing::of(&nodes).objects;
        (nodes, records.into_iter().map(|r| (r.key(), r)).collect())
    }

    fn planned(plan: &RestorePlan) -> Vec<(Stage, String)> {
        plan.stages
            .iter()
            .flat_map(|(s, items)| items.iter().map(move |i| (*s, i.display())))
            .collect()
    }

    #[test]
    fn admission_control_comes_after_every_other_stage() {
        let (nodes, records) = listing();
        let full = plan(
            &nodes,
            &records,
            &RestoreOptions::default(),
            &Dependencies::default(),
        )
        .expect("plan");
        let stages: Vec<Stage> = full.stages.iter().map(|(s, _)| *s).collect();
        assert_eq!(stages.last(), Some(&Stage::AdmissionControl));
        let last = &full.stages[full.stages.len() - 1].1;
        let names: Vec<String> = last.iter().map(PlanItem::display).collect();
        assert_eq!(
            names,
            [
                "validatingwebhookconfigurations.admissionregistration.k8s.io/guard",
                "mutatingwebhookconfigurations.admissionregistration.k8s.io/inject",
                "validatingadmissionpolicybindings.admissionregistration.k8s.io/b",
            ]
        );
        assert!(Stage::Custom < Stage::AdmissionControl);
    }

    #[test]
    fn selected_namespaces_bring_what_they_need() {
        let (nodes, records) = listing();
        let options = RestoreOptions {
            namespaces: crate::kube_objects::NamespaceFilter::new(&["shop-*".to_string()], &[])
                .expect("filter"),
            cluster_scoped: false,
            ..RestoreOptions::default()
        };
        let sources = dependency_sources(&nodes, &records, &options);
        let paths: Vec<String> = sources.iter().map(|l| l.display()).collect();
        assert_eq!(
            paths,
            [
                "persistentvolumeclaims/shop-1/data",
                "persistentvolumes/pv-shop",
                "persistentvolumes/pv-other"
            ]
        );
        let claim = serde_json::json!({"metadata": {"name": "data", "namespace": "shop-1"}, "spec": {"storageClassName": "fast"}});
        let volumes = [
            serde_json::json!({"metadata": {"name": "pv-shop"}, "spec": {"claimRef": {"namespace": "shop-1", "name": "data"}, "storageClassName": "fast"}}),
            serde_json::json!({"metadata": {"name": "pv-other"}, "spec": {"claimRef": {"namespace": "other", "name": "x"}, "storageClassName": "slow"}}),
        ];
        let deps = dependencies(&[claim], &volumes);
        let narrowed = plan(&nodes, &records, &options, &deps).expect("plan");
        let items: Vec<String> = planned(&narrowed).into_iter().map(|(_, d)| d).collect();
        assert_eq!(
            items,
            [
                "customresourcedefinitions.apiextensions.k8s.io/widgets.example.com",
                "namespaces/shop-1",
                "storageclasses.storage.k8s.io/fast",
                "persistentvolumes/pv-shop",
                "persistentvolumeclaims/shop-1/data",
                "configmaps/shop-1/c",
                "widgets.example.com/shop-1/w",
            ]
        );
        // What the selected objects only need is the target's own where it exists.
        let along: Vec<String> = narrowed
            .stages
            .iter()
            .flat_map(|(_, items)| items.iter().filter(|i| i.brought_along).map(PlanItem::display))
            .collect();
        assert_eq!(
            along,
            [
                "customresourcedefinitions.apiextensions.k8s.io/widgets.example.com",
                "storageclasses.storage.k8s.io/fast",
                "persistentvolumes/pv-shop",
            ]
        );
        // Excluded by name, a dependency stays out.
        let options = RestoreOptions {
            resources: crate::kube_objects::ResourceFilter::new(
                &[],
                &["customresourcedefinitions.apiextensions.k8s.io".to_string()],
            )
            .expect("filter"),
            ..options
        };
        let without = plan(&nodes, &records, &options, &deps).expect("plan");
        assert!(!planned(&without).iter().any(|(s, _)| *s == Stage::Crds));

        // The claim's data restored into a new volume of a mapped class: neither its old
        // volume nor the class it was mapped away from comes along.
        let options = RestoreOptions {
            storage_class_mapping: BTreeMap::from([("fast".to_string(), "dr-fast".to_string())]),
            volume_bindings: BTreeMap::from([(
                ("shop-1".to_string(), "data".to_string()),
                super::super::VolumeBinding {
                    volume: Some("pvc-new".to_string()),
                    replaces: Some("pv-shop".to_string()),
                },
            )]),
            resources: crate::kube_objects::ResourceFilter::default(),
            ..options
        };
        let items: Vec<String> = planned(&plan(&nodes, &records, &options, &deps).expect("plan"))
            .into_iter()
            .map(|(_, d)| d)
            .collect();
        assert!(
            items.contains(&"persistentvolumeclaims/shop-1/data".to_string())
                && !items
                    .iter()
                    .any(|i| i.starts_with("persistentvolumes/") || i.starts_with("storageclasses")),
            "{items:?}"
        );
        // A volume of reclaim policy Delete whose data the backup lacks is not recreated.
        let deleting = [
            serde_json::json!({"metadata": {"name": "pv-shop"}, "spec": {"persistentVolumeReclaimPolicy": "Delete", "claimRef": {"namespace": "shop-1", "name": "data"}}}),
            serde_json::json!({"metadata": {"name": "pv-other"}, "spec": {"persistentVolumeReclaimPolicy": "Retain"}}),
        ];
        let mut no_bindings = options.clone();
        no_bindings.volume_bindings.clear();
        let without = volumes_without_data(&deleting, &no_bindings);
        assert_eq!(
            without,
            BTreeMap::from([(
                "pv-shop".to_string(),
                Some(("shop-1".to_string(), "data".to_string()))
            )])
        );
        assert!(
            volumes_without_data(&deleting, &options).is_empty(),
            "a volume whose data is restored is replaced, not dropped"
        );
        let deps_without = Dependencies {
            without_data: without,
            ..deps.clone()
        };
        let items: Vec<String> = planned(&plan(&nodes, &records, &no_bindings, &deps_without).expect("plan"))
            .into_iter()
            .map(|(_, d)| d)
            .collect();
        assert!(
            items.contains(&"persistentvolumeclaims/shop-1/data".to_string())
                && !items.contains(&"persistentvolumes/pv-shop".to_string()),
            "{items:?}"
        );
        // A claim whose data could not be written is withheld, with its old volume.
        let mut withheld = options.clone();
        if let Some(b) = withheld.volume_bindings.values_mut().next() {
            b.volume = None;
        }
        let items: Vec<String> = planned(&plan(&nodes, &records, &withheld, &deps).expect("plan"))
            .into_iter()
            .map(|(_, d)| d)
            .collect();
        assert!(
            !items.iter().any(|i| i.starts_with("persistentvolume")),
            "{items:?}"
        );
    }

    /// A whole cluster restored with one namespace renamed: every object in its stage, in
    /// backup order within a stage, under its mapped namespace (the Namespace itself renamed),
    /// admission control last; nothing filtered.
    #[test]
    fn golden_plan_of_a_whole_cluster_with_a_namespace_renamed() {
        let (nodes, records) = listing();
        let options = RestoreOptions {
            namespace_mapping: BTreeMap::from([("shop-1".to_string(), "shop-restore".to_string())]),
            ..RestoreOptions::default()
        };
        let full = plan(&nodes, &records, &options, &Dependencies::default()).expect("plan");
        let expected: Vec<(Stage, &str)> = vec![
            (
                Stage::Crds,
                "customresourcedefinitions.apiextensions.k8s.io/widgets.example.com",
            ),
            (
                Stage::Crds,
                "customresourcedefinitions.apiextensions.k8s.io/gadgets.example.com",
            ),
            (Stage::Namespaces, "namespaces/shop-restore"),
            (Stage::Namespaces, "namespaces/other"),
            (Stage::StorageClasses, "storageclasses.storage.k8s.io/fast"),
            (Stage::StorageClasses, "storageclasses.storage.k8s.io/slow"),
            (Stage::PersistentVolumes, "persistentvolumes/pv-shop"),
            (Stage::PersistentVolumes, "persistentvolumes/pv-other"),
            (
                Stage::PersistentVolumeClaims,
                "persistentvolumeclaims/shop-restore/data",
            ),
            (Stage::Config, "configmaps/shop-restore/c"),
            (Stage::Config, "configmaps/other/c"),
            (Stage::Rbac, "clusterroles.rbac.authorization.k8s.io/admin"),
            (Stage::Custom, "widgets.example.com/shop-restore/w"),
            (Stage::Custom, "gadgets.example.com/other/g"),
            (
                Stage::AdmissionControl,
                "validatingwebhookconfigurations.admissionregistration.k8s.io/guard",
            ),
            (
                Stage::AdmissionControl,
                "mutatingwebhookconfigurations.admissionregistration.k8s.io/inject",
            ),
            (
                Stage::AdmissionControl,
                "validatingadmissionpolicybindings.admissionregistration.k8s.io/b",
            ),
        ];
        let got = planned(&full);
        let got: Vec<(Stage, &str)> = got.iter().map(|(s, d)| (*s, d.as_str())).collect();
        assert_eq!(got, expected);
        assert_eq!(
            full.namespaces,
            BTreeSet::from(["other".to_string(), "shop-restore".to_string()])
        );
        assert_eq!(full.filtered, 0);
        // Each item keeps its backup path and blob; only where it goes changes.
        let widget = &full
            .stages
            .iter()
            .find(|(s, _)| *s == Stage::Custom)
            .expect("custom")
            .1[0];
        assert_eq!(widget.source.namespace.as_deref(), Some("shop-1"));
        assert_eq!(
            widget.blob(),
            BlobId::of(b"resources/widgets.example.com/namespaces/shop-1/w.json")
        );
    }

    #[test]
    fn namespace_names_are_checked() {
        assert!(valid_namespace("team-a"));
        assert!(!valid_namespace("Team_A"));
        assert!(!valid_namespace("-a"));
        assert!(!valid_namespace(&"a".repeat(64)));
    }
}
