//! A local-directory store: `object_store`'s `LocalFileSystem` with fsync on, except that
//! large objects (packs) are written with `O_DIRECT`.
//!
//! Why: a backup writes hundreds of MiB of packs that nobody reads soon. Through the page
//! cache each byte is copied into freshly allocated cache pages — on the VMs we measured, a
//! third of a backup's CPU — and evicts the application's own cache on the node being backed
//! up. `O_DIRECT` hands the (already built) pack straight to the device; the fsync that
//! durability needs anyway then has little left to flush. Small objects (index, snapshots,
//! locks) keep the plain path. Filesystems that refuse `O_DIRECT` (tmpfs, some FUSE mounts)
//! are detected on first use and get the plain path too.
//!
//! Publishing is the same as `LocalFileSystem`'s: write `<key>#<digits>` (which its listings
//! skip), fsync, hard-link (create-only) or rename (overwrite) into place, fsync the directory.
//!
//! `LocalFileSystem` refuses `PutMode::Update` (compare-and-swap); this store does it under an
//! exclusive `flock` on the object's directory: the current file's ETag (the same inode, mtime
//! and size tag `LocalFileSystem` reports) must equal the one given, else `Precondition`. Every
//! process on the machine that updates through this store serialises on that lock, which is
//! what federation's fencing leases need from a local repository. (A directory shared over NFS
//! gives no such guarantee between machines: use an object store there.)

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::aligned::{ALIGN, STAGE, Stage};
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMode,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// Objects at least this large are written with `O_DIRECT`.
const DIRECT_MIN: usize = 1 << 20;
static STAGING_ID: AtomicU64 = AtomicU64::new(0);

/// See the module documentation.
#[derive(Debug)]
pub struct LocalStore {
    fs: LocalFileSystem,
    /// Cleared when the filesystem refuses `O_DIRECT`.
    direct: AtomicBool,
}

impl LocalStore {
    /// Wraps a `LocalFileSystem` rooted at the repository directory.
    pub fn new(fs: LocalFileSystem) -> Self {
        Self {
            fs: fs.with_fsync(true),
            direct: AtomicBool::new(true),
        }
    }
}

impl fmt::Display for LocalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalStore({})", self.fs)
    }
}

/// Why a direct write did not happen.
enum DirectError {
    /// The filesystem does not do `O_DIRECT`: use the plain path from now on.
    Unsupported,
    Failed(object_store::Error),
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        if let PutMode::Update(version) = &opts.mode {
            if !opts.attributes.is_empty() {
                return self.fs.put_opts(location, payload, opts).await;
            }
            let path = self.fs.path_to_filesystem(location)?;
            let expected = version.e_tag.clone();
            let location = location.to_string();
            return tokio::task::spawn_blocking(move || {
                update(&path, &location, &payload, expected.as_deref())
            })
            .await
            .map_err(|e| generic(std::io::Error::other(e.to_string())))?;
        }
        let plain_mode = matches!(opts.mode, PutMode::Create | PutMode::Overwrite);
        if payload.content_length() < DIRECT_MIN
            || !plain_mode
            || !opts.attributes.is_empty()
            || !self.direct.load(Ordering::Relaxed)
        {
            return self.fs.put_opts(location, payload, opts).await;
        }
        let path = self.fs.path_to_filesystem(location)?;
        let create = matches!(opts.mode, PutMode::Create);
        let job_payload = payload.clone();
        let done = tokio::task::spawn_blocking(move || write_direct(&path, &job_payload, create))
            .await
            .map_err(|e| generic(std::io::Error::other(e.to_string())))?;
        match done {
            Ok(result) => Ok(result),
            Err(DirectError::Failed(e)) => Err(e),
            Err(DirectError::Unsupported) => {
                tracing::debug!(
                    "the repository's filesystem refuses O_DIRECT; writing packs through the page cache"
                );
                self.direct.store(false, Ordering::Relaxed);
                self.fs.put_opts(location, payload, opts).await
            }
        }
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.fs.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.fs.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[std::ops::Range<u64>]) -> Result<Vec<Bytes>> {
        self.fs.get_ranges(location, ranges).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.fs.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.fs.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.fs.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.fs.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.fs.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.fs.rename_opts(from, to, options).await
    }
}

