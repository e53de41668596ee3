//! The controller's RBAC in the Helm chart is least privilege, shown by running it: the
//! controller works through a client that records every request (Schedules creating and
//! pruning Backups, a Backup, a Restore and a Restore that updates, a BackupReplication,
//! leader election), then
//!
//! - every request it made is one the chart's rules for its ServiceAccount allow, evaluated
//!   as kube-apiserver's RBAC authorizer does (request info from the path as
//!   `k8s.io/apiserver`'s RequestInfoFactory derives it), and
//! - every grant the chart makes was used: each verb of each named resource, and each
//!   wildcard rule by at least one request only it allows.
//!
//! The test server authorizes nothing, so this is what keeps the chart's rules and the code in
//! step: a request the chart forgot fails here, not on a customer's cluster.
//!
//! ```sh
//! cargo test -p lifeboat-tests --test controller_rbac
//! ```

mod controller_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use lifeboat_controller::SCHEDULE_LABEL;
use lifeboat_controller::crd::{
    Backup, BackupReplication, BackupReplicationSpec, BackupRepository, BackupRepositorySpec, BackupSpec,
    ExistingResourcePolicy, ReplicationDestination, ReplicationPhase, Restore, RestorePhase, RestoreSpec,
    Retention, Schedule, ScheduleSpec, SecretKeyRef,
};
use lifeboat_tests::helm::Helm;
use lifeboat_tests::repos::{Backend, TestRepo};
use serde_json::{Value, json};

use controller_support::*;

const RELEASE: &str = "lb";

/// Grants the code needs that a short run may not exercise, and why.
const MAY_GO_UNUSED: &[(&str, &str, &str, &str)] = &[
    (
        "events.k8s.io",
        "events",
        "patch",
        "kube-runtime's Recorder patches an Event only when the same one repeats",
    ),
    (
        "",
        "pods/exec",
        "create",
        "backup hooks exec in running pods, which the API test server cannot run; \
         Kubernetes 1.35 and later check create on a WebSocket exec",
    ),
];

/// One request as RBAC sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Access {
    verb: String,
    group: String,
    /// `resource` or `resource/subresource`.
    resource: String,
    namespace: Option<String>,
}

/// What a request asks for: an API resource, or a non-resource URL (discovery, /version).
enum Request {
    Resource(Access),
    NonResource(String),
}

/// The request info kube-apiserver derives from a method and URL.
fn request_info(method: &http::Method, uri: &http::Uri) -> Request {
    let parts: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] if !rest.is_empty() => (String::new(), rest),
        ["apis", group, _version, rest @ ..] if !rest.is_empty() => (group.to_string(), rest),
        _ => return Request::NonResource(uri.path().to_string()),
    };
    let mut rest: &[&str] = rest;
    let mut namespace = None;
    if rest[0] == "namespaces" && rest.len() > 1 {
        namespace = Some(rest[1].to_string());
        if rest.len() > 2 && !["status", "finalize"].contains(&rest[2]) {
            rest = &rest[2..];
        }
    }
    let name = rest.get(1);
    let resource = match rest.get(2) {
        Some(sub) => format!("{}/{sub}", rest[0]),
        None => rest[0].to_string(),
    };
    let watch = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1");
    let verb = match *method {
        http::Method::GET if watch => "watch",
        http::Method::GET if name.is_some() => "get",
        http::Method::GET => "list",
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE if name.is_some() => "delete",
        http::Method::DELETE => "deletecollection",
        _ => "unknown",
    };
    // A namespace named in the path is the object itself for `namespaces/NAME`.
    let namespace = if rest[0] == "namespaces" && resource.starts_with("namespaces") {
        None
    } else {
        namespace
    };
    Request::Resource(Access {
        verb: verb.into(),
        group,
        resource,
        namespace,
    })
}

/// A client that records what `inner` is asked to do.
fn recording(inner: Client, log: Arc<Mutex<Vec<Request>>>) -> Client {
    let namespace = inner.default_namespace().to_string();
    let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let inner = inner.clone();
        if let Ok(mut log) = log.lock() {
            log.push(request_info(req.method(), req.uri()));
        }
        async move { inner.send(req).await }
    });
    Client::new(service, namespace)
}

/// One rule of a rendered Role or ClusterRole; `namespace` is the Role's (None: cluster-wide).
#[derive(Debug)]
struct Rule {
    role: String,
    namespace: Option<String>,
    groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

fn matches(list: &[String], want: &str) -> bool {
    list.iter().any(|x| x == "*" || x == want)
}

impl Rule {
    /// RBAC's RuleAllows for a resource request (no resourceNames in Lifeboat's rules).
    fn allows(&self, a: &Access) -> bool {
        let in_scope = match &self.namespace {
            None => true,
            Some(ns) => a.namespace.as_deref() == Some(ns),
        };
        in_scope
            && matches(&self.groups, &a.group)
            && matches(&self.resources, &a.resource)
            && matches(&self.verbs, &a.verb)
    }

