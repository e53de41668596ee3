//! NFS volume backup and restore through the userspace NFSv3 client, against the harness's
//! real nfs-ganesha: a full backup of a directory (a file of several MiB, a symlink, a
//! subdirectory, a set-user-ID file owned by someone else), an incremental after one file
//! changed that reads only that file, restores of both snapshots into fresh directories over
//! NFS compared with the originals (a sparse file's hole left unwritten), a restore over
//! the restored tree that replaces a planted symlink instead of following it, a restore
//! target behind a symlink refused, a file that vanished between the listing and its read
//! and a FIFO reported as skipped, and 2000 small files whose incremental reads none.
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

/// Writes through NFS, so the server's attribute cache sees the change.
async fn write_over_nfs(server: &str, export: &str, path: &str, offset: u64, data: &[u8]) -> Result<()> {
    Ok(lifeboat_tests::write_over_nfs(server, export, path, offset, data).await?)
}

/// What a restore must reproduce of one entry: kind, mode, owner, group, mtime, and content
/// or link target.
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    kind: &'static str,
    mode: String,
    owner: (u32, u32),
    mtime: (i64, i64),
    body: Vec<u8>,
}

/// One path, not following a symlink.
fn describe_one(p: &Path) -> Result<Entry> {
    let m = std::fs::symlink_metadata(p)?;
    let (kind, body) = if m.file_type().is_symlink() {
        ("link", std::fs::read_link(p)?.display().to_string().into_bytes())
    } else if m.is_dir() {
        ("dir", Vec::new())
    } else {
        ("file", std::fs::read(p)?)
    };
    Ok(Entry {
        kind,
        mode: format!("{:o}", m.mode() & 0o7777),
        owner: (m.uid(), m.gid()),
        // A symlink's mtime is best effort over NFSv3: nfs-ganesha's VFS backend answers
        // SETATTR of it with success and leaves it.
        mtime: if kind == "link" {
            (0, 0)
        } else {
            (m.mtime(), m.mtime_nsec())
        },
        body,
    })
}

/// Every path under `root`, relative, sorted.
fn paths_under(root: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)? {
            let p = e?.path();
            if std::fs::symlink_metadata(&p)?.is_dir() {
                stack.push(p.clone());
            }
            out.push(p.strip_prefix(root)?.to_path_buf());
        }
    }
    out.sort();
    Ok(out)
}

