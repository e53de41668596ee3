//! The CLI surface: every group is listed, and groups not built yet refuse honestly.

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

#[test]
fn unbuilt_groups_say_so_and_fail() {
    for group in ["cluster", "failover", "drill"] {
        let out = Command::cargo_bin("drctl")
            .unwrap()
            .args([group, "anything", "--flag"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(69), "{group}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains("not built yet") && err.contains(group), "{err}");
    }
}
