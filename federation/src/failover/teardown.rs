//! A drill's teardown: delete the namespaces the drill created, then everything its
//! restores wrote into them — each claim's new PersistentVolume with its RBD image or NFS
//! directory — once the claims are gone (see `lifeboat_controller::volumes::remove`). A
//! drill leaves nothing behind, so a scheduled drill neither fills the target's storage nor
//! finds its last run's volumes in the way of the next one.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim};
use kube::api::DeleteParams;
use kube::{Api, Client};
use lifeboat_controller::volumes::{
    RemovalOutcome, RestoredOutcome, RestoredRef, VolumeRemoval, remove_restored_volumes,
};
use serde_json::{Value, json};

use super::data::{Restored, VolumeMover};
use super::machine::{RunRecord, StepState};
use super::steps::Step;

/// How long the teardown waits for the deleted namespaces' claims to go (their pods stop
/// first, and the claims' protection finalizers wait for them) before it names what it kept.
pub const CLAIMS_GONE_WITHIN: Duration = Duration::from_secs(180);

/// A volume a restore step of the run wrote, with its claim in the target cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The claim's namespace.
    pub namespace: String,
    /// The claim.
    pub claim: String,
    /// The volume and the snapshot written into it.
    pub volume: RestoredRef,
}

/// The volumes the run's finished restore steps wrote or reused (each once).
pub fn written_volumes(record: &RunRecord) -> Vec<Written> {
    let mut out: Vec<Written> = Vec::new();
    let restored = record
        .steps
        .iter()
        .filter(|s| matches!(s.step, Step::RestoreObjects { .. }) && s.state == StepState::Done)
        .filter_map(|s| serde_json::from_value::<Restored>(s.output["restored"].clone()).ok());
    for v in restored.flat_map(|r| r.volumes) {
        if !matches!(v.outcome, RestoredOutcome::Restored | RestoredOutcome::Reused) {
            continue;
        }
        let Some(pv) = v.persistent_volume else {
            continue;
        };
        if out.iter().any(|w| w.volume.persistent_volume == pv) {
            continue;
        }
        out.push(Written {
            namespace: v.namespace,
            claim: v.claim,
            volume: RestoredRef {
                persistent_volume: pv,
                snapshot_id: v.snapshot_id,
            },
        });
    }
    out
}

/// Deletes `doomed` (the namespaces the drill created) on `client`'s cluster, then removes
/// the volumes written into them. Returns the step's message and output (`deleted`,
/// `volumes`: one [`VolumeRemoval`] each, `kept`: those left, described). `Err` only when a
/// namespace could not be deleted (worth a retry).
pub async fn tear_down(
    client: &Client,
    cluster: &str,
    doomed: &[String],
    written: &[Written],
    mover: Option<&VolumeMover>,
    claims_within: Duration,
) -> Result<(String, Value), String> {
    let api: Api<Namespace> = Api::all(client.clone());
    for n in doomed {
        match api.delete(n, &DeleteParams::default()).await {
            Ok(_) => {}
            // Gone already, or already being deleted.
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(format!("delete namespace {n} on {cluster}: {e}")),
        }
    }
    let ours: Vec<&Written> = written.iter().filter(|w| doomed.contains(&w.namespace)).collect();
    let mut removals = Vec::new();
    if !ours.is_empty() {
        let claims: Vec<(String, String)> = ours
            .iter()
            .map(|w| (w.namespace.clone(), w.claim.clone()))
            .collect();
        wait_claims_gone(client, &claims, claims_within).await;
        let refs: Vec<RestoredRef> = ours.iter().map(|w| w.volume.clone()).collect();
        removals = match mover {
            Some(m) => remove_restored_volumes(client, &m.access, m.secret.as_ref(), &refs).await,
            None => refs
                .into_iter()
                .map(|r| VolumeRemoval {
                    persistent_volume: r.persistent_volume,
                    data: None,
                    outcome: RemovalOutcome::Kept,
                    reason: Some("this run was given no volume access (--no-volumes)".to_string()),
                })
                .collect(),
        };
    }
    Ok(summarise(doomed, removals))
}

/// The step's message and output.
fn summarise(doomed: &[String], removals: Vec<VolumeRemoval>) -> (String, Value) {
    let mut message = format!("deleted namespace(s) {}", doomed.join(", "));
    let removed = removals
        .iter()
        .filter(|r| r.outcome != RemovalOutcome::Kept)
        .count();
    if removed > 0 {
        message.push_str(&format!(
            "; removed {removed} volume(s) the drill wrote (data and PersistentVolume)"
        ));
    }
    let kept: Vec<String> = removals
        .iter()
        .filter(|r| r.outcome == RemovalOutcome::Kept)
        .map(VolumeRemoval::describe)
        .collect();
    if !kept.is_empty() {
        message.push_str(&format!(
            "; kept {} volume(s) the drill wrote, whose data stays until deleted by hand: {}",
            kept.len(),
            kept.join("; ")
        ));
    }
    (
        message,
        json!({"deleted": doomed, "volumes": removals, "kept": kept}),
    )
}

/// Waits until none of `claims` (`namespace`, `name`) exists any more, or `within` passes.
async fn wait_claims_gone(client: &Client, claims: &[(String, String)], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let mut left = false;
        for (ns, name) in claims {
            let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
            // A claim that cannot be read counts as there: the removal checks again.
            if !matches!(api.get_opt(name).await, Ok(None)) {
                left = true;
                break;
            }
        }
        if !left || Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn removal(pv: &str, outcome: RemovalOutcome, reason: Option<&str>) -> VolumeRemoval {
        VolumeRemoval {
            persistent_volume: pv.to_string(),
            data: Some(format!("RBD image rbd/{pv}")),
            outcome,
            reason: reason.map(str::to_string),
        }
    }

    #[test]
    fn the_message_counts_what_went_and_names_what_stayed() {
        let (message, output) = summarise(
            &["shop-drill".to_string()],
            vec![
                removal("pvc-a", RemovalOutcome::Removed, None),
                removal("pvc-b", RemovalOutcome::Gone, None),
                removal(
                    "pvc-c",
                    RemovalOutcome::Kept,
                    Some("claim shop-drill/c still exists"),
                ),
            ],
        );
        assert_eq!(
            message,
            "deleted namespace(s) shop-drill; removed 2 volume(s) the drill wrote (data and \
             PersistentVolume); kept 1 volume(s) the drill wrote, whose data stays until deleted \
             by hand: pvc-c (RBD image rbd/pvc-c): claim shop-drill/c still exists"
        );
        assert_eq!(output["volumes"].as_array().map(Vec::len), Some(3));
        assert_eq!(output["kept"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn no_volumes_no_volume_words() {
        let (message, _) = summarise(&["a".to_string(), "b".to_string()], Vec::new());
        assert_eq!(message, "deleted namespace(s) a, b");
    }
}
