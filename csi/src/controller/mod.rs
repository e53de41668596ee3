//! The CSI Controller service. Requests are checked here once (required fields, ids, the
//! in-flight guard, topology) and handed to the backend the id or StorageClass names, RBD or
//! NFS, through [`backend::VolumeBackend`]; each operation's failure is its own error type
//! ([`errors`]) carrying the object and the cause.

pub mod backend;
pub mod capacity;
pub mod checks;
pub mod errors;
pub mod group;
pub mod nfs;
pub mod paging;
pub mod rbd;
mod snapshots;
pub mod topology;

use std::collections::HashMap;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::driver::Driver;
use crate::error::{CsiError, Result, invalid, reply};
use crate::ids::VolumeId;
use crate::inflight::to_completion;
use crate::proto::controller_server::Controller;
use crate::proto::controller_service_capability::rpc::Type as Cap;
use crate::proto::*;
use backend::{NewVolume, Secrets, VolumeBackend};
use checks::{Backend, capacity as decide_capacity, unsupported};
use errors::{CreateVolumeError, InventoryError, VolumeOpError};
use nfs::NfsController;
use rbd::RbdController;

/// The Controller service.
#[derive(Clone)]
pub struct ControllerService {
    /// Shared state (settings, in-flight guard).
    pub driver: Arc<Driver>,
    /// RBD volumes.
    pub rbd: RbdController,
    /// NFS volumes.
    pub nfs: NfsController,
}

