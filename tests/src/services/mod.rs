//! Real services on loopback: etcd per test, Ceph (RBD + RGW) and NFS shared per run.

pub mod azurite;
pub mod ceph;
pub mod etcd;
pub mod nfs;
pub mod stale_watches;
