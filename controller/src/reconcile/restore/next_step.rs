//! The next step for a Restore. Pure.

use crate::crd::RestorePhase;

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreStep {
    /// Mark InProgress, then run (first time, or again after an interrupted run: restores are
    /// idempotent, existing objects are skipped or updated per policy).
    Start,
    /// Running here; look again later.
    Running,
    /// Finished: nothing more to do.
    Done,
}

/// Decides the next step.
pub fn next_step(phase: RestorePhase, running_here: bool) -> RestoreStep {
    match phase {
        RestorePhase::New => RestoreStep::Start,
        RestorePhase::InProgress if running_here => RestoreStep::Running,
        RestorePhase::InProgress => RestoreStep::Start,
        RestorePhase::Completed | RestorePhase::PartiallyFailed | RestorePhase::Failed => RestoreStep::Done,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_once_and_resumes_after_a_restart() {
        assert_eq!(next_step(RestorePhase::New, false), RestoreStep::Start);
        assert_eq!(next_step(RestorePhase::InProgress, true), RestoreStep::Running);
        assert_eq!(next_step(RestorePhase::InProgress, false), RestoreStep::Start);
        assert_eq!(next_step(RestorePhase::PartiallyFailed, false), RestoreStep::Done);
    }
}
