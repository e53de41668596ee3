//! `RestartSource`: a planned move that failed for good while the source still held the
//! application's lease starts the application there again (the workloads its quiesce scaled
//! down, the CronJobs it suspended), so a move that cannot finish does not leave it down.
//! The lease decides, not the fence step's state: a fence step can fail after the lease moved.

use serde_json::json;

use super::Env;
use super::execute::{Clients, Failure, Outcome, application, retry};
use super::machine::{RunRecord, StepState};
use super::steps::Step;
use crate::fence::{self, enforce};

/// Runs the step for application `a` on `cluster` (the source).
pub(super) async fn restart_source(
    env: &Env,
    record: &RunRecord,
    clients: &mut Clients,
    cluster: &str,
    a: &str,
) -> Result<Outcome, Failure> {
    if !record.steps.iter().any(|s| s.state == StepState::Failed) {
        return Ok(Outcome::Skipped("the move did not fail".to_string()));
    }
    // A quiesce that scaled down and then timed out waiting counts: it stopped things.
    let quiesced = record
        .steps
        .iter()
        .any(|s| matches!(&s.step, Step::Quiesce { application: x, .. } if *x == a) && s.attempts > 0);
    if !quiesced {
        return Ok(Outcome::Skipped(format!("{a} was not stopped on {cluster}")));
    }
    // Every copy of the lease must say the source still holds it.
    let kept_down = |why: String| {
        Outcome::Skipped(format!(
            "{why}: {a} stays stopped on {cluster}; --resume to finish the move, or, once \
             sure {cluster} holds the lease, scale its workloads back up by hand (the \
             lifeboat.dev/scaled-down-replicas annotation records each one's replicas)"
        ))
    };
    let view = match fence::read(&env.state, &record.plan.plan, a).await {
        Ok(v) => v,
        Err(e) => return Ok(kept_down(format!("the lease could not be read ({e})"))),
    };
    if !view.unreachable.is_empty() {
        let urls: Vec<&str> = view.unreachable.iter().map(|(u, _)| u.as_str()).collect();
        return Ok(kept_down(format!(
            "the lease's copies in {} could not be read",
            urls.join(", ")
        )));
    }
    // No lease anywhere: none was ever taken over (a take-over writes one), so the
    // source the plan found holding the application still does.
    match view.newest.as_ref().map(|l| l.holder.as_str()) {
        Some(h) if h == cluster => {}
        None => {}
        Some(h) => return Ok(kept_down(format!("{h} holds the lease of {a} now"))),
    }
    let app = application(record, a)?;
    let client = clients.get(env, cluster).await?;
    let scope = enforce::Scope {
        cluster,
        namespaces: &app.namespaces,
        selector: app.selector.as_deref(),
    };
    let changes = enforce::start(&client, &scope)
        .await
        .map_err(|e| retry(e.to_string()))?;
    Ok(Outcome::Done(
        Some(format!(
            "the move failed while {cluster} still held the lease: {a} runs on {cluster} again \
             ({} change(s)); nothing was fenced or moved; fix the cause and --resume, which \
             stops it and backs it up again",
            changes.len()
        )),
        json!({"restarted": true, "changes": changes}),
    ))
}
