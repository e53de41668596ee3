//! NFS volume backup and restore through the userspace NFSv3 client, against the harness's
//! real nfs-ganesha: a full backup of a directory (a file of several MiB, a symlink, a
//! subdirectory, a set-user-ID file owned by someone else), an incremental after one file
//! changed that reads only that file, restores of both snapshots into fresh directories over
//! NFS compared with the originals, and a file that vanished between the listing and its
//! read reported as skipped.
#![allow(clippy::unwrap_used)] // a test that cannot set up should panic loudly

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Result, ensure};
use lifeboat_backup::Repository;
use lifeboat_backup::progress::Progress;
use lifeboat_backup::repository::InitOptions;
use lifeboat_tests::repos::{Backend, TestRepo};
use lifeboat_volume::nfs::{NfsBackupOptions, NfsLocation, backup_nfs, restore_nfs};

const BIG: usize = 6 * 1024 * 1024 + 12345;
const CHANGED: usize = 300 * 1024;

/// Deterministic bytes that do not compress or deduplicate.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

async fn new_repo() -> Result<(TestRepo, Repository)> {
    let t = TestRepo::new(Backend::Local)?;
    let repo = Repository::init(&t.store(), &[t.user_recipient()], InitOptions::default()).await?;
    Ok((t, repo))
}

/// Writes `data` at `offset` into the existing file `path` (relative to the export) through
/// NFS, as a client changing part of a file would: the server's attribute cache sees the
/// change (a write behind its back on its disk would not be seen for a while).
async fn write_over_nfs(server: &str, export: &str, path: &str, offset: u64, data: &[u8]) -> Result<()> {
    use nfs3_client::nfs3_types::nfs3::{self, Nfs3Result, diropargs3, filename3};
    use nfs3_client::nfs3_types::rpc::{auth_unix, opaque_auth};
    use nfs3_client::nfs3_types::xdr_codec::Opaque;
    let mut conn =
        nfs3_client::Nfs3ConnectionBuilder::new(nfs3_client::tokio::TokioConnector, server, export)
            .credential(opaque_auth::auth_unix(&auth_unix::default()))
            .mount()
            .await?;
    let mut fh = conn.root_nfs_fh3();
    for part in path.split('/') {
        let what = diropargs3 {
            dir: fh,
            name: filename3(Opaque::owned(part.as_bytes().to_vec())),
        };
        match conn.lookup(&nfs3::LOOKUP3args { what }).await? {
            Nfs3Result::Ok(ok) => fh = ok.object,
            Nfs3Result::Err((s, _)) => anyhow::bail!("lookup {part}: {s}"),
        }
    }
    let args = nfs3::WRITE3args {
        file: fh,
        offset,
        count: data.len() as u32,
        stable: nfs3::stable_how::FILE_SYNC,
        data: Opaque::borrowed(data),
    };
    match conn.write(&args).await? {
        Nfs3Result::Ok(w) => ensure!(w.count as usize == data.len(), "short write"),
        Nfs3Result::Err((s, _)) => anyhow::bail!("write: {s}"),
    }
    let _ = conn.unmount().await;
    Ok(())
}

/// The tree under `root` as (relative path, kind, mode, uid, gid, mtime, content or target).
fn describe(root: &Path) -> Result<Vec<(String, String, u32, u32, u32, (i64, i64), Vec<u8>)>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)? {
            let p = e?.path();
            let m = std::fs::symlink_metadata(&p)?;
            let rel = p.strip_prefix(root)?.display().to_string();
            let (kind, body) = if m.file_type().is_symlink() {
                ("link", std::fs::read_link(&p)?.display().to_string().into_bytes())
            } else if m.is_dir() {
                stack.push(p.clone());
                ("dir", Vec::new())
            } else {
                ("file", std::fs::read(&p)?)
            };
            // Symlinks' own mode is always 0777 and not settable: compared as such.
            out.push((
                rel,
                kind.to_string(),
                m.mode() & 0o7777,
                m.uid(),
                m.gid(),
                (m.mtime(), m.mtime_nsec()),
                body,
            ));
        }
    }
    out.sort();
    Ok(out)
}

