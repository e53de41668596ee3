//! The CSI Identity service: name, capabilities, and a Probe that really asks the backends.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::driver::{Driver, Mode};
use crate::proto::identity_server::Identity;
use crate::proto::plugin_capability::{self, service, volume_expansion};
use crate::proto::*;

/// The Identity service.
#[derive(Clone)]
pub struct IdentityService {
    /// Shared state.
    pub driver: Arc<Driver>,
}

impl IdentityService {
    /// Checks every configured backend: each Ceph cluster answers a connect (with the
    /// configured user) or at least accepts a TCP connection on a monitor; each NFS export
    /// mounts and lists.
    async fn probe_backends(&self) -> Result<(), String> {
        for c in &self.driver.settings.config.rbd {
            if c.user.is_some() {
                self.driver
                    .rbd
                    .connect_readonly(&c.cluster_id)
                    .await
                    .map_err(|e| e.to_string())?;
            } else {
                let reachable = futures_any(&c.monitors).await;
                if !reachable {
                    return Err(format!(
                        "no monitor of cluster {} accepts connections",
                        c.cluster_id
                    ));
                }
            }
        }
        for n in &self.driver.settings.config.nfs {
            self.driver
                .nfs
                .probe(&n.server, &n.share)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

async fn futures_any(monitors: &[String]) -> bool {
    for m in monitors {
        let addr = m.trim_start_matches("v2:").trim_start_matches("v1:");
        let connect = tokio::net::TcpStream::connect(addr);
        if let Ok(Ok(_)) = tokio::time::timeout(std::time::Duration::from_secs(3), connect).await {
            return true;
        }
    }
    false
}

#[tonic::async_trait]
impl Identity for IdentityService {
    async fn get_plugin_info(
        &self,
        _request: Request<GetPluginInfoRequest>,
    ) -> Result<Response<GetPluginInfoResponse>, Status> {
        Ok(Response::new(GetPluginInfoResponse {
            name: self.driver.settings.name.clone(),
            vendor_version: env!("CARGO_PKG_VERSION").to_string(),
            manifest: Default::default(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _request: Request<GetPluginCapabilitiesRequest>,
    ) -> Result<Response<GetPluginCapabilitiesResponse>, Status> {
        let service = |t: service::Type| PluginCapability {
            r#type: Some(plugin_capability::Type::Service(plugin_capability::Service {
                r#type: t as i32,
            })),
        };
        let mut caps = vec![service(service::Type::VolumeAccessibilityConstraints)];
        if self.driver.settings.mode != Mode::Node {
            caps.push(service(service::Type::ControllerService));
            caps.push(service(service::Type::GroupControllerService));
        }
        caps.push(PluginCapability {
            r#type: Some(plugin_capability::Type::VolumeExpansion(
                plugin_capability::VolumeExpansion {
                    r#type: volume_expansion::Type::Online as i32,
                },
            )),
        });
        Ok(Response::new(GetPluginCapabilitiesResponse {
            capabilities: caps,
        }))
    }

    async fn probe(&self, _request: Request<ProbeRequest>) -> Result<Response<ProbeResponse>, Status> {
        match self.probe_backends().await {
            Ok(()) => Ok(Response::new(ProbeResponse { ready: Some(true) })),
            Err(e) => Err(Status::failed_precondition(format!("backend not ready: {e}"))),
        }
    }
}
