//! The Kubernetes side of Lifeboat: CRDs for backup repositories, backups, cron schedules
//! with retention and restores; the backup and restore of Kubernetes objects; and the
//! operator that reconciles them.
//!
//! Every step is a plan computed from observed state by a plain function (`kube_objects::restore::objects_plan`,
//! `reconcile::schedule::next_step::next_step`…) and applied by a small executor, so the controller and
//! `drctl --direct` do the same thing in the same way.

pub mod config;
pub mod crd;
pub mod error;
pub mod fence;
pub mod http;
pub mod kube_objects;
pub mod label_selector;
pub mod leader;
pub mod metrics;
mod process;
pub mod reconcile;
pub mod repository;
pub mod volumes;
pub mod wait;

pub use config::Config;
pub use error::Error;
pub use process::run;

/// The Lease the elected controller holds; drctl reads it to tell whether a controller runs.
pub const LEASE_NAME: &str = "lifeboat-controller";
/// The controller's namespace when `POD_NAMESPACE` is not set.
pub const DEFAULT_NAMESPACE: &str = "lifeboat-system";
/// Finalizer on Backups whose deletion removes their snapshot.
pub const BACKUP_FINALIZER: &str = "lifeboat.dev/snapshot-cleanup";
/// Label on Backups a Schedule created, naming the Schedule.
pub const SCHEDULE_LABEL: &str = "lifeboat.dev/schedule";
/// Label on Backups that backup sync created from a repository (value `true`); such Backups
/// are never run, only restored from.
pub const SYNCED_LABEL: &str = "lifeboat.dev/synced";
/// Label on synced Backups naming the BackupRepository they were found in.
pub const SYNCED_FROM_LABEL: &str = "lifeboat.dev/synced-from";