fn assert_same_tree(original: &Path, restored: &Path) -> Result<()> {
    let paths = paths_under(original)?;
    ensure!(
        paths == paths_under(restored)?,
        "restored {:?}",
        paths_under(restored)?
    );
    for p in paths {
        let (a, b) = (
            describe_one(&original.join(&p))?,
            describe_one(&restored.join(&p))?,
        );
        ensure!(a == b, "{}: original {a:?}, restored {b:?}", p.display());
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
    // Sparse: 3 MiB of hole, then data; restored with the hole unwritten.
    let sparse = std::fs::File::create(src.join("sparse"))?;
    sparse.set_len(3 << 20)?;
    std::os::unix::fs::FileExt::write_all_at(&sparse, b"tail", 3 << 20)?;
    drop(sparse);
    std::fs::write(src.join("suid"), b"#!/bin/sh\n")?;
    std::os::unix::fs::chown(src.join("suid"), Some(1234), Some(5678))?;
    std::fs::set_permissions(src.join("suid"), std::fs::Permissions::from_mode(0o4755))?;
    std::fs::set_permissions(src.join("sub"), std::fs::Permissions::from_mode(0o1777))?;
    std::os::unix::fs::symlink("small.txt", src.join("link"))?;
    std::os::unix::fs::symlink("/etc/passwd", src.join("sub/abs-link"))?;
    std::os::unix::fs::lchown(src.join("sub/abs-link"), Some(4321), Some(8765))?;

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
    ensure!(s.files == 6 && s.files_read == 6 && s.dirs == 1, "{s:?}");
    ensure!(first.source == location.source_id(), "{}", first.source);
    ensure!(
        s.bytes as usize == BIG + CHANGED + 15 + 10 + (3 << 20) + 4,
        "{}",
        s.bytes
    );

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
        report.files == 6 && report.symlinks == 2 && report.dirs == 1,
        "{report:?}"
    );
    let r1 = dir.local.join("r1/deeper");
    for f in [
        "small.txt",
        "big.bin",
        "suid",
        "sparse",
        "link",
        "sub",
        "sub/empty",
        "sub/abs-link",
    ] {
        let (a, b) = (describe_one(&src.join(f))?, describe_one(&r1.join(f))?);
        ensure!(a == b, "{f}: original {a:?}, restored {b:?}");
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
    let blocks = std::fs::metadata(r2.join("sparse"))?.blocks();
    ensure!(blocks * 512 < 1 << 20, "the hole was written: {blocks} blocks");

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

    // A restore target reached through a symlink is refused, not followed.
    let outside = tempfile::tempdir()?;
    std::os::unix::fs::symlink(outside.path(), dir.local.join("evil"))?;
    let through = NfsLocation::new(&dir.server, &dir.share, &format!("{}/evil/r", dir.name))?;
    let refused = restore_nfs(&repo, &second, &through, Arc::new(Progress::default())).await;
    ensure!(
        matches!(refused, Err(lifeboat_volume::nfs::NfsError::NotADirectory { .. })),
        "{refused:?}"
    );
    ensure!(
        std::fs::read_dir(outside.path())?.next().is_none(),
        "wrote through the symlink"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_vanished_between_listing_and_read_is_reported() -> Result<()> {
    let nfs = lifeboat_tests::nfs()?;
    let dir = nfs.new_dir("nfsgone")?;
    std::fs::write(dir.local.join("stays"), b"here")?;
    std::fs::write(dir.local.join("goes"), noise(3, 100_000))?;
    let fifo = std::process::Command::new("mkfifo")
        .arg(dir.local.join("fifo"))
        .status()?;
    ensure!(fifo.success(), "mkfifo");
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
    let skipped: Vec<(&str, &str)> = s
        .skipped
        .iter()
        .map(|k| (k.path.as_str(), k.error.as_str()))
        .collect();
    ensure!(skipped.len() == 2, "{skipped:?}");
    ensure!(
        skipped
            .iter()
            .any(|(p, e)| *p == "/goes" && e.contains("vanished")),
        "{skipped:?}"
    );
    ensure!(
        skipped.iter().any(|(p, e)| *p == "/fifo" && e.contains("FIFO")),
        "{skipped:?}"
    );
    Ok(())
}

/// Many small files: each is read whole and stored on its worker's blob writer; the
/// incremental reads none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_small_files_and_an_incremental_that_reads_none() -> Result<()> {
    let nfs = lifeboat_tests::nfs()?;
    let dir = nfs.new_dir("nfsmany")?;
    for d in 0..20 {
        std::fs::create_dir(dir.local.join(format!("d{d}")))?;
        for f in 0..100 {
            let text = format!("file {d} {f} ").repeat(100);
            std::fs::write(dir.local.join(format!("d{d}/f{f}")), text)?;
        }
    }
    let (_t, repo) = new_repo().await?;
    let location = NfsLocation::new(&dir.server, &dir.share, &dir.name)?;
    let mut read = Vec::new();
    for run in ["full", "incremental"] {
        let started = std::time::Instant::now();
        let snap = backup_nfs(&repo, &location, &NfsBackupOptions::default()).await?;
        let s = &snap.summary;
        println!(
            "{run}: {} files, read {} in {:?}",
            s.files,
            s.files_read,
            started.elapsed()
        );
        ensure!(s.files == 2000 && s.dirs == 20 && s.skipped.is_empty(), "{s:?}");
        read.push(s.files_read);
    }
    ensure!(read == [2000, 0], "{read:?}");
    Ok(())
}
