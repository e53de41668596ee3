//! The CSI Controller service: provisioning, snapshots, expansion, listing and capacity.

pub mod checks;
mod snapshots;

use std::collections::HashMap;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::driver::Driver;
use crate::error::{CsiError, Result, invalid, reply};
use crate::ids::{NfsVolume, RbdVolume, SnapshotId, VolumeId};
use crate::nfs::{NfsParams, NfsSource, VolumeRecord};
use crate::proto::controller_server::Controller;
use crate::proto::controller_service_capability::rpc::Type as Cap;
use crate::proto::volume_content_source::Type as SourceType;
use crate::proto::*;
use crate::rbd::images::{self, CreatePlan, Source};
use crate::rbd::params::RbdParams;
use crate::secrets::Credentials;
use checks::{Backend, capacity, unsupported};

/// The Controller service.
#[derive(Clone)]
pub struct ControllerService {
    /// Shared state.
    pub driver: Arc<Driver>,
}

/// Parses an id for an RPC that looks a volume up: ids this driver cannot have made are
/// NOT_FOUND (the volume surely does not exist), an empty id is INVALID_ARGUMENT.
fn lookup_id(id: &str) -> Result<VolumeId> {
    if id.is_empty() {
        return Err(invalid("volume_id is required"));
    }
    VolumeId::parse(id).map_err(|_| CsiError::NotFound(format!("volume {id:?} does not exist")))
}

/// A content source as one string ("" when blank), for recording and comparing.
fn source_id(source: Option<&VolumeContentSource>) -> String {
    match source.and_then(|s| s.r#type.as_ref()) {
        Some(SourceType::Snapshot(s)) => format!("snapshot:{}", s.snapshot_id),
        Some(SourceType::Volume(v)) => format!("volume:{}", v.volume_id),
        None => String::new(),
    }
}

fn backend_of(params: &HashMap<String, String>) -> Result<Backend> {
    match params.get("backend").map(String::as_str) {
        Some("rbd") => Ok(Backend::Rbd),
        Some("nfs") => Ok(Backend::Nfs),
        Some(other) => Err(invalid(format!("backend {other:?}: rbd or nfs"))),
        None if params.contains_key("pool") => Ok(Backend::Rbd),
        None if params.contains_key("server") => Ok(Backend::Nfs),
        None => Err(invalid("parameter backend (rbd or nfs) is required")),
    }
}

impl ControllerService {
    /// Connects for an RPC: with the request's secrets when given, else the driver's own.
    async fn rbd_cluster(
        &self,
        v: &RbdVolume,
        secrets: &HashMap<String, String>,
    ) -> Result<lifeboat_rbd::Cluster> {
        if secrets.is_empty() {
            self.driver.rbd.connect_readonly(&v.cluster).await
        } else {
            let creds = Credentials::from_secrets(secrets)?;
            self.driver.rbd.connect(&v.cluster, &creds).await
        }
    }

