//! The NFS backend: one directory per volume on an existing export, made and removed through
//! a userspace NFSv3 client, so the controller needs no mount and no privileges.
//!
//! Layout under `<share>/<baseDir>`: volumes `vol-<hash of name>`, snapshots in
//! `.lifeboat-snapshots/snap-<hash of name>`, archived volumes `archived-vol-…-<unix time>`.
//!
//! The driver deletes only what it created: a volume directory whose record in
//! `.lifeboat-meta` names a request whose hash is the directory's name and the same onDelete
//! policy as the id, and a snapshot directory whose record names the volume. Anything else an
//! id may name (another application's folder, the base directory, `.lifeboat-meta`, a volume
//! id with another policy) is not the driver's: DeleteVolume answers OK and touches nothing.
//! Copies (snapshots, clones, restores) go to a `.tmp` name first and are renamed into place,
//! so an interrupted copy is never mistaken for a finished one: the retry removes it and
//! copies again. Capacity is best effort: NFS has no per-directory quota here, the
//! requested size is recorded (see [`records`]) and reported back, not enforced.

pub mod client;
pub mod records;

use std::collections::HashMap;
use std::time::Duration;

use crate::error::{CsiError, Result, invalid};
use crate::ids::{NFS_VOLUME_PREFIX, NfsVolume, check_export, check_rel_path, hashed_name};
use client::{Kind, Session};

/// Where snapshots live, below the base directory.
pub const SNAP_DIR: &str = ".lifeboat-snapshots";

/// Parsed NFS StorageClass parameters.
#[derive(Debug, Clone)]
pub struct NfsParams {
    /// Server address.
    pub server: String,
    /// Exported path.
    pub share: String,
    /// Directory below the share that holds the volumes ("" for the share itself).
    pub base_dir: String,
    /// `delete`, `retain` or `archive`.
    pub on_delete: String,
    /// Mount options for nodes.
    pub mount_options: String,
}

impl NfsParams {
    /// Parses `server`, `share`, `baseDir`, `onDelete` and `mountOptions`.
    pub fn parse(p: &HashMap<String, String>) -> Result<Self> {
        let get = |k: &str| p.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let server = get("server").ok_or_else(|| invalid("parameter server is required"))?;
        let share = get("share").ok_or_else(|| invalid("parameter share is required"))?;
        let base_dir = get("baseDir").unwrap_or("").trim_matches('/');
        if !base_dir.is_empty() {
            check_rel_path("baseDir", base_dir)?;
            if base_dir
                .split('/')
                .any(|c| c == SNAP_DIR || c == records::META_DIR)
            {
                return Err(invalid(format!(
                    "baseDir {base_dir:?}: {SNAP_DIR} and {} hold the driver's own records",
                    records::META_DIR
                )));
            }
        }
        let on_delete = get("onDelete").unwrap_or("delete");
        // Validates server, share and policy the same way ids are checked.
        check_export(server, share)?;
        if !["delete", "retain", "archive"].contains(&on_delete) {
            return Err(invalid(format!(
                "onDelete {on_delete:?}: delete, retain or archive"
            )));
        }
        Ok(Self {
            server: server.into(),
            share: share.into(),
            base_dir: base_dir.into(),
            on_delete: on_delete.into(),
            mount_options: get("mountOptions").unwrap_or("").into(),
        })
    }

    /// The id of the volume a CreateVolume name maps to.
    pub fn volume_for(&self, request_name: &str) -> Result<NfsVolume> {
        let dir = join(&self.base_dir, &hashed_name(NFS_VOLUME_PREFIX, request_name));
        NfsVolume::new(&self.server, &self.share, &dir, &self.on_delete)
    }
}

fn join(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_string()
    } else {
        format!("{base}/{name}")
    }
}

/// The NFS operations, each on its own session and under one deadline.
#[derive(Clone)]
pub struct NfsBackend {
    /// Deadline for one whole RPC's NFS work.
    pub timeout: Duration,
}

