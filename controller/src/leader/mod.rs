//! Leader election through a `coordination.k8s.io/v1` Lease: one controller process
//! reconciles, the others wait to take over. [`decide`] makes the decision; [`elect`] reads
//! and writes the Lease and publishes whether this process leads.

mod decide;

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::watch;

pub use decide::{Decision, LeaseView, decide};

fn to_chrono(t: &MicroTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(t.0.as_millisecond())
}

fn micro(t: DateTime<Utc>) -> Option<MicroTime> {
    Timestamp::from_millisecond(t.timestamp_millis())
        .ok()
        .map(MicroTime)
}

impl From<&Lease> for LeaseView {
    fn from(lease: &Lease) -> Self {
        let spec = lease.spec.clone().unwrap_or_default();
        LeaseView {
            holder: spec.holder_identity,
            renew_time: spec.renew_time.as_ref().and_then(to_chrono),
            duration_secs: i64::from(spec.lease_duration_seconds.unwrap_or(15)),
        }
    }
}

/// Where the Lease is and who we are.
#[derive(Debug, Clone)]
pub struct Election {
    /// The Lease's namespace.
    pub namespace: String,
    /// The Lease's name.
    pub name: String,
    /// Our identity in it.
    pub identity: String,
    /// How long our hold lasts without renewal.
    pub duration: Duration,
}

impl Election {
    fn spec(&self, now: DateTime<Utc>, acquired: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(i32::try_from(self.duration.as_secs().max(1)).unwrap_or(15)),
            acquire_time: acquired.or_else(|| micro(now)),
            renew_time: micro(now),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// One round: read the Lease, decide, write. Returns whether we lead afterwards.
    async fn round(&self, api: &Api<Lease>, was_leading: bool) -> Result<bool, kube::Error> {
        let now = Utc::now();
        let current = api.get_opt(&self.name).await?;
        let decision = decide(
            current.as_ref().map(LeaseView::from).as_ref(),
            &self.identity,
            now,
            was_leading,
        );
        match decision {
            Decision::Acquire | Decision::Renew => {
                let renewing = decision == Decision::Renew;
                let old = current.as_ref().and_then(|l| l.spec.clone()).unwrap_or_default();
                let transitions = old.lease_transitions.unwrap_or(0) + i32::from(!renewing);
                let acquired = if renewing { old.acquire_time } else { None };
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        namespace: Some(self.namespace.clone()),
                        resource_version: current.as_ref().and_then(|l| l.metadata.resource_version.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.spec(now, acquired, transitions)),
                };
                let written = match current {
                    None => api.create(&PostParams::default(), &lease).await,
                    Some(_) => api.replace(&self.name, &PostParams::default(), &lease).await,
                };
                match written {
                    Ok(_) => {
                        if !renewing {
                            tracing::info!(identity = %self.identity, lease = %self.name, "acquired the leader Lease");
                        }
                        Ok(true)
                    }
                    // Someone else wrote first: they lead this round.
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
            Decision::Wait { .. } => Ok(false),
            Decision::Lost { holder } => {
                tracing::warn!(%holder, "lost the leader Lease");
                Ok(false)
            }
        }
    }

    /// Gives the Lease up so a successor need not wait for it to expire.
    async fn release(&self, api: &Api<Lease>) {
        if let Ok(Some(mut lease)) = api.get_opt(&self.name).await {
            let ours = lease.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) == Some(&self.identity);
            if ours {
                if let Some(spec) = lease.spec.as_mut() {
                    spec.holder_identity = None;
                    spec.renew_time = None;
                }
                let _ = api.replace(&self.name, &PostParams::default(), &lease).await;
            }
        }
    }
}

/// Runs leader election until `shutdown`, publishing whether we lead on `leading`. A leader
/// that cannot renew within two thirds of its Lease duration steps down on its own, before
/// anyone else can take over.
pub async fn elect(
    client: Client,
    election: Election,
    leading: watch::Sender<Option<bool>>,
    shutdown: impl Future<Output = ()>,
) {
    let api: Api<Lease> = Api::namespaced(client, &election.namespace);
    let retry = (election.duration / 3).max(Duration::from_millis(200));
    let mut is_leader = false;
    let mut last_renewal = tokio::time::Instant::now();
    tokio::pin!(shutdown);
    loop {
        match election.round(&api, is_leader).await {
            Ok(now_leader) => {
                is_leader = now_leader;
                if now_leader {
                    last_renewal = tokio::time::Instant::now();
                }
            }
            Err(e) => {
                tracing::warn!(
                    "leader election: Lease {}/{}: {e}",
                    election.namespace,
                    election.name
                );
                // Step down well before the Lease can expire, so two leaders never overlap.
                if is_leader && last_renewal.elapsed() >= election.duration * 2 / 3 {
                    tracing::warn!("could not renew the leader Lease in time; stepping down");
                    is_leader = false;
                }
            }
        }
        leading.send_if_modified(|v| {
            let changed = *v != Some(is_leader);
            *v = Some(is_leader);
            changed
        });
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(retry) => {}
        }
    }
    if is_leader {
        election.release(&api).await;
    }
    leading.send_replace(Some(false));
}
