//! The two ends of a Backup or Restore run, written once: starting it (attempt metric, Event)
//! and finishing it — how its result or failure lands in status (phase, `Valid` condition,
//! message, final progress, completion time), the status write (retried: a result must not be
//! lost to one conflict), the duration metric and the Event.
//!
//! [`ending`] is the pure part (tests assert on it); [`Run::finish`] carries it out.

use std::time::{Duration, Instant};

use chrono::Utc;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Api;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::context::Context;
use super::outcome::Failure;
use super::status::write_status;
use crate::crd::{
    BackupPhase, BackupStatus, Condition, Progress as ProgressStatus, RestorePhase, RestoreStatus,
};

/// Attempts at writing a finished run's status before giving up (the next reconcile then
/// finds the resource InProgress and runs it again).
const FINAL_WRITE_ATTEMPTS: u32 = 5;
/// Pause between those attempts.
const FINAL_WRITE_PAUSE: Duration = Duration::from_secs(1);

/// Which kind of run: names its metric label and its Events' reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    /// A Backup: metric operation `backup`, Events `Backup<Result>`.
    Backup,
    /// A Restore: metric operation `restore`, Events `Restore<Result>`.
    Restore,
}

impl RunKind {
    /// The `operation` label of the run metrics.
    pub fn operation(self) -> &'static str {
        match self {
            Self::Backup => "backup",
            Self::Restore => "restore",
        }
    }

    fn reason_prefix(self) -> &'static str {
        match self {
            Self::Backup => "Backup",
            Self::Restore => "Restore",
        }
    }
}

/// How a run finished: the `result` label of the metrics and the suffix of the Event reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// Everything was done.
    Completed,
    /// Done, but some items failed (each listed in status).
    PartiallyFailed,
    /// Nothing usable was produced.
    Failed,
}

impl Finished {
    /// `Completed`, `PartiallyFailed` or `Failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "Completed",
            Self::PartiallyFailed => "PartiallyFailed",
            Self::Failed => "Failed",
        }
    }
}

/// The status of a resource whose runs end here: the fields every run's end sets.
pub trait RunStatus: Clone + PartialEq + Serialize {
    /// Phase `Failed`.
    fn set_failed(&mut self);
    /// `status.message`.
    fn message(&self) -> Option<&str>;
    /// Sets `status.message`.
    fn set_message(&mut self, message: Option<String>);
    /// `status.conditions`.
    fn conditions_mut(&mut self) -> &mut Vec<Condition>;
    /// Sets `status.progress` and clears `status.volumeProgress` (the list is of a run in
    /// progress).
    fn set_progress(&mut self, progress: ProgressStatus);
    /// Sets `status.completionTime` (RFC 3339).
    fn set_completion_time(&mut self, time: String);
}

impl RunStatus for BackupStatus {
    fn set_failed(&mut self) {
        self.phase = BackupPhase::Failed;
    }
    fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }
    fn set_message(&mut self, message: Option<String>) {
        self.message = message;
    }
    fn conditions_mut(&mut self) -> &mut Vec<Condition> {
        &mut self.conditions
    }
    fn set_progress(&mut self, progress: ProgressStatus) {
        self.progress = Some(progress);
        self.volume_progress = Vec::new();
    }
    fn set_completion_time(&mut self, time: String) {
        self.completion_time = Some(time);
    }
}

impl RunStatus for RestoreStatus {
    fn set_failed(&mut self) {
        self.phase = RestorePhase::Failed;
    }
    fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }
    fn set_message(&mut self, message: Option<String>) {
        self.message = message;
    }
    fn conditions_mut(&mut self) -> &mut Vec<Condition> {
        &mut self.conditions
    }
    fn set_progress(&mut self, progress: ProgressStatus) {
        self.progress = Some(progress);
        self.volume_progress = Vec::new();
    }
    fn set_completion_time(&mut self, time: String) {
        self.completion_time = Some(time);
    }
}

/// What a successful run put into its status (returned by the caller's `apply`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Succeeded {
    /// Completed or PartiallyFailed.
    pub finished: Finished,
    /// Items backed up or restored (metrics).
    pub items: u64,
    /// Bytes added to the repository (metrics; 0 for restores).
    pub bytes: u64,
    /// The Event's note when the status carries no message (`"12 items restored"`).
    pub note: String,
}

/// How a run ends, decided from its result.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending<S> {
    /// A transient failure: the resource stays InProgress with this status (a message saying
    /// it retries) and the next reconcile starts another attempt. No metric, no Event.
    Interrupted(S),
    /// The run is over: this status is final.
    Over {
        /// The final status.
        status: S,
        /// Completed, PartiallyFailed or Failed.
        finished: Finished,
        /// Items for the metrics.
        items: u64,
        /// Bytes for the metrics.
        bytes: u64,
        /// The Event's note (`"<Result>: <message or summary>"`).
        note: String,
    },
}

