//! Secrets never leak from the controller or the CSI driver, with every log at TRACE.
//!
//! The controller runs in this process with a TRACE subscriber writing to a buffer (every
//! crate's events, `log` records included), against the API test server through a kubeconfig
//! holding a bearer token and a client key. It checks repositories on RGW opened by an age
//! identity and by a passphrase, with a wrong passphrase, a wrong S3 secret and an
//! unreachable store; backs up a namespace holding a Secret and an RBD claim (cephx key from
//! the StorageClass's provisioner Secret), and once more with a wrong cephx key; replicates to
//! Azurite (account key in a Secret); restores into another namespace; keeps a Schedule. Then
//! the logs, every Event, every Lifeboat resource (status included) and the metrics page are
//! searched for each secret in every form `lifeboat_tests::secret_scan` knows.
//!
//! The CSI driver runs as its own process with `RUST_LOG=trace` (stdout and stderr kept):
//! CreateVolume, CreateSnapshot, ControllerExpandVolume, NodeStage/NodeUnstage through
//! rbd-fuse, DeleteSnapshot and DeleteVolume with the cephx key in the request's `secrets`;
//! CreateVolume, DeleteVolume and NodeStage with a wrong key; CreateVolume on a cluster whose
//! monitors do not answer. Its logs, every gRPC answer and every error are searched.
//!
//! ```sh
//! cargo test -p lifeboat-tests --test secrets_trace -- --nocapture
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test that cannot set up should panic loudly

mod controller_support;

use std::collections::HashMap;
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, ListParams, PostParams};
use lifeboat_backup::Repository;
use lifeboat_backup::crypto::UserRecipient;
use lifeboat_backup::repository::InitOptions;
use lifeboat_controller::crd::{
    AccessMode, Backup, BackupPhase, BackupReplication, BackupReplicationSpec, BackupRepository,
    BackupRepositorySpec, BackupSpec, ReplicationDestination, Restore, RestorePhase, RestoreSpec, Schedule,
    SecretKeyRef, VolumeSelection,
};
use lifeboat_csi::proto::*;
use lifeboat_tests::csi::{DriverOptions, channel, mount_cap, rbd_setup};
use lifeboat_tests::repos::{Backend, TestRepo};
use lifeboat_tests::secret_scan::{Capture, SecretValue, kubeconfig_with_credentials, scan};
use lifeboat_tests::volumes::{bound_claim, ceph_secret, make_image, object};
use serde_json::json;

use controller_support::*;

const PASSPHRASE: &str = "trace-campaign passphrase 5c1e9a77 staple";
const WRONG_PASSPHRASE: &str = "trace-campaign wrong passphrase 0d4b2f61";
const WRONG_S3_SECRET: &str = "WrongS3SecretGivenByMistake7b3e91c0";
const DEAD_STORE_SECRET: &str = "SecretForAStoreThatIsDown2f8a6d14";
const APP_SECRET: &str = "app-db-password-9e71c3b5aa0f4d28";
const TOKEN: &str = "lifeboat-trace-token-4f0e2b7d9a1c6e35";
/// A well-formed cephx key (type 1, 16 key bytes) that Ceph does not know.
const WRONG_CEPH_KEY: &str = "AQBfHi08AAAAABAAoKGio6SlpqeoqaqrrK2urw==";

// ---- the in-process TRACE log ---------------------------------------------------------------

static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sends every event of this process, at every level, to [`LOG`], as the binaries print them
/// (`log` records too).
fn trace_to_buffer() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
            .with_ansi(false)
            .with_writer(|| LogWriter)
            .try_init()
            .expect("the TRACE subscriber is the first");
    });
}

fn log_text() -> String {
    String::from_utf8_lossy(&LOG.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}

/// Fails with every hit, after printing the tally.
fn assert_clean(what: &str, captures: &[Capture], secrets: &[SecretValue]) {
    let report = scan(captures, secrets);
    eprintln!("{what}: {}", report.summary(captures.len(), secrets.len()));
    for c in captures {
        eprintln!("  {}: {} lines", c.source, c.text.lines().count());
    }
    report.assert_clean(what);
}

// ---- the controller ---------------------------------------------------------------------------

async fn secret(client: &kube::Client, ns: &str, name: &str, data: &[(&str, &str)]) {
    let mut s = Secret::default();
    s.metadata.name = Some(name.into());
    s.data = Some(
        data.iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
            .collect(),
    );
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &s)
        .await
        .expect("create Secret");
}

