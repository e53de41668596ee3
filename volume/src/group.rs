//! One recovery point for several RBD images of one cluster: an RBD group snapshot.
//!
//! Ceph Pacific's `rbd_diff_iterate2` takes the snapshot to diff from only by name in the
//! user namespace, so a group snapshot's member cannot be the next backup's base. Each image
//! therefore first gets this backup's user snapshot (the *pre-base*, named as a per-image
//! backup names its snapshot), then a temporary group `lifeboat.<repo id>.<time>` (in the
//! first image's pool) takes one group snapshot of the same name, and the images leave the
//! group again at once (an image is in at most one group at a time). Each image is then read
//! at its member snapshot, diffing from the previous base to the member: the changes since the
//! previous pre-base, a superset of those since the previous recovery point. The pre-base is
//! recorded as the next base. [`GroupPoint::release`] removes the group snapshot (and its
//! members) and the group.
//!
//! Whatever fails on the group side is undone and the images concerned are left out of the
//! point with a warning: their backups take their own snapshot as without a group.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use lifeboat_backup::Repository;
use lifeboat_rbd::{Cluster, Pool, SnapshotNamespace};

use crate::{VolumeError, blocking, snap_name, snap_prefix};

/// Where one image of a [`GroupPoint`] is read and what the next backup diffs from; given to
/// [`crate::backup_volume`] through [`crate::VolumeBackupOptions::at`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakenAt {
    pub(crate) pool: String,
    pub(crate) image: String,
    pub(crate) image_id: String,
    /// The image's member snapshot of the group snapshot (read by id).
    pub(crate) member_id: u64,
    /// The image's size at the member snapshot.
    pub(crate) size: u64,
    /// The pre-base: this backup's user snapshot, the next backup's diff base.
    pub(crate) base: String,
    pub(crate) base_id: u64,
    /// The recovery point.
    pub(crate) point: PointInfo,
}

impl TakenAt {
    /// The recovery point this image is read at.
    pub fn point(&self) -> &PointInfo {
        &self.point
    }
}

/// A recovery point: the group snapshot's name (also its group's) and when it was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointInfo {
    /// `pool/group@snapshot` of the RBD group snapshot.
    pub name: String,
    /// When it was taken (just before the group snapshot was asked for).
    pub time: DateTime<Utc>,
}

/// Several images snapshotted at one instant. Call [`GroupPoint::release`] once every image
/// was read (or its backup failed), success or not.
pub struct GroupPoint {
    cluster: Cluster,
    pool: String,
    group: String,
    taken: bool,
    members: BTreeMap<(String, String), TakenAt>,
    warnings: Vec<String>,
}

impl GroupPoint {
    /// Where `pool/image` is read, or `None` when it is not in the point (see
    /// [`GroupPoint::warnings`]): back it up without one.
    pub fn at(&self, pool: &str, image: &str) -> Option<TakenAt> {
        self.members.get(&(pool.to_string(), image.to_string())).cloned()
    }

    /// The recovery point, when the group snapshot was taken.
    pub fn point(&self) -> Option<&PointInfo> {
        self.members.values().next().map(|m| &m.point)
    }

    /// One line per image left out of the point: `pool/image not in the group snapshot: why`.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Removes the group snapshot (its member snapshots go with it) and the group; returns a
    /// warning for what could not be removed. The pre-bases stay: they are the next bases.
    pub async fn release(self) -> Vec<String> {
        if !self.taken {
            return Vec::new();
        }
        let Self {
            cluster,
            pool,
            group,
            members,
            ..
        } = self;
        let images: Vec<(String, String)> = members.into_keys().collect();
        let spec = format!("{pool}/{group}");
        blocking(move || {
            let p = cluster.pool(&pool)?;
            Ok(dismantle(&cluster, &p, &group, &images))
        })
        .await
        .unwrap_or_else(|e| vec![format!("RBD group {spec} not removed: {e}")])
    }
}

/// Snapshots `images` (`(pool, image)` of `cluster`) together for backups into `repo`; see the
/// module documentation. Never fails for a group problem: images left out are named in
/// [`GroupPoint::warnings`].
pub async fn snapshot_together(
    repo: &Repository,
    cluster: &Cluster,
    images: &[(String, String)],
) -> Result<GroupPoint, VolumeError> {
    let prefix = snap_prefix(repo);
    let cluster = cluster.clone();
    let images = images.to_vec();
    blocking(move || Ok(take(&cluster, &prefix, &images))).await
}