/// The end of a run whose last written status is `current`: a failure classified
/// ([`Failure::Invalid`] sets `Valid=False`, [`Failure::Transient`] keeps it InProgress with
/// the message `interrupted` words), a success applied by `apply`. `now` is the completion
/// time (RFC 3339). Pure.
pub fn ending<S: RunStatus, T>(
    current: &S,
    progress: ProgressStatus,
    result: Result<T, Failure>,
    now: String,
    interrupted: impl FnOnce(&str) -> String,
    apply: impl FnOnce(&mut S, T) -> Succeeded,
) -> Ending<S> {
    let mut done = current.clone();
    done.set_progress(progress);
    let (finished, items, bytes, summary) = match result {
        Ok(value) => {
            let s = apply(&mut done, value);
            (s.finished, s.items, s.bytes, s.note)
        }
        Err(Failure::Transient(message)) => {
            let mut next = current.clone();
            next.set_message(Some(interrupted(&message)));
            return Ending::Interrupted(next);
        }
        Err(Failure::Invalid(message)) => {
            done.set_failed();
            Condition::set(
                done.conditions_mut(),
                Condition::new("Valid", false, "Invalid", &message),
            );
            done.set_message(Some(message));
            (Finished::Failed, 0, 0, String::new())
        }
        Err(Failure::Failed(message)) => {
            done.set_failed();
            done.set_message(Some(message));
            (Finished::Failed, 0, 0, String::new())
        }
    };
    done.set_completion_time(now);
    let note = match done.message() {
        Some(m) => format!("{}: {m}", finished.as_str()),
        None => format!("{}: {summary}", finished.as_str()),
    };
    Ending::Over {
        status: done,
        finished,
        items,
        bytes,
        note,
    }
}

/// Writes a run's final `status` over `old`, up to [`FINAL_WRITE_ATTEMPTS`] times (a conflict
/// or a blip of the API server must not lose a result); a write that never succeeds is logged,
/// and the next reconcile finds the resource as it was.
pub async fn write_final_status<K, S>(api: &Api<K>, name: &str, old: &S, status: &S)
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    for attempt in 1..=FINAL_WRITE_ATTEMPTS {
        match write_status(api, name, Some(old), status).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(name, attempt, "final status not written: {e}");
                if attempt < FINAL_WRITE_ATTEMPTS {
                    tokio::time::sleep(FINAL_WRITE_PAUSE).await;
                }
            }
        }
    }
}

/// A Backup or Restore run in progress, from [`Run::start`] to [`Run::finish`].
pub struct Run<'a, K> {
    ctx: &'a Context,
    api: &'a Api<K>,
    name: &'a str,
    namespace: &'a str,
    reference: &'a ObjectReference,
    kind: RunKind,
    started: Instant,
}

impl<'a, K> Run<'a, K>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    /// Counts the attempt and sends the `<Kind>Started` Event with `note`.
    pub async fn start(
        ctx: &'a Context,
        api: &'a Api<K>,
        (name, namespace): (&'a str, &'a str),
        reference: &'a ObjectReference,
        kind: RunKind,
        note: String,
    ) -> Self {
        let started = Instant::now();
        ctx.metrics.started(kind.operation());
        ctx.event(
            reference,
            false,
            &format!("{}Started", kind.reason_prefix()),
            note,
        )
        .await;
        Self {
            ctx,
            api,
            name,
            namespace,
            reference,
            kind,
            started,
        }
    }

    /// Ends the run (see [`ending`]): writes the status over `current` (a final one up to
    /// [`FINAL_WRITE_ATTEMPTS`] times), then, if the run is over, records the metrics and sends
    /// the `<Kind><Result>` Event (a Warning unless Completed).
    pub async fn finish<S: RunStatus, T>(
        self,
        current: S,
        progress: ProgressStatus,
        result: Result<T, Failure>,
        interrupted: impl FnOnce(&str) -> String,
        apply: impl FnOnce(&mut S, T) -> Succeeded,
    ) {
        let now = Utc::now().to_rfc3339();
        let end = ending(&current, progress, result, now, interrupted, apply);
        let (status, finished, items, bytes, note) = match end {
            Ending::Interrupted(next) => {
                tracing::warn!(
                    name = %self.name,
                    namespace = %self.namespace,
                    operation = self.kind.operation(),
                    "attempt interrupted: {}",
                    next.message().unwrap_or_default()
                );
                let _ = write_status(self.api, self.name, Some(&current), &next).await;
                return;
            }
            Ending::Over {
                status,
                finished,
                items,
                bytes,
                note,
            } => (status, finished, items, bytes, note),
        };
        write_final_status(self.api, self.name, &current, &status).await;
        self.ctx.metrics.finished(
            self.kind.operation(),
            finished.as_str(),
            self.started.elapsed().as_secs_f64(),
            items,
            bytes,
        );
        let reason = format!("{}{}", self.kind.reason_prefix(), finished.as_str());
        self.ctx
            .event(self.reference, finished != Finished::Completed, &reason, note)
            .await;
        tracing::info!(
            name = %self.name,
            namespace = %self.namespace,
            operation = self.kind.operation(),
            result = finished.as_str(),
            items,
            "run finished"
        );
    }
}

#[cfg(test)]
#[path = "finish_tests.rs"]
mod tests;
