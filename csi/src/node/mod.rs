//! The CSI Node service: map, format and mount at the staging path, bind-mount into pods,
//! report usage and grow filesystems.

mod errors;
pub mod exec;
pub mod mapper;
pub mod nfs_mount;
pub mod state;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::driver::Driver;
use crate::error::{CsiError, Result, invalid, reply};
use crate::ids::VolumeId;
use crate::inflight::to_completion;
use crate::proto::node_server::Node;
use crate::proto::node_service_capability::rpc::Type as Cap;
use crate::proto::volume_capability::AccessType;
use crate::proto::*;
use crate::secrets::Credentials;
pub use errors::NodeOpError;
use errors::on_volume;
use exec::{device_size, fs_stats, is_mounted, mounts_at, run, status};
use mapper::MapRequest;
use state::StageRecord;

/// The Node service.
#[derive(Clone)]
pub struct NodeService {
    /// Shared state.
    pub driver: Arc<Driver>,
}

fn required<'a>(what: &str, v: &'a str) -> Result<&'a str> {
    if v.is_empty() {
        Err(invalid(format!("{what} is required")))
    } else {
        Ok(v)
    }
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().to_string()
}

impl NodeService {
    fn state_dir(&self) -> &Path {
        &self.driver.settings.state_dir
    }

    async fn stage(&self, req: NodeStageVolumeRequest) -> Result<()> {
        let volume_id = required("volume_id", &req.volume_id)?;
        let staging = PathBuf::from(required("staging_target_path", &req.staging_target_path)?);
        let cap = req
            .volume_capability
            .as_ref()
            .ok_or_else(|| invalid("volume_capability is required"))?;
        let access = cap
            .access_type
            .as_ref()
            .ok_or_else(|| invalid("volume capability needs block or mount"))?;
        let id = VolumeId::parse(volume_id)
            .map_err(|_| CsiError::NotFound(format!("volume {volume_id:?} does not exist")))?;
        let _guard = self.driver.inflight.claim(volume_id.to_string())?;
        if let Some(rec) = state::load(self.state_dir(), volume_id)?
            && rec.staging == staging
            && (rec.block || is_mounted(&staging)?)
        {
            return Ok(());
        }
        match id {
            VolumeId::Nfs(v) => {
                let opts = req
                    .volume_context
                    .get("mountOptions")
                    .cloned()
                    .unwrap_or_default();
                let flags = match access {
                    AccessType::Mount(m) => m.mount_flags.clone(),
                    AccessType::Block(_) => return Err(invalid("NFS volumes cannot be raw block devices")),
                };
                let cmd = nfs_mount::command(&v, &opts, &flags, &staging);
                std::fs::create_dir_all(&staging)
                    .map_err(|e| CsiError::Internal(format!("create staging: {e}")))?;
                let export = &cmd[cmd.len() - 2];
                if !already_mounted(&staging, export)? {
                    let args: Vec<&str> = cmd[1..].iter().map(String::as_str).collect();
                    run(&cmd[0], &args).await?;
                }
                state::save(
                    self.state_dir(),
                    &StageRecord {
                        volume_id: volume_id.into(),
                        staging,
                        mapped: None,
                        block: false,
                        fs_type: "nfs".into(),
                    },
                )
            }
            VolumeId::Rbd(v) => {
                let creds = Credentials::from_secrets(&req.secrets)?;
                let monitors = match self.driver.rbd.config.cluster(&v.cluster) {
                    Ok(c) => c.monitors.clone(),
                    Err(e) => match req.volume_context.get("monitors") {
                        Some(m) => m.split(',').map(str::to_string).collect(),
                        None => return Err(e),
                    },
                };
                let conf = self.driver.rbd.conns.write_conf(&monitors, &creds)?;
                let kind = self.driver.settings.mapper.resolve();
                let mapped = mapper::map(
                    kind,
                    &MapRequest {
                        pool: &v.pool,
                        image: &v.image,
                        user: &creds.user,
                        conf: &conf,
                        fuse_dir: state::fuse_dir(self.state_dir(), volume_id),
                        in_use: &state::devices_in_use(self.state_dir(), volume_id)?,
                    },
                )
                .await?;
                drop(conf);
                let (block, fs_type) = match access {
                    AccessType::Block(_) => (true, String::new()),
                    AccessType::Mount(m) => {
                        let fs = if !m.fs_type.is_empty() {
                            m.fs_type.clone()
                        } else {
                            req.volume_context
                                .get("fsType")
                                .cloned()
                                .unwrap_or_else(|| "ext4".into())
                        };
                        let mut opts: Vec<String> = m.mount_flags.clone();
                        if let Some(o) = req.volume_context.get("mountOptions").filter(|o| !o.is_empty()) {
                            opts.extend(o.split(',').map(str::to_string));
                        }
                        let mounted = match already_mounted(&staging, &mapped.device) {
                            Ok(true) => Ok(()),
                            Ok(false) => format_and_mount(&mapped.device, &fs, &opts, &staging).await,
                            Err(e) => Err(e),
                        };
                        if let Err(e) = mounted {
                            let _ = mapper::unmap(&mapped).await;
                            return Err(e);
                        }
                        (false, fs)
                    }
                };
                state::save(
                    self.state_dir(),
                    &StageRecord {
                        volume_id: volume_id.into(),
                        staging,
                        mapped: Some(mapped),
                        block,
                        fs_type,
                    },
                )
            }
        }
    }

