//! Test support for Lifeboat's integration suite: real etcd, Ceph (RBD and RGW S3) and
//! nfs-ganesha started from Debian packages on loopback, on free ports, in temporary
//! directories; and a Kubernetes API server for tests ([`kube::TestCluster`]) that switches to
//! a real kube-apiserver when the environment names one.
//!
//! Nothing shipped depends on this crate; it depends on the shipped crates.
//!
//! ```no_run
//! let ceph = lifeboat_tests::ceph()?;            // shared by the whole run
//! let bucket = ceph.rgw().new_bucket("smoke")?;  // private to this test
//! let etcd = lifeboat_tests::Etcd::start_tls()?; // private, stopped on drop
//! # Ok::<(), lifeboat_tests::HarnessError>(())
//! ```

pub mod bench;
pub mod csi;
pub mod fault_proxy;
pub mod faults;
pub mod files;
pub mod helm;
pub mod kube;
pub mod players;
pub mod poll;
pub mod process;
pub mod repos;
mod s3;
pub mod secret_scan;
pub mod services;
pub mod shared;
pub mod volumes;

use std::sync::atomic::{AtomicU32, Ordering};

pub use services::azurite::{Azurite, azurite};
pub use services::ceph::{Ceph, OsdsPaused, Rgw, ceph, unreachable_conf};
pub use services::etcd::{Etcd, EtcdTls};
pub use services::nfs::{Nfs, NfsDir, nfs, write_over_nfs};
pub use services::stale_watches::StaleWatch;

/// Why a test service could not be started or used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HarnessError {
    /// A service did not come up; the log tail says why.
    #[error("test service {service} failed to start: {reason}\n{log_tail}")]
    Start {
        /// Which service (`ceph-osd`, `etcd`, `nfs-ganesha`…).
        service: String,
        /// What went wrong.
        reason: String,
        /// The last lines of its logs.
        log_tail: String,
    },
    /// A local file operation of the harness failed.
    #[error("test harness: {what}: {message}")]
    Io {
        /// What the harness was doing.
        what: String,
        /// The OS error.
        message: String,
    },
}

impl HarnessError {
    pub(crate) fn io(what: impl Into<String>, e: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            message: e.to_string(),
        }
    }
}

static NAME_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique across the processes of a run: `prefix-PID-N`, valid as a pool, bucket or
/// directory name.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NAME_COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A Service node port unlikely to be taken on a shared cluster: 30000–32699, hashed from a
/// [`unique_name`], so each call (and each process) draws another.
pub fn some_node_port() -> u16 {
    let h = unique_name("port")
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    30000 + (h % 2700) as u16
}
