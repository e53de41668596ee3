//! What the files backup/restore tests share: running drctl (as root or as an unprivileged
//! user), recording everything `stat`, `readlink`, `getfattr` and `du` say about a tree, and
//! fingerprints of files outside a restore target.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The snapshot id in a printed manifest (`latest` if it holds none, as older drctl printed).
pub fn snapshot_id(manifest: &serde_json::Value) -> String {
    manifest["id"].as_str().unwrap_or("latest").to_string()
}

/// Where a backed-up absolute path lands under a restore target.
pub fn restored(target: &Path, original: &Path) -> PathBuf {
    target.join(original.strip_prefix("/").unwrap_or(original))
}

/// Everything about one entry that a restore must reproduce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `f`, `d` or `l`.
    pub kind: char,
    /// Permission bits with set-id and sticky bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Modification time (s, ns).
    pub mtime: (i64, i64),
    pub nlink: u64,
    /// Allocated 512-byte blocks (what `du` adds up).
    pub blocks: u64,
    /// Content size (files).
    pub size: u64,
    /// BLAKE3 of the content (files).
    pub content: Option<String>,
    /// Link target bytes (symlinks).
    pub target: Option<Vec<u8>>,
    /// Extended attributes, sorted by name.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

pub fn xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut names = vec![0u8; 65536];
    let len = rustix::fs::llistxattr(path, &mut names[..]).unwrap_or(0);
    let mut out = Vec::new();
    for name in names[..len].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let mut value = vec![0u8; 65536];
        if let Ok(n) = rustix::fs::lgetxattr(path, name, &mut value[..]) {
            out.push((String::from_utf8_lossy(name).into_owned(), value[..n].to_vec()));
        }
    }
    out.sort();
    out
}

/// Records one entry.
pub fn entry(path: &Path) -> Entry {
    let m = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let ft = m.file_type();
    let kind = if ft.is_symlink() {
        'l'
    } else if ft.is_dir() {
        'd'
    } else {
        'f'
    };
    Entry {
        kind,
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        mtime: (m.mtime(), m.mtime_nsec()),
        nlink: if kind == 'd' { 0 } else { m.nlink() },
        blocks: if kind == 'f' { m.blocks() } else { 0 },
        size: if kind == 'f' { m.len() } else { 0 },
        content: (kind == 'f').then(|| blake3::hash(&std::fs::read(path).unwrap()).to_hex().to_string()),
        target: (kind == 'l').then(|| std::fs::read_link(path).unwrap().as_os_str().as_bytes().to_vec()),
        xattrs: xattrs(path),
    }
}

/// Every entry under `root` (and `root` itself, as the empty path), by path bytes.
pub fn tree(root: &Path) -> BTreeMap<Vec<u8>, Entry> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let e = entry(&p);
        if e.kind == 'd' {
            for child in std::fs::read_dir(&p).unwrap() {
                stack.push(child.unwrap().path());
            }
        }
        let rel = p.strip_prefix(root).unwrap().as_os_str().as_bytes().to_vec();
        out.insert(rel, e);
    }
    out
}

/// Asserts two trees are the same entry for entry.
pub fn assert_same_tree(source: &Path, copy: &Path) {
    let (a, b) = (tree(source), tree(copy));
    let names = |t: &BTreeMap<Vec<u8>, Entry>| {
        t.keys()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&a), names(&b), "the restored tree lists other names");
    for (path, want) in &a {
        let got = &b[path];
        assert_eq!(
            want,
            got,
            "{:?} differs (left: source, right: restored)",
            String::from_utf8_lossy(path)
        );
    }
}

/// A file or directory outside a restore target: its content (or listing) and every stat
/// field that could change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    pub path: PathBuf,
    pub content: Option<String>,
    pub listing: Option<Vec<PathBuf>>,
    /// mode (type and permissions), uid, gid, mtime (s, ns), size, inode.
    pub stat: Option<(u32, u32, u32, i64, i64, u64, u64)>,
    /// Link count and ctime: the only things a restore may change outside, by replacing a
    /// hard link to it that stood in the target.
    pub links: Option<(u64, i64, i64)>,
}

/// Fingerprints `paths` (files or directories; a missing path is recorded as missing).
pub fn fingerprint(paths: &[&Path]) -> Vec<Fingerprint> {
    paths
        .iter()
        .map(|p| {
            let m = std::fs::symlink_metadata(p).ok();
            Fingerprint {
                path: p.to_path_buf(),
                content: m
                    .as_ref()
                    .filter(|m| m.is_file())
                    .map(|_| blake3::hash(&std::fs::read(p).unwrap()).to_hex().to_string()),
                listing: m.as_ref().filter(|m| m.is_dir()).map(|_| {
                    let mut l: Vec<PathBuf> =
                        std::fs::read_dir(p).unwrap().map(|e| e.unwrap().path()).collect();
                    l.sort();
                    l
                }),
                stat: m.as_ref().map(|m| {
                    (
                        m.mode(),
                        m.uid(),
                        m.gid(),
                        m.mtime(),
                        m.mtime_nsec(),
                        m.size(),
                        m.ino(),
                    )
                }),
                links: m.as_ref().map(|m| (m.nlink(), m.ctime(), m.ctime_nsec())),
            }
        })
        .collect()
}

/// The fingerprints without link counts and ctimes.
pub fn without_links(prints: &[Fingerprint]) -> Vec<Fingerprint> {
    prints
        .iter()
        .map(|f| Fingerprint {
            links: None,
            ..f.clone()
        })
        .collect()
}

/// Sets an entry's modification time without following a symlink.
pub fn set_mtime(path: &Path, secs: i64, nanos: i64) {
    use rustix::fs::{AtFlags, CWD, Timespec, Timestamps};
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: nanos as _,
    };
    rustix::fs::utimensat(
        CWD,
        path,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap_or_else(|e| panic!("utimensat {}: {e}", path.display()));
}

/// chown without following symlinks.
pub fn lchown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
}

/// chmod (after chown: chown clears set-id bits).
pub fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
}

/// Runs a command that must succeed.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn");
    assert!(out.status.success(), "{cmd:?}: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Bytes to names.
pub fn name(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}
