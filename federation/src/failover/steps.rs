//! The steps a failover, failback, relocate or drill is made of: plain data, so a plan can be
//! printed (`--dry-run`), recorded, resumed and asserted on.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What kind of run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Unplanned: the holder is gone; restore on a standby from the newest recovery point.
    Failover,
    /// Planned, back to the plan's primary: quiesce, final backup, restore, switch, fence.
    Failback,
    /// Planned, to any cluster of the plan: as failback.
    Relocate,
    /// A rehearsal in isolation: restore, measure, verify, tear down; nothing else changes.
    Drill,
}

impl Kind {
    /// `failover`, `failback`, `relocate`, `drill`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Failover => "failover",
            Kind::Failback => "failback",
            Kind::Relocate => "relocate",
            Kind::Drill => "drill",
        }
    }

    /// Whether the source is quiesced and backed up one last time first.
    pub fn planned(self) -> bool {
        matches!(self, Kind::Failback | Kind::Relocate)
    }
}

/// Which recovery point a restore uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "from")]
pub enum RecoveryPointRef {
    /// A snapshot chosen when planning.
    Snapshot {
        /// Snapshot id (hex).
        id: String,
        /// The repository it is in.
        repository: String,
        /// When it was taken.
        time: DateTime<Utc>,
    },
    /// The snapshot the run's final backup of this application writes.
    FinalBackup,
}

/// One step. Each is idempotent: running it again after a crash does no harm. Stored and
/// printed in camelCase like every other field of a run (records written before this read
/// their snake_case fields through the aliases).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase", tag = "step")]
pub enum Step {
    /// Check the target answers, and (drills) that the namespaces it restores into are free.
    Preflight {
        /// The target.
        cluster: String,
        /// Namespaces the run restores into there.
        namespaces: Vec<String>,
        /// Refuse if any of them exists (drills restore in isolation).
        isolated: bool,
    },
    /// Scale the application to zero on the source and wait until it stopped writing.
    Quiesce {
        /// The source.
        cluster: String,
        /// The application.
        application: String,
    },
    /// A last incremental backup of the quiesced application on the source.
    FinalBackup {
        /// The source.
        cluster: String,
        /// The application.
        application: String,
    },
    /// Take the fencing lease over for the target (epoch + 1), and mark the target's
    /// repositories so nothing backs the application up there until it is ready.
    Fence {
        /// The application.
        application: String,
        /// The holder being fenced.
        from: Option<String>,
        /// The new holder.
        to: String,
    },
    /// Stop the application on the (reachable) old holder and mark its repositories.
    StopSource {
        /// The old holder.
        cluster: String,
        /// The application.
        application: String,
    },
    /// Blocklist the old holder's nodes at its Ceph.
    Blocklist {
        /// The old holder.
        cluster: String,
    },
    /// Lift a blocklist left on the target by an earlier failover away from it.
    Unblocklist {
        /// The target.
        cluster: String,
    },
    /// Restore the application's objects.
    RestoreObjects {
        /// The application.
        application: String,
        /// The target.
        cluster: String,
        /// Which recovery point.
        #[serde(alias = "recovery_point")]
        recovery_point: RecoveryPointRef,
        /// Namespace on the primary → on the target.
        #[serde(alias = "namespace_mapping")]
        namespace_mapping: BTreeMap<String, String>,
        /// StorageClass on the primary → on the target.
        #[serde(alias = "storage_class_mapping")]
        storage_class_mapping: BTreeMap<String, String>,
        /// A drill: leave out Lifeboat's own resources (its Schedules must not start
        /// backing the copy up) and never touch existing objects.
        drill: bool,
        /// Write the claims' volume data first (into new images or NFS directories of the
        /// target's StorageClasses), each claim then bound to its new volume.
        #[serde(default)]
        volumes: bool,
    },
    /// Scale workloads that Lifeboat scaled down back to their recorded replicas.
    StartWorkloads {
        /// The target.
        cluster: String,
        /// The application.
        application: String,
        /// Its namespaces there.
        namespaces: Vec<String>,
    },
    /// Wait for the readiness gates.
    WaitReady {
        /// The target.
        cluster: String,
        /// The application.
        application: String,
        /// Its namespaces there.
        namespaces: Vec<String>,
    },
    /// Move traffic through one hook.
    SwitchTraffic {
        /// The hook's name.
        hook: String,
        /// The old holder.
        from: Option<String>,
        /// The target.
        to: String,
    },
    /// Lift the target's fencing marks: it may back the application up again.
    Unfence {
        /// The target.
        cluster: String,
        /// The application.
        application: String,
    },
    /// Drills with volume data: before any workload starts on it (a database writes as it
    /// starts, a filesystem as it mounts), check each restored claim is bound to a volume
    /// written from the recovery point and read its data back against the volume snapshot.
    /// Its time is left out of the measured RTO: a failover does not do it.
    VerifyVolumes {
        /// The target.
        cluster: String,
        /// The application.
        application: String,
    },
    /// Drills: compare what was restored with the recovery point.
    Verify {
        /// The target.
        cluster: String,
        /// The application.
        application: String,
    },
    /// Drills: delete the namespaces the drill created, and the volumes written into them.
    Teardown {
        /// The target.
        cluster: String,
        /// The namespaces.
        namespaces: Vec<String>,
    },
    /// Planned moves, only when the run failed before the application's lease moved: start
    /// the application again on the source its quiesce stopped, so a move that cannot finish
    /// leaves it running where it was (nothing was fenced, nothing restored elsewhere).
    RestartSource {
        /// The source.
        cluster: String,
        /// The application.
        application: String,
    },
}