/// A BackupRepository `name` at `url` on RGW (`endpoint`), credentials from `creds`, opened by
/// `key_secret`.
async fn s3_repository(
    env: &Env,
    name: &str,
    url: &str,
    endpoint: &str,
    creds: &str,
    key_secret: &str,
    mode: AccessMode,
) {
    let spec = BackupRepositorySpec {
        url: url.into(),
        s3_endpoint: Some(endpoint.into()),
        s3_region: Some("us-east-1".into()),
        credentials_secret: Some(SecretKeyRef {
            name: creds.into(),
            key: None,
        }),
        key_secret: SecretKeyRef {
            name: key_secret.into(),
            key: None,
        },
        access_mode: mode,
        ..BackupRepositorySpec::default()
    };
    env.api::<BackupRepository>()
        .create(&PostParams::default(), &BackupRepository::new(name, spec))
        .await
        .expect("create BackupRepository");
}

fn backup(name: &str, ns: &str, repository: &str, volumes: Option<VolumeSelection>) -> Backup {
    Backup::new(
        name,
        BackupSpec {
            repository: repository.into(),
            included_namespaces: vec![ns.to_string()],
            volumes,
            ..BackupSpec::default()
        },
    )
}

async fn backup_finished(api: &Api<Backup>, name: &str, secs: u64) -> Backup {
    eventually(&format!("Backup {name} to finish"), secs, || {
        let api = api.clone();
        async move {
            let b = api.get(name).await.ok()?;
            b.status.as_ref().filter(|s| s.phase.is_finished())?;
            Some(b)
        }
    })
    .await
}