impl NfsBackend {
    async fn with_session<T, F>(&self, vol: &NfsVolume, f: F) -> Result<T>
    where
        F: for<'a> FnOnce(&'a mut Session) -> std::pin::Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>,
    {
        self.on_export(&vol.server, &vol.share, f).await
    }

    /// Runs `f` on a fresh session on `server:share`, under the RPC's deadline.
    async fn on_export<T, F>(&self, server: &str, share: &str, f: F) -> Result<T>
    where
        F: for<'a> FnOnce(&'a mut Session) -> std::pin::Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>,
    {
        check_export(server, share)?;
        let work = async {
            let mut s = Session::connect(server, share).await?;
            let out = f(&mut s).await;
            s.close().await;
            out
        };
        tokio::time::timeout(self.timeout, work).await.map_err(|_| {
            CsiError::Unavailable(format!(
                "NFS server {server}:{share} did not answer within {:?}",
                self.timeout
            ))
        })?
    }

    /// Creates the volume directory (empty, or a copy of a snapshot or another volume), or
    /// finds the one an earlier call with this name made; returns its recorded capacity.
    pub async fn create(
        &self,
        vol: &NfsVolume,
        source: Option<NfsSource>,
        want: VolumeRecord,
    ) -> Result<u64> {
        let (base, name) = (vol.base().to_string(), vol.name().to_string());
        self.with_session(vol, move |s| {
            Box::pin(async move {
                let base_fh = s.walk(&base).await?.ok_or_else(|| {
                    CsiError::NotFound(format!("baseDir {base:?} does not exist on the share"))
                })?;
                if let Some((_, k)) = s.lookup(&base_fh, &name).await? {
                    if k != Kind::Dir {
                        return Err(CsiError::AlreadyExists(format!(
                            "{name} exists and is not a directory"
                        )));
                    }
                    if let Some(found) = records::read(s, &base_fh, &name).await? {
                        return want.matches(&found);
                    }
                    // Made before records existed, or interrupted just before its record.
                } else {
                    match source {
                        None => {
                            s.mkdir(&base_fh, &name).await?;
                        }
                        Some(src) => {
                            let src_fh = s.walk(&src.dir).await?.ok_or_else(|| {
                                CsiError::NotFound(format!("source {} does not exist", src.dir))
                            })?;
                            copy_then_rename(s, &src_fh, &base_fh, &name).await?;
                        }
                    }
                }
                records::write(s, &base_fh, &name, &want.to_json()).await?;
                Ok(want.capacity)
            })
        })
        .await
    }

    /// Applies the volume's onDelete policy, if the volume is one this driver created: its
    /// record must exist, belong to a request whose hash is the directory's name, and carry
    /// the id's policy. Anything else is left untouched and reported as not ours (`Ok(false)`),
    /// so DeleteVolume can answer OK for an unknown id as the spec asks. Only `<dir>` itself is
    /// ever removed or renamed; the record goes last, so a retry after a crash finishes the job.
    pub async fn delete(&self, vol: &NfsVolume) -> Result<bool> {
        let (base, name, policy) = (
            vol.base().to_string(),
            vol.name().to_string(),
            vol.on_delete.clone(),
        );
        self.with_session(vol, move |s| {
            Box::pin(async move {
                let Some(base_fh) = s.walk(&base).await? else {
                    return Ok(false);
                };
                let Some(raw) = records::read(s, &base_fh, &name).await? else {
                    return Ok(false);
                };
                let Ok(rec) = serde_json::from_slice::<VolumeRecord>(&raw) else {
                    return Ok(false);
                };
                let recorded_policy = if rec.on_delete.is_empty() {
                    "delete"
                } else {
                    rec.on_delete.as_str()
                };
                if hashed_name(NFS_VOLUME_PREFIX, &rec.name) != name || recorded_policy != policy {
                    return Ok(false);
                }
                match s.lookup(&base_fh, &name).await? {
                    None => {}
                    Some((_, Kind::Dir)) if policy == "retain" => {}
                    Some((_, Kind::Dir)) if policy == "archive" => {
                        let secs = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.as_secs())
                            .unwrap_or(0);
                        s.rename(&base_fh, &name, &base_fh, &format!("archived-{name}-{secs}"))
                            .await?;
                    }
                    Some((_, Kind::Dir)) => s.remove_tree(&base_fh, &name).await?,
                    Some(_) => {
                        return Err(CsiError::FailedPrecondition(format!(
                            "{name} is not a directory; refusing to touch it"
                        )));
                    }
                }
                // The name is free again whatever happened to the data.
                records::remove(s, &base_fh, &name).await?;
                Ok(true)
            })
        })
        .await
    }

    /// Volumes recorded under `base` on an export: (directory below the share, record), for
    /// ListVolumes. Only complete volumes have records.
    pub async fn list(&self, server: &str, share: &str, base: &str) -> Result<Vec<(String, VolumeRecord)>> {
        let base = base.trim_matches('/').to_string();
        if !base.is_empty() {
            check_rel_path("baseDir", &base)?;
        }
        self.on_export(server, share, move |s| {
            Box::pin(async move {
                let Some(base_fh) = s.walk(&base).await? else {
                    return Ok(vec![]);
                };
                Ok(records::read_all(s, &base_fh, "vol-")
                    .await?
                    .into_iter()
                    .filter_map(|(name, raw)| {
                        let rec = serde_json::from_slice::<VolumeRecord>(&raw).ok()?;
                        (hashed_name(NFS_VOLUME_PREFIX, &rec.name) == name).then(|| (join(&base, &name), rec))
                    })
                    .collect())
            })
        })
        .await
    }

    /// True if the volume directory exists.
    pub async fn exists(&self, vol: &NfsVolume) -> Result<bool> {
        let dir = vol.dir.clone();
        self.with_session(vol, move |s| {
            Box::pin(async move { Ok(s.walk(&dir).await?.is_some()) })
        })
        .await
    }

    /// Copies the volume into `.lifeboat-snapshots/<snap>` next to it.
    pub async fn snapshot(&self, vol: &NfsVolume, snap: &str) -> Result<()> {
        let (base, dir, snap) = (vol.base().to_string(), vol.dir.clone(), snap.to_string());
        self.with_session(vol, move |s| {
            Box::pin(async move {
                let src = s
                    .walk(&dir)
                    .await?
                    .ok_or_else(|| CsiError::NotFound(format!("volume {dir} does not exist")))?;
                let base_fh = s
                    .walk(&base)
                    .await?
                    .ok_or_else(|| CsiError::NotFound(format!("{base} is gone")))?;
                let owner = dir.rsplit('/').next().unwrap_or(&dir).as_bytes().to_vec();
                match records::read(s, &base_fh, &snap).await? {
                    Some(taken) if taken != owner => {
                        return Err(CsiError::AlreadyExists(format!(
                            "the snapshot name is already used for volume {}",
                            String::from_utf8_lossy(&taken)
                        )));
                    }
                    Some(_) => {}
                    None => records::write(s, &base_fh, &snap, &owner).await?,
                }
                let snaps = s.mkdir(&base_fh, SNAP_DIR).await?;
                if s.lookup(&snaps, &snap).await?.is_some() {
                    return Ok(());
                }
                copy_then_rename(s, &src, &snaps, &snap).await
            })
        })
        .await
    }

    /// Removes a snapshot directory the driver made of this volume: only when the snapshot's
    /// record names the volume (absent or someone else's is fine and touches nothing).
    pub async fn delete_snapshot(&self, vol: &NfsVolume, snap: &str) -> Result<()> {
        let (base, owner, snap) = (
            vol.base().to_string(),
            vol.name().as_bytes().to_vec(),
            snap.to_string(),
        );
        self.with_session(vol, move |s| {
            Box::pin(async move {
                let Some(base_fh) = s.walk(&base).await? else {
                    return Ok(());
                };
                if records::read(s, &base_fh, &snap).await?.as_deref() != Some(owner.as_slice()) {
                    return Ok(());
                }
                if let Some((snaps, Kind::Dir)) = s.lookup(&base_fh, SNAP_DIR).await? {
                    s.remove_tree(&snaps, &snap).await?;
                }
                records::remove(s, &base_fh, &snap).await
            })
        })
        .await
    }

    /// True if the snapshot directory exists.
    pub async fn snapshot_exists(&self, vol: &NfsVolume, snap: &str) -> Result<bool> {
        let path = join(&join(vol.base(), SNAP_DIR), snap);
        self.with_session(vol, move |s| {
            Box::pin(async move { Ok(s.walk(&path).await?.is_some()) })
        })
        .await
    }

    /// Free bytes on the export (best effort).
    pub async fn available(&self, server: &str, share: &str) -> Result<u64> {
        self.on_export(server, share, |s| {
            Box::pin(async move { Ok(s.fsstat().await?.0) })
        })
        .await
    }

    /// Checks the server answers a mount and a root lookup.
    pub async fn probe(&self, server: &str, share: &str) -> Result<()> {
        self.on_export(server, share, |s| {
            Box::pin(async move { s.list(&s.root()).await.map(|_| ()) })
        })
        .await
    }
}

