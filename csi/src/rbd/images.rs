//! Blocking image operations behind the controller RPCs. Each is idempotent: a retry after a
//! crash at any point finishes or cleans up the earlier attempt instead of leaving orphans.
//!
//! Crash safety rests on three facts: image and snapshot names are derived from the CO's
//! request name, so a retry looks in the same place; the metadata key
//! [`COMPLETE`] is written last, so an image without it is a leftover of an interrupted
//! create and is removed and made again; temporary clone snapshots have names derived from
//! the new volume's name and are removed by the retry that finds them.

use lifeboat_rbd::{Cluster, Image, Pool, RbdError, SnapshotNamespace, SnapshotRef};

use crate::error::{CsiError, Result};
use crate::ids::{RBD_GROUP_SNAP_PREFIX, RBD_IMAGE_PREFIX, RBD_SNAP_PREFIX, hashed_name, name_hash};
use crate::rbd::params::{CloneMode, RbdParams};
use crate::rbd::qos::{KEYS, Qos};

/// Metadata key written last by a successful create, in one write: the CO's request name and
/// the parameters fingerprint, as JSON `{"name": …, "params": …}`.
pub const COMPLETE: &str = "lifeboat.csi.volume";
/// Prefix of temporary snapshots taken to clone a volume.
pub const TMP_PREFIX: &str = "csi-tmp-";
/// Bytes copied per read/write when a volume is restored from a group snapshot member.
const COPY_CHUNK: u64 = 4 << 20;

/// The image a CreateVolume name maps to.
pub fn image_name(request_name: &str) -> String {
    hashed_name(RBD_IMAGE_PREFIX, request_name)
}

/// The snapshot a CreateSnapshot name maps to.
pub fn snapshot_name(request_name: &str) -> String {
    hashed_name(RBD_SNAP_PREFIX, request_name)
}

/// Where a new volume's data comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Blank.
    None,
    /// An RBD snapshot of an image in the same cluster.
    Snapshot {
        /// Pool of the source image.
        pool: String,
        /// Source image.
        image: String,
        /// Snapshot name.
        snap: String,
    },
    /// Another image in the same cluster.
    Volume {
        /// Pool of the source image.
        pool: String,
        /// Source image.
        image: String,
    },
    /// An image's member snapshot of a volume group snapshot. Pacific's librbd cannot clone
    /// from a group snapshot namespace, so the data is copied.
    GroupMember {
        /// Pool of the source image.
        pool: String,
        /// Source image.
        image: String,
        /// The group snapshot's name (`csi-gsnap-<hash>`).
        group_snap: String,
    },
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Source::None => String::new(),
            Source::Snapshot { pool, image, snap } => format!("snap:{pool}/{image}@{snap}"),
            Source::Volume { pool, image } => format!("vol:{pool}/{image}"),
            Source::GroupMember {
                pool,
                image,
                group_snap,
            } => format!("gsnap:{pool}/{image}@{group_snap}"),
        }
    }
}

/// A CreateVolume, decided.
pub struct CreatePlan {
    /// The CO's name.
    pub name: String,
    /// Bytes to provision (already rounded).
    pub size: u64,
    /// Smallest acceptable size for an existing volume.
    pub required: u64,
    /// Largest acceptable size (0 = no limit).
    pub limit: u64,
    /// Parsed parameters.
    pub params: RbdParams,
    /// Content source.
    pub source: Source,
    /// QoS limits (mutable parameters) to set before the volume is handed out.
    pub qos: Qos,
}

fn err(e: RbdError) -> CsiError {
    CsiError::rbd(e)
}

