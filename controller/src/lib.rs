//! The Kubernetes side of Lifeboat: CRDs for backup repositories, backups, cron schedules
//! with retention and restores; the backup and restore of Kubernetes objects; and the
//! operator that reconciles them.
//!
//! Every step is a plan computed from observed state by a plain function (`objects::restore::plan`,
//! `schedule::next_step`…) and applied by a small executor, so the controller and
//! `drctl --direct` do the same thing in the same way.

pub mod crd;
pub mod objects;
pub mod repository;