/// Which backend a StorageClass's parameters name (`backend`, or inferred from `pool`/`server`).
pub fn backend_of(params: &HashMap<String, String>) -> Result<Backend> {
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
    /// The service over a driver's shared state.
    pub fn new(driver: Arc<Driver>) -> Self {
        let config = driver.rbd.config.clone();
        Self {
            rbd: RbdController {
                rbd: driver.rbd.clone(),
                config: config.clone(),
            },
            nfs: NfsController {
                nfs: driver.nfs.clone(),
                config,
            },
            driver,
        }
    }

    async fn create(
        &self,
        req: CreateVolumeRequest,
    ) -> std::result::Result<CreateVolumeResponse, CreateVolumeError> {
        let name = req.name.clone();
        let request = |source: CsiError| CreateVolumeError::Request {
            name: name.clone(),
            source,
        };
        if req.name.is_empty() {
            return Err(request(invalid("name is required")));
        }
        let backend = backend_of(&req.parameters).map_err(request)?;
        if let Some(why) = unsupported(backend, &req.volume_capabilities).map_err(request)? {
            return Err(request(invalid(why)));
        }
        let cap = decide_capacity(req.capacity_range.as_ref()).map_err(request)?;
        let (reach, what) = match backend {
            Backend::Rbd => (self.rbd.reach(&req.parameters), "the Ceph cluster"),
            Backend::Nfs => (self.nfs.reach(&req.parameters), "the NFS export"),
        };
        let reach = reach.map_err(request)?;
        let accessible_topology = topology::accessible(req.accessibility_requirements.as_ref(), &reach, what)
            .map_err(|source| CreateVolumeError::Topology {
                name: name.clone(),
                source,
            })?;
        match backend {
            Backend::Rbd => self.rbd.check_mutable(&req.mutable_parameters),
            Backend::Nfs => self.nfs.check_mutable(&req.mutable_parameters),
        }
        .map_err(request)?;
        let _guard = self
            .driver
            .inflight
            .claim(format!("create/{}", req.name))
            .map_err(|_| CreateVolumeError::InFlight { name: name.clone() })?;
        let source = req.volume_content_source.as_ref().and_then(|s| s.r#type.as_ref());
        let new = NewVolume {
            name: &req.name,
            capacity: cap,
            parameters: &req.parameters,
            mutable_parameters: &req.mutable_parameters,
            secrets: &req.secrets,
            source,
        };
        let volume = match backend {
            Backend::Rbd => self.rbd.create_volume(new).await,
            Backend::Nfs => self.nfs.create_volume(new).await,
        }
        .map_err(|source| match source {
            CsiError::InvalidArgument(_) | CsiError::NotFound(_) | CsiError::OutOfRange(_) => {
                CreateVolumeError::Request {
                    name: name.clone(),
                    source,
                }
            }
            source => CreateVolumeError::Backend {
                name: name.clone(),
                source,
            },
        })?;
        Ok(CreateVolumeResponse {
            volume: Some(Volume {
                content_source: req.volume_content_source,
                accessible_topology,
                ..volume
            }),
        })
    }

    /// Parses the id of an RPC that acts on an existing volume: empty is INVALID_ARGUMENT, an
    /// id this driver cannot have made names no volume (NOT_FOUND).
    fn existing(op: &'static str, id: &str) -> std::result::Result<VolumeId, VolumeOpError> {
        if id.is_empty() {
            return Err(VolumeOpError::MissingId { op });
        }
        VolumeId::parse(id).map_err(|source| VolumeOpError::NotFound {
            op,
            id: id.to_string(),
            source,
        })
    }

    fn backend_error<'a>(op: &'static str, id: &'a str) -> impl Fn(CsiError) -> VolumeOpError + 'a {
        move |source| match source {
            CsiError::NotFound(_) => VolumeOpError::NotFound {
                op,
                id: id.to_string(),
                source,
            },
            source => VolumeOpError::Backend {
                op,
                id: id.to_string(),
                source,
            },
        }
    }

    fn claim(
        &self,
        op: &'static str,
        id: &str,
    ) -> std::result::Result<crate::inflight::Guard, VolumeOpError> {
        self.driver
            .inflight
            .claim(id.to_string())
            .map_err(|_| VolumeOpError::InFlight {
                op,
                id: id.to_string(),
            })
    }

    async fn delete(&self, req: DeleteVolumeRequest) -> std::result::Result<(), VolumeOpError> {
        const OP: &str = "DeleteVolume";
        if req.volume_id.is_empty() {
            return Err(VolumeOpError::MissingId { op: OP });
        }
        // An id this driver cannot have made names nothing of its own: nothing is touched and
        // the answer is OK, as the spec asks for ids of volumes that do not exist.
        let id = match VolumeId::parse(&req.volume_id) {
            Ok(id) => id,
            Err(why) => {
                tracing::warn!(volume_id = %req.volume_id, %why, "DeleteVolume of an id this driver cannot have made; nothing removed");
                return Ok(());
            }
        };
        let _guard = self.claim(OP, &req.volume_id)?;
        let ours = match &id {
            VolumeId::Rbd(v) => self.rbd.delete_volume(v, &req.secrets).await,
            VolumeId::Nfs(v) => self.nfs.delete_volume(v, &req.secrets).await,
        }
        .map_err(|source| VolumeOpError::Backend {
            op: OP,
            id: req.volume_id.clone(),
            source,
        })?;
        if !ours {
            tracing::warn!(volume_id = %req.volume_id, "DeleteVolume of a volume this driver has no record of; nothing removed");
        }
        Ok(())
    }

    /// Size of an existing volume (NFS: 0, unknown), NOT_FOUND if absent.
    async fn size(
        &self,
        op: &'static str,
        id: &VolumeId,
        raw: &str,
        secrets: &Secrets,
    ) -> std::result::Result<u64, VolumeOpError> {
        match id {
            VolumeId::Rbd(v) => self.rbd.volume_size(v, secrets).await,
            VolumeId::Nfs(v) => self.nfs.volume_size(v, secrets).await,
        }
        .map_err(Self::backend_error(op, raw))
    }

    async fn validate(
        &self,
        req: ValidateVolumeCapabilitiesRequest,
    ) -> std::result::Result<ValidateVolumeCapabilitiesResponse, VolumeOpError> {
        const OP: &str = "ValidateVolumeCapabilities";
        let id = Self::existing(OP, &req.volume_id)?;
        let backend = match id {
            VolumeId::Rbd(_) => Backend::Rbd,
            VolumeId::Nfs(_) => Backend::Nfs,
        };
        let why =
            unsupported(backend, &req.volume_capabilities).map_err(|source| VolumeOpError::Request {
                op: OP,
                id: req.volume_id.clone(),
                source,
            })?;
        self.size(OP, &id, &req.volume_id, &req.secrets).await?;
        let mutable_ok = match &id {
            VolumeId::Rbd(_) => self.rbd.check_mutable(&req.mutable_parameters),
            VolumeId::Nfs(_) => self.nfs.check_mutable(&req.mutable_parameters),
        };
        Ok(match (why, mutable_ok) {
            (Some(message), _) => ValidateVolumeCapabilitiesResponse {
                confirmed: None,
                message,
            },
            (None, Err(e)) => ValidateVolumeCapabilitiesResponse {
                confirmed: None,
                message: e.to_string(),
            },
            (None, Ok(())) => ValidateVolumeCapabilitiesResponse {
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

    async fn expand(
        &self,
        req: ControllerExpandVolumeRequest,
    ) -> std::result::Result<ControllerExpandVolumeResponse, VolumeOpError> {
        const OP: &str = "ControllerExpandVolume";
        let id = Self::existing(OP, &req.volume_id)?;
        let request = |source| VolumeOpError::Request {
            op: OP,
            id: req.volume_id.clone(),
            source,
        };
        if req.capacity_range.is_none() {
            return Err(request(invalid("capacity_range is required")));
        }
        let cap = decide_capacity(req.capacity_range.as_ref()).map_err(request)?;
        let _guard = self.claim(OP, &req.volume_id)?;
        let block = req
            .volume_capability
            .as_ref()
            .and_then(|c| c.access_type.as_ref())
            .is_some_and(|a| matches!(a, volume_capability::AccessType::Block(_)));
        let (size, node) = match &id {
            VolumeId::Rbd(v) => self.rbd.expand_volume(v, cap.size, &req.secrets).await,
            VolumeId::Nfs(v) => self.nfs.expand_volume(v, cap.size, &req.secrets).await,
        }
        .map_err(Self::backend_error(OP, &req.volume_id))?;
        if cap.limit > 0 && size > cap.limit {
            return Err(request(CsiError::OutOfRange(format!(
                "volume is {size} bytes, above the limit; volumes do not shrink"
            ))));
        }
        Ok(ControllerExpandVolumeResponse {
            capacity_bytes: size as i64,
            node_expansion_required: node && !block,
        })
    }

    async fn modify(&self, req: ControllerModifyVolumeRequest) -> std::result::Result<(), VolumeOpError> {
        const OP: &str = "ControllerModifyVolume";
        let id = Self::existing(OP, &req.volume_id)?;
        let request = |source| VolumeOpError::Request {
            op: OP,
            id: req.volume_id.clone(),
            source,
        };
        match &id {
            VolumeId::Rbd(_) => self.rbd.check_mutable(&req.mutable_parameters),
            VolumeId::Nfs(_) => self.nfs.check_mutable(&req.mutable_parameters),
        }
        .map_err(request)?;
        let _guard = self.claim(OP, &req.volume_id)?;
        match &id {
            VolumeId::Rbd(v) => {
                self.rbd
                    .modify_volume(v, &req.mutable_parameters, &req.secrets)
                    .await
            }
            VolumeId::Nfs(v) => {
                self.nfs
                    .modify_volume(v, &req.mutable_parameters, &req.secrets)
                    .await
            }
        }
        .map_err(Self::backend_error(OP, &req.volume_id))
    }

    async fn get_volume(
        &self,
        req: ControllerGetVolumeRequest,
    ) -> std::result::Result<ControllerGetVolumeResponse, VolumeOpError> {
        const OP: &str = "ControllerGetVolume";
        let id = Self::existing(OP, &req.volume_id)?;
        let size = self.size(OP, &id, &req.volume_id, &HashMap::new()).await?;
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

    async fn list(
        &self,
        req: ListVolumesRequest,
    ) -> std::result::Result<ListVolumesResponse, InventoryError> {
        const OP: &str = "ListVolumes";
        let request = |source| InventoryError::Request { op: OP, source };
        paging::check_max(req.max_entries).map_err(request)?;
        let after =
            paging::decode_token(&req.starting_token, |t| VolumeId::parse(t).is_ok()).map_err(request)?;
        let mut all = self
            .rbd
            .list_volumes()
            .await
            .map_err(|source| InventoryError::Backend {
                op: OP,
                backend: "Ceph clusters".into(),
                source,
            })?;
        all.extend(
            self.nfs
                .list_volumes()
                .await
                .map_err(|source| InventoryError::Backend {
                    op: OP,
                    backend: "NFS exports".into(),
                    source,
                })?,
        );
        all.sort();
        let (page, next) = paging::paginate(all, after.as_deref(), req.max_entries, |(id, _)| id.clone());
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
        Cap::SingleNodeMultiWriter,
        Cap::ModifyVolume,
    ]
    .into_iter()
    .map(|t| ControllerServiceCapability {
        r#type: Some(controller_service_capability::Type::Rpc(
            controller_service_capability::Rpc { r#type: t as i32 },
        )),
    })
    .collect()
}

type Reply<T> = std::result::Result<Response<T>, Status>;

#[tonic::async_trait]
impl Controller for ControllerService {
    async fn create_volume(&self, request: Request<CreateVolumeRequest>) -> Reply<CreateVolumeResponse> {
        let (this, req) = (self.clone(), request.into_inner());
        to_completion("CreateVolume", async move {
            reply("CreateVolume", this.create(req).await)
        })
        .await
    }

    async fn delete_volume(&self, request: Request<DeleteVolumeRequest>) -> Reply<DeleteVolumeResponse> {
        let (this, req) = (self.clone(), request.into_inner());
        to_completion("DeleteVolume", async move {
            let r = this.delete(req).await;
            reply("DeleteVolume", r.map(|()| DeleteVolumeResponse {}))
        })
        .await
    }

    async fn controller_publish_volume(
        &self,
        _request: Request<ControllerPublishVolumeRequest>,
    ) -> Reply<ControllerPublishVolumeResponse> {
        Err(Status::unimplemented(
            "no controller publish: nodes map volumes themselves",
        ))
    }

    async fn controller_unpublish_volume(
        &self,
        _request: Request<ControllerUnpublishVolumeRequest>,
    ) -> Reply<ControllerUnpublishVolumeResponse> {
        Err(Status::unimplemented(
            "no controller publish: nodes map volumes themselves",
        ))
    }

    async fn validate_volume_capabilities(
        &self,
        request: Request<ValidateVolumeCapabilitiesRequest>,
    ) -> Reply<ValidateVolumeCapabilitiesResponse> {
        reply(
            "ValidateVolumeCapabilities",
            self.validate(request.into_inner()).await,
        )
    }

    async fn list_volumes(&self, request: Request<ListVolumesRequest>) -> Reply<ListVolumesResponse> {
        reply("ListVolumes", self.list(request.into_inner()).await)
    }

    async fn get_capacity(&self, request: Request<GetCapacityRequest>) -> Reply<GetCapacityResponse> {
        reply(
            "GetCapacity",
            capacity::get_capacity(self, request.into_inner()).await,
        )
    }

    async fn controller_get_capabilities(
        &self,
        _request: Request<ControllerGetCapabilitiesRequest>,
    ) -> Reply<ControllerGetCapabilitiesResponse> {
        Ok(Response::new(ControllerGetCapabilitiesResponse {
            capabilities: caps(),
        }))
    }

    async fn create_snapshot(
        &self,
        request: Request<CreateSnapshotRequest>,
    ) -> Reply<CreateSnapshotResponse> {
        let (this, req) = (self.clone(), request.into_inner());
        to_completion("CreateSnapshot", async move {
            reply("CreateSnapshot", this.create_snapshot_impl(req).await)
        })
        .await
    }

    async fn delete_snapshot(
        &self,
        request: Request<DeleteSnapshotRequest>,
    ) -> Reply<DeleteSnapshotResponse> {
        let (this, req) = (self.clone(), request.into_inner());
        to_completion("DeleteSnapshot", async move {
            reply("DeleteSnapshot", this.delete_snapshot_impl(req).await)
        })
        .await
    }

    async fn list_snapshots(&self, request: Request<ListSnapshotsRequest>) -> Reply<ListSnapshotsResponse> {
        reply(
            "ListSnapshots",
            self.list_snapshots_impl(request.into_inner()).await,
        )
    }

    async fn controller_expand_volume(
        &self,
        request: Request<ControllerExpandVolumeRequest>,
    ) -> Reply<ControllerExpandVolumeResponse> {
        let (this, req) = (self.clone(), request.into_inner());
        to_completion("ControllerExpandVolume", async move {
            reply("ControllerExpandVolume", this.expand(req).await)
        })
        .await
    }

    async fn controller_get_volume(
        &self,
        request: Request<ControllerGetVolumeRequest>,
    ) -> Reply<ControllerGetVolumeResponse> {
        reply("ControllerGetVolume", self.get_volume(request.into_inner()).await)
    }

    async fn controller_modify_volume(
        &self,
        request: Request<ControllerModifyVolumeRequest>,
    ) -> Reply<ControllerModifyVolumeResponse> {
        let (this, req) = (self.clone(), request.into_inner());
        to_completion("ControllerModifyVolume", async move {
            let r = this.modify(req).await;
            reply(
                "ControllerModifyVolume",
                r.map(|()| ControllerModifyVolumeResponse {}),
            )
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
