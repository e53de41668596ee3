//! What every reconciler shares: the client, settings, metrics, the event recorder and the
//! runs in flight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use super::in_flight::Runs;
use crate::config::Config;
use crate::error::Error;
use crate::metrics::Metrics;

/// Shared by the reconcilers of one leadership term.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Settings.
    pub config: Config,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Backups and restores running here.
    pub runs: Runs,
    /// BackupRepositories checked this term: uid → (generation, when), so that the check's
    /// own status write does not trigger another check.
    pub repository_checks: Mutex<HashMap<String, (Option<i64>, Instant)>>,
    recorder: Recorder,
}

impl Context {
    /// A context for one leadership term.
    pub fn new(client: Client, config: Config, metrics: Arc<Metrics>) -> Self {
        let reporter = Reporter {
            controller: super::status::MANAGER.to_string(),
            instance: Some(config.identity.clone()),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            config,
            metrics,
            runs: Runs::default(),
            repository_checks: Mutex::new(HashMap::new()),
        }
    }

    /// Publishes an Event about `object`. `note` must never carry secret material; failures
    /// to publish are logged and otherwise ignored (events are best effort).
    pub async fn event(&self, object: &ObjectReference, warning: bool, reason: &str, note: String) {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_string(),
            note: Some(note),
            action: reason.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, object).await {
            tracing::debug!("event {reason}: {e}");
        }
    }
}

/// What a failed reconcile does: log and try again soon.
pub fn error_policy<K>(_: Arc<K>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!("reconcile failed: {error}");
    Action::requeue(Duration::from_secs(5))
}
