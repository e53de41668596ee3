//! What the files backup/restore tests share: running drctl (as root or as an unprivileged
//! user) against a test repository; and (re-exported from `lifeboat_tests::files`) recording
//! everything `stat`, `readlink`, the xattr calls and `du` say about a tree, and fingerprints
//! of files outside a restore target.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use lifeboat_tests::files::*;
use lifeboat_tests::repos::{Backend, TestRepo};

/// The unprivileged user the tests run drctl as (`nobody` on Debian).
pub const NOBODY: u32 = 65534;

/// The drctl under test: `LIFEBOAT_DRCTL` (e.g. an older build, to see a test fail) or this
/// build's.
pub fn drctl_bin() -> PathBuf {
    std::env::var_os("LIFEBOAT_DRCTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_drctl")))
}

/// Who runs a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum As {
    /// This process's user (root on the test machines and in CI).
    Me,
    /// uid/gid 65534 with no supplementary groups, through `setpriv`.
    Nobody,
}

/// A repository for the tests, initialised through drctl.
pub struct Repo {
    pub t: TestRepo,
}

impl Repo {
    /// A fresh initialised repository on `backend`. With `for_nobody`, its directory (local
    /// repository, identity, scratch space) belongs to the unprivileged user.
    pub fn new(backend: Backend) -> Self {
        let t = TestRepo::new(backend).expect("test repository");
        let repo = Self { t };
        let out = repo.drctl(As::Me, ["repo", "init", "--recipient", &repo.t.recipient]);
        assert!(out.status.success(), "init: {}", stderr(&out));
        repo
    }

    /// A path in the scratch directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.t.path(name)
    }

    /// Lets the unprivileged user reach and own the scratch directory (repository, identity,
    /// data, targets); call after creating what should be theirs.
    pub fn hand_to_nobody(&self) {
        let ok = Command::new("chown")
            .args(["-R", &format!("{NOBODY}:{NOBODY}")])
            .arg(self.t.dir.path())
            .status()
            .unwrap();
        assert!(ok.success());
        std::fs::set_permissions(
            self.t.dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
    }

    /// Runs drctl with this repository's environment.
    pub fn drctl<I, S>(&self, who: As, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let bin = drctl_bin();
        let mut cmd = match who {
            As::Me => Command::new(&bin),
            As::Nobody => {
                let mut c = Command::new("setpriv");
                c.args([
                    &format!("--reuid={NOBODY}"),
                    &format!("--regid={NOBODY}"),
                    "--clear-groups",
                    "--",
                ])
                .arg(&bin);
                c
            }
        };
        cmd.arg("--quiet")
            .args(args)
            .envs(self.t.drctl_env())
            .env_remove("DRCTL_PASSPHRASE_FILE")
            .env("HOME", self.t.dir.path());
        cmd.output().expect("run drctl")
    }

    /// `drctl backup files PATH -o json`: the exit code and the snapshot manifest printed.
    pub fn backup(&self, who: As, path: &Path) -> (Option<i32>, serde_json::Value, String) {
        let out = self.drctl(
            who,
            [
                OsStr::new("backup"),
                "files".as_ref(),
                "-o".as_ref(),
                "json".as_ref(),
                path.as_os_str(),
            ],
        );
        let snap = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        (out.status.code(), snap, stderr(&out))
    }

    /// `drctl restore files ID --target T [extra…]`: the exit code and what it printed.
    pub fn restore(&self, who: As, snapshot: &str, target: &Path, extra: &[&str]) -> (Option<i32>, String) {
        let mut args: Vec<&OsStr> = vec![
            "restore".as_ref(),
            "files".as_ref(),
            snapshot.as_ref(),
            "--target".as_ref(),
            target.as_os_str(),
        ];
        args.extend(extra.iter().map(OsStr::new));
        let out = self.drctl(who, args);
        (
            out.status.code(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out)),
        )
    }
}

/// The snapshot id in a printed manifest (`latest` if it holds none, as older drctl printed).
pub fn snapshot_id(manifest: &serde_json::Value) -> String {
    manifest["id"].as_str().unwrap_or("latest").to_string()
}
