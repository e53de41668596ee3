//! The outcome → phase rule, once for drctl and the controller: a run that stored (or
//! restored) something but failed on some items is PartiallyFailed, never Completed.

use super::{BackupOutcome, RestoreOutcome};
use crate::crd::{BackupPhase, RestorePhase};

impl BackupPhase {
    /// The phase of a backup that finished with `errors` items not stored.
    pub fn of_finished(errors: usize) -> Self {
        if errors == 0 {
            Self::Completed
        } else {
            Self::PartiallyFailed
        }
    }
}

impl RestorePhase {
    /// The phase of a restore that finished with `errors` items not restored.
    pub fn of_finished(errors: usize) -> Self {
        if errors == 0 {
            Self::Completed
        } else {
            Self::PartiallyFailed
        }
    }
}

impl BackupOutcome {
    /// Completed, or PartiallyFailed when some objects could not be read.
    pub fn phase(&self) -> BackupPhase {
        BackupPhase::of_finished(self.errors.len())
    }
}

impl RestoreOutcome {
    /// Completed, or PartiallyFailed when some objects could not be restored.
    pub fn phase(&self) -> RestorePhase {
        RestorePhase::of_finished(self.errors.len())
    }
}
