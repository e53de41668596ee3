//! Multi-cluster disaster recovery with no hub to lose: the registry of clusters and their
//! health, epoch-fenced leases per application, failover / failback / relocate plans, and
//! drills that measure RPO and RTO.
//!
//! All federation state lives in the repositories the plans name ([`state`]), so an operator
//! with kubeconfigs and repository access can run a whole failover from a laptop, and the
//! agent in each cluster ([`agent`]) runs the continuous parts — health probes, fencing,
//! scheduled drills — without needing any other cluster. Runs are data: a pure
//! [`failover::run_plan::plan`], an explicit state machine ([`failover::machine`]) and a small
//! executor ([`failover::execute`]).
//!
//! The crate depends on `lifeboat-controller` (object backup and restore, the CRD types, the
//! repository access, leader election) and never the other way round; the controller only
//! knows the fencing mark federation leaves on a BackupRepository
//! (`lifeboat_controller::fence`).

pub mod advice;
pub mod agent;
pub mod audit;
pub mod clusters;
pub mod crd;
pub mod drill;
pub mod failover;
pub mod fence;
pub mod health;
pub mod metrics;
pub mod state;