/// Creates the volume, or returns the size of the one an earlier call with this name made.
pub fn create(cluster: &Cluster, plan: &CreatePlan) -> Result<u64> {
    let pool = cluster.pool(&plan.params.pool).map_err(err)?;
    let image = image_name(&plan.name);
    let fingerprint = plan.params.fingerprint(&plan.source.describe());
    // Most names are new: one small read of the id object says so without building an image
    // context (which costs more CPU than the rest of the create).
    if pool.image_id(&image).map_err(err)?.is_some() {
        match pool.open(&image, None) {
            Ok(img) => {
                if is_complete(&img)? {
                    return existing(&img, plan, &fingerprint);
                }
                // Left by an interrupted create: make it again from scratch.
                drop(img);
                remove_leftover(&pool, &image)?;
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(err(e)),
        }
    }
    let source_size = match &plan.source {
        Source::None => 0,
        Source::Snapshot {
            pool: sp,
            image: si,
            snap,
        } => {
            get_snapshot(cluster, sp, si, snap)?
                .ok_or_else(|| CsiError::NotFound(format!("snapshot {sp}/{si}@{snap} does not exist")))?
                .size
        }
        Source::Volume { pool: sp, image: si } => size(cluster, sp, si)?,
        Source::GroupMember {
            pool: sp,
            image: si,
            group_snap,
        } => {
            let p = cluster.pool(sp).map_err(err)?;
            let img = p.open_read_only(si, None).map_err(err)?;
            find_group_member(&img, group_snap)?
                .ok_or_else(|| {
                    CsiError::NotFound(format!(
                        "group snapshot member {sp}/{si}@{group_snap} does not exist"
                    ))
                })?
                .size
        }
    };
    if plan.limit > 0 && source_size > plan.limit {
        return Err(CsiError::OutOfRange(format!(
            "the source holds {source_size} bytes, more than the limit of {} bytes",
            plan.limit
        )));
    }
    // An image whose header a crash left half-written may be listed yet not open; rbd_remove
    // cleans such leftovers, so an EEXIST here is answered by removing it and trying once more.
    match make(cluster, &pool, &image, plan) {
        Err(CsiError::AlreadyExists(_)) => {
            remove_leftover(&pool, &image)?;
            make(cluster, &pool, &image, plan)?;
        }
        other => other?,
    }
    let size = match plan.source {
        // A blank image is made at exactly the planned size.
        Source::None => plan.size,
        Source::GroupMember { .. } => plan.size.max(source_size),
        Source::Snapshot { .. } | Source::Volume { .. } => {
            let mut img = pool.open(&image, None).map_err(err)?;
            // librbd copies image metadata into clones: limits the source had and this
            // volume's request does not set are not this volume's.
            for (_, option, _) in KEYS {
                if !plan.qos.0.iter().any(|(o, _)| *o == option) {
                    img.remove_metadata(&Qos::metadata_key(option)).map_err(err)?;
                }
            }
            let current = img.info().map_err(err)?.size;
            if current < plan.size {
                img.resize(plan.size, false).map_err(err)?;
            }
            if matches!(plan.source, Source::Snapshot { .. }) && plan.params.clone_mode == CloneMode::Flatten
            {
                img.flatten().map_err(err)?;
            }
            img.info().map_err(err)?.size
        }
    };
    // The image is closed and no node has mapped it yet, so QoS and the marker can be written
    // without opening it (and without taking its exclusive lock).
    for (option, value) in &plan.qos.0 {
        if *value > 0 {
            pool.set_new_image_metadata(&image, &Qos::metadata_key(option), &value.to_string())
                .map_err(err)?;
        }
    }
    let record = serde_json::json!({"name": plan.name, "params": fingerprint}).to_string();
    pool.set_new_image_metadata(&image, COMPLETE, &record)
        .map_err(err)?;
    Ok(size)
}

fn make(cluster: &Cluster, pool: &Pool, image: &str, plan: &CreatePlan) -> Result<()> {
    let opts = plan.params.image_options()?;
    match &plan.source {
        Source::None => pool.create_image(image, plan.size, &opts).map_err(err)?,
        Source::Snapshot {
            pool: sp,
            image: si,
            snap,
        } => {
            let src_pool = cluster.pool(sp).map_err(err)?;
            clone_from(&src_pool, si, snap, pool, image, &opts)?;
        }
        Source::Volume { pool: sp, image: si } => {
            let src_pool = cluster.pool(sp).map_err(err)?;
            let tmp = format!("{TMP_PREFIX}{}", name_hash(&plan.name));
            {
                let mut src = src_pool.open(si, None).map_err(err)?;
                match src.create_snapshot(&tmp) {
                    Ok(()) => {}
                    Err(e) if e.is_already_exists() => {}
                    Err(e) => return Err(err(e)),
                }
            }
            clone_from(&src_pool, si, &tmp, pool, image, &opts)?;
            // A volume clone must not pin its source: always flatten, then drop the temp snap.
            pool.open(image, None).map_err(err)?.flatten().map_err(err)?;
            remove_snapshot(&src_pool, si, &tmp)?;
        }
        Source::GroupMember {
            pool: sp,
            image: si,
            group_snap,
        } => {
            let src_pool = cluster.pool(sp).map_err(err)?;
            let mut src = src_pool.open_read_only(si, None).map_err(err)?;
            let member = find_group_member(&src, group_snap)?.ok_or_else(|| {
                CsiError::NotFound(format!("group snapshot member {sp}/{si}@{group_snap} is gone"))
            })?;
            pool.create_image(image, plan.size.max(member.size), &opts)
                .map_err(err)?;
            src.set_snapshot_by_id(member.id).map_err(err)?;
            copy_allocated(&src, &mut pool.open(image, None).map_err(err)?)?;
        }
    }
    Ok(())
}

/// Copies every allocated extent of `src` (as of the snapshot it is set to) into `dst`, which
/// is new and so reads as zeros everywhere else.
fn copy_allocated(src: &Image<'_>, dst: &mut Image<'_>) -> Result<()> {
    let mut buf = vec![0u8; COPY_CHUNK as usize];
    for extent in src.changed_extents(None).map_err(err)? {
        if !extent.exists {
            continue;
        }
        let mut offset = extent.offset;
        let end = extent.offset + extent.length;
        while offset < end {
            let len = (end - offset).min(COPY_CHUNK) as usize;
            let got = src.read_at(offset, &mut buf[..len]).map_err(err)?;
            if got == 0 {
                break;
            }
            dst.write_at(offset, &buf[..got]).map_err(err)?;
            offset += got as u64;
        }
    }
    dst.flush().map_err(err)
}

/// The user-visible facts of one snapshot of an image, found by id.
pub struct MemberSnap {
    /// librbd's snapshot id.
    pub id: u64,
    /// Image size when it was taken.
    pub size: u64,
}

/// The member snapshot an image has in group snapshot `group_snap`, if any.
pub fn find_group_member(img: &Image<'_>, group_snap: &str) -> Result<Option<MemberSnap>> {
    for s in img.snapshots().map_err(err)? {
        if let SnapshotNamespace::Group { snapshot, .. } = img.snapshot_namespace(s.id).map_err(err)?
            && snapshot == group_snap
        {
            return Ok(Some(MemberSnap {
                id: s.id,
                size: s.size,
            }));
        }
    }
    Ok(None)
}

fn existing(img: &Image<'_>, plan: &CreatePlan, fingerprint: &str) -> Result<u64> {
    let size = img.info().map_err(err)?.size;
    let record: serde_json::Value =
        serde_json::from_str(&img.metadata(COMPLETE).map_err(err)?.unwrap_or_default()).unwrap_or_default();
    let name = record["name"].as_str().unwrap_or_default();
    let params = record["params"].as_str().unwrap_or_default();
    if name != plan.name {
        return Err(CsiError::AlreadyExists(format!(
            "image {} belongs to another volume name",
            img.name()
        )));
    }
    if size < plan.required || (plan.limit > 0 && size > plan.limit) {
        return Err(CsiError::AlreadyExists(format!(
            "volume {:?} exists with {size} bytes, incompatible with the requested capacity",
            plan.name
        )));
    }
    if params != fingerprint {
        return Err(CsiError::AlreadyExists(format!(
            "volume {:?} exists with different parameters or source",
            plan.name
        )));
    }
    Ok(size)
}

fn clone_from(
    src_pool: &Pool,
    src_image: &str,
    snap: &str,
    pool: &Pool,
    image: &str,
    opts: &lifeboat_rbd::ImageOptions,
) -> Result<()> {
    {
        let mut src = src_pool.open(src_image, None).map_err(err)?;
        if !src.is_snapshot_protected(snap).map_err(err)? {
            src.protect_snapshot(snap).map_err(err)?;
        }
    }
    let parent = SnapshotRef {
        pool: src_pool,
        image: src_image,
        snapshot: snap,
    };
    pool.clone_image(&parent, image, opts).map_err(err)
}

fn remove_leftover(pool: &Pool, image: &str) -> Result<()> {
    tracing::warn!(
        pool = pool.name(),
        image,
        "removing the leftover of an interrupted create"
    );
    match pool.remove_image(image) {
        Ok(()) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        // A crashed driver's watch on the header outlives it by the OSD watch timeout (30 s by
        // default): retryable, and the retry that comes after it removes the leftover.
        Err(e) if e.is_busy() => Err(CsiError::Unavailable(format!(
            "the leftover {}/{image} of an interrupted create is in use ({}); the watch of the \
             driver that crashed making it lapses within the OSDs' osd_client_watch_timeout (30 s \
             by default): retry shortly (a watch listed long after its client is gone is one \
             the OSD failed to time out, Ceph tracker 58120: it goes once the OSD reloads the \
             header, e.g. when the OSD restarts)",
            pool.name(),
            holders(pool, image)
        ))),
        Err(e) => Err(err(e)),
    }
}

/// Unprotects (if needed) and removes a snapshot, then what an interrupted removal left (see
/// [`sweep_trash`]); absent is fine, children are FAILED_PRECONDITION.
pub fn remove_snapshot(pool: &Pool, image: &str, snap: &str) -> Result<()> {
    let mut img = match pool.open(image, None) {
        Ok(i) => i,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(err(e)),
    };
    remove_named_snapshot(&mut img, pool.name(), image, snap)?;
    sweep_trash(&mut img)
}

/// Removes the trash-namespace snapshots of an image this driver made. librbd removes a
/// snapshot by moving it to the trash namespace, then deleting it; a removal killed in
/// between leaves it there, nameless and holding its data, and retries no longer find it by
/// name. The driver never removes a snapshot that has clones (it refuses), so a trash
/// snapshot is such a leftover; one with clones made outside the driver is left (EBUSY).
pub fn sweep_trash(img: &mut Image<'_>) -> Result<()> {
    for s in img.snapshots().map_err(err)? {
        if img.snapshot_namespace(s.id).map_err(err)? != SnapshotNamespace::Trash {
            continue;
        }
        match img.remove_snapshot_by_id(s.id) {
            Ok(()) => tracing::warn!(
                image = img.name(),
                snap_id = s.id,
                "removed a snapshot an interrupted removal left in the trash namespace"
            ),
            Err(e) if e.is_busy() || e.is_not_found() => {}
            Err(e) => return Err(err(e)),
        }
    }
    Ok(())
}

fn remove_named_snapshot(img: &mut Image<'_>, pool: &str, image: &str, snap: &str) -> Result<()> {
    match img.is_snapshot_protected(snap) {
        Ok(true) => match img.unprotect_snapshot(snap) {
            Ok(()) => {}
            Err(e) if e.is_busy() => {
                return Err(CsiError::FailedPrecondition(format!(
                    "snapshot {snap} of {pool}/{image} still has clones"
                )));
            }
            Err(e) => return Err(err(e)),
        },
        Ok(false) => {}
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(err(e)),
    }
    match img.remove_snapshot(snap) {
        Ok(()) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(err(e)),
    }
}

/// Removes a CSI snapshot and the record of its name (absent is fine).
pub fn delete_snapshot(pool: &Pool, image: &str, snap: &str) -> Result<()> {
    remove_snapshot(pool, image, snap)?;
    let owner = snapshot_owner(snap);
    // Only this volume's claim on the name is released.
    if pool.read_object(&owner, 256).map_err(err)?.as_deref() == Some(image.as_bytes()) {
        pool.remove_object(&owner).map_err(err)?;
    }
    Ok(())
}

/// Finishes a removal a crash cut short, if `image` is one; true if there was one. librbd
/// removes an image in steps, and a killed DeleteVolume can stop between any two; a retry
/// would otherwise take what is left for an image that is not the driver's, answer success,
/// and leave its data in the pool:
/// - while the pool directory still lists it but its id object or header (and with it the
///   [`COMPLETE`] marker) is gone: `rbd_remove` finishes it, and where librbd answers ENOENT
///   instead, the directory entry and id object are removed directly;
/// - after the image was moved to the trash as "removing" (librbd's own remove goes through
///   the trash): the name is gone from the directory, `rbd ls` still lists it under its id,
///   the trash listings leave it out, and only a forced trash remove finishes it (after
///   finishing the move, when the kill came before its last step). Someone already asked
///   for it to be removed, so finishing is safe. Until the killed client's watch lapses
///   librbd answers EBUSY: UNAVAILABLE, and the CO's retry finishes it.
fn finish_interrupted_removal(pool: &Pool, image: &str) -> Result<bool> {
    let listed_id = pool.directory_id(image).map_err(err)?;
    if let Some(id) = &listed_id {
        // A whole image has its id object and its header; a removal (or a move to the trash)
        // deletes one, then the other, then the directory entry.
        let half_removed = pool.image_id(image).map_err(err)?.is_none()
            || pool
                .read_object(&format!("rbd_header.{id}"), 1)
                .map_err(err)?
                .is_none();
        if !half_removed {
            return Ok(false);
        }
        tracing::warn!(
            pool = pool.name(),
            image,
            "finishing the removal of a volume an interrupted DeleteVolume left half-removed"
        );
        match pool.remove_image(image) {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(err(e)),
        }
        // librbd answers ENOENT for a name whose header is gone and can leave it listed.
        if pool.directory_id(image).map_err(err)?.is_some() {
            pool.remove_directory_entry(image, id).map_err(err)?;
        }
        return Ok(true);
    }
    let removing: Vec<String> = pool
        .list_image_ids()
        .map_err(err)?
        .into_iter()
        .filter(|(_, name)| name == image)
        .map(|(id, _)| id)
        .collect();
    for id in &removing {
        tracing::warn!(
            pool = pool.name(),
            image,
            id,
            "finishing the removal of a volume an interrupted DeleteVolume left in the RBD trash"
        );
        let mut removed = pool.trash_remove(id, true);
        // Killed before the move's last step: the entry is still marked as being moved, which
        // every trash remove refuses (EUCLEAN in Ceph 16). Finish the move, then remove.
        if let Err(e) = &removed
            && (e.errno() == Some(libc::EUCLEAN) || e.is_busy())
            && pool.trash_finish_move(id).is_ok()
        {
            removed = pool.trash_remove(id, true);
        }
        match removed {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) if e.is_busy() => {
                return Err(CsiError::Unavailable(format!(
                    "the half-removed volume {}/{image} (in the RBD trash as {id}) is still watched \
                     by the client whose removal was interrupted; retry once its watch lapses \
                     (osd_client_watch_timeout, 30 s by default)",
                    pool.name()
                )));
            }
            Err(e) => return Err(err(e)),
        }
    }
    Ok(!removing.is_empty())
}

