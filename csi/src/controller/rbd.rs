//! The Controller service's RBD backend: images in pools of the configured Ceph clusters.
//! The blocking librbd work is in [`crate::rbd::images`] and [`crate::rbd::groups`]; this
//! file turns requests into it and its answers into CSI messages.

use std::collections::HashMap;
use std::sync::Arc;

use lifeboat_rbd::Cluster;

use crate::config::DriverConfig;
use crate::controller::backend::{NewVolume, Secrets, SnapshotQuery, VolumeBackend};
use crate::controller::topology::{Reach, reachable};
use crate::error::{CsiError, Result};
use crate::ids::{GroupSnapshotId, RbdVolume, SnapshotId, VolumeId};
use crate::proto::volume_content_source::Type as SourceType;
use crate::proto::{Snapshot, Topology, Volume};
use crate::rbd::RbdBackend;
use crate::rbd::images::{self, CreatePlan, SnapInfo, Source};
use crate::rbd::params::RbdParams;
use crate::rbd::qos::Qos;
use crate::secrets::Credentials;

/// RBD volumes.
#[derive(Clone)]
pub struct RbdController {
    /// Connections and worker threads.
    pub rbd: RbdBackend,
    /// The driver config.
    pub config: Arc<DriverConfig>,
}

/// A protobuf timestamp of whole seconds.
pub fn timestamp(secs: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: secs,
        nanos: 0,
    }
}

/// A CSI snapshot message for a snapshot found on an image of cluster `cluster`.
pub fn snapshot_message(cluster: &str, s: &SnapInfo) -> Result<Snapshot> {
    let volume = VolumeId::Rbd(RbdVolume::new(cluster, &s.pool, &s.image)?);
    let group_snapshot_id = match &s.group {
        Some((pool, group)) => GroupSnapshotId::new(cluster, pool, group)?.to_string(),
        None => String::new(),
    };
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
        group_snapshot_id,
    })
}

impl RbdController {
    /// Connects with the request's secrets when given, else with the driver's own user.
    pub async fn cluster(&self, cluster_id: &str, secrets: &Secrets) -> Result<Cluster> {
        if secrets.is_empty() {
            self.rbd.connect_readonly(cluster_id).await
        } else {
            let creds = Credentials::from_secrets(secrets)?;
            self.rbd.connect(cluster_id, &creds).await
        }
    }

    fn source(&self, cluster_id: &str, source: Option<&SourceType>) -> Result<Source> {
        Ok(match source {
            None => Source::None,
            Some(SourceType::Snapshot(s)) => {
                let Ok(id) = SnapshotId::parse(&s.snapshot_id) else {
                    return Err(not_here("snapshot", &s.snapshot_id));
                };
                let VolumeId::Rbd(v) = &id.volume else {
                    return Err(not_here("snapshot", &s.snapshot_id));
                };
                if v.cluster != cluster_id {
                    return Err(not_here("snapshot", &s.snapshot_id));
                }
                if id.is_group_member() {
                    Source::GroupMember {
                        pool: v.pool.clone(),
                        image: v.image.clone(),
                        group_snap: id.name.clone(),
                    }
                } else {
                    Source::Snapshot {
                        pool: v.pool.clone(),
                        image: v.image.clone(),
                        snap: id.name.clone(),
                    }
                }
            }
            Some(SourceType::Volume(s)) => match VolumeId::parse(&s.volume_id) {
                Ok(VolumeId::Rbd(v)) if v.cluster == cluster_id => Source::Volume {
                    pool: v.pool,
                    image: v.image,
                },
                _ => return Err(not_here("volume", &s.volume_id)),
            },
        })
    }
}

fn not_here(what: &str, id: &str) -> CsiError {
    CsiError::NotFound(format!("{what} {id:?} does not exist in this cluster"))
}

#[tonic::async_trait]
impl VolumeBackend for RbdController {
    type Volume = RbdVolume;

    fn reach(&self, parameters: &HashMap<String, String>) -> Result<Reach> {
        let params = RbdParams::parse(parameters)?;
        Ok(self.config.cluster(&params.cluster_id)?.topology.clone())
    }

    fn check_mutable(&self, mutable: &HashMap<String, String>) -> Result<()> {
        Qos::parse(mutable).map(|_| ())
    }