/// Every Lifeboat resource, Event and the metrics page, as text.
async fn cluster_captures(env: &Env, ctl: &RunningController) -> Vec<Capture> {
    let client = env.client();
    let mut out = Vec::new();
    let core: Api<k8s_openapi::api::core::v1::Event> = Api::all(client.clone());
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::all(client.clone());
    let mut lines = Vec::new();
    for e in core
        .list(&ListParams::default())
        .await
        .expect("list core Events")
        .items
    {
        lines.push(serde_json::to_string(&e).expect("json"));
    }
    for e in events
        .list(&ListParams::default())
        .await
        .expect("list events.k8s.io Events")
        .items
    {
        lines.push(serde_json::to_string(&e).expect("json"));
    }
    out.push(Capture::new("Events", lines.join("\n")));
    async fn all<K>(client: &kube::Client) -> String
    where
        K: kube::Resource<DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        let items = Api::<K>::all(client.clone())
            .list(&ListParams::default())
            .await
            .expect("list")
            .items;
        items
            .iter()
            .map(|o| serde_json::to_string_pretty(o).expect("json"))
            .collect::<Vec<_>>()
            .join("\n")
    }
    out.push(Capture::new("Backups", all::<Backup>(&client).await));
    out.push(Capture::new("Restores", all::<Restore>(&client).await));
    out.push(Capture::new("Schedules", all::<Schedule>(&client).await));
    out.push(Capture::new(
        "BackupRepositories",
        all::<BackupRepository>(&client).await,
    ));
    out.push(Capture::new(
        "BackupReplications",
        all::<BackupReplication>(&client).await,
    ));
    let (code, metrics) = ctl.get("/metrics").await;
    assert_eq!(code, 200, "{metrics}");
    out.push(Capture::new("/metrics", metrics));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_shows_no_secret_in_logs_events_status_or_metrics() {
    trace_to_buffer();
    let started = Instant::now();
    let env = env("sec-ctl").await;
    let client = env.client();
    let ns = env.ns.clone();
    let ceph = lifeboat_tests::ceph().expect("Ceph from the harness");
    let rgw = ceph.rgw();
    let azurite = lifeboat_tests::azurite().expect("Azurite from the harness");

    // The controller reaches the cluster with a bearer token and a client key.
    let kubeconfig = env.repo.path("controller.kubeconfig");
    let mut secrets = kubeconfig_with_credentials(
        env.cluster.kubeconfig_path().expect("kubeconfig"),
        &kubeconfig,
        TOKEN,
    )
    .expect("kubeconfig with credentials");
    let controller_client = lifeboat_tests::kube::kubeconfig::client(&kubeconfig)
        .await
        .expect("a client from the kubeconfig");

    // The repository on RGW: opened by the age identity (`repo-key`) or by a passphrase.
    let s3 = TestRepo::new(Backend::Rgw).expect("RGW bucket");
    let repo = Repository::init(&s3.store(), &[env.repo.user_recipient()], InitOptions::default())
        .await
        .expect("init");
    let pass_file = env.repo.path("passphrase");
    std::fs::write(&pass_file, PASSPHRASE).unwrap();
    repo.add_key(&UserRecipient::passphrase_file(&pass_file).unwrap())
        .await
        .expect("add the passphrase key");
    secret(
        &client,
        &ns,
        "s3-creds",
        &[
            ("AWS_ACCESS_KEY_ID", &rgw.access_key),
            ("AWS_SECRET_ACCESS_KEY", &rgw.secret_key),
        ],
    )
    .await;
    secret(
        &client,
        &ns,
        "wrong-creds",
        &[
            ("AWS_ACCESS_KEY_ID", &rgw.access_key),
            ("AWS_SECRET_ACCESS_KEY", WRONG_S3_SECRET),
        ],
    )
    .await;
    secret(
        &client,
        &ns,
        "dead-creds",
        &[
            ("AWS_ACCESS_KEY_ID", "AKIADEADSTORE"),
            ("AWS_SECRET_ACCESS_KEY", DEAD_STORE_SECRET),
        ],
    )
    .await;
    secret(&client, &ns, "pass-key", &[("passphrase", PASSPHRASE)]).await;
    secret(
        &client,
        &ns,
        "wrong-pass-key",
        &[("passphrase", WRONG_PASSPHRASE)],
    )
    .await;
    let endpoint = rgw.endpoint.clone();
    s3_repository(
        &env,
        "s3",
        &s3.url,
        &endpoint,
        "s3-creds",
        "repo-key",
        AccessMode::ReadWrite,
    )
    .await;
    s3_repository(
        &env,
        "s3-pass",
        &s3.url,
        &endpoint,
        "s3-creds",
        "pass-key",
        AccessMode::ReadOnly,
    )
    .await;
    s3_repository(
        &env,
        "s3-wrong-pass",
        &s3.url,
        &endpoint,
        "s3-creds",
        "wrong-pass-key",
        AccessMode::ReadOnly,
    )
    .await;
    s3_repository(
        &env,
        "s3-wrong-creds",
        &s3.url,
        &endpoint,
        "wrong-creds",
        "repo-key",
        AccessMode::ReadOnly,
    )
    .await;
    s3_repository(
        &env,
        "dead",
        "s3://gone/lifeboat",
        "http://127.0.0.1:1",
        "dead-creds",
        "repo-key",
        AccessMode::ReadWrite,
    )
    .await;

    // Azurite as the replica, its account key in a Secret.
    let container = azurite.new_container("secrets").expect("container");
    let account_key = lifeboat_tests::services::azurite::KEY.to_string();
    secret(
        &client,
        &ns,
        "az-creds",
        &[
            (
                "AZURE_STORAGE_ACCOUNT_NAME",
                lifeboat_tests::services::azurite::ACCOUNT,
            ),
            ("AZURE_STORAGE_ACCOUNT_KEY", &account_key),
        ],
    )
    .await;
    let azure = BackupRepositorySpec {
        url: format!("az://{container}/lifeboat"),
        azure_endpoint: Some(azurite.endpoint()),
        credentials_secret: Some(SecretKeyRef {
            name: "az-creds".into(),
            key: None,
        }),
        key_secret: SecretKeyRef {
            name: "repo-key".into(),
            key: None,
        },
        ..BackupRepositorySpec::default()
    };
    env.api::<BackupRepository>()
        .create(&PostParams::default(), &BackupRepository::new("azure", azure))
        .await
        .expect("azure BackupRepository");
    let replication = BackupReplicationSpec {
        source_repository: "s3".into(),
        destinations: vec![ReplicationDestination {
            name: "azure".into(),
            repository: "azure".into(),
            ..Default::default()
        }],
        after_each_backup: true,
        ..Default::default()
    };
    env.api::<BackupReplication>()
        .create(
            &PostParams::default(),
            &BackupReplication::new("offsite", replication),
        )
        .await
        .expect("BackupReplication");

    // The application: a Secret, a ConfigMap and an RBD claim whose class's provisioner Secret
    // holds the cephx key; a second Secret holds a wrong key.
    secret(&client, &ns, "app-secret", &[("password", APP_SECRET)]).await;
    env.config_maps(2).await;
    let pool_name = ceph.new_pool("secvol").expect("a pool");
    let pool = ceph
        .connect()
        .expect("connect")
        .pool(&pool_name)
        .expect("open pool");
    let image = format!("csi-vol-{:032x}", 0x5ec7e7);
    make_image(&pool, &image, 11);
    let ceph_key = ceph.admin_key().expect("admin key");
    env.api::<Secret>()
        .create(&PostParams::default(), &ceph_secret("admin", &ceph_key))
        .await
        .expect("provisioner Secret");
    secret(
        &client,
        &ns,
        "wrong-ceph",
        &[("userID", "admin"), ("userKey", WRONG_CEPH_KEY)],
    )
    .await;
    let config = json!({"rbd": [{"clusterID": "harness", "monitors": [ceph.mon_addr()]}]}).to_string();
    env.api::<ConfigMap>()
        .create(
            &PostParams::default(),
            &object(json!({"metadata": {"name": "lifeboat-csi-config"}, "data": {"config.json": config}})),
        )
        .await
        .expect("csi ConfigMap");
    let class = format!("{ns}-rbd");
    Api::<StorageClass>::all(client.clone())
        .create(
            &PostParams::default(),
            &object(json!({
                "metadata": {"name": class}, "provisioner": "csi.lifeboat.dev",
                "parameters": {"clusterID": "harness", "pool": pool_name,
                               "csi.storage.k8s.io/provisioner-secret-name": "ceph-provisioner",
                               "csi.storage.k8s.io/provisioner-secret-namespace": ns},
            })),
        )
        .await
        .expect("StorageClass");
    bound_claim(
        &client,
        &ns,
        "db",
        &format!("{ns}-pv"),
        &class,
        json!({"driver": "csi.lifeboat.dev", "volumeHandle": format!("rbd:harness:{pool_name}:{image}")}),
    )
    .await;

    let ctl = env
        .controller_through(controller_client, "sec", |c| {
            c.repository_check_interval = Duration::from_secs(3);
        })
        .await;
    let schedule: Schedule = object(json!({
        "metadata": {"name": "nightly"},
        "spec": {"schedule": "0 3 * * *", "template": {"repository": "s3", "includedNamespaces": [ns]}}
    }));
    env.api::<Schedule>()
        .create(&PostParams::default(), &schedule)
        .await
        .expect("Schedule");
    let backups: Api<Backup> = env.api();
    backups
        .create(&PostParams::default(), &backup("full", &ns, "s3", None))
        .await
        .expect("Backup full");
    backups
        .create(
            &PostParams::default(),
            &backup("to-dead-store", &ns, "dead", None),
        )
        .await
        .expect("Backup to-dead-store");
    let full = backup_finished(&backups, "full", 120).await;
    let status = full.status.clone().expect("status");
    assert_eq!(status.phase, BackupPhase::Completed, "{status:?}");
    assert_eq!(status.volumes.len(), 1, "{status:?}");
    assert!(
        status.volumes[0].snapshot_id.is_some(),
        "the claim's data was taken: {status:?}"
    );
    // The same with a wrong cephx key: the claim's data cannot be read.
    let wrong = VolumeSelection {
        ceph_secret: Some("wrong-ceph".into()),
        ..VolumeSelection::default()
    };
    backups
        .create(
            &PostParams::default(),
            &backup("wrong-ceph-key", &ns, "s3", Some(wrong)),
        )
        .await
        .expect("Backup wrong-ceph-key");

    // Restored into another namespace: the Secret and the claim's data come back.
    let copy = format!("{ns}-copy");
    let restores: Api<Restore> = env.api();
    let restore = Restore::new(
        "back",
        RestoreSpec {
            backup_name: Some("full".into()),
            included_namespaces: vec![ns.clone()],
            namespace_mapping: [(ns.clone(), copy.clone())].into(),
            ..RestoreSpec::default()
        },
    );
    restores
        .create(&PostParams::default(), &restore)
        .await
        .expect("Restore");
    let restored = eventually("Restore back to finish", 120, || {
        let api = restores.clone();
        async move {
            api.get("back")
                .await
                .ok()?
                .status
                .filter(|s| s.phase.is_finished())
        }
    })
    .await;
    assert_eq!(restored.phase, RestorePhase::Completed, "{restored:?}");
    let app = Api::<Secret>::namespaced(client.clone(), &copy)
        .get("app-secret")
        .await
        .expect("the restored Secret");
    assert_eq!(
        app.data.and_then(|d| d.get("password").cloned()),
        Some(ByteString(APP_SECRET.as_bytes().to_vec())),
        "the Secret's data went through the backup and the restore"
    );

    let bad = backup_finished(&backups, "wrong-ceph-key", 120).await;
    let bad = bad.status.expect("status");
    assert_ne!(
        bad.phase,
        BackupPhase::Completed,
        "a wrong cephx key cannot read the image: {bad:?}"
    );
    let dead = backup_finished(&backups, "to-dead-store", 120).await;
    assert_eq!(
        dead.status.as_ref().map(|s| s.phase),
        Some(BackupPhase::Failed),
        "{dead:?}"
    );

    // Every repository checked: the good ones reachable, the bad ones not, each saying why.
    let repos: Api<BackupRepository> = env.api();
    for (name, reachable) in [
        ("s3", true),
        ("s3-pass", true),
        ("azure", true),
        ("s3-wrong-pass", false),
        ("s3-wrong-creds", false),
        ("dead", false),
    ] {
        let s = eventually(&format!("BackupRepository {name} checked"), 90, || {
            let repos = repos.clone();
            async move {
                let s = repos.get(name).await.ok()?.status?;
                (s.last_check_time.is_some()
                    && s.reachable == reachable
                    && (reachable || s.message.is_some()))
                .then_some(s)
            }
        })
        .await;
        if !reachable {
            eprintln!("repository {name}: {}", s.message.unwrap_or_default());
        }
    }
    let replications: Api<BackupReplication> = env.api();
    eventually("the replica on Azurite to hold a copy", 120, || {
        let api = replications.clone();
        async move {
            let s = api.get("offsite").await.ok()?.status?;
            s.destinations
                .iter()
                .any(|d| d.newest_snapshot.is_some() && d.last_success_time.is_some())
                .then_some(())
        }
    })
    .await;
    let schedules: Api<Schedule> = env.api();
    eventually("the Schedule to have a status", 30, || {
        let api = schedules.clone();
        async move { api.get("nightly").await.ok()?.status.map(|_| ()) }
    })
    .await;

    // Everything the controller showed.
    let mut captures = cluster_captures(&env, &ctl).await;
    ctl.stop().await;
    let log = log_text();
    captures.push(Capture::new("controller TRACE log (in-process)", log.clone()));

    // The captures mean something only if they hold what was done.
    let trace_lines = log.lines().filter(|l| l.contains(" TRACE ")).count();
    let controller_lines = log.lines().filter(|l| l.contains("lifeboat_controller")).count();
    assert!(
        trace_lines > 100 && controller_lines > 10,
        "TRACE logging was not on: {trace_lines} TRACE lines, {controller_lines} from the controller"
    );
    let text_of = |source: &str| {
        captures
            .iter()
            .find(|c| c.source == source)
            .map(|c| c.text.clone())
            .unwrap_or_default()
    };
    let events = text_of("Events");
    assert!(
        events.lines().count() >= 5 && events.contains("Warning"),
        "Events of successes and failures: {events}"
    );
    for (source, want) in [
        ("Backups", "wrong-ceph-key"),
        ("Backups", "\"phase\": \"Failed\""),
        ("Restores", "\"phase\": \"Completed\""),
        ("BackupRepositories", "\"reachable\": false"),
        ("BackupReplications", "lastSuccessTime"),
        ("Schedules", "\"status\""),
        ("/metrics", "lifeboat_attempts_total"),
    ] {
        assert!(
            text_of(source).contains(want),
            "{source} holds {want:?}:\n{}",
            text_of(source)
        );
    }

    // The secrets.
    let identity = std::fs::read_to_string(&env.repo.identity).unwrap();
    let age_key = identity
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .expect("the identity's secret key")
        .to_string();
    secrets.extend([
        SecretValue::new("age identity", age_key.clone()),
        SecretValue::new(
            "age identity (body)",
            age_key["AGE-SECRET-KEY-1".len()..].to_string(),
        ),
        SecretValue::new("age identity (lower case)", age_key.to_lowercase()),
        SecretValue::new("age identity file (Secret data)", identity),
        SecretValue::new("passphrase", PASSPHRASE),
        SecretValue::new("wrong passphrase", WRONG_PASSPHRASE),
        SecretValue::new("S3 secret key", rgw.secret_key.clone()),
        SecretValue::new("wrong S3 secret key", WRONG_S3_SECRET),
        SecretValue::new("unreachable store's S3 secret key", DEAD_STORE_SECRET),
        SecretValue::new("Azure account key", account_key),
        SecretValue::new("cephx key", ceph_key),
        SecretValue::new("wrong cephx key", WRONG_CEPH_KEY),
        SecretValue::new("Secret data", APP_SECRET),
    ]);
    assert_clean("controller", &captures, &secrets);
    eprintln!("controller campaign: {:.1} s", started.elapsed().as_secs_f64());
    drop(pool);
    ceph.delete_pool(&pool_name).expect("delete pool");
}