    async fn unstage(&self, req: NodeUnstageVolumeRequest) -> Result<()> {
        let volume_id = required("volume_id", &req.volume_id)?;
        let staging = PathBuf::from(required("staging_target_path", &req.staging_target_path)?);
        let _guard = self.driver.inflight.claim(volume_id.to_string())?;
        if is_mounted(&staging)? {
            run("umount", &[&path_str(&staging)]).await?;
        }
        match state::load(self.state_dir(), volume_id)? {
            Some(rec) => {
                if let Some(m) = &rec.mapped {
                    mapper::unmap(m).await?;
                }
                state::remove(self.state_dir(), volume_id)?;
            }
            // No record: a stage may have been killed after mapping, before writing one.
            None => {
                if let Ok(VolumeId::Rbd(v)) = VolumeId::parse(volume_id) {
                    let fuse_dir = state::fuse_dir(self.state_dir(), volume_id);
                    let kind = self.driver.settings.mapper.resolve();
                    let in_use = state::devices_in_use(self.state_dir(), volume_id)?;
                    mapper::unmap_leftovers(kind, &v.pool, &v.image, &fuse_dir, &in_use).await?;
                }
            }
        }
        Ok(())
    }

    async fn publish(&self, req: NodePublishVolumeRequest) -> Result<()> {
        let volume_id = required("volume_id", &req.volume_id)?;
        let target = PathBuf::from(required("target_path", &req.target_path)?);
        let staging = PathBuf::from(required("staging_target_path", &req.staging_target_path)?);
        let cap = req
            .volume_capability
            .as_ref()
            .ok_or_else(|| invalid("volume_capability is required"))?;
        let access = cap
            .access_type
            .as_ref()
            .ok_or_else(|| invalid("volume capability needs block or mount"))?;
        VolumeId::parse(volume_id)
            .map_err(|_| CsiError::NotFound(format!("volume {volume_id:?} does not exist")))?;
        let _guard = self.driver.inflight.claim(volume_id.to_string())?;
        let rec = state::load(self.state_dir(), volume_id)?
            .ok_or_else(|| CsiError::FailedPrecondition(format!("volume {volume_id} is not staged")))?;
        // Mounted already: by an earlier call, or by one killed between the bind mount and
        // the read-only remount, which is finished here.
        if let Some(m) = mounts_at(&target)?.last() {
            if req.readonly && !m.read_only {
                run("mount", &["-o", "remount,bind,ro", &path_str(&target)]).await?;
            }
            return Ok(());
        }
        let source = match access {
            AccessType::Block(_) => {
                let dev = rec
                    .mapped
                    .as_ref()
                    .map(|m| m.device.clone())
                    .ok_or_else(|| invalid("only RBD volumes can be raw block devices"))?;
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| CsiError::Internal(format!("create target dir: {e}")))?;
                }
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&target)
                    .map_err(|e| CsiError::Internal(format!("create target file: {e}")))?;
                dev
            }
            AccessType::Mount(_) => {
                std::fs::create_dir_all(&target)
                    .map_err(|e| CsiError::Internal(format!("create target: {e}")))?;
                path_str(&staging)
            }
        };
        let t = path_str(&target);
        run("mount", &["--bind", &source, &t]).await?;
        if req.readonly
            && let Err(e) = run("mount", &["-o", "remount,bind,ro", &t]).await
        {
            let _ = run("umount", &[&t]).await;
            return Err(e);
        }
        Ok(())
    }

    async fn unpublish(&self, req: NodeUnpublishVolumeRequest) -> Result<()> {
        let volume_id = required("volume_id", &req.volume_id)?;
        let target = PathBuf::from(required("target_path", &req.target_path)?);
        let _guard = self.driver.inflight.claim(volume_id.to_string())?;
        while is_mounted(&target)? {
            run("umount", &[&path_str(&target)]).await?;
        }
        if target.is_dir() {
            let _ = std::fs::remove_dir(&target);
        } else if target.exists() {
            let _ = std::fs::remove_file(&target);
        }
        Ok(())
    }

    async fn stats(&self, req: NodeGetVolumeStatsRequest) -> Result<NodeGetVolumeStatsResponse> {
        let volume_id = required("volume_id", &req.volume_id)?;
        let path = PathBuf::from(required("volume_path", &req.volume_path)?);
        if !path.exists() {
            return Err(CsiError::NotFound(format!(
                "volume path {} does not exist",
                path.display()
            )));
        }
        let rec = state::load(self.state_dir(), volume_id)?;
        if rec.as_ref().is_some_and(|r| r.block) {
            let dev = rec.and_then(|r| r.mapped).map(|m| m.device).unwrap_or_default();
            let size = device_size(&dev).await?;
            return Ok(NodeGetVolumeStatsResponse {
                usage: vec![VolumeUsage {
                    total: size as i64,
                    unit: volume_usage::Unit::Bytes as i32,
                    ..Default::default()
                }],
                volume_condition: Some(VolumeCondition {
                    abnormal: false,
                    message: "block device mapped".into(),
                }),
            });
        }
        let mounted = is_mounted(&path)?;
        let (bytes, inodes) = fs_stats(&path).await?;
        let usage = |v: [u64; 3], unit: volume_usage::Unit| VolumeUsage {
            total: v[0] as i64,
            available: v[1] as i64,
            used: v[2] as i64,
            unit: unit as i32,
        };
        Ok(NodeGetVolumeStatsResponse {
            usage: vec![
                usage(bytes, volume_usage::Unit::Bytes),
                usage(inodes, volume_usage::Unit::Inodes),
            ],
            volume_condition: Some(VolumeCondition {
                abnormal: !mounted,
                message: if mounted {
                    "mounted".into()
                } else {
                    "volume path is not a mount point".into()
                },
            }),
        })
    }

    async fn expand(&self, req: NodeExpandVolumeRequest) -> Result<NodeExpandVolumeResponse> {
        let volume_id = required("volume_id", &req.volume_id)?;
        let path = PathBuf::from(required("volume_path", &req.volume_path)?);
        let _guard = self.driver.inflight.claim(volume_id.to_string())?;
        if !path.exists() {
            return Err(CsiError::NotFound(format!(
                "volume path {} does not exist",
                path.display()
            )));
        }
        let rec = state::load(self.state_dir(), volume_id)?
            .ok_or_else(|| CsiError::NotFound(format!("volume {volume_id} is not staged on this node")))?;
        let Some(m) = &rec.mapped else {
            return Ok(NodeExpandVolumeResponse { capacity_bytes: 0 });
        };
        // The device can show the old size for a moment after ControllerExpandVolume (seen
        // with rbd-fuse right after a driver restart); growing the filesystem to it and
        // answering that capacity would report an expansion that did not happen.
        let required = req
            .capacity_range
            .as_ref()
            .map_or(0, |c| c.required_bytes.max(0) as u64);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            mapper::refresh_size(m).await?;
            let size = device_size(&m.device).await?;
            if size >= required {
                break;
            }
            if std::time::Instant::now() >= deadline {
                return Err(CsiError::Unavailable(format!(
                    "device {} of volume {volume_id} shows {size} bytes, less than the {required} \
                     bytes asked for: the image's new size has not reached this node yet; retry",
                    m.device
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
        if !rec.block {
            match rec.fs_type.as_str() {
                "xfs" => run("xfs_growfs", &[&path_str(&rec.staging)]).await.map(|_| ())?,
                _ => run("resize2fs", &[&m.device]).await.map(|_| ())?,
            }
        }
        Ok(NodeExpandVolumeResponse {
            capacity_bytes: device_size(&m.device).await? as i64,
        })
    }
}

/// True if `source` (a device or NFS export) is mounted on `staging` already: an earlier
/// stage was killed after mounting, before writing its record, and mounting again would stack
/// a second mount. Something else mounted there is FAILED_PRECONDITION.
fn already_mounted(staging: &Path, source: &str) -> Result<bool> {
    let here = mounts_at(staging)?;
    if here.is_empty() {
        return Ok(false);
    }
    if here.iter().any(|m| m.source == source) {
        tracing::info!(staging = %staging.display(), source, "already mounted by an interrupted stage; keeping it");
        return Ok(true);
    }
    Err(CsiError::FailedPrecondition(format!(
        "staging path {} has {} mounted, not this volume's {source}; unmount it",
        staging.display(),
        here[0].source
    )))
}

/// Formats the device if it holds no filesystem yet, then mounts it.
async fn format_and_mount(device: &str, fs: &str, opts: &[String], staging: &Path) -> Result<()> {
    if !["ext4", "ext3", "xfs"].contains(&fs) {
        return Err(invalid(format!("fs_type {fs:?}: ext4, ext3 or xfs")));
    }
    let (code, found) = status("blkid", &["-p", "-s", "TYPE", "-o", "value", device]).await?;
    match code {
        0 => {
            if found != fs {
                tracing::info!(
                    device,
                    found,
                    wanted = fs,
                    "device already holds a filesystem; mounting it as is"
                );
            }
            if found.starts_with("ext") {
                grow_ext_offline(device).await?;
            }
        }
        2 => {
            let mkfs = format!("mkfs.{fs}");
            let args: Vec<&str> = if fs == "xfs" {
                vec!["-q", device]
            } else {
                vec!["-q", "-F", device]
            };
            run(&mkfs, &args).await?;
        }
        other => return Err(CsiError::Internal(format!("blkid {device} exited {other}"))),
    }
    std::fs::create_dir_all(staging).map_err(|e| CsiError::Internal(format!("create staging: {e}")))?;
    let s = path_str(staging);
    let mut args: Vec<String> = vec![
        "-t".into(),
        if code == 0 && !found.is_empty() {
            found
        } else {
            fs.into()
        },
    ];
    if !opts.is_empty() {
        args.push("-o".into());
        args.push(opts.join(","));
    }
    args.push(device.into());
    args.push(s);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    run("mount", &a).await.map(|_| ())
}

/// Grows an unmounted ext filesystem to its device when the volume was expanded while not
/// staged (offline expansion), so a restaged volume always shows its full size.
async fn grow_ext_offline(device: &str) -> Result<()> {
    let header = run("dumpe2fs", &["-h", device]).await?;
    let field = |name: &str| -> Option<u64> {
        header
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split(':').nth(1))
            .and_then(|v| v.trim().parse().ok())
    };
    let (Some(blocks), Some(bsize)) = (field("Block count:"), field("Block size:")) else {
        return Ok(());
    };
    if device_size(device).await? <= blocks * bsize + (1 << 20) {
        return Ok(());
    }
    // e2fsck exits 1 when it fixed something, which is fine before a resize.
    let (code, _) = status("e2fsck", &["-f", "-p", device]).await?;
    if code > 1 {
        return Err(CsiError::Internal(format!(
            "e2fsck {device} exited {code}; not resizing"
        )));
    }
    run("resize2fs", &[device]).await.map(|_| ())
}

fn caps() -> Vec<NodeServiceCapability> {
    [
        Cap::StageUnstageVolume,
        Cap::GetVolumeStats,
        Cap::ExpandVolume,
        Cap::VolumeCondition,
        Cap::SingleNodeMultiWriter,
    ]
    .into_iter()
    .map(|t| NodeServiceCapability {
        r#type: Some(node_service_capability::Type::Rpc(node_service_capability::Rpc {
            r#type: t as i32,
        })),
    })
    .collect()
}

