//! The Controller service's NFS backend: directories on exports, through the userspace NFS
//! client in [`crate::nfs`].

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::DriverConfig;
use crate::controller::backend::{NewVolume, Secrets, SnapshotQuery, VolumeBackend};
use crate::controller::rbd::timestamp;
use crate::controller::topology::{Reach, reachable};
use crate::error::{CsiError, Result, invalid};
use crate::ids::{NFS_SNAP_PREFIX, NfsVolume, SnapshotId, VolumeId, hashed_name};
use crate::nfs::{NfsBackend, NfsParams, NfsSource, VolumeRecord};
use crate::proto::volume_content_source::Type as SourceType;
use crate::proto::{Snapshot, Topology, Volume};

/// NFS volumes.
#[derive(Clone)]
pub struct NfsController {
    /// The userspace NFS client.
    pub nfs: NfsBackend,
    /// The driver config.
    pub config: Arc<DriverConfig>,
}

/// A content source as one string ("" when blank), for recording and comparing.
fn source_id(source: Option<&SourceType>) -> String {
    match source {
        Some(SourceType::Snapshot(s)) => format!("snapshot:{}", s.snapshot_id),
        Some(SourceType::Volume(v)) => format!("volume:{}", v.volume_id),
        None => String::new(),
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl NfsController {
    async fn source(&self, vol: &NfsVolume, source: Option<&SourceType>) -> Result<Option<NfsSource>> {
        let same_share = |v: &NfsVolume| v.server == vol.server && v.share == vol.share;
        Ok(match source {
            None => None,
            Some(SourceType::Snapshot(s)) => match SnapshotId::parse(&s.snapshot_id) {
                Ok(SnapshotId {
                    volume: VolumeId::Nfs(v),
                    name,
                }) if same_share(&v) => {
                    if !self.nfs.snapshot_exists(&v, &name).await? {
                        return Err(CsiError::NotFound(format!(
                            "snapshot {:?} does not exist",
                            s.snapshot_id
                        )));
                    }
                    Some(NfsSource::snapshot(&v, &name))
                }
                _ => {
                    return Err(CsiError::NotFound(format!(
                        "snapshot {:?} does not exist on this export",
                        s.snapshot_id
                    )));
                }
            },
            Some(SourceType::Volume(s)) => match VolumeId::parse(&s.volume_id) {
                Ok(VolumeId::Nfs(v)) if same_share(&v) => Some(NfsSource { dir: v.dir }),
                _ => {
                    return Err(CsiError::NotFound(format!(
                        "volume {:?} does not exist on this export",
                        s.volume_id
                    )));
                }
            },
        })
    }

    fn reach_of(&self, server: &str, share: &str) -> Reach {
        self.config
            .export(server, share)
            .map(|e| e.topology.clone())
            .unwrap_or_default()
    }
}

#[tonic::async_trait]
impl VolumeBackend for NfsController {
    type Volume = NfsVolume;

    fn reach(&self, parameters: &HashMap<String, String>) -> Result<Reach> {
        let params = NfsParams::parse(parameters)?;
        Ok(self.reach_of(&params.server, &params.share))
    }

    fn check_mutable(&self, mutable: &HashMap<String, String>) -> Result<()> {
        match mutable.keys().next() {
            None => Ok(()),
            Some(k) => Err(invalid(format!(
                "mutable parameter {k:?}: NFS volumes have no mutable parameters"
            ))),
        }
    }

    async fn create_volume(&self, req: NewVolume<'_>) -> Result<Volume> {
        let params = NfsParams::parse(req.parameters)?;
        let vol = params.volume_for(req.name)?;
        let source = self.source(&vol, req.source).await?;
        let want = VolumeRecord {
            name: req.name.to_string(),
            capacity: req.capacity.size,
            source: source_id(req.source),
            on_delete: vol.on_delete.clone(),
            required: req.capacity.required,
            limit: req.capacity.limit,
        };
        let capacity = self.nfs.create(&vol, source, want).await?;
        let context = HashMap::from([
            ("backend".to_string(), "nfs".to_string()),
            ("server".to_string(), vol.server.clone()),
            ("share".to_string(), vol.share.clone()),
            ("subDir".to_string(), vol.dir.clone()),
            ("mountOptions".to_string(), params.mount_options.clone()),
        ]);
        Ok(Volume {
            capacity_bytes: capacity as i64,
            volume_id: VolumeId::Nfs(vol).to_string(),
            volume_context: context,
            ..Default::default()
        })
    }

    async fn delete_volume(&self, vol: &NfsVolume, _secrets: &Secrets) -> Result<bool> {
        self.nfs.delete(vol).await
    }

    async fn volume_size(&self, vol: &NfsVolume, _secrets: &Secrets) -> Result<u64> {
        if self.nfs.exists(vol).await? {
            Ok(0)
        } else {
            Err(CsiError::NotFound(format!("volume {} does not exist", vol.dir)))
        }
    }

    async fn expand_volume(&self, vol: &NfsVolume, size: u64, secrets: &Secrets) -> Result<(u64, bool)> {
        // Capacity is recorded, never enforced: there is nothing to grow.
        self.volume_size(vol, secrets).await?;
        Ok((size, false))
    }

    async fn modify_volume(
        &self,
        vol: &NfsVolume,
        mutable: &HashMap<String, String>,
        secrets: &Secrets,
    ) -> Result<()> {
        self.check_mutable(mutable)?;
        self.volume_size(vol, secrets).await.map(|_| ())
    }

    async fn list_volumes(&self) -> Result<Vec<(String, u64)>> {
        let mut all = Vec::new();
        for export in &self.config.nfs {
            let roots = if export.base_dirs.is_empty() {
                vec![String::new()]
            } else {
                export.base_dirs.clone()
            };
            for base in roots {
                for (dir, rec) in self.nfs.list(&export.server, &export.share, &base).await? {
                    let on_delete = if rec.on_delete.is_empty() {
                        "delete"
                    } else {
                        &rec.on_delete
                    };
                    let vol = NfsVolume::new(&export.server, &export.share, &dir, on_delete)?;
                    all.push((VolumeId::Nfs(vol).to_string(), rec.capacity));
                }
            }
        }
        Ok(all)
    }

    async fn create_snapshot(&self, vol: &NfsVolume, name: &str, secrets: &Secrets) -> Result<Snapshot> {
        self.volume_size(vol, secrets).await?;
        let snap = hashed_name(NFS_SNAP_PREFIX, name);
        self.nfs.snapshot(vol, &snap).await?;
        let volume = VolumeId::Nfs(vol.clone());
        Ok(Snapshot {
            size_bytes: 0,
            snapshot_id: SnapshotId {
                volume: volume.clone(),
                name: snap,
            }
            .to_string(),
            source_volume_id: volume.to_string(),
            creation_time: Some(timestamp(now())),
            ready_to_use: true,
            group_snapshot_id: String::new(),
        })
    }

    async fn delete_snapshot(&self, vol: &NfsVolume, snap: &str, _secrets: &Secrets) -> Result<()> {
        self.nfs.delete_snapshot(vol, snap).await
    }

    async fn snapshots(
        &self,
        query: SnapshotQuery<'_, NfsVolume>,
        _secrets: &Secrets,
    ) -> Result<Vec<Snapshot>> {
        // Only single snapshots are looked up; NFS snapshots are not walked by ListSnapshots.
        let SnapshotQuery::One(vol, snap) = query else {
            return Ok(vec![]);
        };
        if !self.nfs.snapshot_exists(vol, snap).await? {
            return Ok(vec![]);
        }
        let volume = VolumeId::Nfs(vol.clone());
        Ok(vec![Snapshot {
            snapshot_id: SnapshotId {
                volume: volume.clone(),
                name: snap.to_string(),
            }
            .to_string(),
            source_volume_id: volume.to_string(),
            ready_to_use: true,
            ..Default::default()
        }])
    }

    async fn available(
        &self,
        parameters: Option<&HashMap<String, String>>,
        at: Option<&Topology>,
    ) -> Result<u64> {
        let reached = |reach: &Reach| at.is_none_or(|t| reachable(reach, &t.segments));
        if let Some(p) = parameters {
            let params = NfsParams::parse(p)?;
            if !reached(&self.reach_of(&params.server, &params.share)) {
                return Ok(0);
            }
            return self.nfs.available(&params.server, &params.share).await;
        }
        let mut total = 0u64;
        for e in &self.config.nfs {
            if reached(&e.topology) {
                total = total.saturating_add(self.nfs.available(&e.server, &e.share).await?);
            }
        }
        Ok(total)
    }
}
