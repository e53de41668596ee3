//! The Restore controller.

mod execute;
pub mod next_step;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};

use next_step::{RestoreStep, next_step};

use super::context::Context;
use super::status::write_status;
use crate::crd::{Restore, RestorePhase};
use crate::error::{Error, Result};

/// Reconciles one Restore.
pub async fn reconcile(restore: Arc<Restore>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = restore
        .namespace()
        .ok_or_else(|| Error::Malformed(format!("Restore {} has no namespace", restore.name_any())))?;
    let name = restore.name_any();
    let key = format!("restore/{namespace}/{name}/{}", restore.uid().unwrap_or_default());
    let status = restore.status.clone().unwrap_or_default();
    let recheck = Action::requeue(ctx.config.progress_interval.max(Duration::from_secs(1)) * 2);
    match next_step(status.phase, ctx.runs.is_running(&key)) {
        RestoreStep::Start => {
            let api: Api<Restore> = Api::namespaced(ctx.client.clone(), &namespace);
            let mut running = status.clone();
            running.phase = RestorePhase::InProgress;
            running.start_time.get_or_insert_with(|| Utc::now().to_rfc3339());
            running.message = None;
            write_status(&api, &name, Some(&status), &running).await?;
            ctx.runs
                .start(key, execute::run(ctx.clone(), restore.clone(), running));
            Ok(recheck)
        }
        RestoreStep::Running => Ok(recheck),
        RestoreStep::Done => Ok(Action::await_change()),
    }
}
