//! The CSI GroupController service: volume group snapshots of RBD volumes (see
//! [`crate::rbd::groups`] for how they are kept and why they are crash-safe). NFS volumes
//! cannot be group-snapshotted: copies of several directories are not one instant.

use std::collections::BTreeSet;

use tonic::{Request, Response, Status};

use crate::controller::ControllerService;
use crate::controller::errors::GroupSnapshotError;
use crate::controller::rbd::{snapshot_message, timestamp};
use crate::error::{CsiError, reply};
use crate::ids::{GroupSnapshotId, VolumeId};
use crate::inflight::to_completion;
use crate::proto::group_controller_server::GroupController;
use crate::proto::group_controller_service_capability::rpc::Type as Cap;
use crate::proto::*;
use crate::rbd::groups::{self, GroupRecord};
use crate::rbd::images::SnapInfo;

type Result<T> = std::result::Result<T, GroupSnapshotError>;

/// The GroupController service, sharing the Controller service's backends.
#[derive(Clone)]
pub struct GroupControllerService {
    /// The Controller service.
    pub controller: ControllerService,
}

fn message(id: &GroupSnapshotId, members: &[SnapInfo]) -> std::result::Result<VolumeGroupSnapshot, CsiError> {
    let snapshots = members
        .iter()
        .map(|m| snapshot_message(&id.cluster, m))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(VolumeGroupSnapshot {
        group_snapshot_id: id.to_string(),
        creation_time: Some(timestamp(members.iter().map(|m| m.created).min().unwrap_or(0))),
        ready_to_use: true,
        snapshots,
    })
}

/// Checks that `given` (a request's `snapshot_ids`, optional) names exactly the members.
fn check_members(given: &[String], group: &VolumeGroupSnapshot) -> std::result::Result<(), CsiError> {
    if given.is_empty() {
        return Ok(());
    }
    let want: BTreeSet<&str> = group.snapshots.iter().map(|s| s.snapshot_id.as_str()).collect();
    let got: BTreeSet<&str> = given.iter().map(String::as_str).collect();
    if want != got {
        return Err(CsiError::InvalidArgument(format!(
            "snapshot_ids do not match the group snapshot's members: {}",
            want.into_iter().collect::<Vec<_>>().join(", ")
        )));
    }
    Ok(())
}