fn generic(e: std::io::Error) -> object_store::Error {
    object_store::Error::Generic {
        store: "LocalStore",
        source: Box::new(e),
    }
}

fn failed(what: &str, path: &FsPath, e: std::io::Error) -> DirectError {
    DirectError::Failed(generic(std::io::Error::new(
        e.kind(),
        format!("{what} {}: {e}", path.display()),
    )))
}

/// Writes `payload` to a staging file with `O_DIRECT`, makes it durable and publishes it.
fn write_direct(path: &FsPath, payload: &PutPayload, create: bool) -> Result<PutResult, DirectError> {
    let parent = path.parent().unwrap_or(FsPath::new("/"));
    if !parent.is_dir() {
        std::fs::create_dir_all(parent).map_err(|e| failed("create directory", parent, e))?;
        if let Some(grand) = parent.parent() {
            sync_dir(grand).map_err(|e| failed("sync directory", grand, e))?;
        }
    }
    let (file, staging) = open_staging(path)?;
    let written = write_aligned(&file, payload).and_then(|()| {
        file.set_len(payload.content_length() as u64)?;
        file.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&staging);
        return Err(if e.raw_os_error() == Some(libc::EINVAL) {
            DirectError::Unsupported
        } else {
            failed("write", &staging, e)
        });
    }
    let meta = file.metadata().map_err(|e| failed("stat", &staging, e))?;
    drop(file);
    let published = if create {
        std::fs::hard_link(&staging, path).map(|()| {
            let _ = std::fs::remove_file(&staging);
        })
    } else {
        std::fs::rename(&staging, path)
    };
    if let Err(e) = published {
        let _ = std::fs::remove_file(&staging);
        return Err(if e.kind() == ErrorKind::AlreadyExists {
            DirectError::Failed(object_store::Error::AlreadyExists {
                path: path.display().to_string(),
                source: Box::new(e),
            })
        } else {
            failed("publish", path, e)
        });
    }
    sync_dir(parent).map_err(|e| failed("sync directory", parent, e))?;
    Ok(PutResult {
        e_tag: Some(etag(&meta)),
        version: None,
        extensions: Default::default(),
    })
}

/// Opens `<path>#<digits>` for direct writing (digits-only suffixes are hidden from listings).
fn open_staging(path: &FsPath) -> Result<(File, PathBuf), DirectError> {
    loop {
        let n = u64::from(std::process::id()) << 32 | STAGING_ID.fetch_add(1, Ordering::Relaxed);
        let mut staging = path.as_os_str().to_owned();
        staging.push(format!("#{n}"));
        let staging = PathBuf::from(staging);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_DIRECT)
            .open(&staging)
        {
            Ok(f) => return Ok((f, staging)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Err(DirectError::Unsupported),
            Err(e) => return Err(failed("create", &staging, e)),
        }
    }
}

/// Copies the payload through an aligned buffer in `STAGE`-sized writes; the last write is
/// padded to `ALIGN` (the caller truncates the file to the real length).
fn write_aligned(file: &File, payload: &PutPayload) -> std::io::Result<()> {
    let mut buffer = Stage::take();
    let stage = buffer.bytes();
    let mut filled = 0usize;
    let mut offset = 0u64;
    for part in payload.iter() {
        let mut part: &[u8] = part;
        while !part.is_empty() {
            let n = part.len().min(STAGE - filled);
            stage[filled..filled + n].copy_from_slice(&part[..n]);
            filled += n;
            part = &part[n..];
            if filled == STAGE {
                file.write_all_at(stage, offset)?;
                offset += STAGE as u64;
                filled = 0;
            }
        }
    }
    if filled > 0 {
        let padded = filled.div_ceil(ALIGN) * ALIGN;
        stage[filled..padded].fill(0);
        file.write_all_at(&stage[..padded], offset)?;
    }
    Ok(())
}

