//! Secrets never leak from drctl's Kubernetes work, with `RUST_LOG=trace`: objects and RBD
//! volume backups and restores done by drctl itself (`--repo`, no controller) on an RGW
//! repository, and federation (cluster registry, drill, failover, audit) across two clusters.
//! Every run's stdout and stderr (logs included) and the drill's report files are searched
//! for the kubeconfigs' bearer tokens and client keys, the age identity, the S3 secret key,
//! the cephx key, a Secret's contents (all in the forms `lifeboat_tests::secret_scan` knows),
//! in succeeding runs and in failing ones: a wrong cephx key, a wrong S3 secret, an API
//! server that is down. `secrets_cli` covers the repository commands alone.
//!
//! ```sh
//! cargo test -p drctl --test secrets_campaign -- --nocapture
//! ```
#![allow(clippy::unwrap_used)] // a test that cannot set up should panic loudly

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;
use kube::api::PostParams;
use lifeboat_tests::kube::TestCluster;
use lifeboat_tests::players::{application, play_deployment_controller, ready_node};
use lifeboat_tests::repos::{Backend, TestRepo};
use lifeboat_tests::secret_scan::{Capture, SecretValue, kubeconfig_with_credentials, scan};
use lifeboat_tests::volumes::{bound_claim, ceph_secret, make_image, object};
use serde_json::json;

const APP_SECRET: &str = "drctl-app-password-3a9c0e7d51b2f486";
const WRONG_S3_SECRET: &str = "DrctlWrongS3Secret61d0f2a9c4b7e835";
/// A well-formed cephx key (type 1, 16 key bytes) that Ceph does not know.
const WRONG_CEPH_KEY: &str = "AQBfHi08AAAAABAAoKGio6SlpqeoqaqrrK2urw==";

/// One drctl run: what it was, its exit code, and everything it printed.
struct Run {
    what: String,
    code: Option<i32>,
    text: String,
}

/// Runs drctl with `env` and `args` at `RUST_LOG=trace`.
async fn drctl(what: &str, env: &[(String, String)], args: &[&str]) -> Run {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("drctl"));
    c.env_remove("KUBECONFIG")
        .env_remove("DRCTL_REPO")
        .env_remove("DRCTL_PASSPHRASE_FILE")
        .env_remove("CEPH_CONF")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("RUST_LOG", "trace")
        .env("NO_COLOR", "1")
        .args(args);
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    let run = Run {
        what: what.to_string(),
        code: out.status.code(),
        text: format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    };
    eprintln!(
        "{what}: exit {:?} in {:.1} s, {} lines",
        run.code,
        started.elapsed().as_secs_f64(),
        run.text.lines().count()
    );
    run
}

/// Fails unless `run` exited with `code`, showing a panic's message (if drctl panicked) and
/// the last lines it printed.
fn expect(run: &Run, code: i32) {
    let lines: Vec<&str> = run.text.lines().collect();
    let panic = lines
        .iter()
        .position(|l| l.contains("panicked at"))
        .map(|at| lines[at..lines.len().min(at + 4)].join("\n"))
        .unwrap_or_default();
    let tail = lines[lines.len().saturating_sub(30)..].join("\n");
    assert_eq!(
        run.code,
        Some(code),
        "{}: exit {:?}, wanted {code}:\n{panic}\n…\n{tail}",
        run.what,
        run.code,
    );
}

/// The age identity's secret key, bare and as the identity file (a Secret holds the file).
fn identity_secrets(identity: &Path) -> Vec<SecretValue> {
    let file = std::fs::read_to_string(identity).unwrap();
    let key = file
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap()
        .to_string();
    vec![
        SecretValue::new("age identity", key.clone()),
        SecretValue::new("age identity (body)", key["AGE-SECRET-KEY-1".len()..].to_string()),
        SecretValue::new("age identity (lower case)", key.to_lowercase()),
        SecretValue::new("age identity file", file),
    ]
}

/// Fails with every hit, after printing the tally; the runs must have logged at TRACE.
fn assert_clean(what: &str, runs: &[Run], extra: Vec<Capture>, secrets: &[SecretValue]) {
    let trace: usize = runs
        .iter()
        .map(|r| r.text.lines().filter(|l| l.contains(" TRACE ")).count())
        .sum();
    assert!(trace > 100, "{what}: RUST_LOG=trace printed {trace} TRACE lines");
    let mut captures: Vec<Capture> = runs
        .iter()
        .map(|r| Capture::new(format!("drctl {} (exit {:?})", r.what, r.code), r.text.clone()))
        .collect();
    captures.extend(extra);
    let report = scan(&captures, secrets);
    eprintln!(
        "{what}: {} ({} TRACE lines)",
        report.summary(captures.len(), secrets.len()),
        trace
    );
    report.assert_clean(what);
}

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
        .unwrap();
}

