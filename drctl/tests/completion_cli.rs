//! `drctl completion SHELL` and `drctl man`: generated from the CLI definition, they know
//! every command group and nested command.

use assert_cmd::Command;

const GROUPS: &[&str] = &[
    "repo",
    "backup",
    "snapshots",
    "forget",
    "restore",
    "schedule",
    "crds",
    "etcd",
    "cluster",
    "failover",
    "drill",
    "completion",
    "man",
];

fn drctl(args: &[&str]) -> String {
    let out = Command::cargo_bin("drctl")
        .expect("the drctl binary")
        .args(args)
        .output()
        .expect("run drctl");
    assert!(
        out.status.success(),
        "drctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

#[test]
fn every_shell_gets_a_script_naming_every_command() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let script = drctl(&["completion", shell]);
        // Flags as each shell spells them (fish: `-l namespace`).
        for word in GROUPS
            .iter()
            .chain(&["init", "prune", "snapshot", "files", "namespace", "format"])
        {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
}

/// Sources the bash script in a real bash and asks it to complete, as the shell does on Tab.
fn bash_complete(line: &str) -> Vec<String> {
    let script = tempfile::NamedTempFile::new().expect("temporary file");
    std::fs::write(script.path(), drctl(&["completion", "bash"])).expect("write the script");
    let words: Vec<&str> = line.split(' ').collect();
    let program = format!(
        "source {script}\n\
         COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE={line:?}; COMP_POINT={point}\n\
         _drctl drctl {cur:?} {prev:?}\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script = script.path().display(),
        words = words
            .iter()
            .map(|w| format!("{w:?}"))
            .collect::<Vec<_>>()
            .join(" "),
        cword = words.len() - 1,
        point = line.len(),
        cur = words[words.len() - 1],
        prev = words[words.len() - 2],
    );
    let out = std::process::Command::new("bash")
        .args(["--norc", "-c", &program])
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "bash: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("UTF-8 output")
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completes_commands_and_nested_commands() {
    assert_eq!(bash_complete("drctl ba"), ["backup"]);
    let etcd = bash_complete("drctl etcd sn");
    assert!(
        etcd.contains(&"snapshot".to_string()) && etcd.contains(&"snapshots".to_string()),
        "{etcd:?}"
    );
    let formats = bash_complete("drctl snapshots -o ");
    assert_eq!(formats, ["table", "json", "yaml"]);
}

/// The bash script (~125 KiB) outgrows a pipe's buffer, so `head` closing early always
/// meets drctl mid-write.
#[test]
fn a_reader_that_stops_early_is_not_an_error() {
    let out = std::process::Command::new("bash")
        .args([
            "-o",
            "pipefail",
            "-c",
            &format!(
                "{} completion bash | head -c 10 >/dev/null",
                env!("CARGO_BIN_EXE_drctl")
            ),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "drctl completion bash | head: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn unknown_shells_are_a_usage_error() {
    let out = Command::cargo_bin("drctl")
        .unwrap()
        .args(["completion", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tcsh") && err.contains("bash"), "{err}");
}

#[test]
fn man_prints_drctl_1_and_writes_a_page_per_command() {
    let page = drctl(&["man"]);
    assert!(page.starts_with(".ie") || page.contains(".TH drctl 1"), "{page}");
    for group in GROUPS {
        assert!(page.contains(group), "drctl.1 lacks {group}");
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man1");
    drctl(&["man", "--dir", out.to_str().unwrap()]);
    for name in [
        "drctl.1",
        "drctl-repo.1",
        "drctl-repo-init.1",
        "drctl-repo-key-add.1",
        "drctl-backup-create.1",
        "drctl-etcd-restore.1",
        "drctl-completion.1",
    ] {
        let text = std::fs::read_to_string(out.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(text.contains(".TH"), "{name} is not a man page");
    }
    let restore = std::fs::read_to_string(out.join("drctl-etcd-restore.1")).unwrap();
    assert!(restore.contains("to\\-revision"), "{restore}");
}