    fn is_wildcard(&self) -> bool {
        self.groups.iter().chain(&self.resources).any(|x| x.contains('*'))
    }
}

/// The rules the chart binds to the controller's ServiceAccount in `namespace`.
fn controller_rules(objects: &[Value], namespace: &str) -> Vec<Rule> {
    let sa = format!("{RELEASE}-controller");
    let bound =
        |b: &Value| {
            b["subjects"].as_array().into_iter().flatten().any(|s| {
                s["kind"] == "ServiceAccount" && s["name"] == sa.as_str() && s["namespace"] == namespace
            })
        };
    let mut rules = Vec::new();
    for b in objects
        .iter()
        .filter(|o| (o["kind"] == "ClusterRoleBinding" || o["kind"] == "RoleBinding") && bound(o))
    {
        let role_kind = b["roleRef"]["kind"].as_str().unwrap_or_default();
        let role_name = b["roleRef"]["name"].as_str().unwrap_or_default();
        let binding_ns = b["metadata"]["namespace"].as_str().map(str::to_string);
        let role = objects
            .iter()
            .find(|o| o["kind"] == role_kind && o["metadata"]["name"] == role_name)
            .unwrap_or_else(|| panic!("{role_kind} {role_name} is not rendered"));
        for r in role["rules"].as_array().into_iter().flatten() {
            rules.push(Rule {
                role: format!("{role_kind} {role_name}"),
                namespace: binding_ns.clone(),
                groups: strings(&r["apiGroups"]),
                resources: strings(&r["resources"]),
                verbs: strings(&r["verbs"]),
            });
        }
    }
    rules
}

async fn wait_phase<K, F>(api: &Api<K>, name: &str, what: &str, done: F)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    F: Fn(&K) -> bool,
{
    eventually(&format!("{what} {name}"), 60, || {
        let api = api.clone();
        let done = &done;
        async move { api.get(name).await.ok().filter(|k| done(k)).map(|_| ()) }
    })
    .await;
}

/// Runs the controller through everything it does with the API in one namespace; returns the
/// replica's directory, to be removed once the controller stopped.
async fn exercise(env: &Env, target: &str) -> TestRepo {
    let schedules: Api<Schedule> = env.api();
    let backups: Api<Backup> = env.api();
    let restores: Api<Restore> = env.api();
    // A Schedule keeping one Backup: Backups are created, finalized and pruned.
    let schedule = Schedule::new(
        "every2s",
        ScheduleSpec {
            schedule: "*/2 * * * * *".into(),
            template: BackupSpec {
                repository: REPO.into(),
                included_namespaces: vec![env.ns.clone()],
                included_resources: vec!["configmaps".into()],
                ..BackupSpec::default()
            },
            retention: Retention {
                keep_last: Some(1),
                ..Retention::default()
            },
            ..ScheduleSpec::default()
        },
    );
    schedules
        .create(&PostParams::default(), &schedule)
        .await
        .expect("create Schedule");
    env.backup_config_maps("source").await;

    let restore = |name: &str, policy: ExistingResourcePolicy| {
        Restore::new(
            name,
            RestoreSpec {
                backup_name: Some("source".into()),
                namespace_mapping: [(env.ns.clone(), target.to_string())].into(),
                existing_resource_policy: policy,
                ..RestoreSpec::default()
            },
        )
    };
    let finished = |r: &Restore| {
        r.status
            .as_ref()
            .is_some_and(|s| s.phase == RestorePhase::Completed)
    };
    restores
        .create(
            &PostParams::default(),
            &restore("first", ExistingResourcePolicy::None),
        )
        .await
        .expect("create Restore");
    wait_phase(&restores, "first", "Restore", finished).await;
    // Changed after the first restore, so the second updates it.
    let restored: Api<ConfigMap> = Api::namespaced(env.client(), target);
    restored
        .patch(
            "cm-0",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"index": "changed"}})),
        )
        .await
        .expect("change a restored ConfigMap");
    restores
        .create(
            &PostParams::default(),
            &restore("second", ExistingResourcePolicy::Update),
        )
        .await
        .expect("create Restore");
    wait_phase(&restores, "second", "Restore", |r: &Restore| {
        finished(r)
            && r.status
                .as_ref()
                .and_then(|s| s.summary.as_ref())
                .is_some_and(|s| s.updated > 0)
    })
    .await;

    // A BackupReplication copies the source repository to a second BackupRepository after
    // each finished Backup and writes each destination's status.
    let replica = TestRepo::new(Backend::Local).expect("replica directory");
    let repositories: Api<BackupRepository> = env.api();
    repositories
        .create(
            &PostParams::default(),
            &BackupRepository::new(
                "replica",
                BackupRepositorySpec {
                    url: replica.url.clone(),
                    key_secret: SecretKeyRef {
                        name: "repo-key".into(),
                        key: None,
                    },
                    ..BackupRepositorySpec::default()
                },
            ),
        )
        .await
        .expect("create BackupRepository");
    let replications: Api<BackupReplication> = env.api();
    replications
        .create(
            &PostParams::default(),
            &BackupReplication::new(
                "offsite",
                BackupReplicationSpec {
                    source_repository: REPO.into(),
                    destinations: vec![ReplicationDestination {
                        name: "replica".into(),
                        repository: "replica".into(),
                        ..Default::default()
                    }],
                    after_each_backup: true,
                    ..Default::default()
                },
            ),
        )
        .await
        .expect("create BackupReplication");
    wait_phase(
        &replications,
        "offsite",
        "BackupReplication",
        |r: &BackupReplication| {
            r.status.as_ref().is_some_and(|s| {
                s.phase == ReplicationPhase::Idle
                    && s.destinations
                        .first()
                        .is_some_and(|d| d.newest_snapshot.is_some())
            })
        },
    )
    .await;

    // Retention has pruned at least one scheduled Backup (deleted, finalizer removed).
    let mut seen = BTreeSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let list = backups
            .list(&kube::api::ListParams::default().labels(&format!("{SCHEDULE_LABEL}=every2s")))
            .await
            .expect("list scheduled Backups");
        let names: BTreeSet<String> = list
            .items
            .iter()
            .filter_map(|b| b.metadata.name.clone())
            .collect();
        if seen.iter().any(|n| !names.contains(n)) {
            break;
        }
        seen.extend(names);
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for the Schedule to prune a Backup (seen {seen:?})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    replica
}

