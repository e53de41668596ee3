//! A run as an explicit state machine, recorded after every transition so it can be resumed
//! from any point: `Running` steps through the plan, each step `Pending → Running → Done`
//! (or `Skipped`, or `Failed` and retried), until the run is `Succeeded` or `Failed`.
//! Every function here is pure; [`super::execute`] does the IO and records each new state.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::run_plan::Plan;
use super::steps::Step;
use crate::crd::FailoverPlanSpec;

/// Attempts a step gets before the run fails.
pub const MAX_ATTEMPTS: u32 = 3;
/// A run whose owner has not written for this long may be resumed by someone else.
pub const STALE_AFTER_SECS: i64 = 60;

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Steps remain.
    Running,
    /// Every step is done.
    Succeeded,
    /// A step failed for good; the run can be resumed once the cause is fixed.
    Failed,
}

/// Where a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepState {
    /// Not started.
    Pending,
    /// Started and not recorded as finished (an owner that crashed here leaves it so; the
    /// step is idempotent and runs again).
    Running,
    /// Finished.
    Done,
    /// Not needed or not possible, with why.
    Skipped,
    /// Failed; retried until [`MAX_ATTEMPTS`].
    Failed,
}

/// One step and what happened to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepRecord {
    /// The step.
    pub step: Step,
    /// Its state.
    pub state: StepState,
    /// Times it was started.
    pub attempts: u32,
    /// When the last attempt started.
    pub started: Option<DateTime<Utc>>,
    /// When it finished.
    pub finished: Option<DateTime<Utc>>,
    /// What happened, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// What it produced (the epoch written, the snapshot restored, counts…).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub output: Value,
}

impl StepRecord {
    /// `step`, not started yet.
    pub fn pending(step: Step) -> Self {
        Self {
            step,
            state: StepState::Pending,
            attempts: 0,
            started: None,
            finished: None,
            message: None,
            output: Value::Null,
        }
    }
}

/// `federation/runs/<id>`: a run and its progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    /// The run id (`<kind>-<plan>-<time>`).
    pub id: String,
    /// The plan as computed at the start.
    pub plan: Plan,
    /// The FailoverPlan's namespace (for Events).
    pub plan_namespace: String,
    /// The FailoverPlan's spec as it was when the run started.
    pub spec: FailoverPlanSpec,
    /// One record per step of `plan.steps`.
    pub steps: Vec<StepRecord>,
    /// Where the run is.
    pub phase: Phase,
    /// When it started.
    pub started: DateTime<Utc>,
    /// When it ended.
    pub finished: Option<DateTime<Utc>>,
    /// Who runs it now.
    pub owner: String,
    /// The owner's last write.
    pub heartbeat: DateTime<Utc>,
    /// Bumped on every write: the newest copy wins.
    pub revision: u64,
}

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Run step `i`.
    Run(usize),
    /// The run is over.
    Finish(Phase),
}

/// Why a run cannot be resumed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResumeError {
    /// Already finished.
    #[error("run {run} already succeeded at {finished}")]
    Finished {
        /// The run.
        run: String,
        /// When.
        finished: String,
    },
    /// Another process is running it.
    #[error(
        "run {run} is being run by {owner} (last heard from {age} s ago); wait for it, or resume after \
         {STALE_AFTER_SECS} s of silence"
    )]
    Busy {
        /// The run.
        run: String,
        /// Its owner.
        owner: String,
        /// Seconds since its last write.
        age: i64,
    },
}

