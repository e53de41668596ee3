//! A restore never touches anything outside its target, whatever the snapshot's tree says and
//! whatever links the target already holds; and a backup that could not save everything says
//! so. Each case checks the files outside the target by content and stat, as root and as an
//! unprivileged user.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod files_support;

use std::path::Path;

use files_support::*;
use lifeboat_backup::Repository;
use lifeboat_backup::snapshot::{Node, NodeKind};
use lifeboat_tests::repos::{Backend, write_snapshot};

/// Writes a snapshot whose tree is exactly `nodes` (in that order), every file holding
/// `content`, as a forger with the repository key could.
fn forge_snapshot(repo: &Repo, nodes: Vec<Node>, content: &[u8]) -> String {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let r = Repository::open(&repo.t.store(), &[repo.t.user_key()])
            .await
            .unwrap();
        let snap = write_snapshot(&r, nodes, Some(content.to_vec())).await.unwrap();
        snap.id.unwrap().to_hex()
    })
}

fn node(path: &str, kind: NodeKind, mode: u32, target: Option<&Path>) -> Node {
    let mut n = Node {
        path: path.to_string(),
        kind,
        mode,
        mtime_ns: 1_600_000_000_000_000_000,
        ..Node::default()
    };
    if let Some(t) = target {
        n.target = Some(t.display().to_string());
    }
    n
}

/// A tree that lists `evil` twice, first as a symlink to a file outside the target, then as a
/// 4777 file; and `dir` as a symlink to an outside directory, then as a directory holding a
/// file. Nothing outside may change; the entries are refused (exit 3); `repo check` calls the
/// snapshot damaged.
fn duplicate_names(who: As) {
    let repo = Repo::new(Backend::Local);
    let outside = repo.path("outside");
    std::fs::create_dir(&outside).unwrap();
    let victim = outside.join("victim");
    std::fs::write(&victim, b"precious\n").unwrap();
    chmod(&victim, 0o644);
    let nodes = vec![
        node("dir", NodeKind::Symlink, 0o777, Some(&outside)),
        node("dir", NodeKind::Dir, 0o777, None),
        node("dir/planted", NodeKind::File, 0o4777, None),
        node("evil", NodeKind::Symlink, 0o777, Some(&victim)),
        node("evil", NodeKind::File, 0o4777, None),
        node("fine", NodeKind::File, 0o644, None),
    ];
    let id = forge_snapshot(&repo, nodes, b"forged content\n");
    let target = repo.path("target");
    if who == As::Nobody {
        repo.hand_to_nobody();
    }
    let before = fingerprint(&[&outside, &victim]);

    let (code, out) = repo.restore(who, &id, &target, &[]);
    assert_eq!(code, Some(3), "{out}");
    assert_eq!(
        fingerprint(&[&outside, &victim]),
        before,
        "something outside the target changed"
    );
    assert!(out.contains("\"evil\" is listed 2 times"), "{out}");
    assert!(out.contains("dir/planted: refused"), "{out}");
    assert!(
        !target.join("evil").exists() && !target.join("dir").exists(),
        "written through a refused entry"
    );
    assert_eq!(std::fs::read(target.join("fine")).unwrap(), b"forged content\n");

    let check = repo.drctl(who, ["repo", "check"]);
    let text = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(3), "{text}");
    assert!(
        text.contains("\"evil\" is listed 2 times") && text.contains(&id),
        "{text}"
    );
}

#[test]
fn duplicate_names_in_a_tree_are_refused_as_root() {
    duplicate_names(As::Me);
}

#[test]
fn duplicate_names_in_a_tree_are_refused_as_an_unprivileged_user() {
    duplicate_names(As::Nobody);
}

