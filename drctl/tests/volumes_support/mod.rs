//! What the volume-data tests share: running drctl against the Kubernetes API test server
//! and a local test repository, and reading its `-o json` volume lists.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use lifeboat_tests::kube::TestCluster;
use serde_json::Value;

/// A cluster's kubeconfig, a repository made with `drctl repo init`, and its identity.
pub struct Env {
    pub kubeconfig: PathBuf,
    pub repo: PathBuf,
    pub identity: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Env {
    /// A fresh repository for `cluster`.
    pub async fn new(cluster: &TestCluster) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (identity, public) = lifeboat_tests::repos::make_identity(dir.path(), "me").unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir(&repo).unwrap();
        let env = Env {
            kubeconfig: cluster
                .kubeconfig_path()
                .map(Path::to_path_buf)
                .expect("a kubeconfig file"),
            repo,
            identity,
            dir,
        };
        let init = run(env.drctl(&["repo", "init", "--recipient", &public])).await;
        assert!(init.status.success(), "{}", text(&init));
        env
    }

    /// drctl with `args` on this repository, logging at debug (so tests can check that no
    /// secret reaches even debug output).
    pub fn drctl(&self, args: &[&str]) -> Command {
        let mut c = Command::cargo_bin("drctl").unwrap();
        c.env("KUBECONFIG", &self.kubeconfig)
            .env_remove("DRCTL_REPO")
            .env_remove("CEPH_CONF")
            .env("RUST_LOG", "debug")
            .env("DRCTL_IDENTITY", &self.identity)
            .env("TMPDIR", self.dir.path())
            .arg("--quiet")
            .args(args)
            .arg("--repo")
            .arg(&self.repo);
        c
    }
}

/// Runs `c` off the async threads.
pub async fn run(mut c: Command) -> Output {
    tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap()
}

/// Exit code, stdout and stderr, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The entry of `claim` in a `volumes` list.
pub fn volume<'a>(volumes: &'a Value, claim: &str) -> &'a Value {
    volumes
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["claim"] == claim)
        .unwrap_or_else(|| panic!("no {claim} in {volumes}"))
}
