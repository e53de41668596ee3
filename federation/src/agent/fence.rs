//! Keeping the fencing leases: for every application of every plan this cluster belongs to,
//! renew the lease where it holds it (creating the first lease on the plan's primary), and
//! where another cluster took it over, stop the application here and mark the
//! BackupRepositories — once per epoch, recorded in the audit log and as an Event.

use std::collections::HashSet;
use std::sync::Arc;

use kube::ResourceExt;
use lifeboat_controller::fence::FenceMark;
use tokio::sync::watch;

use super::{Agent, event, pause};
use crate::audit::{self, AuditRecord};
use crate::fence::{self, Standing, enforce};
use crate::metrics::ApplicationLabels;

pub(super) async fn run(agent: Arc<Agent>, mut stop: watch::Receiver<bool>) {
    let me = agent.config.cluster.clone();
    let mut enforced: HashSet<(String, String, u64)> = HashSet::new();
    loop {
        for plan in agent.plans().await {
            if !plan.clusters().contains(&me.as_str()) {
                continue;
            }
            let name = plan.name_any();
            let repos = agent.plan_repositories(&plan).await;
            let Some(state) = Agent::state(&repos) else {
                continue;
            };
            let urls: Vec<String> = plan.spec.repositories.iter().map(|r| r.url.clone()).collect();
            for app in &plan.spec.applications {
                let renewal = match fence::renew(&state, &name, &app.name, &me, plan.spec.primary == me).await
                {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!("federation agent: fencing lease of {name}/{}: {e}", app.name);
                        continue;
                    }
                };
                let labels = ApplicationLabels {
                    plan: name.clone(),
                    application: app.name.clone(),
                };
                match renewal.standing {
                    Standing::Holder { epoch } => {
                        agent.metrics.fence_epoch.get_or_create(&labels).set(epoch as i64);
                        agent.metrics.fenced.get_or_create(&labels).set(0);
                    }
                    Standing::Free => {}
                    Standing::Fenced { by, epoch } => {
                        agent.metrics.fence_epoch.get_or_create(&labels).set(epoch as i64);
                        agent.metrics.fenced.get_or_create(&labels).set(1);
                        let key = (name.clone(), app.name.clone(), epoch);
                        if enforced.contains(&key) {
                            continue;
                        }
                        let why = format!("fenced: {name}/{} epoch {epoch} held by {by}", app.name);
                        let scope = enforce::Scope {
                            cluster: &me,
                            namespaces: &app.namespaces,
                            selector: app.selector.as_deref(),
                        };
                        let mark = FenceMark {
                            plan: name.clone(),
                            application: app.name.clone(),
                            namespaces: app.namespaces.clone(),
                            holder: by.clone(),
                            epoch,
                        };
                        let done = async {
                            let mut changes =
                                enforce::mark_repositories(&agent.client, &me, &urls, &mark).await?;
                            changes.extend(enforce::stop(&agent.client, &scope, &why).await?);
                            Ok::<_, enforce::EnforceError>(changes)
                        }
                        .await;
                        match done {
                            Ok(changes) => {
                                enforced.insert(key);
                                let note = format!(
                                    "{} holds {name}/{} at epoch {epoch}: this cluster stopped it and stopped backing it \
                                     up ({})",
                                    by,
                                    app.name,
                                    if changes.is_empty() {
                                        "nothing was running".to_string()
                                    } else {
                                        changes.join("; ")
                                    }
                                );
                                tracing::warn!("{note}");
                                let mut a = AuditRecord::new("fence", "enforced", &agent.actor, note.clone());
                                a.plan = Some(name.clone());
                                a.from = Some(me.clone());
                                a.to = Some(by.clone());
                                a.epoch = Some(epoch);
                                if let Err(e) = audit::append(&state, &a).await {
                                    tracing::warn!("federation agent: audit: {e}");
                                }
                                event(&agent, "FailoverPlan", &name, true, "Fenced", &note).await;
                            }
                            Err(e) => tracing::warn!(
                                "federation agent: enforce fencing of {name}/{}: {e}",
                                app.name
                            ),
                        }
                    }
                }
            }
        }
        if !pause(&mut stop, agent.config.fence_interval).await {
            return;
        }
    }
}
