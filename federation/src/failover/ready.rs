//! Readiness gates: the application counts as recovered once every Deployment and
//! StatefulSet has all its replicas available, every PersistentVolumeClaim is Bound, and
//! every HTTP check answers. Each gate's time is recorded for the report.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use serde::{Deserialize, Serialize};

use crate::crd::{HttpCheck, Readiness};

/// When one gate opened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Gate {
    /// `workloads`, `volumeClaims` or the HTTP URL.
    pub gate: String,
    /// Seconds from the start of the wait.
    pub after_seconds: f64,
    /// What it counted.
    pub detail: String,
}

/// Why the readiness gates did not open.
#[derive(Debug, thiserror::Error)]
pub enum ReadyError {
    /// The target's API refused a list.
    #[error("list {kind} in {namespace}: {source}")]
    List {
        /// `Deployments`, `StatefulSets`, `PersistentVolumeClaims`.
        kind: &'static str,
        /// The namespace.
        namespace: String,
        /// The API's answer.
        source: kube::Error,
    },
    /// No HTTP client could be built (TLS roots).
    #[error("HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
    /// An HTTP check could not be sent.
    #[error("GET {url}: {source}")]
    Http {
        /// The URL (with `{target}` filled in).
        url: String,
        /// Why.
        source: reqwest::Error,
    },
    /// An HTTP check answered with the wrong status.
    #[error("GET {url}: {code}")]
    HttpStatus {
        /// The URL.
        url: String,
        /// The status it answered.
        code: u16,
    },
    /// Gates still closed at the deadline; each waiting item (or the error seen last).
    #[error(
        "not ready after {seconds} s: {}{}; raise spec.readiness.timeoutSeconds or fix what is waiting",
        waiting.iter().take(10).cloned().collect::<Vec<_>>().join("; "),
        if waiting.len() > 10 { format!(" (and {} more)", waiting.len() - 10) } else { String::new() }
    )]
    Timeout {
        /// `spec.readiness.timeoutSeconds`.
        seconds: u64,
        /// What was still waiting.
        waiting: Vec<String>,
    },
}

fn list_error(kind: &'static str, namespace: &str) -> impl FnOnce(kube::Error) -> ReadyError {
    let namespace = namespace.to_string();
    move |source| ReadyError::List {
        kind,
        namespace,
        source,
    }
}

fn params(selector: Option<&str>) -> ListParams {
    match selector {
        Some(s) if !s.is_empty() => ListParams::default().labels(s),
        _ => ListParams::default(),
    }
}

/// Workloads not yet available, or an error.
async fn workloads_pending(
    client: &Client,
    namespaces: &[String],
    selector: Option<&str>,
) -> Result<(usize, Vec<String>), ReadyError> {
    let mut total = 0;
    let mut pending = Vec::new();
    for ns in namespaces {
        let d: Api<Deployment> = Api::namespaced(client.clone(), ns);
        for x in d
            .list(&params(selector))
            .await
            .map_err(list_error("Deployments", ns))?
            .items
        {
            total += 1;
            let want = x.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let st = x.status.clone().unwrap_or_default();
            let current = st.observed_generation.unwrap_or(0) >= x.metadata.generation.unwrap_or(0);
            let available = st.available_replicas.unwrap_or(0);
            let updated = st.updated_replicas.unwrap_or(0);
            if !(current && available >= want && updated >= want) {
                pending.push(format!("Deployment {ns}/{} {available}/{want}", x.name_any()));
            }
        }
        let s: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
        for x in s
            .list(&params(selector))
            .await
            .map_err(list_error("StatefulSets", ns))?
            .items
        {
            total += 1;
            let want = x.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let st = x.status.clone().unwrap_or_default();
            let current = st.observed_generation.unwrap_or(0) >= x.metadata.generation.unwrap_or(0);
            let ready = st.ready_replicas.unwrap_or(0);
            if !(current && ready >= want) {
                pending.push(format!("StatefulSet {ns}/{} {ready}/{want}", x.name_any()));
            }
        }
    }
    Ok((total, pending))
}

async fn claims_pending(
    client: &Client,
    namespaces: &[String],
    selector: Option<&str>,
) -> Result<(usize, Vec<String>), ReadyError> {
    let mut total = 0;
    let mut pending = Vec::new();
    for ns in namespaces {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
        for c in api
            .list(&params(selector))
            .await
            .map_err(list_error("PersistentVolumeClaims", ns))?
            .items
        {
            total += 1;
            let phase = c
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_default();
            if phase != "Bound" {
                pending.push(format!(
                    "PVC {ns}/{} {}",
                    c.name_any(),
                    if phase.is_empty() { "Pending" } else { &phase }
                ));
            }
        }
    }
    Ok((total, pending))
}

async fn http_ok(http: &reqwest::Client, check: &HttpCheck, target: &str) -> Result<(), ReadyError> {
    let url = check.url.replace("{target}", target);
    let resp = match http.get(&url).send().await {
        Ok(r) => r,
        Err(source) => return Err(ReadyError::Http { url, source }),
    };
    let code = resp.status().as_u16();
    let ok = match check.expect_status {
        Some(want) => code == want,
        None => (200..300).contains(&code),
    };
    if ok {
        Ok(())
    } else {
        Err(ReadyError::HttpStatus { url, code })
    }
}

/// Waits for every gate of `readiness` on `namespaces` of the target, polling; fails after
/// `readiness.timeout_seconds` naming what is still not ready.
pub async fn wait(
    client: &Client,
    namespaces: &[String],
    selector: Option<&str>,
    readiness: &Readiness,
    target: &str,
) -> Result<Vec<Gate>, ReadyError> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(readiness.timeout_seconds.max(1));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(ReadyError::HttpClient)?;
    let mut gates: Vec<Gate> = Vec::new();
    let opened = |gates: &Vec<Gate>, name: &str| gates.iter().any(|g| g.gate == name);
    loop {
        let mut waiting = Vec::new();
        if readiness.workloads && !opened(&gates, "workloads") {
            match workloads_pending(client, namespaces, selector).await {
                Ok((total, p)) if p.is_empty() => gates.push(Gate {
                    gate: "workloads".into(),
                    after_seconds: started.elapsed().as_secs_f64(),
                    detail: format!("{total} Deployments and StatefulSets available"),
                }),
                Ok((_, p)) => waiting.extend(p),
                Err(e) => waiting.push(e.to_string()),
            }
        }
        if readiness.volume_claims && !opened(&gates, "volumeClaims") {
            match claims_pending(client, namespaces, selector).await {
                Ok((total, p)) if p.is_empty() => gates.push(Gate {
                    gate: "volumeClaims".into(),
                    after_seconds: started.elapsed().as_secs_f64(),
                    detail: format!("{total} PersistentVolumeClaims Bound"),
                }),
                Ok((_, p)) => waiting.extend(p),
                Err(e) => waiting.push(e.to_string()),
            }
        }
        for check in &readiness.http {
            if opened(&gates, &check.url) {
                continue;
            }
            match http_ok(&http, check, target).await {
                Ok(()) => gates.push(Gate {
                    gate: check.url.clone(),
                    after_seconds: started.elapsed().as_secs_f64(),
                    detail: "answered".into(),
                }),
                Err(e) => waiting.push(e.to_string()),
            }
        }
        if waiting.is_empty() {
            return Ok(gates);
        }
        if Instant::now() >= deadline {
            return Err(ReadyError::Timeout {
                seconds: readiness.timeout_seconds,
                waiting,
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