// ---- the CSI driver -----------------------------------------------------------------------

/// The driver binary with `RUST_LOG=trace`, its stdout and stderr in `dir/driver.log`.
struct TraceDriver {
    child: std::process::Child,
    socket: std::path::PathBuf,
    log: std::path::PathBuf,
}

impl TraceDriver {
    async fn start(dir: &std::path::Path, name: &str, opts: DriverOptions) -> Self {
        let socket = dir.join(format!("{name}.sock"));
        let config = dir.join(format!("{name}.json"));
        let log = dir.join(format!("{name}.log"));
        std::fs::write(&config, opts.config.to_string()).unwrap();
        let out = std::fs::File::create(&log).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_csi-driver"))
            .arg("--endpoint")
            .arg(format!("unix://{}", socket.display()))
            .args([
                "--node-id",
                "test-node",
                "--mode",
                opts.mode,
                "--mapper",
                opts.mapper,
            ])
            .arg("--config")
            .arg(&config)
            .arg("--state-dir")
            .arg(dir.join(format!("{name}-state")))
            .env("RUST_LOG", "trace")
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(ch) = channel(&socket).await
                && identity_client::IdentityClient::new(ch)
                    .get_plugin_info(GetPluginInfoRequest {})
                    .await
                    .is_ok()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the driver did not answer: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { child, socket, log }
    }