impl Step {
    /// A short line for progress output.
    pub fn title(&self) -> String {
        match self {
            Step::Preflight { cluster, .. } => format!("preflight {cluster}"),
            Step::Quiesce { cluster, application } => format!("quiesce {application} on {cluster}"),
            Step::FinalBackup { cluster, application } => {
                format!("final backup of {application} on {cluster}")
            }
            Step::Fence {
                application,
                from,
                to,
            } => match from {
                Some(f) => format!("fence {application}: {f} → {to}"),
                None => format!("fence {application}: → {to}"),
            },
            Step::StopSource { cluster, application } => format!("stop {application} on {cluster}"),
            Step::Blocklist { cluster } => format!("blocklist {cluster}'s RBD clients"),
            Step::Unblocklist { cluster } => format!("lift the blocklist of {cluster}"),
            Step::RestoreObjects {
                application,
                cluster,
                volumes,
                ..
            } => match volumes {
                true => format!("restore {application} objects and volume data on {cluster}"),
                false => format!("restore {application} objects on {cluster}"),
            },
            Step::StartWorkloads {
                cluster, application, ..
            } => format!("start {application} on {cluster}"),
            Step::WaitReady {
                cluster, application, ..
            } => format!("wait for {application} ready on {cluster}"),
            Step::SwitchTraffic { hook, to, .. } => format!("switch traffic ({hook}) to {to}"),
            Step::Unfence { cluster, application } => format!("unfence {application} on {cluster}"),
            Step::VerifyVolumes { cluster, application } => {
                format!("read back {application} volume data on {cluster}")
            }
            Step::Verify { cluster, application } => format!("verify {application} on {cluster}"),
            Step::Teardown { cluster, .. } => format!("tear down on {cluster}"),
            Step::RestartSource { cluster, application } => {
                format!("restart {application} on {cluster} if the move failed before fencing")
            }
        }
    }

    /// Steps that undo or clean up, run even after a step failed for good: a drill's
    /// teardown, a planned move's restart of its source.
    pub fn runs_after_failure(&self) -> bool {
        matches!(self, Step::Teardown { .. } | Step::RestartSource { .. })
    }

    /// Steps that count towards RTO end with the application ready.
    pub fn ends_recovery(&self) -> bool {
        matches!(self, Step::WaitReady { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_camel_case_and_read_records_written_in_snake_case() {
        let step = Step::RestoreObjects {
            application: "shop".into(),
            cluster: "c2".into(),
            recovery_point: RecoveryPointRef::FinalBackup,
            namespace_mapping: BTreeMap::from([("shop".into(), "shop-drill".into())]),
            storage_class_mapping: BTreeMap::from([("fast".into(), "standard".into())]),
            drill: true,
            volumes: false,
        };
        let json = serde_json::to_value(&step).expect("serialize");
        for field in ["recoveryPoint", "namespaceMapping", "storageClassMapping"] {
            assert!(json.get(field).is_some(), "{field} missing: {json}");
        }
        assert_eq!(json["step"], "restoreObjects");
        let old = serde_json::json!({
            "step": "restoreObjects", "application": "shop", "cluster": "c2",
            "recovery_point": {"from": "finalBackup"},
            "namespace_mapping": {"shop": "shop-drill"},
            "storage_class_mapping": {"fast": "standard"},
            "drill": true
        });
        assert_eq!(serde_json::from_value::<Step>(old).expect("old record"), step);
    }
}
