//! The Backup controller: finalizer, start (or resume) a run, TTL expiry, deletion.

mod etcd;
mod execute;
mod expiry;
mod finalize;
pub mod next_step;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};

pub use expiry::{TtlError, parse_ttl};
use next_step::{BackupStep, BackupView, next_step};

use super::context::Context;
use super::finalizer;
use super::status::write_status;
use crate::BACKUP_FINALIZER;
use crate::crd::{Backup, BackupPhase, Condition};
use crate::error::{Error, Result};

/// The key of a Backup's run in [`super::runs::Runs`].
fn run_key(b: &Backup) -> String {
    format!(
        "backup/{}/{}/{}",
        b.namespace().unwrap_or_default(),
        b.name_any(),
        b.uid().unwrap_or_default()
    )
}

fn parse_time(s: Option<&String>) -> Option<chrono::DateTime<Utc>> {
    s.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Reconciles one Backup.
pub async fn reconcile(backup: Arc<Backup>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = backup
        .namespace()
        .ok_or_else(|| Error::Malformed(format!("Backup {} has no namespace", backup.name_any())))?;
    let name = backup.name_any();
    let api: Api<Backup> = Api::namespaced(ctx.client.clone(), &namespace);
    let key = run_key(&backup);
    let status = backup.status.clone().unwrap_or_default();
    let view = BackupView {
        deleting: backup.metadata.deletion_timestamp.is_some(),
        has_finalizer: backup.finalizers().iter().any(|f| f == BACKUP_FINALIZER),
        running_here: ctx.runs.is_running(&key),
        phase: status.phase,
        attempts: status.attempts,
        expiration: parse_time(status.expiration.as_ref()),
        synced: backup.labels().contains_key(crate::SYNCED_LABEL),
    };
    let now = Utc::now();
    match next_step(&view, now) {
        BackupStep::Finalize => finalize::finalize(&ctx, &backup, &key).await,
        BackupStep::Gone => Ok(Action::await_change()),
        BackupStep::AddFinalizer => {
            finalizer::add(&api, &backup, BACKUP_FINALIZER).await?;
            Ok(Action::await_change())
        }
        BackupStep::Start { attempt } => {
            let mut running = status.clone();
            running.phase = BackupPhase::InProgress;
            running.attempts = attempt;
            running.start_time.get_or_insert_with(|| now.to_rfc3339());
            running.message = None;
            running.progress = None;
            if let Some(ttl) = &backup.spec.ttl {
                match parse_ttl(ttl) {
                    Ok(d) => running.expiration = Some((now + d).to_rfc3339()),
                    Err(e) => {
                        let message = e.to_string();
                        let mut failed = status.clone();
                        failed.phase = BackupPhase::Failed;
                        Condition::set(
                            &mut failed.conditions,
                            Condition::new("Valid", false, "InvalidTTL", &message),
                        );
                        failed.message = Some(message);
                        failed.completion_time = Some(now.to_rfc3339());
                        write_status(&api, &name, Some(&status), &failed).await?;
                        return Ok(Action::await_change());
                    }
                }
            }
            // Status first: a controller that dies after this line resumes the run.
            write_status(&api, &name, Some(&status), &running).await?;
            ctx.runs
                .start(key, execute::run(ctx.clone(), backup.clone(), running));
            Ok(Action::requeue(
                ctx.config.progress_interval.max(Duration::from_secs(1)) * 2,
            ))
        }
        BackupStep::GiveUp { attempts } => {
            let mut failed = status.clone();
            failed.phase = BackupPhase::Failed;
            failed.message = Some(format!(
                "interrupted {attempts} times (controller restarts or lost API access); create a new Backup \
                 and check the controller's logs"
            ));
            failed.completion_time = Some(now.to_rfc3339());
            write_status(&api, &name, Some(&status), &failed).await?;
            Ok(Action::await_change())
        }
        BackupStep::Running => Ok(Action::requeue(
            ctx.config.progress_interval.max(Duration::from_secs(1)) * 2,
        )),
        BackupStep::Expire => {
            tracing::info!(backup = %name, namespace = %namespace, "TTL expired; deleting");
            match api.delete(&name, &Default::default()).await {
                Ok(_) => Ok(Action::await_change()),
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(Action::await_change()),
                Err(e) => Err(Error::kube(
                    format!("delete expired Backup {namespace}/{name}"),
                    e,
                )),
            }
        }
        BackupStep::Idle { until: Some(t) } => {
            let wait = (t - now).to_std().unwrap_or(Duration::from_secs(1));
            Ok(Action::requeue(
                wait.min(Duration::from_secs(3600)) + Duration::from_millis(100),
            ))
        }
        BackupStep::Idle { until: None } => Ok(Action::await_change()),
    }
}