#[tonic::async_trait]
impl Node for NodeService {
    async fn node_stage_volume(
        &self,
        request: Request<NodeStageVolumeRequest>,
    ) -> std::result::Result<Response<NodeStageVolumeResponse>, Status> {
        let (this, req) = (self.clone(), request.into_inner());
        to_completion("NodeStageVolume", async move {
            let id = req.volume_id.clone();
            let r = this.stage(req).await.map(|()| NodeStageVolumeResponse {});
            reply("NodeStageVolume", on_volume("NodeStageVolume", id, r))
        })
        .await
    }

    async fn node_unstage_volume(
        &self,
        request: Request<NodeUnstageVolumeRequest>,
    ) -> std::result::Result<Response<NodeUnstageVolumeResponse>, Status> {
        let (this, req) = (self.clone(), request.into_inner());
        to_completion("NodeUnstageVolume", async move {
            let id = req.volume_id.clone();
            let r = this.unstage(req).await.map(|()| NodeUnstageVolumeResponse {});
            reply("NodeUnstageVolume", on_volume("NodeUnstageVolume", id, r))
        })
        .await
    }

    async fn node_publish_volume(
        &self,
        request: Request<NodePublishVolumeRequest>,
    ) -> std::result::Result<Response<NodePublishVolumeResponse>, Status> {
        let (this, req) = (self.clone(), request.into_inner());
        to_completion("NodePublishVolume", async move {
            let id = req.volume_id.clone();
            let r = this.publish(req).await.map(|()| NodePublishVolumeResponse {});
            reply("NodePublishVolume", on_volume("NodePublishVolume", id, r))
        })
        .await
    }

