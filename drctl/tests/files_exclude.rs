//! What `drctl backup files` leaves out on request: `--exclude` / `--exclude-file` patterns
//! (restic's habits) and `--one-file-system` (a real tmpfs mounted inside the data), checked
//! by restoring the snapshot and comparing trees, and in the manifest's record.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod files_support;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;

use files_support::*;
use lifeboat_tests::repos::Backend;

/// `drctl backup files PATH -o json EXTRA…`: exit code, manifest, stderr.
fn backup(repo: &Repo, path: &Path, extra: &[&OsStr]) -> (Option<i32>, serde_json::Value, String) {
    let mut args: Vec<&OsStr> = vec![
        "backup".as_ref(),
        "files".as_ref(),
        "-o".as_ref(),
        "json".as_ref(),
    ];
    args.extend_from_slice(extra);
    args.push(path.as_os_str());
    let out = repo.drctl(As::Me, args);
    let snap = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code(), snap, stderr(&out))
}

/// The relative paths under `root`, as text.
fn names(root: &Path) -> BTreeSet<String> {
    tree(root)
        .keys()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect()
}

/// Patterns from the command line and from a file leave out matching entries and all an
/// excluded directory holds, at any depth unless anchored, directories only with a trailing
/// `/`; names that are not UTF-8 match as bytes; `--exclude-caches` keeps a cache directory
/// and its tag only. The count is printed and stored, the
/// patterns are recorded in the manifest, the exit code is 0 (nothing asked for is missing),
/// and the restore holds exactly the rest.
#[test]
fn excluded_paths_are_left_out_counted_and_recorded() {
    let repo = Repo::new(Backend::Local);
    let src = tempfile::tempdir().unwrap();
    let data = src.path().join("data");
    for d in ["sub/cache/deep", "other", "node_modules/pkg", "logs"] {
        std::fs::create_dir_all(data.join(d)).unwrap();
    }
    for f in [
        "keep.txt",
        "a.tmp",
        "sub/b.tmp",
        "sub/cache/deep/f",
        "other/cache",
        "node_modules/pkg/index.js",
        "logs/app.log",
        "logs/keep.cfg",
    ] {
        std::fs::write(data.join(f), f.as_bytes()).unwrap();
    }
    std::fs::write(data.join(OsStr::from_bytes(b"caf\xe9.tmp")), b"latin-1 name").unwrap();
    std::fs::create_dir_all(data.join("thumbs/x")).unwrap();
    std::fs::write(
        data.join("thumbs/CACHEDIR.TAG"),
        b"Signature: 8a477f597d28d172789f06886806bc55\n",
    )
    .unwrap();
    std::fs::write(data.join("thumbs/x/1.png"), b"png").unwrap();
    let list = repo.path("excludes.txt");
    let anchored = format!("{}/logs/*.log", data.display());
    std::fs::write(&list, format!("# caches are rebuilt\ncache/\n\n  {anchored}  \n")).unwrap();

    let (code, manifest, err) = backup(
        &repo,
        &data,
        &[
            "--exclude".as_ref(),
            "*.tmp".as_ref(),
            "--exclude".as_ref(),
            "node_modules".as_ref(),
            "--exclude-file".as_ref(),
            list.as_os_str(),
            "--exclude-caches".as_ref(),
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    // a.tmp, sub/b.tmp, café.tmp, sub/cache, node_modules, logs/app.log, thumbs/x
    assert_eq!(manifest["summary"]["excluded"], 7, "{manifest:#}");
    assert!(err.contains(", 7 excluded,"), "{err}");
    assert_eq!(manifest["meta"]["exclude_caches"], "true");
    let recorded: Vec<String> =
        serde_json::from_str(manifest["meta"]["excludes"].as_str().expect("meta.excludes")).unwrap();
    assert_eq!(recorded, ["*.tmp", "node_modules", "cache/", anchored.as_str()]);

    let target = repo.path("target");
    let (code, out) = repo.restore(As::Me, &snapshot_id(&manifest), &target, &[]);
    assert_eq!(code, Some(0), "{out}");
    let want: BTreeSet<String> = [
        "",
        "keep.txt",
        "other",
        "other/cache",
        "sub",
        "logs",
        "logs/keep.cfg",
        "thumbs",
        "thumbs/CACHEDIR.TAG",
    ]
    .map(String::from)
    .into();
    assert_eq!(names(&restored(&target, &data)), want);
}

/// A root inside an excluded directory is left out (as restic does), and a backup of nothing
/// else says so by its counts; patterns that cannot be used and exclude files that cannot be
/// read are usage errors (exit 2) naming them, before the repository is opened.
#[test]
fn unusable_patterns_are_refused_and_excluded_roots_left_out() {
    let repo = Repo::new(Backend::Local);
    let src = tempfile::tempdir().unwrap();
    let deep = src.path().join("node_modules/pkg");
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("index.js"), b"x").unwrap();
    let (code, manifest, err) = backup(&repo, &deep, &["--exclude".as_ref(), "./node_modules".as_ref()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains(&format!("{} is excluded by an --exclude pattern", deep.display())),
        "{err}"
    );
    assert_eq!(
        (&manifest["summary"]["files"], &manifest["summary"]["excluded"]),
        (&serde_json::json!(0), &serde_json::json!(1))
    );

    let missing = repo.path("no-such-list");
    for (args, says) in [
        (vec!["--exclude", ""], "exclude pattern \"\" is empty"),
        (vec!["--exclude", "!keep"], "negation is not supported"),
        (vec!["--exclude", "[z-"], "is not a glob"),
        (
            vec!["--exclude-file", missing.to_str().unwrap()],
            "--exclude-file",
        ),
    ] {
        let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        let (code, _, err) = backup(&repo, &deep, &args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// `restore files --exclude` / `--exclude-file` leave entries out of a restore with backup's
/// rules (absolute paths; a bare name at any depth, a trailing `/` for directories only), after
/// `--include`; the count is printed; unusable patterns are usage errors (exit 2) before the
/// target is touched.
#[test]
fn restore_leaves_out_what_exclude_matches_after_include() {
    let repo = Repo::new(Backend::Local);
    let src = tempfile::tempdir().unwrap();
    let data = src.path().join("data");
    for d in ["app/cache/deep", "app/conf", "logs"] {
        std::fs::create_dir_all(data.join(d)).unwrap();
    }
    for f in [
        "app/cache/deep/f",
        "app/conf/a.yaml",
        "app/conf/a.yaml.bak",
        "app/run.pid",
        "logs/x.log",
        "top.txt",
    ] {
        std::fs::write(data.join(f), f.as_bytes()).unwrap();
    }
    // A file named like the directory-only pattern is kept.
    std::fs::write(data.join("logs/cache"), b"a file called cache").unwrap();
    let (code, manifest, err) = backup(&repo, &data, &[]);
    assert_eq!(code, Some(0), "{err}");
    let id = snapshot_id(&manifest);

    let list = repo.path("restore-excludes.txt");
    std::fs::write(&list, "# not worth restoring\n*.bak\n").unwrap();
    let target = repo.path("excluded");
    let (code, out) = repo.restore(
        As::Me,
        &id,
        &target,
        &[
            "--exclude",
            "cache/",
            "--exclude",
            &format!("{}/app/run.pid", data.display()),
            "--exclude-file",
            list.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("left out 3 entries matching --exclude"), "{out}");
    let want: BTreeSet<String> = [
        "",
        "app",
        "app/conf",
        "app/conf/a.yaml",
        "logs",
        "logs/cache",
        "logs/x.log",
        "top.txt",
    ]
    .map(String::from)
    .into();
    assert_eq!(names(&restored(&target, &data)), want);

    // After --include: the included directory less what is excluded in it.
    let stored = data.strip_prefix("/").unwrap().display().to_string();
    let target = repo.path("included");
    let (code, out) = repo.restore(
        As::Me,
        &id,
        &target,
        &[
            "--include",
            &format!("{stored}/app"),
            "--exclude",
            "conf",
            "-o",
            "json",
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    let report = serde_json::Deserializer::from_str(&out)
        .into_iter::<serde_json::Value>()
        .next()
        .expect("a JSON report")
        .expect("a JSON report");
    assert_eq!(report["excluded"], 1, "app/conf, with its two files: {report:#}");
    let want: BTreeSet<String> = [
        "",
        "app",
        "app/cache",
        "app/cache/deep",
        "app/cache/deep/f",
        "app/run.pid",
    ]
    .map(String::from)
    .into();
    assert_eq!(names(&restored(&target, &data)), want);

    // Excluding everything restores nothing, and says so.
    let target = repo.path("nothing");
    let (code, out) = repo.restore(As::Me, &id, &target, &["--exclude", data.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("left out 1 entry matching --exclude"), "{out}");
    assert!(out.contains("nothing was restored"), "{out}");

    let untouched = repo.path("untouched");
    let bad_list = repo.path("bad-excludes.txt");
    std::fs::write(&bad_list, "# fine\n*.bak\n[z-\n").unwrap();
    let bad_line = format!(
        "--exclude-file {} line 3: exclude pattern \"[z-\"",
        bad_list.display()
    );
    for (args, says) in [
        (vec!["--exclude", ""], "exclude pattern \"\" is empty"),
        (vec!["--exclude", "!keep"], "negation is not supported"),
        (
            vec!["--exclude-file", "/nonexistent/list"],
            "--exclude-file /nonexistent/list",
        ),
        (vec!["--exclude-file", bad_list.to_str().unwrap()], &bad_line),
    ] {
        let (code, out) = repo.restore(As::Me, &id, &untouched, &args);
        assert_eq!(code, Some(2), "{args:?}: {out}");
        assert!(out.contains(says), "{args:?}: {out}");
        assert!(!untouched.exists(), "{args:?}: the target was made");
    }
}

/// Unmounts on drop, also when the test fails.
struct Mount<'a>(&'a Path);

impl Drop for Mount<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0).status();
    }
}

/// `--one-file-system` saves a mount point below the root as an empty directory, lists it,
/// and records the choice; without it the mounted filesystem's files are saved. Needs root
/// (CI and the test machines run as root) to mount a tmpfs.
#[test]
fn one_file_system_stops_at_mount_points() {
    let repo = Repo::new(Backend::Local);
    let src = tempfile::tempdir().unwrap();
    let data = src.path().join("data");
    let mnt = data.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    std::fs::write(data.join("here.txt"), b"on the root's filesystem").unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "lifeboat-test"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount -t tmpfs needs root (CAP_SYS_ADMIN)");
    let _mount = Mount(&mnt);
    std::fs::create_dir(mnt.join("inner")).unwrap();
    std::fs::write(mnt.join("inner/there.txt"), b"on the tmpfs").unwrap();

    let (code, manifest, err) = backup(&repo, &data, &["-x".as_ref()]);
    assert_eq!(code, Some(0), "{err}");
    let shown = mnt.display().to_string();
    assert!(
        err.contains(&format!(
            "not entered (other filesystems, --one-file-system): {shown}"
        )),
        "{err}"
    );
    assert_eq!(
        manifest["summary"]["other_filesystems"],
        serde_json::json!([shown])
    );
    assert_eq!(manifest["meta"]["one_file_system"], "true");
    let target = repo.path("one-fs");
    let (code, out) = repo.restore(As::Me, &snapshot_id(&manifest), &target, &[]);
    assert_eq!(code, Some(0), "{out}");
    let want: BTreeSet<String> = ["", "here.txt", "mnt"].map(String::from).into();
    assert_eq!(names(&restored(&target, &data)), want);
    // The mount point given as a path of its own is entered, and not listed as left out.
    let (code, manifest, err) = backup(&repo, &data, &["-x".as_ref(), mnt.as_os_str()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        manifest["summary"].get("other_filesystems").is_none(),
        "{manifest:#}"
    );
    assert!(!err.contains("not entered"), "{err}");

    let (code, manifest, err) = backup(&repo, &data, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(manifest["summary"].get("other_filesystems").is_none() && manifest.get("meta").is_none());
    let target = repo.path("all");
    let (code, out) = repo.restore(As::Me, &snapshot_id(&manifest), &target, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(names(&restored(&target, &data)).contains("mnt/inner/there.txt"));
}
