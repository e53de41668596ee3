//! GetCapacity: how much a new volume could take.
//!
//! - With a StorageClass's parameters: that pool's `max_avail` (RBD) or the export's free
//!   bytes (NFS).
//! - Without parameters: everything the driver config names, summed over independent backends:
//!   each Ceph cluster once (its configured pools share its OSDs, so the largest of their
//!   `max_avail`), plus each configured NFS export's free bytes.
//! - With `accessible_topology`: only backends reachable from there (see [`super::topology`]).
//! - With capabilities the backend cannot provide: 0.

use crate::controller::ControllerService;
use crate::controller::backend::VolumeBackend;
use crate::controller::backend_of;
use crate::controller::checks::{Backend, unsupported};
use crate::controller::errors::InventoryError;
use crate::proto::{GetCapacityRequest, GetCapacityResponse};

const OP: &str = "GetCapacity";

/// Answers GetCapacity.
pub async fn get_capacity(
    svc: &ControllerService,
    req: GetCapacityRequest,
) -> Result<GetCapacityResponse, InventoryError> {
    let request = |source| InventoryError::Request { op: OP, source };
    let at = req.accessible_topology.as_ref();
    let available = if req.parameters.is_empty() {
        let rbd_fits = req.volume_capabilities.is_empty()
            || unsupported(Backend::Rbd, &req.volume_capabilities)
                .map_err(request)?
                .is_none();
        let nfs_fits = req.volume_capabilities.is_empty()
            || unsupported(Backend::Nfs, &req.volume_capabilities)
                .map_err(request)?
                .is_none();
        let mut total = 0u64;
        if rbd_fits {
            total = total.saturating_add(svc.rbd.available(None, at).await.map_err(|source| {
                InventoryError::Backend {
                    op: OP,
                    backend: "Ceph clusters".into(),
                    source,
                }
            })?);
        }
        if nfs_fits {
            total = total.saturating_add(svc.nfs.available(None, at).await.map_err(|source| {
                InventoryError::Backend {
                    op: OP,
                    backend: "NFS exports".into(),
                    source,
                }
            })?);
        }
        total
    } else {
        let backend = backend_of(&req.parameters).map_err(request)?;
        if !req.volume_capabilities.is_empty()
            && unsupported(backend, &req.volume_capabilities)
                .map_err(request)?
                .is_some()
        {
            return Ok(GetCapacityResponse::default());
        }
        let (what, r) = match backend {
            Backend::Rbd => (
                "the StorageClass's pool",
                svc.rbd.available(Some(&req.parameters), at).await,
            ),
            Backend::Nfs => (
                "the StorageClass's export",
                svc.nfs.available(Some(&req.parameters), at).await,
            ),
        };
        r.map_err(|source| match source {
            crate::error::CsiError::InvalidArgument(_) => request(source),
            source => InventoryError::Backend {
                op: OP,
                backend: what.into(),
                source,
            },
        })?
    };
    Ok(GetCapacityResponse {
        available_capacity: i64::try_from(available).unwrap_or(i64::MAX),
        ..Default::default()
    })
}