impl GroupControllerService {
    async fn create(&self, req: CreateVolumeGroupSnapshotRequest) -> Result<VolumeGroupSnapshot> {
        const OP: &str = "CreateVolumeGroupSnapshot";
        let request = |source| GroupSnapshotError::Request {
            op: OP,
            object: req.name.clone(),
            source,
        };
        if req.name.is_empty() {
            return Err(request(CsiError::InvalidArgument("name is required".into())));
        }
        if req.source_volume_ids.is_empty() {
            return Err(request(CsiError::InvalidArgument(
                "source_volume_ids is required".into(),
            )));
        }
        let mut cluster_id: Option<String> = None;
        let mut specs = BTreeSet::new();
        for raw in &req.source_volume_ids {
            let v = match VolumeId::parse(raw) {
                Ok(VolumeId::Rbd(v)) => v,
                Ok(VolumeId::Nfs(_)) => {
                    return Err(request(CsiError::InvalidArgument(format!(
                        "volume {raw}: NFS volumes cannot be group-snapshotted"
                    ))));
                }
                Err(_) => {
                    return Err(request(CsiError::NotFound(format!(
                        "volume {raw:?} does not exist"
                    ))));
                }
            };
            match &cluster_id {
                Some(c) if *c != v.cluster => {
                    return Err(request(CsiError::InvalidArgument(format!(
                        "volumes of clusters {c} and {} cannot be snapshotted at one instant",
                        v.cluster
                    ))));
                }
                _ => cluster_id = Some(v.cluster.clone()),
            }
            specs.insert((v.pool, v.image));
        }
        let cluster_id = cluster_id.unwrap_or_default();
        // The group lives in the first pool in sorted order, so a retry finds it again.
        let pool = specs.iter().next().map(|(p, _)| p.clone()).unwrap_or_default();
        let id = GroupSnapshotId::for_name(&cluster_id, &pool, &req.name).map_err(request)?;
        let record = GroupRecord {
            name: req.name.clone(),
            volumes: specs.iter().map(|(p, i)| format!("{p}/{i}")).collect(),
        };
        let in_flight = |_| GroupSnapshotError::InFlight {
            op: OP,
            object: req.name.clone(),
        };
        let _guard = self
            .controller
            .driver
            .inflight
            .claim(format!("group/{}", req.name))
            .map_err(in_flight)?;
        // DeleteVolumeGroupSnapshot claims the id: a create retry must not retake a group
        // snapshot a delete is removing.
        let _id_guard = self
            .controller
            .driver
            .inflight
            .claim(id.to_string())
            .map_err(in_flight)?;
        let _volume_guards = req
            .source_volume_ids
            .iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|v| self.controller.driver.inflight.claim(v.clone()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(in_flight)?;
        let backend = |source| GroupSnapshotError::Backend {
            op: OP,
            object: req.name.clone(),
            source,
        };
        let cluster = self
            .controller
            .rbd
            .cluster(&cluster_id, &req.secrets)
            .await
            .map_err(backend)?;
        let (gid, rec) = (id.clone(), record);
        let members = self
            .controller
            .rbd
            .rbd
            .run(cluster, move |c| groups::create(c, &gid, &rec))
            .await
            .map_err(backend)?;
        message(&id, &members).map_err(backend)
    }

    async fn find(
        &self,
        op: &'static str,
        raw: &str,
        secrets: &std::collections::HashMap<String, String>,
    ) -> Result<Option<(GroupSnapshotId, VolumeGroupSnapshot)>> {
        if raw.is_empty() {
            return Err(GroupSnapshotError::Request {
                op,
                object: String::new(),
                source: CsiError::InvalidArgument("group_snapshot_id is required".into()),
            });
        }
        let Ok(id) = GroupSnapshotId::parse(raw) else {
            return Ok(None);
        };
        let backend = |source| GroupSnapshotError::Backend {
            op,
            object: raw.to_string(),
            source,
        };
        let cluster = self
            .controller
            .rbd
            .cluster(&id.cluster, secrets)
            .await
            .map_err(backend)?;
        let gid = id.clone();
        let found = self
            .controller
            .rbd
            .rbd
            .run(cluster, move |c| groups::get(c, &gid))
            .await
            .map_err(backend)?;
        match found {
            None => Ok(None),
            Some((_, members)) => Ok(Some((id.clone(), message(&id, &members).map_err(backend)?))),
        }
    }

    async fn get(&self, req: GetVolumeGroupSnapshotRequest) -> Result<VolumeGroupSnapshot> {
        const OP: &str = "GetVolumeGroupSnapshot";
        let Some((_, group)) = self.find(OP, &req.group_snapshot_id, &req.secrets).await? else {
            return Err(GroupSnapshotError::NotFound {
                op: OP,
                object: req.group_snapshot_id,
            });
        };
        check_members(&req.snapshot_ids, &group).map_err(|source| GroupSnapshotError::Request {
            op: OP,
            object: req.group_snapshot_id.clone(),
            source,
        })?;
        Ok(group)
    }

    async fn delete(&self, req: DeleteVolumeGroupSnapshotRequest) -> Result<()> {
        const OP: &str = "DeleteVolumeGroupSnapshot";
        if req.group_snapshot_id.is_empty() {
            return Err(GroupSnapshotError::Request {
                op: OP,
                object: String::new(),
                source: CsiError::InvalidArgument("group_snapshot_id is required".into()),
            });
        }
        // An id this driver cannot have made names nothing: OK, as for DeleteSnapshot.
        let Ok(id) = GroupSnapshotId::parse(&req.group_snapshot_id) else {
            return Ok(());
        };
        let _guard = self
            .controller
            .driver
            .inflight
            .claim(req.group_snapshot_id.clone())
            .map_err(|_| GroupSnapshotError::InFlight {
                op: OP,
                object: req.group_snapshot_id.clone(),
            })?;
        if let Some((_, group)) = self.find(OP, &req.group_snapshot_id, &req.secrets).await? {
            check_members(&req.snapshot_ids, &group).map_err(|source| GroupSnapshotError::Request {
                op: OP,
                object: req.group_snapshot_id.clone(),
                source,
            })?;
        }
        let backend = |source| GroupSnapshotError::Backend {
            op: OP,
            object: req.group_snapshot_id.clone(),
            source,
        };
        let cluster = self
            .controller
            .rbd
            .cluster(&id.cluster, &req.secrets)
            .await
            .map_err(backend)?;
        self.controller
            .rbd
            .rbd
            .run(cluster, move |c| groups::delete(c, &id))
            .await
            .map_err(backend)
    }
}

type Reply<T> = std::result::Result<Response<T>, Status>;

#[tonic::async_trait]
impl GroupController for GroupControllerService {
    async fn group_controller_get_capabilities(
        &self,
        _request: Request<GroupControllerGetCapabilitiesRequest>,
    ) -> Reply<GroupControllerGetCapabilitiesResponse> {
        Ok(Response::new(GroupControllerGetCapabilitiesResponse {
            capabilities: vec![GroupControllerServiceCapability {
                r#type: Some(group_controller_service_capability::Type::Rpc(
                    group_controller_service_capability::Rpc {
                        r#type: Cap::CreateDeleteGetVolumeGroupSnapshot as i32,
                    },
                )),
            }],
        }))
    }

    async fn create_volume_group_snapshot(
        &self,
        request: Request<CreateVolumeGroupSnapshotRequest>,
    ) -> Reply<CreateVolumeGroupSnapshotResponse> {
        let (this, req) = (self.clone(), request.into_inner());
        to_completion("CreateVolumeGroupSnapshot", async move {
            let r = this.create(req).await;
            reply(
                "CreateVolumeGroupSnapshot",
                r.map(|g| CreateVolumeGroupSnapshotResponse {
                    group_snapshot: Some(g),
                }),
            )
        })
        .await
    }

    async fn delete_volume_group_snapshot(
        &self,
        request: Request<DeleteVolumeGroupSnapshotRequest>,
    ) -> Reply<DeleteVolumeGroupSnapshotResponse> {
        let (this, req) = (self.clone(), request.into_inner());
        to_completion("DeleteVolumeGroupSnapshot", async move {
            let r = this.delete(req).await;
            reply(
                "DeleteVolumeGroupSnapshot",
                r.map(|()| DeleteVolumeGroupSnapshotResponse {}),
            )
        })
        .await
    }

    async fn get_volume_group_snapshot(
        &self,
        request: Request<GetVolumeGroupSnapshotRequest>,
    ) -> Reply<GetVolumeGroupSnapshotResponse> {
        let r = self.get(request.into_inner()).await;
        reply(
            "GetVolumeGroupSnapshot",
            r.map(|g| GetVolumeGroupSnapshotResponse {
                group_snapshot: Some(g),
            }),
        )
    }
}