    async fn node_unpublish_volume(
        &self,
        request: Request<NodeUnpublishVolumeRequest>,
    ) -> std::result::Result<Response<NodeUnpublishVolumeResponse>, Status> {
        let (this, req) = (self.clone(), request.into_inner());
        to_completion("NodeUnpublishVolume", async move {
            let id = req.volume_id.clone();
            let r = this.unpublish(req).await.map(|()| NodeUnpublishVolumeResponse {});
            reply("NodeUnpublishVolume", on_volume("NodeUnpublishVolume", id, r))
        })
        .await
    }

    async fn node_get_volume_stats(
        &self,
        request: Request<NodeGetVolumeStatsRequest>,
    ) -> std::result::Result<Response<NodeGetVolumeStatsResponse>, Status> {
        let req = request.into_inner();
        let id = req.volume_id.clone();
        reply(
            "NodeGetVolumeStats",
            on_volume("NodeGetVolumeStats", id, self.stats(req).await),
        )
    }

    async fn node_expand_volume(
        &self,
        request: Request<NodeExpandVolumeRequest>,
    ) -> std::result::Result<Response<NodeExpandVolumeResponse>, Status> {
        let (this, req) = (self.clone(), request.into_inner());
        to_completion("NodeExpandVolume", async move {
            let id = req.volume_id.clone();
            reply(
                "NodeExpandVolume",
                on_volume("NodeExpandVolume", id, this.expand(req).await),
            )
        })
        .await
    }

    async fn node_get_capabilities(
        &self,
        _request: Request<NodeGetCapabilitiesRequest>,
    ) -> std::result::Result<Response<NodeGetCapabilitiesResponse>, Status> {
        Ok(Response::new(NodeGetCapabilitiesResponse {
            capabilities: caps(),
        }))
    }

    async fn node_get_info(
        &self,
        _request: Request<NodeGetInfoRequest>,
    ) -> std::result::Result<Response<NodeGetInfoResponse>, Status> {
        // The plugin advertises VOLUME_ACCESSIBILITY_CONSTRAINTS, so a node always has a
        // topology: the `--topology` segments, or one derived from the node id.
        let s = &self.driver.settings;
        let segments = if s.topology.is_empty() {
            HashMap::from([crate::controller::topology::default_node_segment(&s.node_id)])
        } else {
            s.topology.clone().into_iter().collect()
        };
        Ok(Response::new(NodeGetInfoResponse {
            node_id: s.node_id.clone(),
            max_volumes_per_node: 0,
            accessible_topology: Some(Topology { segments }),
        }))
    }
}