/// A copy of `kubeconfig` whose server is `server` (an API server that is down).
fn pointing_at(kubeconfig: &Path, server: &str, to: &Path) -> PathBuf {
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(kubeconfig).unwrap()).unwrap();
    for c in doc["clusters"].as_array_mut().unwrap() {
        c["cluster"]["server"] = json!(server);
    }
    std::fs::write(to, doc.to_string()).unwrap();
    to.to_path_buf()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_and_volume_backups_show_no_secret_at_trace() {
    let started = Instant::now();
    let cluster = TestCluster::start().await.unwrap();
    let repo = TestRepo::new(Backend::Rgw).unwrap();
    let kubeconfig = repo.path("kubeconfig");
    let mut secrets = kubeconfig_with_credentials(
        cluster.kubeconfig_path().unwrap(),
        &kubeconfig,
        "drctl-objects-token-8b1f4c2e9d7a0365",
    )
    .unwrap();
    let mut env = repo.drctl_env();
    env.push(("KUBECONFIG".into(), kubeconfig.display().to_string()));
    env.push(("TMPDIR".into(), repo.dir.path().display().to_string()));
    let s3_secret = repo
        .options
        .secret_access_key
        .as_ref()
        .unwrap()
        .expose()
        .to_string();

    // The application: a Secret, a ConfigMap and an RBD claim (lifeboat-csi) whose class's
    // provisioner Secret holds the cephx key.
    let client = cluster.client();
    let ceph = lifeboat_tests::ceph().unwrap();
    let pool_name = ceph.new_pool("secdrctl").unwrap();
    let pool = ceph.connect().unwrap().pool(&pool_name).unwrap();
    let image = format!("csi-vol-{:032x}", 0x5ec7e8);
    make_image(&pool, &image, 12);
    let ns = cluster.namespace("secapp").await.unwrap();
    let system = cluster.namespace("lbsys").await.unwrap();
    let key = ceph.admin_key().unwrap();
    Api::<Secret>::namespaced(client.clone(), &system)
        .create(&PostParams::default(), &ceph_secret("admin", &key))
        .await
        .unwrap();
    secret(
        &client,
        &ns,
        "wrong-ceph",
        &[("userID", "admin"), ("userKey", WRONG_CEPH_KEY)],
    )
    .await;
    secret(&client, &ns, "app-secret", &[("password", APP_SECRET)]).await;
    lifeboat_tests::players::config_map(&client, &ns, "settings", "plain").await;
    let config = json!({"rbd": [{"clusterID": "harness", "monitors": [ceph.mon_addr()]}]}).to_string();
    Api::<ConfigMap>::namespaced(client.clone(), &system)
        .create(
            &PostParams::default(),
            &object(json!({"metadata": {"name": "lifeboat-csi-config"}, "data": {"config.json": config}})),
        )
        .await
        .unwrap();
    let class = format!("{ns}-rbd");
    Api::<StorageClass>::all(client.clone())
        .create(
            &PostParams::default(),
            &object(json!({
                "metadata": {"name": class}, "provisioner": "csi.lifeboat.dev", "reclaimPolicy": "Delete",
                "parameters": {"clusterID": "harness", "pool": pool_name, "imageFeatures": "layering",
                    "csi.storage.k8s.io/provisioner-secret-name": "ceph-provisioner",
                    "csi.storage.k8s.io/provisioner-secret-namespace": system},
            })),
        )
        .await
        .unwrap();
    bound_claim(
        &client,
        &ns,
        "db",
        &format!("{ns}-pv"),
        &class,
        json!({"driver": "csi.lifeboat.dev", "volumeHandle": format!("rbd:harness:{pool_name}:{image}")}),
    )
    .await;

    let mut runs = Vec::new();
    let r = drctl(
        "repo init",
        &env,
        &["repo", "init", "--recipient", &repo.recipient],
    )
    .await;
    expect(&r, 0);
    runs.push(r);
    let r = drctl(
        "backup create (objects and volume data)",
        &env,
        &[
            "backup",
            "create",
            "nightly",
            "--include-namespaces",
            &ns,
            "-o",
            "json",
        ],
    )
    .await;
    expect(&r, 0);
    assert!(r.text.contains("\"snapshotId\""), "{}", r.text);
    runs.push(r);
    let r = drctl(
        "backup describe",
        &env,
        &["backup", "describe", "nightly", "-o", "yaml"],
    )
    .await;
    expect(&r, 0);
    runs.push(r);
    let copy = format!("{ns}-copy");
    let mapping = format!("{ns}:{copy}");
    let r = drctl(
        "restore create (dry run)",
        &env,
        &[
            "restore",
            "create",
            "--from-backup",
            "nightly",
            "--include-namespaces",
            &ns,
            "--namespace-mapping",
            &mapping,
            "--dry-run",
            "-o",
            "json",
        ],
    )
    .await;
    expect(&r, 0);
    runs.push(r);
    let r = drctl(
        "restore create",
        &env,
        &[
            "restore",
            "create",
            "--from-backup",
            "nightly",
            "--include-namespaces",
            &ns,
            "--namespace-mapping",
            &mapping,
            "-o",
            "json",
        ],
    )
    .await;
    expect(&r, 0);
    runs.push(r);
    let restored = Api::<Secret>::namespaced(client.clone(), &copy)
        .get("app-secret")
        .await
        .unwrap();
    assert_eq!(
        restored.data.and_then(|d| d.get("password").cloned()),
        Some(ByteString(APP_SECRET.as_bytes().to_vec())),
        "the Secret went through the backup and the restore"
    );

    // Failing: a wrong cephx key (the claim's data cannot be read), a wrong S3 secret, an API
    // server that is down.
    let r = drctl(
        "backup create (wrong cephx key)",
        &env,
        &[
            "backup",
            "create",
            "wrong-key",
            "--include-namespaces",
            &ns,
            "-n",
            &ns,
            "--ceph-secret",
            "wrong-ceph",
            "-o",
            "json",
        ],
    )
    .await;
    expect(&r, 3);
    runs.push(r);
    let wrong_s3: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| match k.as_str() {
            "AWS_SECRET_ACCESS_KEY" => (k.clone(), WRONG_S3_SECRET.to_string()),
            _ => (k.clone(), v.clone()),
        })
        .collect();
    let r = drctl(
        "backup create (wrong S3 secret)",
        &wrong_s3,
        &["backup", "create", "wrong-s3", "--include-namespaces", &ns],
    )
    .await;
    expect(&r, 1);
    runs.push(r);
    let down = pointing_at(&kubeconfig, "https://127.0.0.1:1", &repo.path("down.kubeconfig"));
    let mut down_env = env.clone();
    down_env.push(("KUBECONFIG".into(), down.display().to_string()));
    let r = drctl(
        "backup create (API server down)",
        &down_env,
        &["backup", "create", "down", "--include-namespaces", &ns],
    )
    .await;
    expect(&r, 1);
    runs.push(r);

    secrets.extend(identity_secrets(&repo.identity));
    secrets.extend([
        SecretValue::new("S3 secret key", s3_secret),
        SecretValue::new("wrong S3 secret key", WRONG_S3_SECRET),
        SecretValue::new("cephx key", key),
        SecretValue::new("wrong cephx key", WRONG_CEPH_KEY),
        SecretValue::new("Secret data", APP_SECRET),
    ]);
    assert_clean("drctl objects and volumes", &runs, Vec::new(), &secrets);
    eprintln!("objects and volumes: {:.1} s", started.elapsed().as_secs_f64());
    drop(pool);
    ceph.delete_pool(&pool_name).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federation_shows_no_kubeconfig_credential_at_trace() {
    let started = Instant::now();
    let c1 = TestCluster::in_process().await.unwrap();
    let c2 = TestCluster::in_process().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let k1 = dir.path().join("c1.kubeconfig");
    let k2 = dir.path().join("c2.kubeconfig");
    let mut secrets = kubeconfig_with_credentials(
        c1.kubeconfig_path().unwrap(),
        &k1,
        "federation-c1-token-0a7e5d3c9b1f2846",
    )
    .unwrap();
    secrets.extend(
        kubeconfig_with_credentials(
            c2.kubeconfig_path().unwrap(),
            &k2,
            "federation-c2-token-6c2b8f0e4d9a1357",
        )
        .unwrap(),
    );
    let (identity, public) = lifeboat_tests::repos::make_identity(dir.path(), "me").unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    let env: Vec<(String, String)> = vec![
        ("DRCTL_REPO".into(), repo.display().to_string()),
        ("DRCTL_IDENTITY".into(), identity.display().to_string()),
        ("HOME".into(), dir.path().display().to_string()),
    ];
    ready_node(&c1.client(), "node-1", "10.0.1.1").await;
    ready_node(&c2.client(), "node-1", "10.0.2.1").await;
    let players = [
        play_deployment_controller(c1.client(), Duration::from_millis(300)),
        play_deployment_controller(c2.client(), Duration::from_millis(300)),
    ];
    let ns = c1.namespace("shop").await.unwrap();
    application(&c1.client(), &ns, 5).await;
    secret(&c1.client(), &ns, "app-secret", &[("password", APP_SECRET)]).await;
    let (k1s, k2s) = (k1.display().to_string(), k2.display().to_string());

    let mut runs = Vec::new();
    let r = drctl("repo init", &env, &["repo", "init", "--recipient", &public]).await;
    expect(&r, 0);
    runs.push(r);
    for (name, k, role) in [("c1", &k1s, "primary"), ("c2", &k2s, "standby")] {
        let r = drctl(
            &format!("cluster add {name}"),
            &env,
            &[
                "--kubeconfig",
                k,
                "cluster",
                "add",
                name,
                "--role",
                role,
                "--region",
                "r",
                "--cloud",
                "test",
            ],
        )
        .await;
        expect(&r, 0);
        runs.push(r);
    }
    let down = pointing_at(&k1, "https://127.0.0.1:1", &dir.path().join("down.kubeconfig"));
    let r = drctl(
        "cluster add (API server down)",
        &env,
        &[
            "--kubeconfig",
            &down.display().to_string(),
            "cluster",
            "add",
            "c3",
            "--role",
            "standby",
        ],
    )
    .await;
    expect(&r, 1);
    runs.push(r);
    for (what, args) in [
        ("cluster list", vec!["cluster", "list", "-o", "json"]),
        ("cluster status", vec!["cluster", "status", "-o", "yaml"]),
    ] {
        let r = drctl(what, &env, &args).await;
        expect(&r, 0);
        runs.push(r);
    }
    let r = drctl(
        "backup create",
        &env,
        &[
            "--kubeconfig",
            &k1s,
            "backup",
            "create",
            "shop",
            "--include-namespaces",
            &ns,
        ],
    )
    .await;
    expect(&r, 0);
    runs.push(r);
    let plan = dir.path().join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "apiVersion: lifeboat.dev/v1alpha1
kind: FailoverPlan
metadata:
  name: shop
spec:
  applications:
    - name: shop
      namespaces: [{ns}]
  primary: c1
  standbys: [c2]
  repositories:
    - url: {repo}
  rpoSeconds: 300
  rtoSeconds: 60
  readiness:
    timeoutSeconds: 60
    workloads: true
",
            repo = repo.display()
        ),
    )
    .unwrap();
    let plan_s = plan.display().to_string();
    let reports = dir.path().join("drill");
    let reports_s = reports.display().to_string();
    let r = drctl(
        "drill",
        &env,
        &[
            "drill",
            "--plan",
            &plan_s,
            "--to",
            "c2",
            "--namespace-suffix",
            "-drill",
            "--report-dir",
            &reports_s,
            "-o",
            "json",
        ],
    )
    .await;
    expect(&r, 0);
    runs.push(r);
    let r = drctl(
        "failover (refused)",
        &env,
        &["failover", "--plan", &plan_s, "--to", "c2"],
    )
    .await;
    expect(&r, 1);
    runs.push(r);
    let r = drctl(
        "failover --force",
        &env,
        &[
            "failover", "--plan", &plan_s, "--to", "c2", "--force", "-o", "json",
        ],
    )
    .await;
    expect(&r, 0);
    runs.push(r);
    let restored = Api::<Secret>::namespaced(c2.client(), &ns)
        .get("app-secret")
        .await
        .unwrap();
    assert_eq!(
        restored.data.and_then(|d| d.get("password").cloned()),
        Some(ByteString(APP_SECRET.as_bytes().to_vec())),
        "the Secret failed over with its application"
    );
    let r = drctl("audit", &env, &["audit", "-o", "json"]).await;
    expect(&r, 0);
    runs.push(r);
    for p in players {
        p.abort();
    }

    let mut files = Vec::new();
    for f in ["report.json", "report.md", "report.html"] {
        let text = std::fs::read_to_string(reports.join(f)).unwrap();
        assert!(text.len() > 200, "{f} holds the drill");
        files.push(Capture::new(format!("drill {f}"), text));
    }
    secrets.extend(identity_secrets(&identity));
    secrets.push(SecretValue::new("Secret data", APP_SECRET));
    assert_clean("drctl federation", &runs, files, &secrets);
    eprintln!("federation: {:.1} s", started.elapsed().as_secs_f64());
}
