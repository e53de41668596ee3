//! Volume group snapshots on RBD: several images snapshotted at one instant through librbd's
//! group API, each member then an ordinary CSI snapshot of its volume.
//!
//! A group snapshot named N is the RBD group `csi-group-<hash N>` holding the group snapshot
//! `csi-gsnap-<hash N>`, in the pool of its record `lifeboat.csi.csi-group-<hash N>` (JSON
//! `{"name": N, "volumes": ["pool/image", …]}`, sorted). Images belong to the group only while
//! the snapshot is taken: an image can be in one group at a time, and volumes must stay free
//! for the next group snapshot.
//!
//! Crash safety, like CreateVolume: the record is written first (so a retry, or the same name
//! for other volumes, finds it), then the group, then the images are added and the group
//! snapshot taken; a group snapshot left incomplete by a crash is removed and taken again;
//! images are removed from the group last. Deletion removes the group snapshot (and with it
//! every member snapshot), then the group, then the record.

use lifeboat_rbd::{Cluster, Pool, RbdError};
use serde::{Deserialize, Serialize};

use crate::error::{CsiError, Result};
use crate::ids::{GroupSnapshotId, RBD_GROUP_PREFIX, RBD_GROUP_SNAP_PREFIX};
use crate::rbd::images::{SnapInfo, claimed_elsewhere, get_snapshot, sweep_trash};

/// What a group snapshot name stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    /// The CO's request name.
    pub name: String,
    /// Member images as `pool/image`, sorted, no duplicates.
    pub volumes: Vec<String>,
}

fn err(e: RbdError) -> CsiError {
    CsiError::rbd(e)
}

fn record_object(group: &str) -> String {
    format!("lifeboat.csi.{group}")
}

fn read_record(pool: &Pool, group: &str) -> Result<Option<GroupRecord>> {
    let Some(raw) = pool.read_object(&record_object(group), 1 << 20).map_err(err)? else {
        return Ok(None);
    };
    serde_json::from_slice(&raw).map(Some).map_err(|e| {
        CsiError::Internal(format!(
            "unreadable record {}/{}: {e}",
            pool.name(),
            record_object(group)
        ))
    })
}

fn split_spec(spec: &str) -> Result<(&str, &str)> {
    spec.split_once('/')
        .ok_or_else(|| CsiError::Internal(format!("malformed member {spec:?} in a group record")))
}

/// Creates the group snapshot `id` of `record.volumes`, or finds the one an earlier call with
/// this name made; returns its members.
pub fn create(cluster: &Cluster, id: &GroupSnapshotId, record: &GroupRecord) -> Result<Vec<SnapInfo>> {
    let pool = cluster.pool(&id.pool).map_err(err)?;
    let object = record_object(&id.group);
    match read_record(&pool, &id.group)? {
        Some(found) if found != *record => {
            return Err(CsiError::AlreadyExists(format!(
                "group snapshot name {:?} is already used for volumes {}",
                found.name,
                found.volumes.join(", ")
            )));
        }
        Some(_) => {}
        None => {
            if let Some((other, _)) = claimed_elsewhere(cluster, &id.pool, &object)? {
                return Err(CsiError::AlreadyExists(format!(
                    "group snapshot name {:?} is already used in pool {other}",
                    record.name
                )));
            }
            let json = serde_json::to_vec(record).map_err(|e| CsiError::Internal(e.to_string()))?;
            pool.write_object(&object, &json).map_err(err)?;
        }
    }
    match pool.create_group(&id.group) {
        Ok(()) => {}
        Err(e) if e.is_already_exists() => {}
        Err(e) => return Err(err(e)),
    }
    let snap = id.snapshot_name();
    let existing = pool
        .group_snapshots(&id.group)
        .map_err(err)?
        .into_iter()
        .find(|s| s.name == snap);
    // Complete in librbd's eyes but missing a member snapshot: a delete was interrupted
    // between removing member snapshots and the group snapshot itself.
    let whole = existing.as_ref().is_some_and(|s| s.complete) && members(cluster, id, record)?.is_some();
    if !whole {
        if existing.is_some() {
            tracing::warn!(group = %id, "removing a group snapshot left incomplete by an interrupted create or delete");
            remove_group_snapshot(&pool, &id.group, &snap)?;
        }
        for spec in &record.volumes {
            let (p, image) = split_spec(spec)?;
            add_image(cluster, &pool, &id.group, p, image)?;
        }
        pool.create_group_snapshot(&id.group, &snap).map_err(err)?;
    }
    for spec in &record.volumes {
        let (p, image) = split_spec(spec)?;
        let image_pool = cluster.pool(p).map_err(err)?;
        match pool.remove_group_image(&id.group, &image_pool, image) {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(err(e)),
        }
    }
    members(cluster, id, record)?.ok_or_else(|| {
        CsiError::Internal(format!(
            "group snapshot {id} lost a member snapshot while it was being taken; retry"
        ))
    })
}