/// What CreateVolume asked for, as recorded next to the volume.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct VolumeRecord {
    /// The CO's request name.
    pub name: String,
    /// Bytes granted.
    pub capacity: u64,
    /// The content source, as its CSI id ("" when blank).
    pub source: String,
    /// The onDelete policy, part of the volume id (so ListVolumes can give the id back).
    #[serde(default)]
    pub on_delete: String,
    /// Smallest acceptable capacity of an existing volume (not recorded).
    #[serde(skip)]
    pub required: u64,
    /// Largest acceptable capacity, 0 = no limit (not recorded).
    #[serde(skip)]
    pub limit: u64,
}

impl VolumeRecord {
    fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The recorded capacity if the volume found satisfies this request; ALREADY_EXISTS if not.
    fn matches(&self, found: &[u8]) -> Result<u64> {
        let found: VolumeRecord = serde_json::from_slice(found).map_err(|e| {
            CsiError::Internal(format!(
                "unreadable record {}/{}: {e}",
                records::META_DIR,
                self.name
            ))
        })?;
        if found.name != self.name {
            return Err(CsiError::AlreadyExists(format!(
                "the volume directory belongs to another volume name ({:?})",
                found.name
            )));
        }
        if found.capacity < self.required || (self.limit > 0 && found.capacity > self.limit) {
            return Err(CsiError::AlreadyExists(format!(
                "volume {:?} exists with {} bytes, incompatible with the requested capacity",
                self.name, found.capacity
            )));
        }
        if !found.on_delete.is_empty() && found.on_delete != self.on_delete {
            return Err(CsiError::AlreadyExists(format!(
                "volume {:?} exists with onDelete {:?}",
                self.name, found.on_delete
            )));
        }
        if found.source != self.source {
            return Err(CsiError::AlreadyExists(format!(
                "volume {:?} exists with a different content source",
                self.name
            )));
        }
        Ok(found.capacity)
    }
}

/// Where an NFS copy comes from: a directory below the share.
#[derive(Debug, Clone)]
pub struct NfsSource {
    /// Relative path of the source directory.
    pub dir: String,
}

impl NfsSource {
    /// The directory of snapshot `snap` taken of `vol`.
    pub fn snapshot(vol: &NfsVolume, snap: &str) -> Self {
        Self {
            dir: join(&join(vol.base(), SNAP_DIR), snap),
        }
    }
}

async fn copy_then_rename(
    s: &mut Session,
    src: &nfs3_client::nfs3_types::nfs3::nfs_fh3,
    parent: &nfs3_client::nfs3_types::nfs3::nfs_fh3,
    name: &str,
) -> Result<()> {
    let tmp = format!("{name}.tmp");
    s.remove_tree(parent, &tmp).await?;
    s.copy_tree(src, parent, &tmp).await?;
    s.rename(parent, &tmp, parent, name).await
}