#[tokio::test]
async fn the_chart_grants_the_controller_exactly_what_it_uses() {
    let env = env("rbac").await;
    env.config_maps(2).await;
    let target = env
        .cluster
        .namespace("rbac-target")
        .await
        .expect("target namespace");
    let helm = Helm::find().unwrap_or_else(|e| panic!("{e}"));
    let rendered = helm
        .render(
            &chart_dir(),
            RELEASE,
            &env.ns,
            &json!({"csi": {"enabled": false}}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let rules = controller_rules(&rendered.objects, &env.ns);
    assert!(!rules.is_empty(), "no rules bound to {RELEASE}-controller");

    let log = Arc::new(Mutex::new(Vec::new()));
    let ctl = env
        .controller_through(recording(env.client(), log.clone()), "rbac", |c| {
            c.repository_check_interval = Duration::from_secs(1);
        })
        .await;
    let replica = exercise(&env, &target).await;
    ctl.stop().await;
    drop(replica);

    let log = std::mem::take(&mut *log.lock().expect("log"));
    let mut accesses = BTreeSet::new();
    let mut non_resource = BTreeSet::new();
    for r in log {
        match r {
            Request::Resource(a) => {
                accesses.insert(a);
            }
            Request::NonResource(path) => {
                non_resource.insert(path);
            }
        }
    }
    // Discovery and /version: every authenticated user may read them (system:discovery).
    for path in &non_resource {
        assert!(
            path == "/api"
                || path == "/apis"
                || path == "/version"
                || path.starts_with("/apis/")
                || path.starts_with("/api/"),
            "non-resource request {path}"
        );
    }

    let denied: Vec<&Access> = accesses
        .iter()
        .filter(|a| !rules.iter().any(|r| r.allows(a)))
        .collect();
    assert!(
        denied.is_empty(),
        "the controller made requests the chart's RBAC does not allow (add them to \
         charts/lifeboat/templates/controller-rbac.yaml):\n{denied:#?}"
    );

    let mut unused = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        if rule.is_wildcard() {
            // Used by a request no named rule allows.
            let only_this = accesses.iter().any(|a| {
                rule.allows(a)
                    && !rules
                        .iter()
                        .enumerate()
                        .any(|(j, r)| j != i && !r.is_wildcard() && r.allows(a))
            });
            if !only_this {
                unused.push(format!(
                    "{}: wildcard rule {:?} {:?}",
                    rule.role, rule.resources, rule.verbs
                ));
            }
            continue;
        }
        for group in &rule.groups {
            for resource in &rule.resources {
                for verb in &rule.verbs {
                    let used = accesses
                        .iter()
                        .any(|a| &a.group == group && &a.resource == resource && &a.verb == verb);
                    let excused = MAY_GO_UNUSED
                        .iter()
                        .any(|(g, r, v, _)| g == group && r == resource && v == verb);
                    if !used && !excused {
                        unused.push(format!("{}: {verb} {group}/{resource}", rule.role));
                    }
                }
            }
        }
    }
    let by_resource: BTreeMap<String, BTreeSet<&str>> = accesses.iter().fold(BTreeMap::new(), |mut m, a| {
        m.entry(format!("{}/{}", a.group, a.resource))
            .or_default()
            .insert(a.verb.as_str());
        m
    });
    eprintln!("the controller used: {by_resource:#?}");
    assert!(
        unused.is_empty(),
        "the chart grants what the controller never used (remove it, or exercise it here):\n{unused:#?}"
    );
}

fn chart_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/lifeboat")
}
