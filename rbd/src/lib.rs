//! Safe access to Ceph RBD images through librados and librbd.
//!
//! Both the CSI driver (provisioning) and the backup engine's PV data mover (changed-extent
//! diffs between snapshots) need librbd; this crate is the one place that holds its FFI, so
//! every `unsafe` block in Lifeboat that touches Ceph lives here, next to its `SAFETY` note.
//!
//! All calls block; async callers run them on `tokio::task::spawn_blocking`.

mod abort;
mod aio;
mod cls;
mod cluster;
mod connect;
mod error;
mod ffi;
mod group;
mod image;
mod rados;
mod rados_objects;
mod trash;
mod watchers;

pub use abort::report_aborts;
pub use aio::AioWriter;
pub use cls::TrashState;
pub use cluster::{Cluster, Pool, split_pool_spec};
pub use error::RbdError;
pub use group::{GroupImage, GroupSnapshot, SnapshotNamespace};
pub use image::{Extent, Image, ImageInfo, ImageOptions, Snapshot, SnapshotRef, features};
pub use trash::{TrashEntry, TrashSource};
pub use watchers::{Locker, Watcher};
