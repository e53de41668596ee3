//! The Kubernetes operator: CRDs for backup repositories, backups, cron schedules with
//! retention, and restores, reconciled by idempotent level-based controllers with leader
//! election, status, events and Prometheus metrics.
//!
//! Every reconcile step is a plan computed from observed state, so the controller and
//! `drctl --direct` run the same logic. Nothing is built here yet.