fn assert_same_tree(original: &Path, restored: &Path) -> Result<()> {
    let a = describe(original)?;
    let b = describe(restored)?;
    ensure!(a.len() == b.len(), "{} entries, restored {}", a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        // Symlinks' mtimes are best effort over NFSv3 (some servers cannot set them).
        let times = if x.1 == "link" { true } else { x.5 == y.5 };
        ensure!(
            x.0 == y.0 && x.1 == y.1 && x.2 == y.2 && x.3 == y.3 && x.4 == y.4 && times && x.6 == y.6,
            "{} differs: original {:?} restored {:?}",
            x.0,
            (&x.1, format!("{:o}", x.2), x.3, x.4, x.5, x.6.len()),
            (&y.1, format!("{:o}", y.2), y.3, y.4, y.5, y.6.len())
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_reads_only_changed_files_and_restores_exactly() -> Result<()> {
    let nfs = lifeboat_tests::nfs()?;
    let dir = nfs.new_dir("nfsbk")?;
    let src = dir.local.join("data");
    std::fs::create_dir_all(src.join("sub"))?;
    std::fs::write(src.join("small.txt"), b"hello over nfs\n")?;
    std::fs::write(src.join("big.bin"), noise(1, BIG))?;
    std::fs::write(src.join("sub/changing.bin"), noise(2, CHANGED))?;
    std::fs::write(src.join("sub/empty"), b"")?;
    std::fs::write(src.join("suid"), b"#!/bin/sh\n")?;
    std::os::unix::fs::chown(src.join("suid"), Some(1234), Some(5678))?;
    std::fs::set_permissions(src.join("suid"), std::fs::Permissions::from_mode(0o4755))?;
    std::fs::set_permissions(src.join("sub"), std::fs::Permissions::from_mode(0o1777))?;
    std::os::unix::fs::symlink("small.txt", src.join("link"))?;
    std::os::unix::fs::symlink("/etc/passwd", src.join("sub/abs-link"))?;

    let (_t, repo) = new_repo().await?;
    let location = NfsLocation::new(&dir.server, &dir.share, &format!("{}/data", dir.name))?;
    let options = NfsBackupOptions::default();

    let started = std::time::Instant::now();
    let first = backup_nfs(&repo, &location, &options).await?;
    let s = &first.summary;
    println!(
        "full: {} files, {} dirs, {} bytes, read {} files, new {} bytes, stored {} bytes, {:?}",
        s.files,
        s.dirs,
        s.bytes,
        s.files_read,
        s.new_bytes,
        s.stored_bytes,
        started.elapsed()
    );
    ensure!(s.skipped.is_empty(), "{:?}", s.skipped);
    ensure!(s.files == 5 && s.files_read == 5 && s.dirs == 1, "{s:?}");
    ensure!(first.source == location.source_id(), "{}", first.source);
    ensure!(s.bytes as usize == BIG + CHANGED + 15 + 10, "{}", s.bytes);

    // One file changes, through NFS as a client would change it.
    let mut changed = noise(2, CHANGED);
    changed[1000..1100].copy_from_slice(&[7u8; 100]);
    let rel = format!("{}/data/sub/changing.bin", dir.name);
    write_over_nfs(&dir.server, &dir.share, &rel, 1000, &changed[1000..1100]).await?;

    let started = std::time::Instant::now();
    let second = backup_nfs(&repo, &location, &options).await?;
    let s = &second.summary;
    println!(
        "incremental: {} files, read {} files, new {} bytes in {} blobs, stored {} bytes, {:?}",
        s.files,
        s.files_read,
        s.new_bytes,
        s.new_blobs,
        s.stored_bytes,
        started.elapsed()
    );
    ensure!(second.parent == first.id, "parent {:?}", second.parent);
    ensure!(s.files_read == 1, "read {} files: {s:?}", s.files_read);
    ensure!(s.skipped.is_empty(), "{:?}", s.skipped);
    // The changed file's chunks and the tree, not the 6 MiB file again.
    ensure!(
        s.new_bytes <= (CHANGED as u64) + 64 * 1024,
        "stored {} new bytes for a {CHANGED}-byte change",
        s.new_bytes
    );

    // Each snapshot restored over NFS into a fresh directory, compared with its original.
    let restore_first = NfsLocation::new(&dir.server, &dir.share, &format!("{}/r1/deeper", dir.name))?;
    let report = restore_nfs(&repo, &first, &restore_first, Arc::new(Progress::default())).await?;
    println!("restore 1: {report:?}");
    ensure!(report.errors.is_empty(), "{:?}", report.errors);
    ensure!(
        report.files == 5 && report.symlinks == 2 && report.dirs == 1,
        "{report:?}"
    );
    let r1 = dir.local.join("r1/deeper");
    for f in [
        "small.txt",
        "big.bin",
        "suid",
        "link",
        "sub",
        "sub/empty",
        "sub/abs-link",
    ] {
        let a = describe_one(&src.join(f))?;
        let b = describe_one(&r1.join(f))?;
        ensure!(a == b, "{f}: original {a:?} restored {b:?}");
    }
    ensure!(std::fs::read(r1.join("sub/changing.bin"))? == noise(2, CHANGED));

    let restore_second = NfsLocation::new(&dir.server, &dir.share, &format!("{}/r2", dir.name))?;
    let started = std::time::Instant::now();
    let report = restore_nfs(&repo, &second, &restore_second, Arc::new(Progress::default())).await?;
    println!("restore 2: {} bytes in {:?}", report.bytes, started.elapsed());
    ensure!(report.errors.is_empty(), "{:?}", report.errors);
    let r2 = dir.local.join("r2");
    assert_same_tree(&src, &r2)?;
    ensure!(std::fs::read(r2.join("sub/changing.bin"))? == changed);

    // Restoring again over the restored tree replaces entries instead of writing into them:
    // a symlink planted where a file was is removed, not followed.
    let victim = dir.local.join("victim");
    std::fs::write(&victim, b"must stay")?;
    std::fs::remove_file(r2.join("small.txt"))?;
    std::os::unix::fs::symlink(&victim, r2.join("small.txt"))?;
    let report = restore_nfs(&repo, &second, &restore_second, Arc::new(Progress::default())).await?;
    ensure!(report.errors.is_empty(), "{:?}", report.errors);
    ensure!(
        std::fs::read(&victim)? == b"must stay",
        "the planted symlink was followed"
    );
    ensure!(std::fs::read(r2.join("small.txt"))? == b"hello over nfs\n");
    ensure!(
        !std::fs::symlink_metadata(r2.join("small.txt"))?
            .file_type()
            .is_symlink()
    );
    Ok(())
}

/// (kind, mode, uid, gid, mtime, content or target) of one path.
fn describe_one(p: &Path) -> Result<(bool, u32, u32, u32, (i64, i64), Vec<u8>)> {
    let m = std::fs::symlink_metadata(p)?;
    let link = m.file_type().is_symlink();
    let body = if link {
        std::fs::read_link(p)?.display().to_string().into_bytes()
    } else if m.is_dir() {
        Vec::new()
    } else {
        std::fs::read(p)?
    };
    // Symlinks' mtimes are best effort over NFSv3 (not every server sets them).
    let mtime = if link { (0, 0) } else { (m.mtime(), m.mtime_nsec()) };
    Ok((link, m.mode() & 0o7777, m.uid(), m.gid(), mtime, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_vanished_between_listing_and_read_is_reported() -> Result<()> {
    let nfs = lifeboat_tests::nfs()?;
    let dir = nfs.new_dir("nfsgone")?;
    std::fs::write(dir.local.join("stays"), b"here")?;
    std::fs::write(dir.local.join("goes"), noise(3, 100_000))?;
    let (_t, repo) = new_repo().await?;
    let location = NfsLocation::new(&dir.server, &dir.share, &dir.name)?;
    let gone = dir.local.join("goes");
    let options = NfsBackupOptions {
        after_walk: Some(Arc::new(move |nodes| {
            assert!(nodes.iter().any(|n| n.path == "goes"));
            std::fs::remove_file(&gone).unwrap();
        })),
        ..Default::default()
    };
    let snap = backup_nfs(&repo, &location, &options).await?;
    let s = &snap.summary;
    println!("vanished: {:?}", s.skipped);
    ensure!(s.files == 1 && s.files_read == 1, "{s:?}");
    ensure!(
        s.skipped.len() == 1 && s.skipped[0].path == "/goes" && s.skipped[0].error.contains("vanished"),
        "{:?}",
        s.skipped
    );
    Ok(())
}
