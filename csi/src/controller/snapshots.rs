//! CreateSnapshot, DeleteSnapshot and ListSnapshots.
//!
//! RBD snapshots are protected RBD snapshots of the volume's image (`csi-snap-<hash of
//! name>`), so a retry finds the one an interrupted call made. A volume with snapshots cannot
//! be deleted (FAILED_PRECONDITION), as the spec allows for snapshots that are not independent.
//! NFS snapshots are full copies, so they are independent.

use std::collections::HashMap;

use crate::controller::{ControllerService, decode_token, paginate};
use crate::error::{CsiError, Result, invalid};
use crate::ids::{RbdVolume, SnapshotId, VolumeId, name_hash};
use crate::proto::*;
use crate::rbd::images::{self, SnapInfo};

fn timestamp(secs: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: secs,
        nanos: 0,
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn rbd_snapshot(cluster: &str, s: &SnapInfo) -> Result<Snapshot> {
    let volume = VolumeId::Rbd(RbdVolume::new(cluster, &s.pool, &s.image)?);
    Ok(Snapshot {
        size_bytes: s.size as i64,
        snapshot_id: SnapshotId {
            volume: volume.clone(),
            name: s.name.clone(),
        }
        .to_string(),
        source_volume_id: volume.to_string(),
        creation_time: Some(timestamp(s.created)),
        ready_to_use: true,
        group_snapshot_id: String::new(),
    })
}

impl ControllerService {
    pub(super) async fn create_snapshot_impl(
        &self,
        req: CreateSnapshotRequest,
    ) -> Result<CreateSnapshotResponse> {
        if req.name.is_empty() {
            return Err(invalid("name is required"));
        }
        if req.source_volume_id.is_empty() {
            return Err(invalid("source_volume_id is required"));
        }
        let volume = VolumeId::parse(&req.source_volume_id)
            .map_err(|_| CsiError::NotFound(format!("volume {:?} does not exist", req.source_volume_id)))?;
        let _guard = self.driver.inflight.claim(format!("snapshot/{}", req.name))?;
        let _vol_guard = self.driver.inflight.claim(req.source_volume_id.clone())?;
        let snapshot = match &volume {
            VolumeId::Rbd(v) => {
                let cluster = self.rbd_cluster(v, &req.secrets).await?;
                let snap = images::snapshot_name(&req.name);
                let (pool, image, id) = (v.pool.clone(), v.image.clone(), v.cluster.clone());
                let info = self
                    .driver
                    .rbd
                    .run(cluster, move |c| {
                        images::size(c, &pool, &image)?;
                        images::snapshot(c, &pool, &image, &snap)
                    })
                    .await?;
                rbd_snapshot(&id, &info)?
            }
            VolumeId::Nfs(v) => {
                if !self.driver.nfs.exists(v).await? {
                    return Err(CsiError::NotFound(format!(
                        "volume {:?} does not exist",
                        req.source_volume_id
                    )));
                }
                let snap = format!("snap-{}", name_hash(&req.name));
                self.driver.nfs.snapshot(v, &snap).await?;
                Snapshot {
                    size_bytes: 0,
                    snapshot_id: SnapshotId {
                        volume: volume.clone(),
                        name: snap,
                    }
                    .to_string(),
                    source_volume_id: req.source_volume_id.clone(),
                    creation_time: Some(timestamp(now())),
                    ready_to_use: true,
                    group_snapshot_id: String::new(),
                }
            }
        };
        Ok(CreateSnapshotResponse {
            snapshot: Some(snapshot),
        })
    }

    pub(super) async fn delete_snapshot_impl(
        &self,
        req: DeleteSnapshotRequest,
    ) -> Result<DeleteSnapshotResponse> {
        if req.snapshot_id.is_empty() {
            return Err(invalid("snapshot_id is required"));
        }
        let Ok(id) = SnapshotId::parse(&req.snapshot_id) else {
            return Ok(DeleteSnapshotResponse {});
        };
        let _guard = self.driver.inflight.claim(req.snapshot_id.clone())?;
        match &id.volume {
            VolumeId::Rbd(v) => {
                let cluster = self.rbd_cluster(v, &req.secrets).await?;
                let (pool, image, snap) = (v.pool.clone(), v.image.clone(), id.name.clone());
                self.driver
                    .rbd
                    .run(cluster, move |c| {
                        let p = match c.pool(&pool) {
                            Ok(p) => p,
                            Err(e) if e.is_not_found() => return Ok(()),
                            Err(e) => return Err(CsiError::rbd(e)),
                        };
                        images::delete_snapshot(&p, &image, &snap)
                    })
                    .await?;
            }
            VolumeId::Nfs(v) => self.driver.nfs.delete_snapshot(v, &id.name).await?,
        }
        Ok(DeleteSnapshotResponse {})
    }

    pub(super) async fn list_snapshots_impl(
        &self,
        req: ListSnapshotsRequest,
    ) -> Result<ListSnapshotsResponse> {
        if req.max_entries < 0 {
            return Err(invalid("max_entries must not be negative"));
        }
        let after = decode_token(&req.starting_token, |t| SnapshotId::parse(t).is_ok())?;
        let mut all: Vec<Snapshot> = Vec::new();
        if !req.snapshot_id.is_empty() {
            // One snapshot: an id this driver could not have made simply lists nothing.
            if let Ok(id) = SnapshotId::parse(&req.snapshot_id) {
                all.extend(self.one_snapshot(&id, &req.secrets).await?);
            }
        } else if !req.source_volume_id.is_empty() {
            if let Ok(VolumeId::Rbd(v)) = VolumeId::parse(&req.source_volume_id) {
                let cluster = self.rbd_cluster(&v, &req.secrets).await?;
                let (pool, image) = (v.pool.clone(), v.image.clone());
                let found = self
                    .driver
                    .rbd
                    .run(cluster, move |c| {
                        match images::list_snapshots(c, &pool, Some(&image)) {
                            Err(CsiError::NotFound(_)) => Ok(vec![]),
                            other => other,
                        }
                    })
                    .await?;
                for s in &found {
                    all.push(rbd_snapshot(&v.cluster, s)?);
                }
            }
        } else {
            for c in &self.driver.rbd.config.rbd {
                if c.pools.is_empty() || (c.user.is_none() && req.secrets.is_empty()) {
                    continue;
                }
                let probe = RbdVolume::new(&c.cluster_id, &c.pools[0], "x")?;
                let cluster = self.rbd_cluster(&probe, &req.secrets).await?;
                for pool in &c.pools {
                    let p = pool.clone();
                    let found = self
                        .driver
                        .rbd
                        .run(cluster.clone(), move |cl| images::list_snapshots(cl, &p, None))
                        .await?;
                    for s in &found {
                        all.push(rbd_snapshot(&c.cluster_id, s)?);
                    }
                }
            }
        }
        all.sort_by(|a, b| a.snapshot_id.cmp(&b.snapshot_id));
        let (page, next) = paginate(all, after.as_deref(), req.max_entries, |s| s.snapshot_id.clone());
        Ok(ListSnapshotsResponse {
            entries: page
                .into_iter()
                .map(|s| list_snapshots_response::Entry { snapshot: Some(s) })
                .collect(),
            next_token: next,
        })
    }

    async fn one_snapshot(
        &self,
        id: &SnapshotId,
        secrets: &HashMap<String, String>,
    ) -> Result<Option<Snapshot>> {
        match &id.volume {
            VolumeId::Rbd(v) => {
                let cluster = self.rbd_cluster(v, secrets).await?;
                let (pool, image, snap) = (v.pool.clone(), v.image.clone(), id.name.clone());
                let found = self
                    .driver
                    .rbd
                    .run(cluster, move |c| {
                        match images::get_snapshot(c, &pool, &image, &snap) {
                            Err(CsiError::NotFound(_)) => Ok(None),
                            other => other,
                        }
                    })
                    .await?;
                found.map(|s| rbd_snapshot(&v.cluster, &s)).transpose()
            }
            VolumeId::Nfs(v) => Ok(self
                .driver
                .nfs
                .snapshot_exists(v, &id.name)
                .await?
                .then(|| Snapshot {
                    snapshot_id: id.to_string(),
                    source_volume_id: id.volume.to_string(),
                    ready_to_use: true,
                    ..Default::default()
                })),
        }
    }
}
