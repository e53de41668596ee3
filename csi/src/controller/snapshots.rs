//! CreateSnapshot, DeleteSnapshot and ListSnapshots: checked here, done by the backend.
//!
//! RBD snapshots are protected RBD snapshots of the volume's image (`csi-snap-<hash of
//! name>`), so a retry finds the one an interrupted call made. A volume with snapshots cannot
//! be deleted (FAILED_PRECONDITION), as the spec allows for snapshots that are not independent.
//! NFS snapshots are full copies, so they are independent. Members of a volume group snapshot
//! are listed and restored like any snapshot, and deleted with their group.

use crate::controller::ControllerService;
use crate::controller::backend::{SnapshotQuery, VolumeBackend};
use crate::controller::errors::SnapshotOpError;
use crate::controller::paging;
use crate::error::{CsiError, invalid};
use crate::ids::{SnapshotId, VolumeId};
use crate::proto::*;

type Result<T> = std::result::Result<T, SnapshotOpError>;

impl ControllerService {
    pub(super) async fn create_snapshot_impl(
        &self,
        req: CreateSnapshotRequest,
    ) -> Result<CreateSnapshotResponse> {
        const OP: &str = "CreateSnapshot";
        let request = |source| SnapshotOpError::Request {
            op: OP,
            object: req.name.clone(),
            source,
        };
        if req.name.is_empty() {
            return Err(request(invalid("name is required")));
        }
        if req.source_volume_id.is_empty() {
            return Err(request(invalid("source_volume_id is required")));
        }
        let no_source = || SnapshotOpError::NoSource {
            op: OP,
            object: req.name.clone(),
            volume: req.source_volume_id.clone(),
        };
        let volume = VolumeId::parse(&req.source_volume_id).map_err(|_| no_source())?;
        let in_flight = |_| SnapshotOpError::InFlight {
            op: OP,
            object: req.name.clone(),
        };
        let _guard = self
            .driver
            .inflight
            .claim(format!("snapshot/{}", req.name))
            .map_err(in_flight)?;
        let _vol_guard = self
            .driver
            .inflight
            .claim(req.source_volume_id.clone())
            .map_err(in_flight)?;
        let snapshot = match &volume {
            VolumeId::Rbd(v) => self.rbd.create_snapshot(v, &req.name, &req.secrets).await,
            VolumeId::Nfs(v) => self.nfs.create_snapshot(v, &req.name, &req.secrets).await,
        }
        .map_err(|source| match source {
            CsiError::NotFound(_) => no_source(),
            source => SnapshotOpError::Backend {
                op: OP,
                object: req.name.clone(),
                source,
            },
        })?;
        Ok(CreateSnapshotResponse {
            snapshot: Some(snapshot),
        })
    }

    pub(super) async fn delete_snapshot_impl(
        &self,
        req: DeleteSnapshotRequest,
    ) -> Result<DeleteSnapshotResponse> {
        const OP: &str = "DeleteSnapshot";
        if req.snapshot_id.is_empty() {
            return Err(SnapshotOpError::Request {
                op: OP,
                object: String::new(),
                source: invalid("snapshot_id is required"),
            });
        }
        // An id this driver cannot have made names no snapshot: nothing to delete.
        let Ok(id) = SnapshotId::parse(&req.snapshot_id) else {
            return Ok(DeleteSnapshotResponse {});
        };
        let _guard =
            self.driver
                .inflight
                .claim(req.snapshot_id.clone())
                .map_err(|_| SnapshotOpError::InFlight {
                    op: OP,
                    object: req.snapshot_id.clone(),
                })?;
        match &id.volume {
            VolumeId::Rbd(v) => self.rbd.delete_snapshot(v, &id.name, &req.secrets).await,
            VolumeId::Nfs(v) => self.nfs.delete_snapshot(v, &id.name, &req.secrets).await,
        }
        .map_err(|source| SnapshotOpError::Backend {
            op: OP,
            object: req.snapshot_id.clone(),
            source,
        })?;
        Ok(DeleteSnapshotResponse {})
    }

    pub(super) async fn list_snapshots_impl(
        &self,
        req: ListSnapshotsRequest,
    ) -> Result<ListSnapshotsResponse> {
        const OP: &str = "ListSnapshots";
        let request = |source| SnapshotOpError::Request {
            op: OP,
            object: req.starting_token.clone(),
            source,
        };
        paging::check_max(req.max_entries).map_err(request)?;
        let after =
            paging::decode_token(&req.starting_token, |t| SnapshotId::parse(t).is_ok()).map_err(request)?;
        let backend = |source| SnapshotOpError::Backend {
            op: OP,
            object: format!("{}{}", req.snapshot_id, req.source_volume_id),
            source,
        };
        let mut all: Vec<Snapshot> = Vec::new();
        if !req.snapshot_id.is_empty() {
            // One snapshot: an id this driver could not have made simply lists nothing.
            if let Ok(id) = SnapshotId::parse(&req.snapshot_id) {
                let found = match &id.volume {
                    VolumeId::Rbd(v) => {
                        self.rbd
                            .snapshots(SnapshotQuery::One(v, &id.name), &req.secrets)
                            .await
                    }
                    VolumeId::Nfs(v) => {
                        self.nfs
                            .snapshots(SnapshotQuery::One(v, &id.name), &req.secrets)
                            .await
                    }
                };
                all.extend(found.map_err(backend)?);
            }
        } else if !req.source_volume_id.is_empty() {
            if let Ok(volume) = VolumeId::parse(&req.source_volume_id) {
                let found = match &volume {
                    VolumeId::Rbd(v) => self.rbd.snapshots(SnapshotQuery::Of(v), &req.secrets).await,
                    VolumeId::Nfs(v) => self.nfs.snapshots(SnapshotQuery::Of(v), &req.secrets).await,
                };
                all.extend(found.map_err(backend)?);
            }
        } else {
            all.extend(
                self.rbd
                    .snapshots(SnapshotQuery::All, &req.secrets)
                    .await
                    .map_err(backend)?,
            );
            all.extend(
                self.nfs
                    .snapshots(SnapshotQuery::All, &req.secrets)
                    .await
                    .map_err(backend)?,
            );
        }
        all.sort_by(|a, b| a.snapshot_id.cmp(&b.snapshot_id));
        let (page, next) =
            paging::paginate(all, after.as_deref(), req.max_entries, |s| s.snapshot_id.clone());
        Ok(ListSnapshotsResponse {
            entries: page
                .into_iter()
                .map(|s| list_snapshots_response::Entry { snapshot: Some(s) })
                .collect(),
            next_token: next,
        })
    }
}
