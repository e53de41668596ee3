//! The driver's shared state, handed to the Identity, Controller and Node services.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::DriverConfig;
use crate::inflight::InFlight;
use crate::nfs::NfsBackend;
use crate::node::mapper::MapperKind;
use crate::rbd::RbdBackend;

/// Which services this process serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Controller only (the Deployment).
    Controller,
    /// Node only (the DaemonSet).
    Node,
    /// Both (standalone runs, conformance suites).
    All,
}

/// Everything a `Driver` is started with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Name reported by GetPluginInfo (the CSIDriver object's name).
    pub name: String,
    /// This node's id.
    pub node_id: String,
    /// Services to serve.
    pub mode: Mode,
    /// Topology segments of this node (NodeGetInfo).
    pub topology: BTreeMap<String, String>,
    /// The driver config file.
    pub config: DriverConfig,
    /// Private directory for short-lived Ceph configs, fuse mounts and stage records.
    pub state_dir: PathBuf,
    /// How nodes map RBD images.
    pub mapper: MapperKind,
    /// Deadline for one RPC's NFS work.
    pub nfs_timeout: Duration,
}

/// Shared state.
pub struct Driver {
    /// Start-up settings.
    pub settings: Settings,
    /// RBD backend.
    pub rbd: RbdBackend,
    /// NFS backend.
    pub nfs: NfsBackend,
    /// Per-volume guard.
    pub inflight: InFlight,
}

impl Driver {
    /// Builds the shared state.
    pub fn new(settings: Settings) -> Arc<Self> {
        let rbd = RbdBackend::new(Arc::new(settings.config.clone()), settings.state_dir.join("run"));
        let nfs = NfsBackend {
            timeout: settings.nfs_timeout,
        };
        Arc::new(Self {
            settings,
            rbd,
            nfs,
            inflight: InFlight::default(),
        })
    }
}