/// Adds an image to the group; an image another (finished) CSI group snapshot left behind is
/// taken out of that group first.
fn add_image(cluster: &Cluster, pool: &Pool, group: &str, image_pool: &str, image: &str) -> Result<()> {
    let ip = cluster.pool(image_pool).map_err(err)?;
    match pool.add_group_image(group, &ip, image) {
        Ok(()) => return Ok(()),
        Err(e) if e.is_not_found() => {
            return Err(CsiError::NotFound(format!(
                "volume {image_pool}/{image} does not exist"
            )));
        }
        Err(e) if e.is_already_exists() => {}
        Err(e) => return Err(err(e)),
    }
    let current = ip
        .open_read_only(image, None)
        .map_err(err)?
        .group()
        .map_err(err)?;
    let Some((pool_id, other)) = current else {
        return Err(CsiError::Unavailable(format!(
            "volume {image_pool}/{image} was busy joining group {group}; retry"
        )));
    };
    if !other.starts_with(RBD_GROUP_PREFIX) {
        return Err(CsiError::FailedPrecondition(format!(
            "volume {image_pool}/{image} is in RBD group {other}, which this driver does not manage; \
             remove it from that group (rbd group image remove)"
        )));
    }
    let other_pool_name = cluster
        .pool_name(pool_id)
        .map_err(err)?
        .ok_or_else(|| CsiError::Internal(format!("pool id {pool_id} of group {other} not found")))?;
    let other_pool = cluster.pool(&other_pool_name).map_err(err)?;
    let finished = other_pool
        .group_snapshots(&other)
        .map_err(err)?
        .iter()
        .any(|s| s.complete && s.name.starts_with(RBD_GROUP_SNAP_PREFIX));
    if !finished {
        return Err(CsiError::Unavailable(format!(
            "volume {image_pool}/{image} is being snapshotted with group {other_pool_name}/{other}; retry"
        )));
    }
    match other_pool.remove_group_image(&other, &ip, image) {
        Ok(()) => {}
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(err(e)),
    }
    pool.add_group_image(group, &ip, image).map_err(err)
}

fn remove_group_snapshot(pool: &Pool, group: &str, snap: &str) -> Result<()> {
    match pool.remove_group_snapshot(group, snap) {
        Ok(()) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(err(e)),
    }
}

/// Each member's snapshot of group snapshot `id`, in record order; `None` if any is missing
/// (librbd removes member snapshots before the group snapshot, so a killed delete leaves a
/// "complete" group snapshot without some of them).
fn members(cluster: &Cluster, id: &GroupSnapshotId, record: &GroupRecord) -> Result<Option<Vec<SnapInfo>>> {
    let snap = id.snapshot_name();
    let mut found = Vec::with_capacity(record.volumes.len());
    for spec in &record.volumes {
        let (p, image) = split_spec(spec)?;
        match get_snapshot(cluster, p, image, &snap)? {
            Some(s) => found.push(s),
            None => return Ok(None),
        }
    }
    Ok(Some(found))
}

/// The record and members of group snapshot `id`; `None` if it does not exist, its creation
/// has not finished, or its deletion has begun (a member snapshot is gone).
pub fn get(cluster: &Cluster, id: &GroupSnapshotId) -> Result<Option<(GroupRecord, Vec<SnapInfo>)>> {
    let pool = match cluster.pool(&id.pool) {
        Ok(p) => p,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(err(e)),
    };
    let Some(record) = read_record(&pool, &id.group)? else {
        return Ok(None);
    };
    let snap = id.snapshot_name();
    let complete = match pool.group_snapshots(&id.group) {
        Ok(snaps) => snaps.iter().any(|s| s.name == snap && s.complete),
        Err(e) if e.is_not_found() => false,
        Err(e) => return Err(err(e)),
    };
    if !complete {
        return Ok(None);
    }
    Ok(members(cluster, id, &record)?.map(|members| (record, members)))
}

/// Removes group snapshot `id`: its member snapshots (and any an interrupted removal left in a
/// member's trash namespace), the group, then the record. Absent is fine.
pub fn delete(cluster: &Cluster, id: &GroupSnapshotId) -> Result<()> {
    let pool = match cluster.pool(&id.pool) {
        Ok(p) => p,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(err(e)),
    };
    let Some(record) = read_record(&pool, &id.group)? else {
        return Ok(());
    };
    match pool.group_snapshots(&id.group) {
        Ok(snaps) => {
            for s in snaps {
                remove_group_snapshot(&pool, &id.group, &s.name)?;
            }
        }
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(err(e)),
    }
    // A member snapshot whose removal a crash cut short is in its image's trash namespace.
    for spec in &record.volumes {
        let (p, image) = split_spec(spec)?;
        let image_pool = match cluster.pool(p) {
            Ok(ip) => ip,
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(err(e)),
        };
        match image_pool.open(image, None) {
            Ok(mut img) => sweep_trash(&mut img)?,
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(err(e)),
        }
    }
    match pool.remove_group(&id.group) {
        Ok(()) => {}
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(err(e)),
    }
    pool.remove_object(&record_object(&id.group)).map_err(err)
}
