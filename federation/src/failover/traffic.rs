//! Switching traffic once the data is ready (never before: the executor runs these steps
//! only after every readiness gate passed). Three kinds of hook: external-dns annotations
//! moved between the clusters' Services, a webhook, or a user command.

use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::crd::TrafficHook;

/// The annotation external-dns reads.
pub const EXTERNAL_DNS_HOSTNAME: &str = "external-dns.alpha.kubernetes.io/hostname";

/// Who the traffic moves between.
pub struct Switch<'a> {
    /// The plan.
    pub plan: &'a str,
    /// The run.
    pub run: &'a str,
    /// The applications.
    pub applications: Vec<String>,
    /// The old holder and a client for it, if reachable.
    pub from: Option<(&'a str, Option<Client>)>,
    /// The target and its client.
    pub to: (&'a str, Client),
    /// The epoch the target holds.
    pub epoch: u64,
    /// Namespace on the primary → on the target.
    pub namespace_mapping: &'a std::collections::BTreeMap<String, String>,
}

/// Why a traffic hook failed.
#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    /// The external-dns annotation could not be set on the target's Service.
    #[error("annotate Service {namespace}/{service} on {cluster}: {source}")]
    Annotate {
        /// The Service's namespace on the target.
        namespace: String,
        /// The Service.
        service: String,
        /// The target.
        cluster: String,
        /// The API's answer.
        source: kube::Error,
    },
    /// No HTTP client could be built.
    #[error("HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
    /// The webhook could not be called.
    #[error("POST {url}: {source}")]
    Webhook {
        /// The webhook.
        url: String,
        /// Why.
        source: reqwest::Error,
    },
    /// The webhook answered with an error status.
    #[error("POST {url}: {code}")]
    WebhookStatus {
        /// The webhook.
        url: String,
        /// Its answer.
        code: reqwest::StatusCode,
    },
    /// `command: []`.
    #[error("hook {0}: empty command; give the program and its arguments")]
    EmptyCommand(String),
    /// The command did not finish in time.
    #[error("{program} did not finish within {seconds} s")]
    Timeout {
        /// The program.
        program: String,
        /// The limit.
        seconds: u64,
    },
    /// The command could not be started.
    #[error("run {program}: {source}")]
    Start {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// The command failed.
    #[error("{program} exited with {status}: {stderr}")]
    Failed {
        /// The program.
        program: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its standard error, trimmed.
        stderr: String,
    },
    /// The hook names neither external-dns, a webhook nor a command.
    #[error("hook {0} sets no action: give externalDns, webhook or command")]
    NoAction(String),
}

/// How long a hook's command may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

fn params() -> PatchParams {
    PatchParams {
        field_manager: Some("lifeboat-federation".to_string()),
        ..PatchParams::default()
    }
}

/// Runs one hook; returns what it did.
pub async fn switch(hook: &TrafficHook, s: &Switch<'_>) -> Result<String, TrafficError> {
    if let Some(dns) = &hook.external_dns {
        let target_ns = s
            .namespace_mapping
            .get(&dns.namespace)
            .cloned()
            .unwrap_or_else(|| dns.namespace.clone());
        let on = json!({"metadata": {"annotations": {EXTERNAL_DNS_HOSTNAME: dns.hostname}}});
        Api::<Service>::namespaced(s.to.1.clone(), &target_ns)
            .patch(&dns.service, &params(), &Patch::Merge(&on))
            .await
            .map_err(|source| TrafficError::Annotate {
                namespace: target_ns.clone(),
                service: dns.service.clone(),
                cluster: s.to.0.to_string(),
                source,
            })?;
        let mut done = format!(
            "{} → Service {target_ns}/{} on {}",
            dns.hostname, dns.service, s.to.0
        );
        if let Some((from, Some(client))) = &s.from {
            let off = json!({"metadata": {"annotations": {EXTERNAL_DNS_HOSTNAME: Value::Null}}});
            match Api::<Service>::namespaced(client.clone(), &dns.namespace)
                .patch(&dns.service, &params(), &Patch::Merge(&off))
                .await
            {
                Ok(_) => done.push_str(&format!("; removed from {from}")),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => done.push_str(&format!("; could not remove it from {from}: {e}")),
            }
        }
        return Ok(done);
    }
    if let Some(w) = &hook.webhook {
        let body = json!({
            "plan": s.plan,
            "run": s.run,
            "applications": s.applications,
            "from": s.from.as_ref().map(|f| f.0),
            "to": s.to.0,
            "epoch": s.epoch,
        });
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(TrafficError::HttpClient)?;
        let resp = http
            .post(&w.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(&body).unwrap_or_default())
            .send()
            .await
            .map_err(|source| TrafficError::Webhook {
                url: w.url.clone(),
                source,
            })?;
        let code = resp.status();
        if !code.is_success() {
            return Err(TrafficError::WebhookStatus {
                url: w.url.clone(),
                code,
            });
        }
        return Ok(format!("POST {}: {code}", w.url));
    }
    if let Some(cmd) = &hook.command {
        let Some((program, args)) = cmd.split_first() else {
            return Err(TrafficError::EmptyCommand(hook.name.clone()));
        };
        let out = tokio::process::Command::new(program)
            .args(args)
            .env("LIFEBOAT_PLAN", s.plan)
            .env("LIFEBOAT_RUN", s.run)
            .env("LIFEBOAT_APPLICATIONS", s.applications.join(","))
            .env("LIFEBOAT_FROM", s.from.as_ref().map(|f| f.0).unwrap_or(""))
            .env("LIFEBOAT_TO", s.to.0)
            .env("LIFEBOAT_EPOCH", s.epoch.to_string())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(COMMAND_TIMEOUT, out)
            .await
            .map_err(|_| TrafficError::Timeout {
                program: program.clone(),
                seconds: COMMAND_TIMEOUT.as_secs(),
            })?
            .map_err(|source| TrafficError::Start {
                program: program.clone(),
                source,
            })?;
        if !out.status.success() {
            return Err(TrafficError::Failed {
                program: program.clone(),
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        return Ok(format!("{program} succeeded"));
    }
    Err(TrafficError::NoAction(hook.name.clone()))
}