fn take(cluster: &Cluster, prefix: &str, images: &[(String, String)]) -> GroupPoint {
    let name = snap_name(prefix, Utc::now());
    let mut point = GroupPoint {
        cluster: cluster.clone(),
        pool: images.first().map(|i| i.0.clone()).unwrap_or_default(),
        group: name.clone(),
        taken: false,
        members: BTreeMap::new(),
        warnings: Vec::new(),
    };
    let mut bases: Vec<PreBase> = Vec::new();
    for (pool, image) in images {
        match pre_base(cluster, pool, image, &name) {
            Ok(b) => bases.push(b),
            Err(e) => point.leave_out(pool, image, &e.to_string()),
        }
    }
    let Some(first) = bases.first().map(|b| b.pool.clone()) else {
        return point;
    };
    point.pool = first.clone();
    let group_pool = match cluster.pool(&first) {
        Ok(p) => p,
        Err(e) => return point.give_up(bases, &format!("pool {first}: {e}")),
    };
    if let Err(e) = group_pool.create_group(&name) {
        return point.give_up(bases, &e.to_string());
    }
    let mut joined = Vec::new();
    for b in bases {
        match join(cluster, &group_pool, &name, &b.pool, &b.image, prefix) {
            Ok(()) => joined.push(b),
            Err(e) => {
                point.leave_out(&b.pool, &b.image, &e.to_string());
                b.undo(cluster);
            }
        }
    }
    if joined.is_empty() {
        let left = dismantle(cluster, &group_pool, &name, &[]);
        point.warnings.extend(left);
        return point;
    }
    let specs: Vec<(String, String)> = joined.iter().map(|b| (b.pool.clone(), b.image.clone())).collect();
    let time = Utc::now();
    let snapped = group_pool.create_group_snapshot(&name, &name);
    // Out of the group at once, so the images are free for another group while being read.
    let left = dismantle_images(cluster, &group_pool, &name, &specs);
    if let Err(e) = snapped {
        let mut left = left;
        left.extend(dismantle(cluster, &group_pool, &name, &[]));
        point.warnings.extend(left);
        return point.give_up(joined, &e.to_string());
    }
    point.taken = true;
    point.warnings.extend(left);
    let info = PointInfo {
        name: format!("{}/{name}@{name}", group_pool.name()),
        time,
    };
    for b in joined {
        match member(cluster, &b, group_pool.id(), &name) {
            Ok((member_id, size)) => {
                let key = (b.pool.clone(), b.image.clone());
                let at = TakenAt {
                    pool: b.pool,
                    image: b.image,
                    image_id: b.image_id,
                    member_id,
                    size,
                    base: name.clone(),
                    base_id: b.id,
                    point: info.clone(),
                };
                point.members.insert(key, at);
            }
            Err(e) => {
                point.leave_out(&b.pool, &b.image, &e.to_string());
                b.undo(cluster);
            }
        }
    }
    point
}

impl GroupPoint {
    fn leave_out(&mut self, pool: &str, image: &str, why: &str) {
        tracing::warn!(pool, image, reason = why, "image not in the group snapshot");
        self.warnings
            .push(format!("{pool}/{image} not in the group snapshot: {why}"));
    }

    /// No group snapshot after all: undo the pre-bases, every image on its own.
    fn give_up(mut self, bases: Vec<PreBase>, why: &str) -> GroupPoint {
        for b in bases {
            self.leave_out(&b.pool, &b.image, why);
            b.undo(&self.cluster);
        }
        self
    }
}

/// One image's pre-base.
struct PreBase {
    pool: String,
    image: String,
    image_id: String,
    name: String,
    id: u64,
}

impl PreBase {
    fn undo(self, cluster: &Cluster) {
        let removed = cluster
            .pool(&self.pool)
            .and_then(|p| p.open(&self.image, None)?.remove_snapshot(&self.name));
        if let Err(e) = removed {
            tracing::warn!(pool = %self.pool, image = %self.image, error = %e, "pre-base snapshot not removed; the image's next backup removes it");
        }
    }
}

