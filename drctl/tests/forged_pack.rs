//! A pack written by someone without the repository key — encrypted to the repository's
//! public recipient (anyone can), named by its own BLAKE3, listed by a new index — claims to
//! hold a file's blob but holds other bytes. Restore refuses that blob (exit 3) and writes
//! none of the forged bytes; `repo check --read-data` reports it.
//!
//! Built with the stock tools a forger has (`age`, `zstd`), as docs/FORMAT.md describes the
//! objects.
#![allow(clippy::unwrap_used)] // a test that cannot set up should panic loudly

mod files_support;

use std::path::Path;
use std::process::{Command, Stdio};

use files_support::*;
use lifeboat_tests::repos::Backend;
use serde_json::{Value, json};

/// Runs `cmd` with `input` on stdin; returns stdout, panicking with stderr on failure.
fn pipe(cmd: &mut Command, input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Every object of one kind (`index`, `keys`) in a local repository.
fn objects(repo: &Path, kind: &str) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(repo.join(kind))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

/// Writes `bytes` as a content-addressed object (`dir/<blake3>` or `dir/<2 hex>/<blake3>`).
fn put_named(dir: &Path, fan_out: bool, bytes: &[u8]) -> String {
    let id = blake3::hash(bytes).to_hex().to_string();
    let dir = if fan_out {
        dir.join(&id[..2])
    } else {
        dir.to_path_buf()
    };
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(&id), bytes).unwrap();
    id
}

