//! A drill's report: what was restored from which recovery point, every step with its
//! time, the measured RPO (age of the recovery point when the drill started) and RTO (drill
//! start to the application ready), and whether the plan's targets were met.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::failover::data::Verification;
use crate::failover::{Phase, RecoveryPointRef, RunRecord, Step, StepState};

/// One step on the timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimelineStep {
    /// The step's title.
    pub title: String,
    /// `Done`, `Skipped`, `Failed`, `Pending`.
    pub state: String,
    /// Seconds from the drill's start to the step's start.
    pub start_seconds: f64,
    /// How long it took.
    pub duration_seconds: f64,
    /// What it said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The recovery point an application was restored from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryPointUsed {
    /// The application.
    pub application: String,
    /// The snapshot.
    pub snapshot: String,
    /// Its repository.
    pub repository: String,
    /// When it was taken.
    pub time: DateTime<Utc>,
    /// Its age when the drill started: the data a failover then would have lost.
    pub age_seconds: f64,
}

/// A target and whether it was met.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// The objective in seconds (`None`: the plan sets none).
    pub objective_seconds: Option<u64>,
    /// What was measured.
    pub measured_seconds: Option<f64>,
    /// Met (no objective counts as met).
    pub met: bool,
}

impl Target {
    fn new(objective: Option<u64>, measured: Option<f64>) -> Self {
        let met = match (objective, measured) {
            (None, _) => true,
            (Some(o), Some(m)) => m <= o as f64,
            (Some(_), None) => false,
        };
        Self {
            objective_seconds: objective,
            measured_seconds: measured,
            met,
        }
    }
}

/// `federation/drills/<plan>/<run>` and the files `drctl drill` writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillReport {
    /// The run.
    pub run: String,
    /// The plan.
    pub plan: String,
    /// Where the applications ran.
    pub source: Option<String>,
    /// Where the drill restored them.
    pub target: String,
    /// When it started.
    pub started: DateTime<Utc>,
    /// When the applications were ready.
    pub ready: Option<DateTime<Utc>>,
    /// When it ended (after teardown).
    pub finished: Option<DateTime<Utc>>,
    /// Recovery points used.
    pub recovery_points: Vec<RecoveryPointUsed>,
    /// RPO: the oldest recovery point's age.
    pub rpo: Target,
    /// RTO: start to ready.
    pub rto: Target,
    /// Every step.
    pub steps: Vec<TimelineStep>,
    /// What the verification found, per application.
    pub verification: Vec<(String, Verification)>,
    /// Every step passed.
    pub completed: bool,
    /// Completed and every target met.
    pub success: bool,
    /// Notes from the plan (volume data not restored, RPO already missed…).
    pub warnings: Vec<String>,
}

fn state_name(s: StepState) -> &'static str {
    match s {
        StepState::Pending => "Pending",
        StepState::Running => "Running",
        StepState::Done => "Done",
        StepState::Skipped => "Skipped",
        StepState::Failed => "Failed",
    }
}

impl DrillReport {
    /// The report of a finished drill run.
    pub fn from_run(record: &RunRecord) -> Self {
        let started = record.started;
        let secs = |t: DateTime<Utc>| (t - started).num_milliseconds() as f64 / 1000.0;
        let steps = record
            .steps
            .iter()
            .map(|s| TimelineStep {
                title: s.step.title(),
                state: state_name(s.state).to_string(),
                start_seconds: s.started.map(secs).unwrap_or(0.0),
                duration_seconds: match (s.started, s.finished) {
                    (Some(a), Some(b)) => (b - a).num_milliseconds() as f64 / 1000.0,
                    _ => 0.0,
                },
                message: s.message.clone(),
            })
            .collect();
        let mut recovery_points = Vec::new();
        for s in &record.steps {
            if let Step::RestoreObjects {
                application,
                recovery_point: RecoveryPointRef::Snapshot { id, repository, time },
                ..
            } = &s.step
            {
                recovery_points.push(RecoveryPointUsed {
                    application: application.clone(),
                    snapshot: id.clone(),
                    repository: repository.clone(),
                    time: *time,
                    age_seconds: ((started - *time).num_milliseconds() as f64 / 1000.0).max(0.0),
                });
            }
        }
        let verification = record
            .steps
            .iter()
            .filter_map(|s| match (&s.step, s.state) {
                (Step::Verify { application, .. }, StepState::Done) => {
                    serde_json::from_value::<Verification>(s.output["verification"].clone())
                        .ok()
                        .map(|v| (application.clone(), v))
                }
                _ => None,
            })
            .collect();
        let ready = record.ready_at();
        let rpo_measured = recovery_points
            .iter()
            .map(|r| r.age_seconds)
            .fold(None, |m: Option<f64>, a| Some(m.map_or(a, |m| m.max(a))));
        let rpo = Target::new(record.plan.rpo_seconds, rpo_measured);
        let rto = Target::new(record.plan.rto_seconds, record.recovery_seconds());
        let completed = record.phase == Phase::Succeeded;
        Self {
            run: record.id.clone(),
            plan: record.plan.plan.clone(),
            source: record.plan.from.clone(),
            target: record.plan.to.clone(),
            started,
            ready,
            finished: record.finished,
            recovery_points,
            success: completed && rpo.met && rto.met,
            rpo,
            rto,
            steps,
            verification,
            completed,
            warnings: record.plan.warnings.clone(),
        }
    }

    /// Why it did not succeed, in a line (empty when it did).
    pub fn failure(&self) -> String {
        let mut why = Vec::new();
        if let Some(s) = self.steps.iter().find(|s| s.state == "Failed") {
            why.push(format!(
                "{} failed: {}",
                s.title,
                s.message.clone().unwrap_or_default()
            ));
        }
        if !self.rpo.met {
            why.push(format!(
                "RPO missed: {:.1} s > {} s",
                self.rpo.measured_seconds.unwrap_or(f64::NAN),
                self.rpo.objective_seconds.unwrap_or(0)
            ));
        }
        if !self.rto.met {
            why.push(match self.rto.measured_seconds {
                Some(m) => format!(
                    "RTO missed: {m:.1} s > {} s",
                    self.rto.objective_seconds.unwrap_or(0)
                ),
                None => "RTO missed: never ready".to_string(),
            });
        }
        why.join("; ")
    }
}