fn pre_base(cluster: &Cluster, pool: &str, image: &str, name: &str) -> Result<PreBase, VolumeError> {
    let p = cluster.pool(pool)?;
    let image_id = p.image_id(image)?.ok_or_else(|| VolumeError::ImageNotFound {
        pool: pool.to_string(),
        image: image.to_string(),
    })?;
    let mut img = p.open(image, None)?;
    img.create_snapshot(name)?;
    let id = img
        .snapshots()?
        .into_iter()
        .find(|s| s.name == name)
        .map(|s| s.id)
        .ok_or_else(|| VolumeError::Task(format!("snapshot {name} vanished after it was created")))?;
    Ok(PreBase {
        pool: pool.to_string(),
        image: image.to_string(),
        image_id,
        name: name.to_string(),
        id,
    })
}

/// Adds the image to the group. An image left in a group of this repository by a backup that
/// was killed (its group snapshot complete) is taken out of that group first.
fn join(
    cluster: &Cluster,
    group_pool: &Pool,
    group: &str,
    pool: &str,
    image: &str,
    prefix: &str,
) -> Result<(), VolumeError> {
    let ip = cluster.pool(pool)?;
    match group_pool.add_group_image(group, &ip, image) {
        Err(e) if e.is_already_exists() => {}
        other => return Ok(other?),
    }
    let Some((other_pool_id, other)) = ip.open_read_only(image, None)?.group()? else {
        return Ok(group_pool.add_group_image(group, &ip, image)?);
    };
    let in_group = || VolumeError::InGroup {
        pool: pool.to_string(),
        image: image.to_string(),
        group: other.clone(),
    };
    // librbd keeps a group in its images' RADOS namespace.
    let other_pool = match (
        cluster.pool_name(other_pool_id)?,
        lifeboat_rbd::split_pool_spec(pool).1,
    ) {
        (Some(name), Some(namespace)) if other.starts_with(prefix) => {
            cluster.pool(&format!("{name}/{namespace}"))?
        }
        (Some(name), None) if other.starts_with(prefix) => cluster.pool(&name)?,
        _ => return Err(in_group()),
    };
    if !other_pool.group_snapshots(&other)?.iter().any(|s| s.complete) {
        return Err(in_group());
    }
    tracing::info!(pool, image, group = %other, "taking the image out of a group a killed backup left");
    match other_pool.remove_group_image(&other, &ip, image) {
        Err(e) if !e.is_not_found() => return Err(e.into()),
        _ => {}
    }
    Ok(group_pool.add_group_image(group, &ip, image)?)
}

/// The image's member snapshot of group snapshot `name`: its id and size.
fn member(cluster: &Cluster, b: &PreBase, group_pool_id: i64, name: &str) -> Result<(u64, u64), VolumeError> {
    let p = cluster.pool(&b.pool)?;
    let img = p.open_read_only(&b.image, None)?;
    for s in img.snapshots()? {
        if let SnapshotNamespace::Group {
            pool_id,
            group,
            snapshot,
        } = img.snapshot_namespace(s.id)?
            && pool_id == group_pool_id
            && group == name
            && snapshot == name
        {
            return Ok((s.id, s.size));
        }
    }
    Err(VolumeError::Task(format!(
        "{}/{} has no member snapshot of group snapshot {name}",
        b.pool, b.image
    )))
}

/// Takes `images` out of the group; returns a warning for each still in it.
fn dismantle_images(
    cluster: &Cluster,
    group_pool: &Pool,
    group: &str,
    images: &[(String, String)],
) -> Vec<String> {
    let mut warnings = Vec::new();
    for (pool, image) in images {
        let removed = cluster
            .pool(pool)
            .and_then(|ip| group_pool.remove_group_image(group, &ip, image));
        match removed {
            Err(e) if !e.is_not_found() => {
                warnings.push(format!("{pool}/{image} not taken out of RBD group {group}: {e}"))
            }
            _ => {}
        }
    }
    warnings
}

/// Removes the group snapshot and the group (the images first, in case one is still in it).
fn dismantle(cluster: &Cluster, group_pool: &Pool, group: &str, images: &[(String, String)]) -> Vec<String> {
    let mut warnings = dismantle_images(cluster, group_pool, group, images);
    let spec = format!("{}/{group}", group_pool.name());
    match group_pool.remove_group_snapshot(group, group) {
        Err(e) if !e.is_not_found() => {
            warnings.push(format!("RBD group snapshot {spec}@{group} not removed: {e}"))
        }
        _ => {}
    }
    if let Err(e) = group_pool.remove_group(group) {
        warnings.push(format!("RBD group {spec} not removed: {e}"));
    }
    warnings
}
