//! A CSI (spec v1) driver provisioning Ceph RBD and NFS volumes for StorageClasses: create and
//! delete, expansion, snapshots, clones, topology, capacity, and node stage/publish.
//!
//! The driver stands alone: it runs on nodes without the backup controller and shares nothing
//! with it except the librbd bindings in `lifeboat-rbd`. Nothing is built here yet.