/// True if `image` is a volume this driver finished creating: its [`COMPLETE`] marker names a
/// request whose image is `image`. Read without opening the image.
fn is_ours(pool: &Pool, image: &str) -> Result<bool> {
    let record = pool.peek_image_metadata(image, COMPLETE).map_err(err)?;
    Ok(record.is_some_and(|r| marks(&r, image)))
}

/// True if `img`'s [`COMPLETE`] marker was written by its own create. librbd copies image
/// metadata into clones, so a clone a crash left half-made carries its parent's marker,
/// which names the parent's request, not this image's.
fn is_complete(img: &Image<'_>) -> Result<bool> {
    let record = img.metadata(COMPLETE).map_err(err)?;
    Ok(record.is_some_and(|r| marks(&r, img.name())))
}

/// True if marker `record` names a request whose image is `image`.
fn marks(record: &str, image: &str) -> bool {
    let record: serde_json::Value = serde_json::from_str(record).unwrap_or_default();
    record["name"].as_str().is_some_and(|n| image_name(n) == image)
}

/// Removes a volume's image if the driver created it (see [`is_ours`]); `Ok(false)` when it is
/// absent or not the driver's, which is left untouched. CSI snapshots, group snapshot members
/// or clones are FAILED_PRECONDITION.
pub fn delete(cluster: &Cluster, pool_name: &str, image: &str) -> Result<bool> {
    let pool = match cluster.pool(pool_name) {
        Ok(p) => p,
        Err(e) if e.is_not_found() => return Ok(false),
        Err(e) => return Err(err(e)),
    };
    if !is_ours(&pool, image)? {
        return finish_interrupted_removal(&pool, image);
    }
    // The common case (no snapshots) costs one call; snapshots make librbd refuse, and only
    // then are they looked at.
    match pool.remove_image(image) {
        Ok(()) => return Ok(true),
        Err(e) if e.is_not_found() => return Ok(true),
        Err(e) if e.is_busy() => {}
        // Still in an RBD group: an interrupted CreateVolumeGroupSnapshot, whose retry removes it.
        Err(e) if e.errno() == Some(libc::EMLINK) => {
            return Err(CsiError::FailedPrecondition(format!(
                "volume {pool_name}/{image} is in an RBD group of an unfinished group snapshot; \
                 retry once it is finished or deleted"
            )));
        }
        Err(e) => return Err(err(e)),
    }
    let snaps = match pool.open(image, None) {
        Ok(mut img) => {
            sweep_trash(&mut img)?;
            for s in img.snapshots().map_err(err)? {
                if let SnapshotNamespace::Group { group, snapshot, .. } =
                    img.snapshot_namespace(s.id).map_err(err)?
                {
                    return Err(CsiError::FailedPrecondition(format!(
                        "volume {pool_name}/{image} is a member of group snapshot {group}@{snapshot}: \
                         delete its VolumeGroupSnapshot first"
                    )));
                }
            }
            img.snapshots().map_err(err)?
        }
        Err(e) if e.is_not_found() => return Ok(true),
        Err(e) => return Err(err(e)),
    };
    if let Some(s) = snaps.iter().find(|s| s.name.starts_with(RBD_SNAP_PREFIX)) {
        return Err(CsiError::FailedPrecondition(format!(
            "volume {pool_name}/{image} has snapshot {}: delete its VolumeSnapshots first",
            s.name
        )));
    }
    for s in snaps.iter().filter(|s| s.name.starts_with(TMP_PREFIX)) {
        remove_snapshot(&pool, image, &s.name)?;
    }
    match pool.remove_image(image) {
        Ok(()) => Ok(true),
        Err(e) if e.is_not_found() => Ok(true),
        Err(e) if e.is_busy() => Err(CsiError::FailedPrecondition(busy_message(
            &pool, pool_name, image,
        ))),
        Err(e) => Err(err(e)),
    }
}

