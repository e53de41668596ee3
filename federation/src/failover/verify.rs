//! A drill's checks of what it restored against the recovery point: the volume data, read
//! back right after the restore and before any workload starts on it (`VerifyVolumes`), then
//! the objects once the application is ready (`Verify`), which reports both.

use serde_json::json;

use super::Env;
use super::data;
use super::execute::{
    Clients, Failure, Outcome, application, namespace_mapping, permanent, recovery_snapshot, restored_point,
    retry,
};
use super::machine::RunRecord;
use super::steps::Step;

/// `VerifyVolumes`: each restored claim bound to a volume written from the recovery point,
/// and its data read back against the volume snapshot (`super::volume_check`).
pub(super) async fn volumes(
    env: &Env,
    record: &RunRecord,
    clients: &mut Clients,
    cluster: &str,
    a: &str,
) -> Result<Outcome, Failure> {
    let Some(mover) = env.volumes.as_ref() else {
        return Ok(Outcome::Skipped("this run moves no volume data".to_string()));
    };
    let app = application(record, a)?;
    let client = clients.get(env, cluster).await?;
    let rp = restored_point(record, a);
    let (repo, snapshot) = recovery_snapshot(env, record, a, &rp).await?;
    let mapping = namespace_mapping(record, app);
    let v = super::volume_check::verify_volumes(&client, &repo, &snapshot, app, &mapping, Some(mover))
        .await
        .map_err(|e| retry(e.to_string()))?;
    let summary = v.volume_summary();
    if !v.ok() {
        return Err(permanent(format!(
            "{summary}; volumes: {}",
            v.volume_mismatches.join(", ")
        )));
    }
    Ok(Outcome::Done(Some(summary), json!({"verification": v})))
}

/// `Verify`: the application's objects against the recovery point, with the volume data's
/// check taken from `VerifyVolumes` (or made now, for a run planned without that step).
pub(super) async fn objects(
    env: &Env,
    record: &RunRecord,
    clients: &mut Clients,
    cluster: &str,
    a: &str,
) -> Result<Outcome, Failure> {
    let app = application(record, a)?;
    let client = clients.get(env, cluster).await?;
    let rp = restored_point(record, a);
    let (repo, snapshot) = recovery_snapshot(env, record, a, &rp).await?;
    let mapping = namespace_mapping(record, app);
    // Volume data read back before the workloads started is taken as it was found
    // then; a run planned without that step reads it back now.
    let read_back: Option<data::Verification> = record
        .output_of(|s| matches!(s, Step::VerifyVolumes { application: x, .. } if *x == a))
        .and_then(|o| serde_json::from_value(o["verification"].clone()).ok());
    let restored_volumes = record
        .steps
        .iter()
        .any(|s| matches!(&s.step, Step::RestoreObjects { application: x, volumes: true, .. } if *x == a));
    let mover = env
        .volumes
        .as_ref()
        .filter(|_| restored_volumes && read_back.is_none());
    let mut v = data::verify(&client, &repo, &snapshot, app, &mapping, mover)
        .await
        .map_err(|e| retry(e.to_string()))?;
    if let Some(r) = read_back {
        v.take_volumes(r);
    }
    let summary = v.summary();
    if !v.ok() {
        return Err(permanent(format!(
            "{summary}; missing: {}; differing: {}; volumes: {}",
            v.missing.join(", "),
            v.data_mismatches.join(", "),
            v.volume_mismatches.join(", ")
        )));
    }
    Ok(Outcome::Done(Some(summary), json!({"verification": v})))
}