#[test]
fn a_forged_blob_under_a_real_id_is_refused_by_restore_and_found_by_check() {
    let repo = Repo::new(Backend::Local);
    let root = repo.path("repo");
    let src = repo.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("config.yaml"), "replicas: 3\nimage: app:1.4.2\n").unwrap();
    let (code, _, err) = repo.backup(As::Me, &src);
    assert_eq!(code, Some(0), "{err}");

    // The repository key, unwrapped with the user's identity (FORMAT.md, recovery step 1),
    // only to read which blob ids the index lists: the forged objects are written without it.
    let key_file = repo.path("repo.key");
    let unwrapped = objects(&root, "keys").iter().any(|k| {
        Command::new("age")
            .args(["-d", "-i"])
            .arg(&repo.t.identity)
            .arg("-o")
            .arg(&key_file)
            .arg(k)
            .status()
            .unwrap()
            .success()
    });
    assert!(unwrapped, "no keys/ object opens with the test identity");
    let mut packs: Vec<Value> = Vec::new();
    for index in objects(&root, "index") {
        let plain = pipe(
            Command::new("age").arg("-d").arg("-i").arg(&key_file),
            &std::fs::read(&index).unwrap(),
        );
        let json: Value =
            serde_json::from_slice(&pipe(Command::new("zstd").args(["-d", "-c"]), &plain)).unwrap();
        packs.extend(json["packs"].as_array().unwrap().iter().cloned());
    }
    let data = packs.iter().find(|p| p["kind"] == "data").expect("a data pack");
    assert_eq!(
        data["blobs"].as_array().unwrap().len(),
        1,
        "one file, one blob: {data}"
    );
    let blob_id = data["blobs"][0]["id"].as_str().unwrap().to_string();

    // The forgery: other bytes under that blob id, encrypted to the repository's recipient.
    let config: Value = serde_json::from_slice(&std::fs::read(root.join("config")).unwrap()).unwrap();
    let recipient = config["recipient"].as_str().unwrap();
    // As long as the real content, so the file's size in the tree agrees (a size that does
    // not is refused before any id is checked).
    let forged = b"replicas: 0\nimage: evil:1.00\n";
    assert_eq!(forged.len(), b"replicas: 3\nimage: app:1.4.2\n".len());
    let frame = pipe(Command::new("zstd").args(["-q", "-c"]), forged);
    let entry = json!({"id": blob_id, "offset": 0, "length": frame.len(), "raw_length": forged.len()});
    let trailer = serde_json::to_vec(&json!({"kind": "data", "blobs": [entry]})).unwrap();
    let mut plain = frame.clone();
    plain.extend_from_slice(&0x184D_2A5Bu32.to_le_bytes());
    plain.extend_from_slice(&(trailer.len() as u32).to_le_bytes());
    plain.extend_from_slice(&trailer);
    let pack = pipe(Command::new("age").args(["-r", recipient]), &plain);
    let pack_id = put_named(&root.join("data"), true, &pack);
    // The real pack is gone (lost or deleted by the forger); a new index lists the forgery.
    let real = data["id"].as_str().unwrap();
    std::fs::remove_file(root.join("data").join(&real[..2]).join(real)).unwrap();
    let mut listed: Vec<Value> = packs.iter().filter(|p| p["kind"] != "data").cloned().collect();
    listed.push(json!({"id": pack_id, "kind": "data", "size": pack.len(), "blobs": [entry]}));
    for index in objects(&root, "index") {
        std::fs::remove_file(index).unwrap();
    }
    let index = pipe(
        Command::new("age").args(["-r", recipient]),
        &pipe(
            Command::new("zstd").args(["-q", "-c"]),
            &serde_json::to_vec(&json!({"packs": listed})).unwrap(),
        ),
    );
    put_named(&root.join("index"), false, &index);

    let target = repo.path("target");
    let (code, out) = repo.restore(As::Me, "latest", &target, &[]);
    assert_eq!(code, Some(3), "a forged blob must fail the restore:\n{out}");
    assert!(out.contains("does not match its id"), "{out}");
    let restored = walk_bytes(&target);
    assert!(
        !restored.windows(b"evil".len()).any(|w| w == b"evil"),
        "forged bytes were written into the target"
    );

    let check = repo.drctl(As::Me, ["repo", "check", "--read-data"]);
    assert_eq!(check.status.code(), Some(3), "check: {}", stderr(&check));
    let said = String::from_utf8_lossy(&check.stdout).into_owned();
    assert!(
        said.contains(&pack_id) && said.contains("does not match its id"),
        "check names the forged pack: {said}"
    );
    assert!(said.contains("repair index --read-all-packs"), "{said}");

    // New-user pass (c): rebuilding the index from the packs verifies every blob against its
    // id; the forged one is named and not indexed (it was: the forgery came back as a valid
    // index entry, and the next backup, finding the id indexed, stored nothing).
    let repair = repo.drctl(As::Me, ["repo", "repair", "index", "--read-all-packs"]);
    let said = String::from_utf8_lossy(&repair.stdout).into_owned();
    assert_eq!(repair.status.code(), Some(3), "repair: {said}{}", stderr(&repair));
    assert!(
        said.contains(&pack_id) && said.contains(&blob_id) && said.contains("does not match its id"),
        "{said}"
    );
    let (code, manifest, err) = repo.backup(As::Me, &src);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        manifest["summary"]["new_bytes"].as_u64().unwrap() > 0,
        "the lost blob was not stored again: {manifest}"
    );
    let again = repo.path("target2");
    let (code, out) = repo.restore(As::Me, "latest", &again, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        std::fs::read(again.join(src.strip_prefix("/").unwrap()).join("config.yaml")).unwrap(),
        b"replicas: 3\nimage: app:1.4.2\n"
    );
    let check = repo.drctl(As::Me, ["repo", "check", "--read-data"]);
    let said = String::from_utf8_lossy(&check.stdout).into_owned();
    assert_eq!(
        check.status.code(),
        Some(0),
        "check after repair and backup: {said}"
    );
}

/// The bytes of every regular file under `dir`, concatenated.
fn walk_bytes(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return all;
    };
    for e in entries {
        let path = e.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            all.extend(walk_bytes(&path));
        } else if meta.is_file() {
            all.extend(std::fs::read(&path).unwrap());
        }
    }
    all
}
