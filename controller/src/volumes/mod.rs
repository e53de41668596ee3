//! Volume data in Kubernetes backups: which claims' data a Backup takes ([`plan`]), where a
//! restore writes it ([`restore_plan`]), and the Kubernetes glue that reads their credentials
//! and runs `lifeboat-volume` on each RBD image.
//! The engine and the volume crate know nothing of Kubernetes; this module is where the two
//! meet. Design: docs/volumes.md.

pub mod catalog;
pub mod ceph;
pub mod handle;
pub mod hooks;
pub mod plan;
mod remove;
mod restore;
mod restore_nfs;
pub mod restore_plan;
mod take;

pub use crate::label_selector::{LabelSelector, SelectorError};
pub use catalog::{
    CATALOG_PATH, CatalogEntry, EtcdPoint, RecoveryPoint, VolumeCatalog, VolumeOutcome, cataloged_snapshots,
    read_backup_volumes, read_catalog,
};
pub use ceph::CephAccess;
pub use handle::{CsiVolume, RbdImage, classify};
pub use plan::{ClaimPlan, Decision, RbdTake, SecretRef, VolumeSelector, plan_volumes};
pub use remove::{RemovalOutcome, RestoredRef, VolumeRemoval, remove_restored_volumes};
pub use restore::{RestoredOutcome, RestoredVolume, VolumeRestoreRequest, restore_with_volumes};
pub use restore_nfs::NfsWrite;
pub use restore_plan::{BackupVolumes, RestoreAction, TargetCluster, VolumeRestorePlan, plan_volume_restore};
pub use take::{CLAIM_TAG, VolumeRequest, backup_with_volumes, read_plans, take_volumes};