/// The target already holds, where the snapshot has regular files, a hard link to a file
/// outside, a symlink to it, and a dangling symlink to an outside path; and a symlink to an
/// outside directory where the snapshot has a directory. The files are replaced as directory
/// entries, never written into; the symlinked directory is not followed.
fn existing_links(who: As, backend: Backend) {
    let repo = Repo::new(backend);
    let data = repo.path("data");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    for f in ["x", "y", "z", "sub/f"] {
        std::fs::write(data.join(f), format!("{f} from the snapshot\n")).unwrap();
    }
    let (code, manifest, err) = repo.backup(As::Me, &data);
    assert_eq!(code, Some(0), "{err}");

    let outside = repo.path("outside");
    std::fs::create_dir(&outside).unwrap();
    let victim = outside.join("victim");
    std::fs::write(&victim, b"precious\n").unwrap();
    let dangling = outside.join("created-by-restore");
    let target = repo.path("target");
    let at = restored(&target, &data);
    std::fs::create_dir_all(&at).unwrap();
    std::fs::hard_link(&victim, at.join("x")).unwrap();
    std::os::unix::fs::symlink(&victim, at.join("y")).unwrap();
    std::os::unix::fs::symlink(&dangling, at.join("z")).unwrap();
    std::os::unix::fs::symlink(&outside, at.join("sub")).unwrap();
    if who == As::Nobody {
        repo.hand_to_nobody();
    }
    let before = fingerprint(&[&outside, &victim, &dangling]);

    let (code, out) = repo.restore(who, &snapshot_id(&manifest), &target, &[]);
    assert_eq!(code, Some(3), "the symlinked directory must be reported: {out}");
    let after = fingerprint(&[&outside, &victim, &dangling]);
    assert_eq!(
        without_links(&after),
        without_links(&before),
        "something outside the target changed"
    );
    // The hard link in the target was replaced: the outside file has one name fewer.
    assert_eq!(after[1].links.unwrap().0, 1);
    for f in ["x", "y", "z"] {
        let m = std::fs::symlink_metadata(at.join(f)).unwrap();
        assert!(m.file_type().is_file(), "{f} is not a regular file");
        assert_eq!(
            std::fs::read(at.join(f)).unwrap(),
            format!("{f} from the snapshot\n").as_bytes()
        );
    }
    assert!(
        std::fs::symlink_metadata(at.join("sub"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // Once, not once for the directory and once more for each entry below it.
    assert_eq!(
        out.matches("sub: is a symlink; nothing is restored through it")
            .count(),
        1,
        "{out}"
    );
}

#[test]
fn existing_links_in_the_target_are_replaced_not_followed() {
    existing_links(As::Me, Backend::Local);
}

#[test]
fn existing_links_in_the_target_are_replaced_not_followed_unprivileged() {
    existing_links(As::Nobody, Backend::Local);
}

#[test]
fn rgw_existing_links_in_the_target_are_replaced_not_followed() {
    existing_links(As::Me, Backend::Rgw);
}

/// As an unprivileged user: an unreadable file and an unreadable directory cannot be saved.
/// The backup says which, exits 3, and still writes a snapshot that records them; the FIFO
/// beside them is saved (before, FIFOs, sockets and device nodes were skipped too).
#[test]
fn a_backup_that_cannot_read_everything_is_partial_and_says_what_it_lacks() {
    let repo = Repo::new(Backend::Local);
    let data = repo.path("data");
    std::fs::create_dir_all(data.join("closed")).unwrap();
    std::fs::write(data.join("readable"), b"fine\n").unwrap();
    std::fs::write(data.join("unreadable"), b"secret\n").unwrap();
    std::fs::write(data.join("closed/hidden"), b"hidden\n").unwrap();
    let fifo = data.join("fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    repo.hand_to_nobody();
    chmod(&data.join("unreadable"), 0o000);
    chmod(&data.join("closed"), 0o000);

    let (code, manifest, err) = repo.backup(As::Nobody, &data);
    assert_eq!(code, Some(3), "{err}");
    let skipped = manifest["summary"]["skipped"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let skipped: Vec<&str> = skipped.iter().filter_map(|s| s["path"].as_str()).collect();
    for lacking in [data.join("unreadable"), data.join("closed")] {
        let shown = lacking.display().to_string();
        assert!(skipped.contains(&shown.as_str()), "{shown} not in {skipped:?}");
        assert!(err.contains(&format!("not saved: {shown}")), "{err}");
    }
    assert!(!err.contains(&format!("not saved: {}", fifo.display())), "{err}");
    assert!(err.contains("partial"), "{err}");
    // The snapshot exists, records what it lacks, and restores what it has.
    let listed = repo.drctl(As::Nobody, ["snapshots", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(v[0]["summary"]["skipped"].as_array().map(Vec::len), Some(2));
    let target = repo.path("target");
    let (code, out) = repo.restore(As::Nobody, &snapshot_id(&manifest), &target, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        std::fs::read(restored(&target, &data).join("readable")).unwrap(),
        b"fine\n"
    );
    let back = std::fs::symlink_metadata(restored(&target, &data).join("fifo")).unwrap();
    assert!(
        std::os::unix::fs::FileTypeExt::is_fifo(&back.file_type()),
        "{back:?}"
    );
}

/// New-user pass (22): a tree whose file claims more (or fewer) bytes than its chunks hold is
/// damaged: `repo check` names the file, restore refuses it (exit 3) and writes the rest.
#[test]
fn a_file_whose_size_its_chunks_do_not_hold_is_refused_and_checked() {
    let repo = Repo::new(Backend::Local);
    let mut long = node("long", NodeKind::File, 0o644, None);
    long.size = 1 << 20;
    let mut short = node("short", NodeKind::File, 0o644, None);
    short.size = 3;
    let nodes = vec![long, short, node("fine", NodeKind::File, 0o644, None)];
    let id = forge_snapshot(&repo, nodes, b"forged content\n");
    let target = repo.path("target");
    let (code, out) = repo.restore(As::Me, &id, &target, &[]);
    assert_eq!(code, Some(3), "{out}");
    for name in ["long", "short"] {
        assert!(
            out.contains(&format!("{name}: refused: the tree gives its size as")),
            "{name}: {out}"
        );
        assert!(!target.join(name).exists(), "{name} was restored");
    }
    assert_eq!(std::fs::read(target.join("fine")).unwrap(), b"forged content\n");

    let check = repo.drctl(As::Me, ["repo", "check"]);
    let text = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(3), "{text}");
    assert!(
        text.contains("long: size 1048576 bytes in the tree, but its chunks hold 15") && text.contains(&id),
        "{text}"
    );
}

/// A target that exists and is not a directory (a file, a FIFO) is refused naming it and
/// what to give instead, and is left as it was.
#[test]
fn a_target_that_is_not_a_directory_is_refused() {
    let repo = Repo::new(Backend::Local);
    let data = repo.path("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("f"), b"f\n").unwrap();
    let (code, manifest, err) = repo.backup(As::Me, &data);
    assert_eq!(code, Some(0), "{err}");
    let file = repo.path("a-file");
    std::fs::write(&file, b"keep\n").unwrap();
    let (code, out) = repo.restore(As::Me, &snapshot_id(&manifest), &file, &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("exists and is not a directory: give a directory"),
        "{out}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"keep\n");
}