/// Compare-and-swap of one object: under an exclusive lock on its directory, replaces it only
/// if its current ETag is `expected`.
fn update(path: &FsPath, location: &str, payload: &PutPayload, expected: Option<&str>) -> Result<PutResult> {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let precondition = |message: String| object_store::Error::Precondition {
        path: location.to_string(),
        source: message.into(),
    };
    let Some(expected) = expected else {
        return Err(object_store::Error::Generic {
            store: "LocalStore",
            source: "PutMode::Update needs the ETag the object was read with".into(),
        });
    };
    let parent = path.parent().unwrap_or(FsPath::new("/"));
    let dir = match File::open(parent) {
        Ok(d) => d,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(precondition(format!("{location} does not exist")));
        }
        Err(e) => return Err(generic(e)),
    };
    // SAFETY: flock on a descriptor this function owns; the lock goes with `dir` when it drops.
    #[allow(unsafe_code)]
    let locked = unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX) };
    if locked != 0 {
        return Err(generic(std::io::Error::last_os_error()));
    }
    let current = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(precondition(format!("{location} does not exist")));
        }
        Err(e) => return Err(generic(e)),
    };
    if file_system_etag(&current).trim_matches('"') != expected.trim_matches('"') {
        return Err(precondition(format!(
            "{location} changed since it was read (ETag {} is no longer current)",
            expected
        )));
    }
    let (mut file, staging) = loop {
        let n = u64::from(std::process::id()) << 32 | STAGING_ID.fetch_add(1, Ordering::Relaxed);
        let mut staging = path.as_os_str().to_owned();
        staging.push(format!("#{n}"));
        let staging = PathBuf::from(staging);
        match OpenOptions::new().write(true).create_new(true).open(&staging) {
            Ok(f) => break (f, staging),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(generic(e)),
        }
    };
    let written = payload
        .iter()
        .try_for_each(|part| file.write_all(part))
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&staging, path))
        .and_then(|()| sync_dir(parent));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&staging);
        return Err(generic(e));
    }
    let meta = std::fs::metadata(path).map_err(generic)?;
    drop(dir);
    Ok(PutResult {
        e_tag: Some(file_system_etag(&meta)),
        version: None,
        extensions: Default::default(),
    })
}

/// The ETag `LocalFileSystem` reports for a file (`head`, `get`, `list`): quoted
/// `inode-mtime_micros-size` in hex.
fn file_system_etag(meta: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    let micros = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .unwrap_or_default()
        .as_micros();
    format!("\"{:x}-{:x}-{:x}\"", meta.ino(), micros, meta.len())
}

