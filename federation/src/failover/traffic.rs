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

fn params() -> PatchParams {
    PatchParams {
        field_manager: Some("lifeboat-federation".to_string()),
        ..PatchParams::default()
    }
}

/// Runs one hook; returns what it did.
pub async fn switch(hook: &TrafficHook, s: &Switch<'_>) -> Result<String, String> {
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
            .map_err(|e| format!("annotate Service {target_ns}/{} on {}: {e}", dns.service, s.to.0))?;
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
            .map_err(|e| format!("HTTP client: {e}"))?;
        let resp = http
            .post(&w.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(&body).unwrap_or_default())
            .send()
            .await
            .map_err(|e| format!("POST {}: {e}", w.url))?;
        let code = resp.status();
        if !code.is_success() {
            return Err(format!("POST {}: {code}", w.url));
        }
        return Ok(format!("POST {}: {code}", w.url));
    }
    if let Some(cmd) = &hook.command {
        let Some((program, args)) = cmd.split_first() else {
            return Err("empty command".to_string());
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
        let out = tokio::time::timeout(Duration::from_secs(300), out)
            .await
            .map_err(|_| format!("{program} did not finish within 300 s"))?
            .map_err(|e| format!("run {program}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{program} exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        return Ok(format!("{program} succeeded"));
    }
    Err(format!("hook {} sets no action", hook.name))
}