    async fn clients(
        &self,
    ) -> (
        controller_client::ControllerClient<tonic::transport::Channel>,
        node_client::NodeClient<tonic::transport::Channel>,
    ) {
        let ch = channel(&self.socket).await.unwrap();
        (
            controller_client::ControllerClient::new(ch.clone()),
            node_client::NodeClient::new(ch),
        )
    }

    /// Kills it; returns everything it printed.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::read_to_string(&self.log).unwrap()
    }
}

impl Drop for TraceDriver {
    /// Kills the driver and undoes what it left staged (mounts, loop devices) under its
    /// state directory.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = self.socket.parent() {
            lifeboat_tests::csi::cleanup_mounts(dir);
            kill_helpers_under(dir);
        }
    }
}

/// Kills the helpers (rbd-fuse) a killed driver started for files under `dir`, by pid: one
/// still waiting for a wrong key to be refused would outlive the test by minutes.
fn kill_helpers_under(dir: &std::path::Path) {
    let dir = dir.to_string_lossy().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.starts_with("rbd-fuse ") && cmdline.contains(&dir) {
            let _ = std::process::Command::new("kill")
                .arg("-9")
                .arg(pid.to_string())
                .status();
        }
    }
}

/// Every answer and error of the driver, as a CO would log them.
struct Answers(Vec<String>, Instant);