    async fn create_volume(&self, req: NewVolume<'_>) -> Result<Volume> {
        let params = RbdParams::parse(req.parameters)?;
        let qos = Qos::parse(req.mutable_parameters)?;
        let creds = Credentials::from_secrets(req.secrets)?;
        let source = self.source(&params.cluster_id, req.source)?;
        let id = RbdVolume::new(&params.cluster_id, &params.pool, &images::image_name(req.name))?;
        let cluster = self.rbd.connect(&params.cluster_id, &creds).await?;
        let plan = CreatePlan {
            name: req.name.to_string(),
            size: req.capacity.size,
            required: req.capacity.required,
            limit: req.capacity.limit,
            params: params.clone(),
            source,
            qos,
        };
        let size = self.rbd.run(cluster, move |c| images::create(c, &plan)).await?;
        let monitors = self.config.cluster(&params.cluster_id)?.monitors.join(",");
        let context = HashMap::from([
            ("backend".to_string(), "rbd".to_string()),
            ("clusterID".to_string(), params.cluster_id.clone()),
            ("pool".to_string(), params.pool.clone()),
            ("imageName".to_string(), id.image.clone()),
            ("fsType".to_string(), params.fs_type.clone()),
            ("mountOptions".to_string(), params.mount_options.clone()),
            ("monitors".to_string(), monitors),
        ]);
        Ok(Volume {
            capacity_bytes: size as i64,
            volume_id: VolumeId::Rbd(id).to_string(),
            volume_context: context,
            ..Default::default()
        })
    }

    async fn delete_volume(&self, vol: &RbdVolume, secrets: &Secrets) -> Result<bool> {
        let creds = Credentials::from_secrets(secrets)?;
        let cluster = self.rbd.connect(&vol.cluster, &creds).await?;
        let (pool, image) = (vol.pool.clone(), vol.image.clone());
        self.rbd
            .run(cluster, move |c| images::delete(c, &pool, &image))
            .await
    }

    async fn volume_size(&self, vol: &RbdVolume, secrets: &Secrets) -> Result<u64> {
        let cluster = self.cluster(&vol.cluster, secrets).await?;
        let (pool, image) = (vol.pool.clone(), vol.image.clone());
        self.rbd
            .run(cluster, move |c| images::size(c, &pool, &image))
            .await
    }

    async fn expand_volume(&self, vol: &RbdVolume, size: u64, secrets: &Secrets) -> Result<(u64, bool)> {
        let cluster = self.cluster(&vol.cluster, secrets).await?;
        let (pool, image) = (vol.pool.clone(), vol.image.clone());
        let new = self
            .rbd
            .run(cluster, move |c| {
                images::size(c, &pool, &image)?;
                images::expand(c, &pool, &image, size)
            })
            .await?;
        Ok((new, true))
    }

    async fn modify_volume(
        &self,
        vol: &RbdVolume,
        mutable: &HashMap<String, String>,
        secrets: &Secrets,
    ) -> Result<()> {
        let qos = Qos::parse(mutable)?;
        let cluster = self.cluster(&vol.cluster, secrets).await?;
        let (pool, image) = (vol.pool.clone(), vol.image.clone());
        self.rbd
            .run(cluster, move |c| images::set_qos(c, &pool, &image, &qos))
            .await
    }

    async fn list_volumes(&self) -> Result<Vec<(String, u64)>> {
        let mut all = Vec::new();
        for c in &self.config.rbd {
            if c.user.is_none() || c.pools.is_empty() {
                continue;
            }
            let cluster = self.rbd.connect_readonly(&c.cluster_id).await?;
            for pool in &c.pools {
                let p = pool.clone();
                let found = self
                    .rbd
                    .run(cluster.clone(), move |cl| images::list(cl, &p))
                    .await?;
                for (image, size) in found {
                    let id = VolumeId::Rbd(RbdVolume::new(&c.cluster_id, pool, &image)?);
                    all.push((id.to_string(), size));
                }
            }
        }
        Ok(all)
    }

    async fn create_snapshot(&self, vol: &RbdVolume, name: &str, secrets: &Secrets) -> Result<Snapshot> {
        let cluster = self.cluster(&vol.cluster, secrets).await?;
        let snap = images::snapshot_name(name);
        let (pool, image) = (vol.pool.clone(), vol.image.clone());
        let info = self
            .rbd
            .run(cluster, move |c| {
                images::size(c, &pool, &image)?;
                images::snapshot(c, &pool, &image, &snap)
            })
            .await?;
        snapshot_message(&vol.cluster, &info)
    }