    async fn create(&self, req: CreateVolumeRequest) -> Result<CreateVolumeResponse> {
        if req.name.is_empty() {
            return Err(invalid("name is required"));
        }
        let backend = backend_of(&req.parameters)?;
        if let Some(why) = unsupported(backend, &req.volume_capabilities)? {
            return Err(invalid(why));
        }
        let cap = capacity(req.capacity_range.as_ref())?;
        let _guard = self.driver.inflight.claim(format!("create/{}", req.name))?;
        let source = req.volume_content_source.clone().and_then(|s| s.r#type);
        let volume = match backend {
            Backend::Rbd => self.create_rbd(&req, cap, source.as_ref()).await?,
            Backend::Nfs => self.create_nfs(&req, cap, source.as_ref()).await?,
        };
        Ok(CreateVolumeResponse {
            volume: Some(Volume {
                content_source: req.volume_content_source,
                accessible_topology: req
                    .accessibility_requirements
                    .map(|t| {
                        if t.requisite.is_empty() {
                            t.preferred
                        } else {
                            t.requisite
                        }
                    })
                    .unwrap_or_default(),
                ..volume
            }),
        })
    }

    async fn create_rbd(
        &self,
        req: &CreateVolumeRequest,
        cap: checks::Capacity,
        source: Option<&SourceType>,
    ) -> Result<Volume> {
        let params = RbdParams::parse(&req.parameters)?;
        let creds = Credentials::from_secrets(&req.secrets)?;
        let source = match source {
            None => Source::None,
            Some(SourceType::Snapshot(s)) => match SnapshotId::parse(&s.snapshot_id) {
                Ok(SnapshotId {
                    volume: VolumeId::Rbd(v),
                    name,
                }) if v.cluster == params.cluster_id => Source::Snapshot {
                    pool: v.pool,
                    image: v.image,
                    snap: name,
                },
                _ => {
                    return Err(CsiError::NotFound(format!(
                        "snapshot {:?} does not exist here",
                        s.snapshot_id
                    )));
                }
            },
            Some(SourceType::Volume(s)) => match VolumeId::parse(&s.volume_id) {
                Ok(VolumeId::Rbd(v)) if v.cluster == params.cluster_id => Source::Volume {
                    pool: v.pool,
                    image: v.image,
                },
                _ => {
                    return Err(CsiError::NotFound(format!(
                        "volume {:?} does not exist here",
                        s.volume_id
                    )));
                }
            },
        };
        let id = RbdVolume::new(&params.cluster_id, &params.pool, &images::image_name(&req.name))?;
        let cluster = self.driver.rbd.connect(&params.cluster_id, &creds).await?;
        let plan = CreatePlan {
            name: req.name.clone(),
            size: cap.size,
            required: cap.required,
            limit: cap.limit,
            params: params.clone(),
            source,
        };
        let size = self
            .driver
            .rbd
            .run(cluster, move |c| images::create(c, &plan))
            .await?;
        let monitors = self
            .driver
            .rbd
            .config
            .cluster(&params.cluster_id)?
            .monitors
            .join(",");
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

    async fn create_nfs(
        &self,
        req: &CreateVolumeRequest,
        cap: checks::Capacity,
        source: Option<&SourceType>,
    ) -> Result<Volume> {
        let params = NfsParams::parse(&req.parameters)?;
        let vol = params.volume_for(&req.name)?;
        let same_share = |v: &NfsVolume| v.server == vol.server && v.share == vol.share;
        let source = match source {
            None => None,
            Some(SourceType::Snapshot(s)) => match SnapshotId::parse(&s.snapshot_id) {
                Ok(SnapshotId {
                    volume: VolumeId::Nfs(v),
                    name,
                }) if same_share(&v) => {
                    if !self.driver.nfs.snapshot_exists(&v, &name).await? {
                        return Err(CsiError::NotFound(format!(
                            "snapshot {:?} does not exist",
                            s.snapshot_id
                        )));
                    }
                    Some(NfsSource::snapshot(&v, &name))
                }
                _ => {
                    return Err(CsiError::NotFound(format!(
                        "snapshot {:?} does not exist here",
                        s.snapshot_id
                    )));
                }
            },
            Some(SourceType::Volume(s)) => match VolumeId::parse(&s.volume_id) {
                Ok(VolumeId::Nfs(v)) if same_share(&v) => Some(NfsSource { dir: v.dir }),
                _ => {
                    return Err(CsiError::NotFound(format!(
                        "volume {:?} does not exist here",
                        s.volume_id
                    )));
                }
            },
        };
        let want = VolumeRecord {
            name: req.name.clone(),
            capacity: cap.size,
            source: source_id(req.volume_content_source.as_ref()),
            on_delete: vol.on_delete.clone(),
            required: cap.required,
            limit: cap.limit,
        };
        let capacity = self.driver.nfs.create(&vol, source, want).await?;
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

    async fn delete(&self, req: DeleteVolumeRequest) -> Result<()> {
        if req.volume_id.is_empty() {
            return Err(invalid("volume_id is required"));
        }
        // An id this driver never made names nothing: deleting it succeeds (idempotence).
        let Ok(id) = VolumeId::parse(&req.volume_id) else {
            return Ok(());
        };
        let _guard = self.driver.inflight.claim(req.volume_id.clone())?;
        match id {
            VolumeId::Rbd(v) => {
                let creds = Credentials::from_secrets(&req.secrets)?;
                let cluster = self.driver.rbd.connect(&v.cluster, &creds).await?;
                self.driver
                    .rbd
                    .run(cluster, move |c| images::delete(c, &v.pool, &v.image))
                    .await
            }
            VolumeId::Nfs(v) => self.driver.nfs.delete(&v).await,
        }
    }

    /// Size of an existing volume (NFS: 0, unknown), NOT_FOUND if absent.
    async fn existing_size(&self, id: &VolumeId, secrets: &HashMap<String, String>) -> Result<u64> {
        match id {
            VolumeId::Rbd(v) => {
                let cluster = self.rbd_cluster(v, secrets).await?;
                let (pool, image) = (v.pool.clone(), v.image.clone());
                self.driver
                    .rbd
                    .run(cluster, move |c| images::size(c, &pool, &image))
                    .await
            }
            VolumeId::Nfs(v) => {
                if self.driver.nfs.exists(v).await? {
                    Ok(0)
                } else {
                    Err(CsiError::NotFound(format!("volume {id} does not exist")))
                }
            }
        }
    }

    async fn validate(
        &self,
        req: ValidateVolumeCapabilitiesRequest,
    ) -> Result<ValidateVolumeCapabilitiesResponse> {
        let id = lookup_id(&req.volume_id)?;
        let backend = if matches!(id, VolumeId::Rbd(_)) {
            Backend::Rbd
        } else {
            Backend::Nfs
        };
        let why = unsupported(backend, &req.volume_capabilities)?;
        self.existing_size(&id, &req.secrets).await?;
        Ok(match why {
            Some(message) => ValidateVolumeCapabilitiesResponse {
                confirmed: None,
                message,
            },
            None => ValidateVolumeCapabilitiesResponse {
                confirmed: Some(validate_volume_capabilities_response::Confirmed {
                    volume_context: req.volume_context,
                    volume_capabilities: req.volume_capabilities,
                    parameters: req.parameters,
                    mutable_parameters: req.mutable_parameters,
                }),
                message: String::new(),
            },
        })
    }

    async fn expand(&self, req: ControllerExpandVolumeRequest) -> Result<ControllerExpandVolumeResponse> {
        let id = lookup_id(&req.volume_id)?;
        let cap = capacity(req.capacity_range.as_ref())?;
        if req.capacity_range.is_none() {
            return Err(invalid("capacity_range is required"));
        }
        let _guard = self.driver.inflight.claim(req.volume_id.clone())?;
        let block = req
            .volume_capability
            .as_ref()
            .and_then(|c| c.access_type.as_ref())
            .is_some_and(|a| matches!(a, volume_capability::AccessType::Block(_)));
        match id {
            VolumeId::Rbd(v) => {
                let cluster = self.rbd_cluster(&v, &req.secrets).await?;
                let size = cap.size;
                let new = self
                    .driver
                    .rbd
                    .run(cluster, move |c| {
                        images::size(c, &v.pool, &v.image)?;
                        images::expand(c, &v.pool, &v.image, size)
                    })
                    .await?;
                if cap.limit > 0 && new > cap.limit {
                    return Err(CsiError::OutOfRange(format!(
                        "volume is {new} bytes, above the limit; RBD volumes do not shrink"
                    )));
                }
                Ok(ControllerExpandVolumeResponse {
                    capacity_bytes: new as i64,
                    node_expansion_required: !block,
                })
            }
            VolumeId::Nfs(v) => {
                if !self.driver.nfs.exists(&v).await? {
                    return Err(CsiError::NotFound(format!(
                        "volume {} does not exist",
                        req.volume_id
                    )));
                }
                Ok(ControllerExpandVolumeResponse {
                    capacity_bytes: cap.size as i64,
                    node_expansion_required: false,
                })
            }
        }
    }

    async fn get_volume(&self, req: ControllerGetVolumeRequest) -> Result<ControllerGetVolumeResponse> {
        let id = lookup_id(&req.volume_id)?;
        let size = self.existing_size(&id, &HashMap::new()).await?;
        Ok(ControllerGetVolumeResponse {
            volume: Some(Volume {
                capacity_bytes: size as i64,
                volume_id: req.volume_id,
                ..Default::default()
            }),
            status: Some(controller_get_volume_response::VolumeStatus {
                published_node_ids: vec![],
                volume_condition: Some(VolumeCondition {
                    abnormal: false,
                    message: "the backend answers for the volume".into(),
                }),
            }),
        })
    }

    async fn list(&self, req: ListVolumesRequest) -> Result<ListVolumesResponse> {
        if req.max_entries < 0 {
            return Err(invalid("max_entries must not be negative"));
        }
        let after = decode_token(&req.starting_token, |t| VolumeId::parse(t).is_ok())?;
        let mut all: Vec<(String, u64)> = Vec::new();
        for c in &self.driver.rbd.config.rbd {
            if c.user.is_none() || c.pools.is_empty() {
                continue;
            }
            let cluster = self.driver.rbd.connect_readonly(&c.cluster_id).await?;
            for pool in &c.pools {
                let p = pool.clone();
                let found = self
                    .driver
                    .rbd
                    .run(cluster.clone(), move |cl| images::list(cl, &p))
                    .await?;
                for (image, size) in found {
                    let id = VolumeId::Rbd(RbdVolume::new(&c.cluster_id, pool, &image)?);
                    all.push((id.to_string(), size));
                }
            }
        }
        for export in &self.driver.rbd.config.nfs {
            let roots = if export.base_dirs.is_empty() {
                vec![String::new()]
            } else {
                export.base_dirs.clone()
            };
            for base in roots {
                for (dir, rec) in self.driver.nfs.list(&export.server, &export.share, &base).await? {
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
        all.sort();
        let (page, next) = paginate(all, after.as_deref(), req.max_entries, |(id, _)| id.clone());
        Ok(ListVolumesResponse {
            entries: page
                .into_iter()
                .map(|(id, size)| list_volumes_response::Entry {
                    volume: Some(Volume {
                        capacity_bytes: size as i64,
                        volume_id: id,
                        ..Default::default()
                    }),
                    status: Some(list_volumes_response::VolumeStatus {
                        published_node_ids: vec![],
                        volume_condition: Some(VolumeCondition {
                            abnormal: false,
                            message: "listed by the backend".into(),
                        }),
                    }),
                })
                .collect(),
            next_token: next,
        })
    }

    async fn get_capacity(&self, req: GetCapacityRequest) -> Result<GetCapacityResponse> {
        if !req.volume_capabilities.is_empty() {
            let backend = backend_of(&req.parameters)?;
            if unsupported(backend, &req.volume_capabilities)?.is_some() {
                return Ok(GetCapacityResponse::default());
            }
        }
        if req.parameters.is_empty() {
            return Err(invalid(
                "parameters (a StorageClass's) are required to know which pool",
            ));
        }
        let available = match backend_of(&req.parameters)? {
            Backend::Rbd => {
                let params = RbdParams::parse(&req.parameters)?;
                let cluster = self.driver.rbd.connect_readonly(&params.cluster_id).await?;
                let pool = params.pool.clone();
                self.driver
                    .rbd
                    .run(cluster, move |c| images::pool_available(c, &pool))
                    .await?
            }
            Backend::Nfs => {
                let params = NfsParams::parse(&req.parameters)?;
                let vol = NfsVolume::new(&params.server, &params.share, "x", &params.on_delete)?;
                self.driver.nfs.available(&vol).await?
            }
        };
        Ok(GetCapacityResponse {
            available_capacity: available as i64,
            ..Default::default()
        })
    }
}

/// Decodes a pagination token (hex of the last id returned); anything else is ABORTED.
pub(crate) fn decode_token(token: &str, valid: impl Fn(&str) -> bool) -> Result<Option<String>> {
    if token.is_empty() {
        return Ok(None);
    }
    let bytes = hex::decode(token).map_err(|_| CsiError::BadToken(token.into()))?;
    let text = String::from_utf8(bytes).map_err(|_| CsiError::BadToken(token.into()))?;
    if !valid(&text) {
        return Err(CsiError::BadToken(token.into()));
    }
    Ok(Some(text))
}

/// One page of a sorted list, starting after `after`, and the token for the next page.
pub(crate) fn paginate<T>(
    items: Vec<T>,
    after: Option<&str>,
    max: i32,
    key: impl Fn(&T) -> String,
) -> (Vec<T>, String) {
    let rest: Vec<T> = items
        .into_iter()
        .filter(|i| after.is_none_or(|a| key(i).as_str() > a))
        .collect();
    if max <= 0 || rest.len() <= max as usize {
        return (rest, String::new());
    }
    let page: Vec<T> = rest.into_iter().take(max as usize).collect();
    let next = page.last().map(|i| hex::encode(key(i))).unwrap_or_default();
    (page, next)
}

fn caps() -> Vec<ControllerServiceCapability> {
    [
        Cap::CreateDeleteVolume,
        Cap::CreateDeleteSnapshot,
        Cap::ListSnapshots,
        Cap::CloneVolume,
        Cap::ExpandVolume,
        Cap::ListVolumes,
        Cap::GetCapacity,
        Cap::GetVolume,
        Cap::VolumeCondition,
    ]
    .into_iter()
    .map(|t| ControllerServiceCapability {
        r#type: Some(controller_service_capability::Type::Rpc(
            controller_service_capability::Rpc { r#type: t as i32 },
        )),
    })
    .collect()
}

#[tonic::async_trait]
impl Controller for ControllerService {
    async fn create_volume(
        &self,
        request: Request<CreateVolumeRequest>,
    ) -> std::result::Result<Response<CreateVolumeResponse>, Status> {
        reply("CreateVolume", self.create(request.into_inner()).await)
    }

    async fn delete_volume(
        &self,
        request: Request<DeleteVolumeRequest>,
    ) -> std::result::Result<Response<DeleteVolumeResponse>, Status> {
        reply(
            "DeleteVolume",
            self.delete(request.into_inner())
                .await
                .map(|()| DeleteVolumeResponse {}),
        )
    }

    async fn controller_publish_volume(
        &self,
        _request: Request<ControllerPublishVolumeRequest>,
    ) -> std::result::Result<Response<ControllerPublishVolumeResponse>, Status> {
        Err(Status::unimplemented(
            "no controller publish: nodes map volumes themselves",
        ))
    }

    async fn controller_unpublish_volume(
        &self,
        _request: Request<ControllerUnpublishVolumeRequest>,
    ) -> std::result::Result<Response<ControllerUnpublishVolumeResponse>, Status> {
        Err(Status::unimplemented(
            "no controller publish: nodes map volumes themselves",
        ))
    }

    async fn validate_volume_capabilities(
        &self,
        request: Request<ValidateVolumeCapabilitiesRequest>,
    ) -> std::result::Result<Response<ValidateVolumeCapabilitiesResponse>, Status> {
        reply(
            "ValidateVolumeCapabilities",
            self.validate(request.into_inner()).await,
        )
    }

    async fn list_volumes(
        &self,
        request: Request<ListVolumesRequest>,
    ) -> std::result::Result<Response<ListVolumesResponse>, Status> {
        reply("ListVolumes", self.list(request.into_inner()).await)
    }

    async fn get_capacity(
        &self,
        request: Request<GetCapacityRequest>,
    ) -> std::result::Result<Response<GetCapacityResponse>, Status> {
        reply(
            "GetCapacity",
            ControllerService::get_capacity(self, request.into_inner()).await,
        )
    }

    async fn controller_get_capabilities(
        &self,
        _request: Request<ControllerGetCapabilitiesRequest>,
    ) -> std::result::Result<Response<ControllerGetCapabilitiesResponse>, Status> {
        Ok(Response::new(ControllerGetCapabilitiesResponse {
            capabilities: caps(),
        }))
    }

    async fn create_snapshot(
        &self,
        request: Request<CreateSnapshotRequest>,
    ) -> std::result::Result<Response<CreateSnapshotResponse>, Status> {
        reply(
            "CreateSnapshot",
            self.create_snapshot_impl(request.into_inner()).await,
        )
    }

    async fn delete_snapshot(
        &self,
        request: Request<DeleteSnapshotRequest>,
    ) -> std::result::Result<Response<DeleteSnapshotResponse>, Status> {
        reply(
            "DeleteSnapshot",
            self.delete_snapshot_impl(request.into_inner()).await,
        )
    }

    async fn list_snapshots(
        &self,
        request: Request<ListSnapshotsRequest>,
    ) -> std::result::Result<Response<ListSnapshotsResponse>, Status> {
        reply(
            "ListSnapshots",
            self.list_snapshots_impl(request.into_inner()).await,
        )
    }

    async fn controller_expand_volume(
        &self,
        request: Request<ControllerExpandVolumeRequest>,
    ) -> std::result::Result<Response<ControllerExpandVolumeResponse>, Status> {
        reply("ControllerExpandVolume", self.expand(request.into_inner()).await)
    }

    async fn controller_get_volume(
        &self,
        request: Request<ControllerGetVolumeRequest>,
    ) -> std::result::Result<Response<ControllerGetVolumeResponse>, Status> {
        reply("ControllerGetVolume", self.get_volume(request.into_inner()).await)
    }

    async fn controller_modify_volume(
        &self,
        _request: Request<ControllerModifyVolumeRequest>,
    ) -> std::result::Result<Response<ControllerModifyVolumeResponse>, Status> {
        Err(Status::unimplemented(
            "volume attributes classes are not supported",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_tokens_and_refuse_forged_ones() {
        let ids: Vec<String> = (0..5).map(|i| format!("rbd:c:p:csi-vol-{i}")).collect();
        let (p1, t1) = paginate(ids.clone(), None, 2, |s| s.clone());
        assert_eq!(p1, ids[..2]);
        let after = decode_token(&t1, |t| VolumeId::parse(t).is_ok()).expect("token");
        let (p2, _) = paginate(ids.clone(), after.as_deref(), 0, |s| s.clone());
        assert_eq!(p2, ids[2..]);
        for bad in ["zz", "00", &hex::encode("rbd:only:three")] {
            assert!(matches!(
                decode_token(bad, |t| VolumeId::parse(t).is_ok()),
                Err(CsiError::BadToken(_))
            ));
        }
        let (all, t) = paginate(ids.clone(), None, 5, |s| s.clone());
        assert_eq!((all.len(), t.as_str()), (5, ""));
    }

    #[test]
    fn backend_comes_from_the_parameters() {
        let p = |kv: &[(&str, &str)]| kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(backend_of(&p(&[("pool", "x")])).ok(), Some(Backend::Rbd));
        assert_eq!(backend_of(&p(&[("server", "x")])).ok(), Some(Backend::Nfs));
        assert_eq!(
            backend_of(&p(&[("backend", "nfs"), ("pool", "x")])).ok(),
            Some(Backend::Nfs)
        );
        assert!(backend_of(&p(&[("backend", "gluster")])).is_err());
        assert!(backend_of(&p(&[])).is_err());
    }
}
