//! Serving the CSI services on a unix socket, to any gRPC client (see [`authority`]).

pub mod authority;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnixListenerStream;

use crate::controller::ControllerService;
use crate::controller::group::GroupControllerService;
use crate::driver::{Driver, Mode};
use crate::error::{CsiError, Result};
use crate::identity::IdentityService;
use crate::node::NodeService;
use crate::proto::controller_server::ControllerServer;
use crate::proto::group_controller_server::GroupControllerServer;
use crate::proto::identity_server::IdentityServer;
use crate::proto::node_server::NodeServer;

/// Turns `unix:///csi/csi.sock` (or a bare path) into a path.
pub fn socket_path(endpoint: &str) -> Result<PathBuf> {
    let path = endpoint
        .strip_prefix("unix://")
        .or_else(|| endpoint.strip_prefix("unix:"))
        .unwrap_or(endpoint);
    if !path.starts_with('/') {
        return Err(CsiError::InvalidArgument(format!(
            "endpoint {endpoint:?}: want unix:///absolute/path"
        )));
    }
    Ok(PathBuf::from(path))
}

/// Serves until `shutdown` resolves. A stale socket file from an earlier run is replaced.
pub async fn serve(
    driver: Arc<Driver>,
    socket: &Path,
    shutdown: impl Future<Output = ()> + Send,
) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
    if socket.exists() {
        std::fs::remove_file(socket)?;
    }
    if let Some(parent) = socket.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let listener = tokio::net::UnixListener::bind(socket)?;
    let mode = driver.settings.mode;
    let mut router = tonic::transport::Server::builder().add_service(IdentityServer::new(IdentityService {
        driver: driver.clone(),
    }));
    if mode != Mode::Node {
        let controller = ControllerService::new(driver.clone());
        router = router
            .add_service(ControllerServer::new(controller.clone()))
            .add_service(GroupControllerServer::new(GroupControllerService { controller }));
    }
    if mode != Mode::Controller {
        router = router.add_service(NodeServer::new(NodeService {
            driver: driver.clone(),
        }));
    }
    tracing::info!(socket = %socket.display(), ?mode, name = %driver.settings.name, "serving CSI");
    router
        .serve_with_incoming_shutdown(
            UnixListenerStream::new(listener).map(|conn| conn.map(authority::AnyAuthority::new)),
            shutdown,
        )
        .await?;
    Ok(())
}