    async fn delete_snapshot(&self, vol: &RbdVolume, snap: &str, secrets: &Secrets) -> Result<()> {
        let cluster = self.cluster(&vol.cluster, secrets).await?;
        let (pool, image, snap, cluster_id) = (
            vol.pool.clone(),
            vol.image.clone(),
            snap.to_string(),
            vol.cluster.clone(),
        );
        self.rbd
            .run(cluster, move |c| {
                if let Some(member) = images::get_snapshot(c, &pool, &image, &snap)?
                    && let Some((gpool, group)) = member.group
                {
                    return Err(CsiError::FailedPrecondition(format!(
                        "snapshot is a member of group snapshot {}; delete the VolumeGroupSnapshot",
                        GroupSnapshotId::new(&cluster_id, &gpool, &group)?
                    )));
                }
                let p = match c.pool(&pool) {
                    Ok(p) => p,
                    Err(e) if e.is_not_found() => return Ok(()),
                    Err(e) => return Err(CsiError::rbd(e)),
                };
                images::delete_snapshot(&p, &image, &snap)
            })
            .await
    }

    async fn snapshots(
        &self,
        query: SnapshotQuery<'_, RbdVolume>,
        secrets: &Secrets,
    ) -> Result<Vec<Snapshot>> {
        let mut out = Vec::new();
        match query {
            SnapshotQuery::One(v, snap) => {
                let cluster = self.cluster(&v.cluster, secrets).await?;
                let (pool, image, snap) = (v.pool.clone(), v.image.clone(), snap.to_string());
                if let Some(s) = self
                    .rbd
                    .run(cluster, move |c| images::get_snapshot(c, &pool, &image, &snap))
                    .await?
                {
                    out.push(snapshot_message(&v.cluster, &s)?);
                }
            }
            SnapshotQuery::Of(v) => {
                let cluster = self.cluster(&v.cluster, secrets).await?;
                let (pool, image) = (v.pool.clone(), v.image.clone());
                let found = self
                    .rbd
                    .run(cluster, move |c| {
                        match images::list_snapshots(c, &pool, Some(&image)) {
                            Err(CsiError::NotFound(_)) => Ok(vec![]),
                            other => other,
                        }
                    })
                    .await?;
                for s in &found {
                    out.push(snapshot_message(&v.cluster, s)?);
                }
            }
            SnapshotQuery::All => {
                for c in &self.config.rbd {
                    if c.pools.is_empty() || (c.user.is_none() && secrets.is_empty()) {
                        continue;
                    }
                    let cluster = self.cluster(&c.cluster_id, secrets).await?;
                    for pool in &c.pools {
                        let p = pool.clone();
                        let found = self
                            .rbd
                            .run(cluster.clone(), move |cl| images::list_snapshots(cl, &p, None))
                            .await?;
                        for s in &found {
                            out.push(snapshot_message(&c.cluster_id, s)?);
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    async fn available(
        &self,
        parameters: Option<&HashMap<String, String>>,
        at: Option<&Topology>,
    ) -> Result<u64> {
        let reached = |reach: &Reach| at.is_none_or(|t| reachable(reach, &t.segments));
        if let Some(p) = parameters {
            let params = RbdParams::parse(p)?;
            if !reached(&self.config.cluster(&params.cluster_id)?.topology) {
                return Ok(0);
            }
            let cluster = self.rbd.connect_readonly(&params.cluster_id).await?;
            let pool = params.pool.clone();
            return self
                .rbd
                .run(cluster, move |c| images::pool_available(c, &pool))
                .await;
        }
        // Pools of one cluster share its OSDs, so each cluster counts once: the most any one
        // of its configured pools can take.
        let mut total = 0u64;
        for c in &self.config.rbd {
            if c.user.is_none() || !reached(&c.topology) {
                continue;
            }
            let cluster = self.rbd.connect_readonly(&c.cluster_id).await?;
            let stats = self.rbd.run(cluster, images::pools_available).await?;
            let best = stats
                .iter()
                .filter(|(name, _)| c.pools.is_empty() || c.pools.contains(name))
                .map(|(_, a)| *a)
                .max()
                .unwrap_or(0);
            total = total.saturating_add(best);
        }
        Ok(total)
    }
}
