//! A pack written by someone without the repository key — encrypted to the repository's
//! public recipient (anyone can), named by its own BLAKE3, listed by a new index — claims to
//! hold a blob but holds other bytes. Every restore refuses that blob (exit 3) and uses none
//! of the forged bytes: the files restore writes none of them, the Kubernetes objects restore
//! creates no object from them; `repo check --read-data` reports the pack.
//!
//! Built with the stock tools a forger has (`age`, `zstd`), as docs/FORMAT.md describes the
//! objects. (The tests unwrap the repository key too, but only to find which blob to forge
//! and, for the objects test, to copy the other blobs' frames unchanged.)
#![allow(clippy::unwrap_used)] // a test that cannot set up should panic loudly

mod files_support;

use std::path::Path;
use std::process::{Command, Stdio};

use files_support::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::PostParams;
use lifeboat_tests::kube::TestCluster;
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

/// The repository key, unwrapped with the test identity (FORMAT.md, recovery step 1), into a
/// file `age -i` takes.
fn unwrap_key(repo: &Repo) -> std::path::PathBuf {
    let key_file = repo.path("repo.key");
    let unwrapped = objects(&repo.path("repo"), "keys").iter().any(|k| {
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
    key_file
}

/// Every pack every index file lists (`{"id", "kind", "size", "blobs": [...]}`).
fn read_index(root: &Path, key_file: &Path) -> Vec<Value> {
    let mut packs: Vec<Value> = Vec::new();
    for index in objects(root, "index") {
        let plain = pipe(
            Command::new("age").arg("-d").arg("-i").arg(key_file),
            &std::fs::read(&index).unwrap(),
        );
        let json: Value =
            serde_json::from_slice(&pipe(Command::new("zstd").args(["-d", "-c"]), &plain)).unwrap();
        packs.extend(json["packs"].as_array().unwrap().iter().cloned());
    }
    packs
}

/// Replaces every index file with one listing `packs`, encrypted to `recipient`.
fn write_index(root: &Path, recipient: &str, packs: &[Value]) {
    for index in objects(root, "index") {
        std::fs::remove_file(index).unwrap();
    }
    let index = pipe(
        Command::new("age").args(["-r", recipient]),
        &pipe(
            Command::new("zstd").args(["-q", "-c"]),
            &serde_json::to_vec(&json!({"packs": packs})).unwrap(),
        ),
    );
    put_named(&root.join("index"), false, &index);
}

/// A pack's plaintext: `frames` one after another, then the trailer listing them (a zstd
/// skippable frame, FORMAT.md). Returns it with the blob entries at their new offsets.
fn pack_plaintext(kind: &str, frames: &[(Value, Vec<u8>, usize)]) -> (Vec<u8>, Vec<Value>) {
    let mut plain = Vec::new();
    let mut entries = Vec::new();
    for (id, frame, raw_length) in frames {
        entries
            .push(json!({"id": id, "offset": plain.len(), "length": frame.len(), "raw_length": raw_length}));
        plain.extend_from_slice(frame);
    }
    let trailer = serde_json::to_vec(&json!({"kind": kind, "blobs": entries})).unwrap();
    plain.extend_from_slice(&0x184D_2A5Bu32.to_le_bytes());
    plain.extend_from_slice(&(trailer.len() as u32).to_le_bytes());
    plain.extend_from_slice(&trailer);
    (plain, entries)
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

    let key_file = unwrap_key(&repo);
    let packs = read_index(&root, &key_file);
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
    write_index(&root, recipient, &listed);

    let target = repo.path("target");
    let (code, out) = repo.restore(As::Me, "latest", &target, &[]);
    assert_eq!(code, Some(3), "a forged blob must fail the restore:\n{out}");
    // Named: the blob, the pack, and the command that finds every such pack.
    assert!(out.contains("does not match its id"), "{out}");
    assert!(out.contains(&blob_id) && out.contains(&pack_id), "{out}");
    assert!(out.contains("drctl repo check --read-data"), "{out}");
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

/// An index (anyone can write one) that claims a 4 GB frame for a real blob. Found by the
/// `pack` fuzz target's kind of input: the restore sized its frame buffer from the claim and
/// zero-filled 4 GB before reading. Now the entry is refused before anything is allocated for
/// it: the restore fails that file (exit 3), and `repo check` names the index entry without
/// reading any pack.
#[test]
fn an_index_claiming_an_impossible_length_is_refused_before_allocating() {
    let repo = Repo::new(Backend::Local);
    let root = repo.path("repo");
    let src = repo.path("src");
    std::fs::create_dir_all(&src).unwrap();
    // Compressible, so its frame is a compressed one, read whole before decoding.
    std::fs::write(src.join("a.txt"), "replicas: 3\n".repeat(500)).unwrap();
    let (code, _, err) = repo.backup(As::Me, &src);
    assert_eq!(code, Some(0), "{err}");

    let key_file = unwrap_key(&repo);
    let mut packs = read_index(&root, &key_file);
    let data = packs
        .iter_mut()
        .find(|p| p["kind"] == "data")
        .expect("a data pack");
    let pack_id = data["id"].as_str().unwrap().to_string();
    data["blobs"][0]["length"] = json!(4_000_000_000u32);
    let config: Value = serde_json::from_slice(&std::fs::read(root.join("config")).unwrap()).unwrap();
    write_index(&root, config["recipient"].as_str().unwrap(), &packs);

    // The restore alone, its peak memory measured: the claim would have taken 4 GB.
    let target = repo.path("target");
    let restore = repo.command(
        As::Me,
        [
            "restore".as_ref(),
            "files".as_ref(),
            "latest".as_ref(),
            "--target".as_ref(),
            target.as_os_str(),
        ],
    );
    let (code, out, peak_kib) = run_measured(restore);
    assert_eq!(code, Some(3), "{out}");
    // The file is not restored; the pack, whose own list disagrees with the index, is named.
    assert!(out.contains("a.txt") && out.contains(&pack_id), "{out}");
    assert!(peak_kib < 512 * 1024, "the restore peaked at {peak_kib} KiB");

    let check = repo.drctl(As::Me, ["repo", "check"]);
    let said = String::from_utf8_lossy(&check.stdout).into_owned();
    assert_eq!(check.status.code(), Some(3), "check: {said}{}", stderr(&check));
    assert!(
        said.contains(&pack_id) && said.contains("more than any blob"),
        "{said}"
    );
}

/// The same forgery against a backup of Kubernetes objects: the ConfigMap `cm-1` is replaced,
/// in a pack holding the other objects' real frames, by one whose data says `evil`. The
/// objects restore creates the others, refuses `cm-1` naming the blob, the pack and the fix,
/// and exits 3; nothing with the forged data reaches the cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_object_is_refused_by_the_objects_restore() {
    let cluster = TestCluster::start().await.unwrap();
    let repo = Repo::new(Backend::Local);
    let root = repo.path("repo");
    let kubeconfig = cluster
        .kubeconfig_path()
        .expect("a kubeconfig file")
        .to_path_buf();
    let src = cluster.namespace("forged-src").await.unwrap();
    let dst = cluster.namespace("forged-dst").await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(cluster.client(), &src);
    for i in 0..3 {
        let cm: ConfigMap = serde_json::from_value(
            json!({"metadata": {"name": format!("cm-{i}")}, "data": {"i": i.to_string()}}),
        )
        .unwrap();
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    let drctl = |args: Vec<String>| {
        let mut cmd = Command::new(drctl_bin());
        cmd.arg("--quiet")
            .args(args)
            .envs(repo.t.drctl_env())
            .env("KUBECONFIG", &kubeconfig);
        async move {
            tokio::task::spawn_blocking(move || cmd.output().unwrap())
                .await
                .unwrap()
        }
    };
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let backup = drctl(args(&[
        "backup",
        "create",
        "nightly",
        "--include-namespaces",
        &src,
    ]))
    .await;
    assert!(backup.status.success(), "backup: {}", stderr(&backup));

    // Find the pack and blob of cm-1 (the test reads them with the key; the forger need not).
    let key_file = unwrap_key(&repo);
    let mut packs = read_index(&root, &key_file);
    let decrypt = |id: &str| {
        let path = root.join("data").join(&id[..2]).join(id);
        pipe(
            Command::new("age").arg("-d").arg("-i").arg(&key_file),
            &std::fs::read(path).unwrap(),
        )
    };
    let mut found = None;
    'packs: for (p, pack) in packs.iter().enumerate() {
        let plain = decrypt(pack["id"].as_str().unwrap());
        for (b, blob) in pack["blobs"].as_array().unwrap().iter().enumerate() {
            let (offset, length) = (
                blob["offset"].as_u64().unwrap() as usize,
                blob["length"].as_u64().unwrap() as usize,
            );
            let raw = pipe(
                Command::new("zstd").args(["-d", "-c"]),
                &plain[offset..offset + length],
            );
            let Ok(object) = serde_json::from_slice::<Value>(&raw) else {
                continue;
            };
            if object["kind"] == "ConfigMap" && object["metadata"]["name"] == "cm-1" {
                found = Some((p, b, plain, object));
                break 'packs;
            }
        }
    }
    let (p, b, plain, mut object) = found.expect("the backup holds cm-1");
    let blob_id = packs[p]["blobs"][b]["id"].as_str().unwrap().to_string();

    // The forgery: the same pack, but cm-1's frame holds other data under the same blob id.
    object["data"]["i"] = json!("evil");
    let forged = serde_json::to_vec(&object).unwrap();
    let frames: Vec<(Value, Vec<u8>, usize)> = packs[p]["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, e)| {
            if i == b {
                let frame = pipe(Command::new("zstd").args(["-q", "-c"]), &forged);
                (e["id"].clone(), frame, forged.len())
            } else {
                let (offset, length) = (
                    e["offset"].as_u64().unwrap() as usize,
                    e["length"].as_u64().unwrap() as usize,
                );
                (
                    e["id"].clone(),
                    plain[offset..offset + length].to_vec(),
                    e["raw_length"].as_u64().unwrap() as usize,
                )
            }
        })
        .collect();
    let kind = packs[p]["kind"].as_str().unwrap().to_string();
    let (plain, entries) = pack_plaintext(&kind, &frames);
    let config: Value = serde_json::from_slice(&std::fs::read(root.join("config")).unwrap()).unwrap();
    let recipient = config["recipient"].as_str().unwrap();
    let pack = pipe(Command::new("age").args(["-r", recipient]), &plain);
    let pack_id = put_named(&root.join("data"), true, &pack);
    let real = packs[p]["id"].as_str().unwrap().to_string();
    std::fs::remove_file(root.join("data").join(&real[..2]).join(&real)).unwrap();
    packs[p] = json!({"id": pack_id, "kind": kind, "size": pack.len(), "blobs": entries});
    write_index(&root, recipient, &packs);

    let mapping = format!("{src}:{dst}");
    let restored = drctl(args(&[
        "restore",
        "create",
        "--from-backup",
        "nightly",
        "--namespace-mapping",
        &mapping,
    ]))
    .await;
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&restored.stdout),
        stderr(&restored)
    );
    assert_eq!(
        restored.status.code(),
        Some(3),
        "a forged object must fail the restore:\n{out}"
    );
    assert!(
        out.contains("cm-1") && out.contains("does not match its id"),
        "{out}"
    );
    assert!(out.contains(&blob_id) && out.contains(&pack_id), "{out}");
    assert!(out.contains("drctl repo check --read-data"), "{out}");
    let restored: Api<ConfigMap> = Api::namespaced(cluster.client(), &dst);
    assert!(
        restored.get_opt("cm-1").await.unwrap().is_none(),
        "the forged ConfigMap was created"
    );
    for i in [0, 2] {
        let cm = restored.get(&format!("cm-{i}")).await.unwrap();
        assert_eq!(cm.data.unwrap()["i"], i.to_string(), "cm-{i}");
    }
}

/// Runs `cmd` to its end: its exit code, what it printed (stdout, then stderr), and its own
/// peak resident memory in KiB (wait4's usage of that child alone).
#[allow(unsafe_code)] // wait4
#[allow(clippy::zombie_processes)] // reaped by wait4, not `Child::wait`
fn run_measured(mut cmd: Command) -> (Option<i32>, String, i64) {
    use std::io::Read;
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut text = String::new();
    child.stdout.take().unwrap().read_to_string(&mut text).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut text).unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: wait4 reaps the child and fills both out-parameters; `child` is not waited on
    // again (dropping a `Child` does not wait).
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, usage.as_mut_ptr()) };
    assert_eq!(reaped, pid, "wait4: {}", std::io::Error::last_os_error());
    // SAFETY: filled by the successful wait4 above.
    let peak_kib = unsafe { usage.assume_init() }.ru_maxrss;
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    (code, text, peak_kib)
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
