//! The CLI surface: every group is listed, and misuse is a usage error.

use assert_cmd::Command;

#[test]
fn help_lists_every_command_group() {
    let out = Command::cargo_bin("drctl")
        .unwrap()
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for group in [
        "repo", "backup", "restore", "schedule", "etcd", "cluster", "failover", "drill",
    ] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(group)),
            "{group} missing from:\n{help}"
        );
    }
    for flag in ["--context", "--namespace", "--format", "--kubeconfig"] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}

/// The federation groups are built: an unknown subcommand or flag is a usage error (exit 2)
/// that names it, never a pretend success.
#[test]
fn federation_groups_refuse_unknown_subcommands_as_usage_errors() {
    for group in ["cluster", "failover", "drill"] {
        let out = Command::cargo_bin("drctl")
            .unwrap()
            .args([group, "anything", "--flag"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{group}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(
            err.contains("anything") || err.contains("--flag"),
            "{group}: {err}"
        );
    }
}

/// Volume flags of federation runs that cannot mean anything are usage errors (exit 2)
/// naming the flag: no volume moved at a time, a ceph.conf for a run moving no volumes.
#[test]
fn federation_volume_flags_that_contradict_are_usage_errors() {
    for (args, flag) in [
        (
            &["drill", "--plan", "p.yaml", "--volume-parallelism", "0"][..],
            "--volume-parallelism",
        ),
        (
            &[
                "failover",
                "--plan",
                "p.yaml",
                "--no-volumes",
                "--ceph-conf",
                "c.conf",
            ][..],
            "--ceph-conf",
        ),
        (
            &["relocate", "--plan", "p.yaml", "--to", "c2", "--ceph-id", "x"][..],
            "--ceph-id",
        ),
    ] {
        let out = Command::cargo_bin("drctl").unwrap().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains(flag), "{args:?}: {err}");
    }
}

/// A `--ceph-conf` that cannot be read is named, with the fix, before any plan, cluster or
/// repository is read (exit 1).
#[test]
fn an_unreadable_ceph_conf_is_named_before_anything_runs() {
    for args in [
        &[
            "drill",
            "--plan",
            "missing-plan.yaml",
            "--ceph-conf",
            "/nonexistent/ceph.conf",
        ][..],
        &[
            "failover",
            "--plan",
            "missing-plan.yaml",
            "--ceph-conf",
            "/nonexistent/ceph.conf",
        ][..],
    ] {
        let out = Command::cargo_bin("drctl").unwrap().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(
            err.contains("--ceph-conf /nonexistent/ceph.conf") && err.contains("readable ceph.conf"),
            "{args:?}: {err}"
        );
    }
}

/// `drctl restore files --help` says what a restore brings back beyond content, and what
/// only root gets back: an operator deciding whether to run it as root needs to know.
#[test]
fn restore_files_help_names_xattrs_acls_and_what_needs_root() {
    let out = Command::cargo_bin("drctl")
        .unwrap()
        .args(["restore", "files", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for said in [
        "extended attributes",
        "POSIX ACLs",
        "system.posix_acl_access",
        "set-user-ID",
        "hard links",
        "sparse",
        "trusted.*",
        "Exit code 3",
    ] {
        assert!(help.contains(said), "{said:?} missing from:\n{help}");
    }
}

/// A standard error (or output) that cannot be written — closed, or a full device — must not
/// turn a command's result into a panic (exit 101): the messages are lost, the exit code still
/// says what happened.
#[test]
fn closed_stderr_and_stdout_keep_the_exit_code() {
    let drctl = assert_cmd::cargo::cargo_bin("drctl");
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-repository");
    for (redirect, what) in [
        ("2>&-", "stderr closed"),
        ("2>/dev/full", "stderr full"),
        (">/dev/full 2>/dev/full", "stdout and stderr full"),
    ] {
        // An error (no repository there): exit 1, printed nowhere.
        let script = format!("\"$0\" snapshots --repo \"$1\" {redirect}; echo $?");
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .arg(&drctl)
            .arg(&missing)
            .output()
            .expect("sh");
        let code = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(code, "1", "with {what}: exit {code}");
        // A usage error: exit 2.
        let script = format!("\"$0\" snapshots --no-such-flag {redirect}; echo $?");
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .arg(&drctl)
            .output()
            .expect("sh");
        let code = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(code, "2", "with {what}: exit {code}");
    }
}

/// Numbers that cannot mean anything are usage errors (exit 2) naming the flag, before any
/// repository, cluster or server is touched: a count of 0 where at least one is needed (the
/// engine used to turn 0 into 1 or 4 without a word), a zstd level zstd does not have (99
/// was recorded in the repository's config), a tag or host name holding a newline (it broke
/// every table listing snapshots) or a host name with spaces around it, and one tag or label
/// key given twice with two values (one silently won).
#[test]
fn flags_that_cannot_mean_anything_are_usage_errors() {
    let repo = ["--repo", "/nonexistent/lifeboat-repo"];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            [
                &["repo", "copy"][..],
                &repo,
                &["--to", "/tmp/b", "--parallel", "0"],
            ]
            .concat(),
            "--parallel",
        ),
        (
            vec!["repo", "init", "--repo", "/x", "--compression-level", "99"],
            "zstd level",
        ),
        (
            vec!["repo", "init", "--repo", "/x", "--compression-level", "fast"],
            "whole number",
        ),
        (
            vec!["repo", "init", "--repo", "/x", "--compression-level", "-131073"],
            "zstd level",
        ),
        (
            [
                &["volume", "backup"][..],
                &repo,
                &["--pool", "p", "--image", "i", "--workers", "0"],
            ]
            .concat(),
            "--workers",
        ),
        (
            [
                &["volume", "restore", "abc"][..],
                &repo,
                &["--pool", "p", "--image", "i", "--workers", "0"],
            ]
            .concat(),
            "--workers",
        ),
        (
            [
                &["etcd", "snapshot"][..],
                &repo,
                &["--endpoints", "http://127.0.0.1:1", "--watch", "--interval", "0"],
            ]
            .concat(),
            "--interval",
        ),
        (
            vec!["backup", "create", "b", "--direct", "--volume-parallelism", "0"],
            "--volume-parallelism",
        ),
        (
            vec![
                "restore",
                "create",
                "r",
                "--from-backup",
                "b",
                "--parallelism",
                "0",
            ],
            "--parallelism",
        ),
        (vec!["cluster", "status", "--probes", "0"], "--probes"),
        (
            vec!["cluster", "status", "--confirmations", "0"],
            "--confirmations",
        ),
        (
            [&["backup", "files"][..], &repo, &["/tmp", "--tag", "a=b\nc"]].concat(),
            "control character",
        ),
        (
            [&["backup", "files"][..], &repo, &["/tmp", "--host", "web\n1"]].concat(),
            "control character",
        ),
        (
            [&["backup", "files"][..], &repo, &["/tmp", "--host", " web1"]].concat(),
            "spaces around it",
        ),
        (
            [
                &["restore", "files", "latest"][..],
                &repo,
                &["--target", "/tmp/t", "--host", "web\n1"],
            ]
            .concat(),
            "control character",
        ),
        (
            [
                &["backup", "files"][..],
                &repo,
                &["/tmp", "--tag", "env=prod", "--tag", "env=dev"],
            ]
            .concat(),
            "give each key once",
        ),
    ];
    let cases = cases.into_iter().chain([
        (
            vec![
                "restore",
                "create",
                "r",
                "--from-backup",
                "b",
                "--labels",
                "a=1,a=2",
            ],
            "give each key once",
        ),
        (
            vec![
                "restore",
                "create",
                "r",
                "--from-backup",
                "b",
                "--labels",
                "bad key=x",
            ],
            "the key's name",
        ),
        (
            vec!["restore", "create", "r", "--from-backup", "b", "--labels", "a=-x"],
            "the value must be",
        ),
        (
            vec![
                "restore",
                "create",
                "r",
                "--from-backup",
                "b",
                "--selector",
                "app in (web",
            ],
            "label selector",
        ),
    ]);
    for (args, named) in cases {
        let out = Command::cargo_bin("drctl")
            .unwrap()
            .args(&args)
            .env("LIFEBOAT_PASSPHRASE", "x")
            .output()
            .unwrap();
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(named), "{args:?}: {err}");
    }
}