impl RunRecord {
    /// A new run of `plan`.
    pub fn new(
        id: String,
        plan: Plan,
        namespace: &str,
        spec: FailoverPlanSpec,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Self {
        let steps = plan
            .steps
            .iter()
            .map(|s| StepRecord::pending(s.clone()))
            .collect();
        Self {
            id,
            plan,
            plan_namespace: namespace.to_string(),
            spec,
            steps,
            phase: Phase::Running,
            started: now,
            finished: None,
            owner: owner.to_string(),
            heartbeat: now,
            revision: 0,
        }
    }

    /// The next thing to do. After a step failed for good only the steps that clean up or
    /// undo still run ([`Step::runs_after_failure`]: a drill's teardown, a planned move's
    /// restart of its source), then the run fails.
    pub fn next(&self) -> Next {
        if self.phase != Phase::Running {
            return Next::Finish(self.phase);
        }
        let mut failed = false;
        for (i, s) in self.steps.iter().enumerate() {
            match s.state {
                StepState::Done | StepState::Skipped => continue,
                StepState::Failed if s.attempts >= MAX_ATTEMPTS => failed = true,
                _ if failed => {
                    if s.step.runs_after_failure() {
                        return Next::Run(i);
                    }
                }
                _ => return Next::Run(i),
            }
        }
        Next::Finish(if failed { Phase::Failed } else { Phase::Succeeded })
    }

    fn touch(&mut self, now: DateTime<Utc>) {
        self.heartbeat = now;
        self.revision += 1;
    }

    /// The owner is alive at `now` (recorded while a long step runs, so nobody takes a live
    /// run over: see [`STALE_AFTER_SECS`]).
    pub fn beat(&mut self, now: DateTime<Utc>) {
        self.touch(now);
    }

    /// Step `i` starts.
    pub fn begin(&mut self, i: usize, now: DateTime<Utc>) {
        if let Some(s) = self.steps.get_mut(i) {
            s.state = StepState::Running;
            s.attempts += 1;
            s.started = Some(now);
            s.finished = None;
        }
        self.touch(now);
    }

    /// Step `i` finished.
    pub fn done(&mut self, i: usize, message: Option<String>, output: Value, now: DateTime<Utc>) {
        if let Some(s) = self.steps.get_mut(i) {
            s.state = StepState::Done;
            s.finished = Some(now);
            s.message = message;
            s.output = output;
        }
        self.touch(now);
    }

    /// Step `i` was not needed or not possible.
    pub fn skip(&mut self, i: usize, why: String, now: DateTime<Utc>) {
        if let Some(s) = self.steps.get_mut(i) {
            s.state = StepState::Skipped;
            s.finished = Some(now);
            s.message = Some(why);
        }
        self.touch(now);
    }

    /// Step `i` failed; `permanent` failures are not retried.
    pub fn fail(&mut self, i: usize, why: String, permanent: bool, now: DateTime<Utc>) {
        if let Some(s) = self.steps.get_mut(i) {
            s.state = StepState::Failed;
            s.finished = Some(now);
            s.message = Some(why);
            if permanent {
                s.attempts = s.attempts.max(MAX_ATTEMPTS);
            }
        }
        self.touch(now);
    }

    /// The run ends.
    pub fn finish(&mut self, phase: Phase, now: DateTime<Utc>) {
        self.phase = phase;
        self.finished = Some(now);
        self.touch(now);
    }

    /// Takes the run over for `owner` to continue it: a failed run gets its failed step
    /// back with fresh attempts; a running one must have been silent long enough.
    pub fn resume(&mut self, owner: &str, now: DateTime<Utc>) -> Result<(), ResumeError> {
        match self.phase {
            Phase::Succeeded => {
                return Err(ResumeError::Finished {
                    run: self.id.clone(),
                    finished: self.finished.map(|f| f.to_rfc3339()).unwrap_or_default(),
                });
            }
            Phase::Running => {
                let age = (now - self.heartbeat).num_seconds();
                if self.owner != owner && age < STALE_AFTER_SECS {
                    return Err(ResumeError::Busy {
                        run: self.id.clone(),
                        owner: self.owner.clone(),
                        age,
                    });
                }
            }
            Phase::Failed => {}
        }
        // A source that may have been started again after the failure (its restart ran, or
        // began and was cut short) must be stopped and backed up again: its application may
        // have written since the final backup.
        let restarted: Vec<String> = self
            .steps
            .iter()
            .filter(|s| s.attempts > 0 && s.state != StepState::Skipped)
            .filter_map(|s| match &s.step {
                Step::RestartSource { application, .. } => Some(application.clone()),
                _ => None,
            })
            .collect();
        for s in &mut self.steps {
            let redo = match &s.step {
                Step::Quiesce { application, .. } | Step::FinalBackup { application, .. } => {
                    restarted.contains(application)
                }
                // It decides when it runs, so it is armed again for the resumed run.
                Step::RestartSource { .. } => true,
                _ => false,
            };
            if s.state == StepState::Failed || redo {
                s.state = StepState::Pending;
                s.attempts = 0;
            }
        }
        self.phase = Phase::Running;
        self.finished = None;
        self.owner = owner.to_string();
        self.touch(now);
        Ok(())
    }

    /// When the applications were ready: the end of the last readiness step.
    pub fn ready_at(&self) -> Option<DateTime<Utc>> {
        let waits: Vec<&StepRecord> = self.steps.iter().filter(|s| s.step.ends_recovery()).collect();
        if waits.is_empty() || waits.iter().any(|s| s.state != StepState::Done) {
            return None;
        }
        waits.iter().filter_map(|s| s.finished).max()
    }

    /// The measured RTO in seconds: from the start to [`Self::ready_at`], leaving out the
    /// time a drill spent reading volume data back before the workloads started
    /// ([`Step::VerifyVolumes`]), which a failover does not spend. `None` until ready.
    pub fn recovery_seconds(&self) -> Option<f64> {
        let ready = self.ready_at()?;
        let checking: i64 = self
            .steps
            .iter()
            .filter(|s| matches!(s.step, Step::VerifyVolumes { .. }))
            .filter_map(|s| Some((s.finished?.min(ready) - s.started?).num_milliseconds().max(0)))
            .sum();
        Some(((ready - self.started).num_milliseconds() - checking).max(0) as f64 / 1000.0)
    }

    /// The output of the last finished step matching `f`.
    pub fn output_of(&self, f: impl Fn(&Step) -> bool) -> Option<&Value> {
        self.steps
            .iter()
            .rev()
            .find(|s| f(&s.step) && s.state == StepState::Done)
            .map(|s| &s.output)
    }
}

#[cfg(test)]
mod tests {
    use super::super::steps::Kind;
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).expect("time")
    }

    fn record() -> RunRecord {
        let plan = Plan {
            kind: Kind::Failover,
            plan: "p".into(),
            from: Some("c1".into()),
            to: "c2".into(),
            namespace_mapping: Default::default(),
            recovery_points: Default::default(),
            rpo_seconds: None,
            rto_seconds: None,
            steps: vec![
                Step::Preflight {
                    cluster: "c2".into(),
                    namespaces: vec![],
                    isolated: false,
                },
                Step::WaitReady {
                    cluster: "c2".into(),
                    application: "a".into(),
                    namespaces: vec![],
                },
            ],
            warnings: vec![],
        };
        RunRecord::new("r".into(), plan, "ns", FailoverPlanSpec::default(), "me", at(0))
    }

    #[test]
    fn steps_run_in_order_and_the_run_succeeds() {
        let mut r = record();
        assert_eq!(r.next(), Next::Run(0));
        r.begin(0, at(1));
        // A crash here leaves the step Running: it is run again.
        assert_eq!(r.next(), Next::Run(0));
        r.done(0, None, Value::Null, at(2));
        assert_eq!(r.next(), Next::Run(1));
        assert_eq!(r.ready_at(), None);
        r.begin(1, at(3));
        r.done(1, Some("ready".into()), Value::Null, at(9));
        assert_eq!(r.next(), Next::Finish(Phase::Succeeded));
        assert_eq!(r.ready_at(), Some(at(9)));
        assert_eq!(r.recovery_seconds(), Some(9.0));
        // A drill's read-back of volume data before the start is not part of the RTO.
        let mut d = r.clone();
        d.steps.insert(
            0,
            StepRecord {
                started: Some(at(2)),
                finished: Some(at(5)),
                state: StepState::Done,
                ..StepRecord::pending(Step::VerifyVolumes {
                    cluster: "c2".into(),
                    application: "shop".into(),
                })
            },
        );
        assert_eq!(d.recovery_seconds(), Some(6.0));
        assert_eq!(r.revision, 4);
    }

    #[test]
    fn failures_are_retried_then_fail_the_run_which_resumes() {
        let mut r = record();
        for n in 0..MAX_ATTEMPTS {
            assert_eq!(r.next(), Next::Run(0), "attempt {n}");
            r.begin(0, at(1));
            r.fail(0, "no".into(), false, at(2));
        }
        assert_eq!(r.next(), Next::Finish(Phase::Failed));
        r.finish(Phase::Failed, at(3));
        assert_eq!(r.next(), Next::Finish(Phase::Failed));
        r.resume("other", at(4)).expect("a failed run resumes");
        assert_eq!(r.next(), Next::Run(0));
        assert_eq!(r.owner, "other");
        let mut p = record();
        p.begin(0, at(1));
        p.fail(0, "bad plan".into(), true, at(2));
        assert_eq!(p.next(), Next::Finish(Phase::Failed));
    }

    #[test]
    fn a_failed_drill_still_tears_down() {
        let mut r = record();
        r.steps.push(StepRecord::pending(Step::Teardown {
            cluster: "c2".into(),
            namespaces: vec!["a-drill".into()],
        }));
        r.begin(0, at(1));
        r.fail(0, "target gone".into(), true, at(2));
        assert_eq!(r.next(), Next::Run(2), "teardown runs, the wait does not");
        r.begin(2, at(3));
        r.done(2, None, Value::Null, at(4));
        assert_eq!(r.next(), Next::Finish(Phase::Failed));
    }

    #[test]
    fn a_failed_move_restarts_its_source_and_a_resume_stops_and_backs_it_up_again() {
        let app = || "shop".to_string();
        let mut r = record();
        r.steps = vec![
            StepRecord::pending(Step::Quiesce {
                cluster: "c1".into(),
                application: app(),
            }),
            StepRecord::pending(Step::FinalBackup {
                cluster: "c1".into(),
                application: app(),
            }),
            StepRecord::pending(Step::Fence {
                application: app(),
                from: Some("c1".into()),
                to: "c2".into(),
            }),
            StepRecord::pending(Step::RestartSource {
                cluster: "c1".into(),
                application: app(),
            }),
        ];
        r.begin(0, at(1));
        r.done(0, None, Value::Null, at(2));
        r.begin(1, at(3));
        r.fail(1, "repository unreachable".into(), true, at(4));
        assert_eq!(r.next(), Next::Run(3), "the restart runs; the fence does not");
        r.begin(3, at(5));
        r.done(3, None, serde_json::json!({"restarted": true}), at(6));
        assert_eq!(r.next(), Next::Finish(Phase::Failed));
        r.finish(Phase::Failed, at(7));
        r.resume("me", at(8)).expect("resumes");
        assert_eq!(
            r.next(),
            Next::Run(0),
            "the source ran again since its final backup: quiesce and back up again"
        );
        assert!(
            r.steps
                .iter()
                .all(|s| s.state == StepState::Pending || matches!(s.step, Step::Fence { .. }))
        );

        // A restart cut short (it may have started some workloads) counts as a restart; one
        // that decided not to restart (skipped) does not.
        for (state, redo) in [(StepState::Failed, true), (StepState::Skipped, false)] {
            let mut q = r.clone();
            for s in &mut q.steps {
                s.state = StepState::Done;
                s.attempts = 1;
            }
            q.steps[1].state = StepState::Failed;
            q.steps[3].state = state;
            q.finish(Phase::Failed, at(9));
            q.resume("me", at(10)).expect("resumes");
            assert_eq!(q.steps[0].state == StepState::Pending, redo, "{state:?}");
            assert_eq!(q.steps[3].state, StepState::Pending, "the restart is armed again");
        }
    }

    #[test]
    fn a_live_run_is_not_taken_over_but_a_silent_one_is() {
        let mut r = record();
        r.begin(0, at(10));
        assert!(matches!(r.resume("other", at(20)), Err(ResumeError::Busy { .. })));
        r.resume("me", at(20)).expect("its owner may continue");
        r.resume("other", at(20 + STALE_AFTER_SECS))
            .expect("silent long enough");
        let mut done = record();
        done.finish(Phase::Succeeded, at(5));
        assert!(matches!(
            done.resume("me", at(6)),
            Err(ResumeError::Finished { .. })
        ));
    }
}
