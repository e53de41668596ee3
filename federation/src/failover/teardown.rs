//! A drill's teardown: delete the namespaces the drill created, then everything restores
//! wrote for claims in them — each claim's new PersistentVolume with its RBD image or NFS
//! directory — once the claims are gone (see `lifeboat_controller::volumes::remove`). A
//! drill leaves nothing behind, so a scheduled drill neither fills the target's storage nor
//! finds its last run's volumes in the way of the next one.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, PersistentVolume, PersistentVolumeClaim};
use kube::api::DeleteParams;
use kube::{Api, Client, ResourceExt};
use lifeboat_controller::volumes::restore_plan::RESTORED_FROM;
use lifeboat_controller::volumes::{RemovalOutcome, RestoredRef, VolumeRemoval, remove_restored_volumes};
use serde_json::{Value, json};

use super::data::VolumeMover;

/// How long the teardown waits for the deleted namespaces' claims to go (their pods stop
/// first, and the claims' protection finalizers wait for them) before it names what it kept.
pub const CLAIMS_GONE_WITHIN: Duration = Duration::from_secs(180);

/// Deletes `doomed` (the namespaces the drill created) on `client`'s cluster, then removes
/// the volumes restores wrote for claims in them: every PersistentVolume whose `claimRef`
/// names one of them and which carries a restore's mark — those of a restore step that
/// failed halfway included. Returns the step's message and output (`deleted`, `volumes`: one
/// [`VolumeRemoval`] each, `kept`: those left, described). `Err` when a namespace could not
/// be deleted or the volumes not listed (worth a retry).
pub async fn tear_down(
    client: &Client,
    cluster: &str,
    doomed: &[String],
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
    let ours = restored_into(client, doomed)
        .await
        .map_err(|e| format!("list PersistentVolumes on {cluster}: {e}"))?;
    let mut removals = Vec::new();
    if !ours.is_empty() {
        let claims: Vec<(String, String)> = ours.iter().map(|(c, _)| c.clone()).collect();
        wait_claims_gone(client, &claims, claims_within).await;
        let refs: Vec<RestoredRef> = ours.into_iter().map(|(_, r)| r).collect();
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

/// The PersistentVolumes a restore wrote (they carry [`RESTORED_FROM`]) for claims in
/// `namespaces`: each claim (`namespace`, `name`) with the volume.
async fn restored_into(
    client: &Client,
    namespaces: &[String],
) -> Result<Vec<((String, String), RestoredRef)>, kube::Error> {
    if namespaces.is_empty() {
        return Ok(Vec::new());
    }
    let api: Api<PersistentVolume> = Api::all(client.clone());
    let mut out = Vec::new();
    for pv in api.list(&Default::default()).await?.items {
        let Some(from) = pv.annotations().get(RESTORED_FROM).cloned() else {
            continue;
        };
        let Some(claim) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
            continue;
        };
        let (Some(ns), Some(name)) = (claim.namespace.clone(), claim.name.clone()) else {
            continue;
        };
        if !namespaces.contains(&ns) {
            continue;
        }
        out.push((
            (ns, name),
            RestoredRef {
                persistent_volume: pv.name_any(),
                snapshot_id: from,
            },
        ));
    }
    Ok(out)
}

/// The step's message and output.
fn summarise(doomed: &[String], removals: Vec<VolumeRemoval>) -> (String, Value) {
    let mut message = if doomed.is_empty() {
        "the drill created no namespace: nothing to delete".to_string()
    } else {
        format!("deleted namespace(s) {}", doomed.join(", "))
    };
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
        let (message, _) = summarise(&[], Vec::new());
        assert_eq!(message, "the drill created no namespace: nothing to delete");
    }
}