/// Why librbd refuses to remove an image that is busy: who holds it. A watch of a client that
/// ended without closing the image (a crashed node plugin or driver) lapses by itself, so the
/// CO's retry succeeds; a mapped volume stays busy until it is unmapped.
fn busy_message(pool: &Pool, pool_name: &str, image: &str) -> String {
    let holders = holders(pool, image);
    if holders == NO_HOLDERS {
        return format!(
            "volume {pool_name}/{image} is in use ({holders}): it has snapshots or clones, or is \
             being migrated"
        );
    }
    format!(
        "volume {pool_name}/{image} is in use ({holders}): mapped on a node, or open in a client; \
         the watch of a client that ended without closing it lapses within the OSDs' \
         osd_client_watch_timeout, 30 s by default"
    )
}

/// What [`holders`] says of an image nobody watches or locks.
const NO_HOLDERS: &str = "watched by none; lock held by none";

/// Who holds `image`, as `rbd status` and `rbd lock ls` would say: `watched by client.4188 at
/// 127.0.0.1:0/39485; lock held by client.4188 at 127.0.0.1:0/39485`, each part `none` when
/// nobody does, or why it could not be read. The lock is `rbd_lock`: the exclusive-lock
/// feature's, or advisory locks taken with `rbd lock add`. librbd refuses to remove an image
/// while another client watches it, or holds its lock and is still watching.
fn holders(pool: &Pool, image: &str) -> String {
    fn join<T: ToString>(items: &[T]) -> String {
        items
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
    // Read-only opens take no watch: the list holds only other clients.
    let watchers = match pool.open_read_only(image, None).and_then(|img| img.watchers()) {
        Ok(w) if w.is_empty() => "watched by none".to_string(),
        Ok(w) => format!("watched by {}", join(&w)),
        Err(e) => format!("watchers unreadable: {e}"),
    };
    let lockers = pool
        .image_id(image)
        .and_then(|id| id.map_or(Ok(Vec::new()), |id| pool.image_lockers(&id)));
    let lock = match lockers {
        Ok(l) if l.is_empty() => "lock held by none".to_string(),
        Ok(l) => format!("lock held by {}", join(&l)),
        Err(e) => format!("lock holders unreadable: {e}"),
    };
    format!("{watchers}; {lock}")
}

/// Size of a volume created by this driver; NOT_FOUND if absent or not ours.
pub fn size(cluster: &Cluster, pool_name: &str, image: &str) -> Result<u64> {
    let pool = cluster.pool(pool_name).map_err(err)?;
    let img = pool.open_read_only(image, None).map_err(err)?;
    if !is_complete(&img)? {
        return Err(CsiError::NotFound(format!(
            "volume {pool_name}/{image} is not complete"
        )));
    }
    Ok(img.info().map_err(err)?.size)
}

/// Grows a volume to at least `size`; returns the new size.
pub fn expand(cluster: &Cluster, pool_name: &str, image: &str, size: u64) -> Result<u64> {
    let pool = cluster.pool(pool_name).map_err(err)?;
    let mut img = pool.open(image, None).map_err(err)?;
    let current = img.info().map_err(err)?.size;
    if current >= size {
        return Ok(current);
    }
    img.resize(size, false).map_err(err)?;
    Ok(img.info().map_err(err)?.size)
}

/// Complete volumes (image name, size) in a pool, sorted by name.
pub fn list(cluster: &Cluster, pool_name: &str) -> Result<Vec<(String, u64)>> {
    let pool = cluster.pool(pool_name).map_err(err)?;
    let mut names: Vec<String> = pool
        .list_images()
        .map_err(err)?
        .into_iter()
        .filter(|n| n.starts_with(RBD_IMAGE_PREFIX))
        .collect();
    names.sort();
    let mut out = Vec::new();
    for n in names {
        match pool.open_read_only(&n, None) {
            Ok(img) => {
                if is_complete(&img)? {
                    out.push((n, img.info().map_err(err)?.size));
                }
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(err(e)),
        }
    }
    Ok(out)
}

/// One CSI snapshot as found on an image.
#[derive(Debug, Clone)]
pub struct SnapInfo {
    /// Pool of the source image.
    pub pool: String,
    /// Source image.
    pub image: String,
    /// Snapshot name: the RBD snapshot's, or for a group snapshot member the group
    /// snapshot's (`csi-gsnap-<hash>`).
    pub name: String,
    /// Image size at snapshot time.
    pub size: u64,
    /// Creation time, seconds since the epoch.
    pub created: i64,
    /// For a group snapshot member: (pool of the group, group name).
    pub group: Option<(String, String)>,
}

/// The RADOS object that records which image a CSI snapshot name was taken of, so the same
/// name asked of another volume is refused (ALREADY_EXISTS) instead of silently becoming a
/// second snapshot. It is written before the snapshot and removed after it.
fn snapshot_owner(snap: &str) -> String {
    format!("lifeboat.csi.{snap}")
}

/// The pool (other than `except`) whose record claims name object `object`, with the
/// record; pools this client may not read are passed over. Names are recorded in the pool of
/// the thing they name, so a name reused in another pool is only found by looking there.
pub fn claimed_elsewhere(cluster: &Cluster, except: &str, object: &str) -> Result<Option<(String, Vec<u8>)>> {
    for name in cluster.pools().map_err(err)? {
        if name == except {
            continue;
        }
        let Ok(pool) = cluster.pool(&name) else {
            continue;
        };
        match pool.read_object(object, 4096) {
            Ok(Some(record)) => return Ok(Some((name, record))),
            Ok(None) => {}
            Err(e) if matches!(e.errno(), Some(libc::EPERM) | Some(libc::EACCES)) => {}
            Err(e) => return Err(err(e)),
        }
    }
    Ok(None)
}

/// Takes (or finds, on a retry) a CSI snapshot of an image.
pub fn snapshot(cluster: &Cluster, pool_name: &str, image: &str, snap: &str) -> Result<SnapInfo> {
    let pool = cluster.pool(pool_name).map_err(err)?;
    let owner = snapshot_owner(snap);
    match pool.read_object(&owner, 256).map_err(err)? {
        Some(taken) if taken != image.as_bytes() => {
            return Err(CsiError::AlreadyExists(format!(
                "the snapshot name is already used for volume {pool_name}/{}",
                String::from_utf8_lossy(&taken)
            )));
        }
        Some(_) => {}
        None => {
            if let Some((other, taken)) = claimed_elsewhere(cluster, pool_name, &owner)? {
                return Err(CsiError::AlreadyExists(format!(
                    "the snapshot name is already used for volume {other}/{}",
                    String::from_utf8_lossy(&taken)
                )));
            }
            pool.write_object(&owner, image.as_bytes()).map_err(err)?
        }
    }
    let mut img = pool.open(image, None).map_err(err)?;
    match img.create_snapshot(snap) {
        Ok(()) => {}
        Err(e) if e.is_already_exists() => {}
        Err(e) => return Err(err(e)),
    }
    if !img.is_snapshot_protected(snap).map_err(err)? {
        img.protect_snapshot(snap).map_err(err)?;
    }
    get_snapshot(cluster, pool_name, image, snap)?
        .ok_or_else(|| CsiError::Internal(format!("snapshot {snap} vanished after creation")))
}

/// The CSI snapshots of an open image: its `csi-snap-` user snapshots and its members of
/// `csi-gsnap-` group snapshots, optionally only the one named `only`.
fn image_snapshots(
    cluster: &Cluster,
    img: &Image<'_>,
    pool: &str,
    only: Option<&str>,
) -> Result<Vec<SnapInfo>> {
    let mut out = Vec::new();
    for s in img.snapshots().map_err(err)? {
        let (name, group) = match img.snapshot_namespace(s.id).map_err(err)? {
            SnapshotNamespace::User if s.name.starts_with(RBD_SNAP_PREFIX) => (s.name, None),
            SnapshotNamespace::Group {
                pool_id,
                group,
                snapshot,
            } if snapshot.starts_with(RBD_GROUP_SNAP_PREFIX) => {
                if only.is_some_and(|o| o != snapshot) {
                    continue;
                }
                let group_pool = cluster
                    .pool_name(pool_id)
                    .map_err(err)?
                    .unwrap_or_else(|| pool_id.to_string());
                (snapshot, Some((group_pool, group)))
            }
            _ => continue,
        };
        if only.is_some_and(|o| o != name) {
            continue;
        }
        out.push(SnapInfo {
            pool: pool.into(),
            image: img.name().into(),
            created: img.snapshot_timestamp(s.id).map_err(err)?,
            name,
            size: s.size,
            group,
        });
    }
    Ok(out)
}

/// One snapshot (user or group member), if it exists.
pub fn get_snapshot(cluster: &Cluster, pool_name: &str, image: &str, snap: &str) -> Result<Option<SnapInfo>> {
    let pool = match cluster.pool(pool_name) {
        Ok(p) => p,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(err(e)),
    };
    match pool.open_read_only(image, None) {
        Ok(img) => Ok(image_snapshots(cluster, &img, pool_name, Some(snap))?.pop()),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(err(e)),
    }
}

/// CSI snapshots of one image, or of every volume in the pool.
pub fn list_snapshots(cluster: &Cluster, pool_name: &str, image: Option<&str>) -> Result<Vec<SnapInfo>> {
    let pool = cluster.pool(pool_name).map_err(err)?;
    let images = match image {
        Some(i) => vec![i.to_string()],
        None => pool
            .list_images()
            .map_err(err)?
            .into_iter()
            .filter(|n| n.starts_with(RBD_IMAGE_PREFIX))
            .collect(),
    };
    let mut out = Vec::new();
    for i in images {
        match pool.open_read_only(&i, None) {
            Ok(img) => out.extend(image_snapshots(cluster, &img, pool_name, None)?),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(err(e)),
        }
    }
    Ok(out)
}

/// Sets QoS limits on an existing volume.
pub fn set_qos(cluster: &Cluster, pool_name: &str, image: &str, qos: &Qos) -> Result<()> {
    let pool = cluster.pool(pool_name).map_err(err)?;
    let mut img = pool.open(image, None).map_err(err)?;
    if !is_complete(&img)? {
        return Err(CsiError::NotFound(format!(
            "volume {pool_name}/{image} is not complete"
        )));
    }
    qos.apply(&mut img)
}

/// `max_avail` of every pool, by name, from the monitors' `df` (needs a running manager).
pub fn pools_available(cluster: &Cluster) -> Result<Vec<(String, u64)>> {
    let out = cluster
        .mon_command(&serde_json::json!({"prefix": "df", "format": "json"}))
        .map_err(err)?;
    let v: serde_json::Value =
        serde_json::from_slice(&out).map_err(|e| CsiError::Internal(format!("parse ceph df: {e}")))?;
    Ok(v["pools"]
        .as_array()
        .map(|pools| {
            pools
                .iter()
                .filter_map(|p| Some((p["name"].as_str()?.to_string(), p["stats"]["max_avail"].as_u64()?)))
                .collect()
        })
        .unwrap_or_default())
}

/// Available bytes in a pool, from the monitors' `df`.
pub fn pool_available(cluster: &Cluster, pool_name: &str) -> Result<u64> {
    pools_available(cluster)?
        .into_iter()
        .find(|(n, _)| n == pool_name)
        .map(|(_, a)| a)
        .ok_or_else(|| CsiError::NotFound(format!("pool {pool_name} not in ceph df")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_counts_only_on_the_image_its_request_names() {
        let record = serde_json::json!({"name": "pvc-1", "params": "p"}).to_string();
        assert!(marks(&record, &image_name("pvc-1")));
        // A clone carries its parent's marker: it names the parent, not the clone.
        assert!(!marks(&record, &image_name("pvc-2")));
        assert!(!marks("{not json", &image_name("pvc-1")));
    }
}