fn sync_dir(dir: &FsPath) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The same shape of tag `LocalFileSystem` gives (inode, mtime, size), so either path's
/// objects look alike.
fn etag(meta: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    format!(
        "{:x}-{:x}-{:x}",
        meta.ino(),
        meta.mtime() as u64 * 1_000_000 + meta.mtime_nsec() as u64 / 1000,
        meta.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;

    async fn round_trip(len: usize) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore::new(LocalFileSystem::new_with_prefix(dir.path()).expect("fs"));
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        // Several parts, none aligned, to cross staging boundaries at odd places.
        let parts: Vec<Bytes> = data.chunks(1_000_003).map(Bytes::copy_from_slice).collect();
        let key = Path::from("packs/ab/abcdef");
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        store
            .put_opts(&key, PutPayload::from_iter(parts), opts.clone())
            .await
            .expect("put");
        let back = store.get(&key).await.expect("get").bytes().await.expect("bytes");
        assert_eq!(back.len(), len);
        assert!(back == data, "content differs");
        // Create-only: a second put of the same key is refused and the first stays.
        let again = store.put_opts(&key, PutPayload::from(vec![1u8; len]), opts).await;
        assert!(
            matches!(again, Err(object_store::Error::AlreadyExists { .. })),
            "{again:?}"
        );
        let listed: Vec<_> = futures::StreamExt::collect::<Vec<_>>(store.list(None)).await;
        assert_eq!(listed.len(), 1, "staging files must not show: {listed:?}");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("packs/ab"))
            .expect("read dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 1, "a staging file was left behind: {names:?}");
        let probe = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_DIRECT)
            .open(dir.path().join("probe"));
        if probe.is_ok() {
            assert!(
                store.direct.load(Ordering::Relaxed),
                "O_DIRECT works here but was given up"
            );
        }
    }

    #[tokio::test]
    async fn large_objects_round_trip_whatever_their_length() {
        round_trip(DIRECT_MIN).await;
        round_trip(STAGE * 3).await;
        round_trip(STAGE * 2 + 12_345).await;
    }

    #[tokio::test]
    async fn small_objects_take_the_plain_path() {
        round_trip(10_000).await;
    }

    #[tokio::test]
    async fn update_is_compare_and_swap() {
        use object_store::{PutMode, UpdateVersion};
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore::new(LocalFileSystem::new_with_prefix(dir.path()).expect("fs"));
        let key = Path::from("federation/fence/app");
        let update = |e_tag: Option<String>| PutOptions {
            mode: PutMode::Update(UpdateVersion { e_tag, version: None }),
            ..Default::default()
        };
        // Absent: an update is a precondition failure, not a create.
        let absent = store
            .put_opts(&key, "x".into(), update(Some("\"1-2-3\"".into())))
            .await;
        assert!(
            matches!(absent, Err(object_store::Error::Precondition { .. })),
            "{absent:?}"
        );
        store.put(&key, "v1".into()).await.expect("create");
        let v1 = store.head(&key).await.expect("head").e_tag;
        let r = store
            .put_opts(&key, "v2".into(), update(v1.clone()))
            .await
            .expect("update v1→v2");
        // The returned tag is what head reports, so it can be used for the next update.
        assert_eq!(r.e_tag, store.head(&key).await.expect("head").e_tag);
        let stale = store.put_opts(&key, "v3".into(), update(v1)).await;
        assert!(
            matches!(stale, Err(object_store::Error::Precondition { .. })),
            "{stale:?}"
        );
        let now = store.get(&key).await.expect("get").bytes().await.expect("bytes");
        assert_eq!(&now[..], b"v2");
        let none = store.put_opts(&key, "v3".into(), update(None)).await;
        assert!(
            matches!(none, Err(object_store::Error::Generic { .. })),
            "{none:?}"
        );
        let listed: Vec<_> = futures::StreamExt::collect::<Vec<_>>(store.list(None)).await;
        assert_eq!(listed.len(), 1, "{listed:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn racing_updates_lose_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = std::sync::Arc::new(LocalStore::new(
            LocalFileSystem::new_with_prefix(dir.path()).expect("fs"),
        ));
        let key = Path::from("counter");
        store.put(&key, "0".into()).await.expect("create");
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (store, key) = (store.clone(), key.clone());
                tokio::spawn(async move {
                    let mut done = 0;
                    while done < 10 {
                        let got = store.get(&key).await.expect("get");
                        let version = object_store::UpdateVersion {
                            e_tag: got.meta.e_tag.clone(),
                            version: None,
                        };
                        let n: u64 = String::from_utf8_lossy(&got.bytes().await.expect("bytes"))
                            .parse()
                            .expect("number");
                        let opts = PutOptions {
                            mode: PutMode::Update(version),
                            ..Default::default()
                        };
                        match store.put_opts(&key, (n + 1).to_string().into(), opts).await {
                            Ok(_) => done += 1,
                            Err(object_store::Error::Precondition { .. }) => {}
                            Err(e) => panic!("{e}"),
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task");
        }
        let end = store.get(&key).await.expect("get").bytes().await.expect("bytes");
        assert_eq!(&end[..], b"80", "every successful update counted once");
    }
}
