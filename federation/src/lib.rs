//! Multi-cluster disaster recovery: the registry of clusters and their health, replication of
//! backups between clouds, failover plans, fencing, and failover drills that measure RPO and
//! RTO.
//!
//! Failover plans are data computed by pure functions and applied by a small executor, so
//! `drctl failover --dry-run` prints exactly what would run. Nothing is built here yet; the
//! crate exists so the workspace shows the shape the later issues fill.