impl Answers {
    /// Records `line`, and prints how long the call took.
    fn push(&mut self, line: String) {
        eprintln!(
            "csi {:.1} s: {}",
            self.1.elapsed().as_secs_f64(),
            line.chars().take(120).collect::<String>()
        );
        self.1 = Instant::now();
        self.0.push(line);
    }

    fn ok<T: std::fmt::Debug>(&mut self, rpc: &str, r: Result<tonic::Response<T>, tonic::Status>) -> T {
        match r {
            Ok(r) => {
                self.push(format!("{rpc}: {r:?}"));
                r.into_inner()
            }
            Err(s) => panic!("{rpc} failed: {s:?}"),
        }
    }

    fn err<T: std::fmt::Debug>(
        &mut self,
        rpc: &str,
        r: Result<tonic::Response<T>, tonic::Status>,
    ) -> tonic::Status {
        match r {
            Ok(r) => panic!("{rpc} succeeded: {r:?}"),
            Err(s) => {
                self.push(format!("{rpc}: {s:?} / {s}"));
                s
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_csi_driver_shows_no_cephx_key_in_trace_logs_or_errors() {
    const MIB: i64 = 1 << 20;
    let started = Instant::now();
    let ceph = lifeboat_tests::ceph().expect("Ceph from the harness");
    let pool = ceph.new_pool("seccsi").expect("pool");
    let dir = tempfile::tempdir().unwrap();
    let (config, params, secrets) = rbd_setup(ceph, &pool, &dir.path().join("admin.key")).unwrap();
    let key = secrets["userKey"].clone();
    let mut wrong = secrets.clone();
    wrong.insert("userKey".into(), WRONG_CEPH_KEY.into());

    // A cluster whose monitors do not answer, and the real one.
    let dead = TraceDriver::start(
        dir.path(),
        "dead",
        DriverOptions {
            config: json!({"rbd": [{"clusterID": "test", "monitors": ["127.0.0.1:1"]}]}),
            mode: "controller",
            ..Default::default()
        },
    )
    .await;
    let driver = TraceDriver::start(
        dir.path(),
        "driver",
        DriverOptions {
            config,
            mode: "all",
            mapper: "fuse",
            ..Default::default()
        },
    )
    .await;
    let (mut c, mut node) = driver.clients().await;
    let mut a = Answers(Vec::new(), Instant::now());
    let create = |name: &str, secrets: &HashMap<String, String>| CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(CapacityRange {
            required_bytes: 64 * MIB,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![mount_cap("ext4")],
        parameters: params.clone(),
        secrets: secrets.clone(),
        ..Default::default()
    };

    // What succeeds: create, snapshot, expand, stage through rbd-fuse, unstage.
    let vol = a
        .ok(
            "CreateVolume",
            c.create_volume(create("pvc-secrets", &secrets)).await,
        )
        .volume
        .expect("a volume");
    let snap = a
        .ok(
            "CreateSnapshot",
            c.create_snapshot(CreateSnapshotRequest {
                source_volume_id: vol.volume_id.clone(),
                name: "snap-secrets".into(),
                secrets: secrets.clone(),
                ..Default::default()
            })
            .await,
        )
        .snapshot
        .expect("a snapshot");
    let expand = |bytes: i64, secrets: &HashMap<String, String>| ControllerExpandVolumeRequest {
        volume_id: vol.volume_id.clone(),
        capacity_range: Some(CapacityRange {
            required_bytes: bytes,
            limit_bytes: 0,
        }),
        secrets: secrets.clone(),
        volume_capability: Some(mount_cap("ext4")),
    };
    a.ok(
        "ControllerExpandVolume",
        c.controller_expand_volume(expand(96 * MIB, &secrets)).await,
    );
    let staging = dir.path().join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    let stage = NodeStageVolumeRequest {
        volume_id: vol.volume_id.clone(),
        staging_target_path: staging.to_string_lossy().into(),
        volume_capability: Some(mount_cap("ext4")),
        secrets: secrets.clone(),
        volume_context: vol.volume_context.clone(),
        ..Default::default()
    };
    a.ok("NodeStageVolume", node.node_stage_volume(stage.clone()).await);
    let unstage = NodeUnstageVolumeRequest {
        volume_id: vol.volume_id.clone(),
        staging_target_path: staging.to_string_lossy().into(),
    };
    a.ok("NodeUnstageVolume", node.node_unstage_volume(unstage).await);
    let mut no_key = create("pvc-nokey", &secrets);
    no_key.secrets.remove("userKey");
    a.err("CreateVolume (no key)", c.create_volume(no_key).await);

    // What fails, all at once, each on a volume of its own so none waits for another's lock.
    // A wrong key is refused only when the 30 s connect deadline passes, and the driver makes
    // one connection at a time, so the controller RPCs with a wrong key are the two the CO
    // sends with the provisioner Secret (CreateVolume, DeleteVolume); rbd-fuse waits 300 s,
    // so NodeStage gets a CO's deadline.
    let mut others = Vec::new();
    for name in ["pvc-other", "pvc-delete", "pvc-stage"] {
        let v = a
            .ok("CreateVolume", c.create_volume(create(name, &secrets)).await)
            .volume
            .expect("a volume");
        others.push(v);
    }
    let (mut dead_ctl, _) = dead.clients().await;
    let mut wrong_stage = tonic::Request::new(NodeStageVolumeRequest {
        volume_id: others[2].volume_id.clone(),
        secrets: wrong.clone(),
        volume_context: others[2].volume_context.clone(),
        ..stage.clone()
    });
    wrong_stage.set_timeout(Duration::from_secs(40));
    // Unreachable monitors fail a CreateVolume only after 60-150 s (several 30 s connect
    // deadlines): a CO's deadline again.
    let mut dead_create = tonic::Request::new(create("pvc-dead", &secrets));
    dead_create.set_timeout(Duration::from_secs(40));
    let (mut c1, mut c2, mut n1) = (c.clone(), c.clone(), node.clone());
    let (dead_create, create_wrong, delete_wrong, stage_wrong) = tokio::join!(
        dead_ctl.create_volume(dead_create),
        c1.create_volume(create("pvc-wrong", &wrong)),
        c2.delete_volume(DeleteVolumeRequest {
            volume_id: others[1].volume_id.clone(),
            secrets: wrong.clone(),
        }),
        n1.node_stage_volume(wrong_stage),
    );
    a.err("CreateVolume (monitors down)", dead_create);
    a.err("CreateVolume (wrong key)", create_wrong);
    a.err("DeleteVolume (wrong key)", delete_wrong);
    a.err("NodeStageVolume (wrong key)", stage_wrong);
    let _ = node
        .node_unstage_volume(NodeUnstageVolumeRequest {
            volume_id: others[2].volume_id.clone(),
            staging_target_path: staging.to_string_lossy().into(),
        })
        .await;

    a.ok(
        "DeleteSnapshot",
        c.delete_snapshot(DeleteSnapshotRequest {
            snapshot_id: snap.snapshot_id.clone(),
            secrets: secrets.clone(),
        })
        .await,
    );
    for v in std::iter::once(&vol).chain(&others) {
        a.ok(
            "DeleteVolume",
            c.delete_volume(DeleteVolumeRequest {
                volume_id: v.volume_id.clone(),
                secrets: secrets.clone(),
            })
            .await,
        );
    }
    let aborted: Vec<&String> = a.0.iter().filter(|l| l.contains("code: Aborted")).collect();
    assert!(
        aborted.is_empty(),
        "a failing call waited for another instead of using its key: {aborted:?}"
    );

    let log = driver.stop();
    let dead_log = dead.stop();
    let trace_lines = log.lines().filter(|l| l.contains("TRACE")).count();
    assert!(
        trace_lines > 50,
        "RUST_LOG=trace printed {trace_lines} TRACE lines:\n{log}"
    );
    assert!(a.0.len() >= 17, "every call answered: {:?}", a.0);
    let captures = vec![
        Capture::new("csi-driver stdout+stderr (RUST_LOG=trace)", log),
        Capture::new("csi-driver (monitors down) stdout+stderr", dead_log),
        Capture::new("gRPC answers and errors", a.0.join("\n")),
    ];
    let secrets = vec![
        SecretValue::new("cephx key", key),
        SecretValue::new("wrong cephx key", WRONG_CEPH_KEY),
    ];
    assert_clean("csi", &captures, &secrets);
    eprintln!("csi campaign: {:.1} s", started.elapsed().as_secs_f64());
    ceph.delete_pool(&pool).expect("delete pool");
}
