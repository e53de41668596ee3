//! A CSI (spec v1) driver provisioning Ceph RBD and NFS volumes for StorageClasses: create and
//! delete, expansion, snapshots, clones, topology, capacity, and node stage/publish.
//!
//! The driver stands alone: it runs on nodes without the backup controller and shares nothing
//! with it except the librbd bindings in `lifeboat-rbd`. One driver name serves both
//! backends; a StorageClass picks one with the `backend` parameter (`rbd` or `nfs`), and
//! every volume id starts with its backend, so later calls need no parameters.
#![deny(unsafe_code)]

pub mod cli;
pub mod config;
pub mod controller;
pub mod driver;
pub mod error;
pub mod identity;
pub mod ids;
pub mod inflight;
pub mod nfs;
pub mod node;
pub mod rbd;
pub mod secrets;
pub mod server;

/// Generated CSI v1 messages, servers and clients.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("csi.v1");
}
