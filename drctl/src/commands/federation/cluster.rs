//! `drctl cluster add|list|status|remove`.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::Utc;
use lifeboat_federation::audit::{self, AuditRecord};
use lifeboat_federation::clusters::{self, ClusterRecord, KubeconfigSecret, Role, join};
use lifeboat_federation::fence::blocklist::CephAccess;
use lifeboat_federation::health::{self, Policy, ProbeOptions, Verdict};
use serde::Serialize;

use super::env_from_flags;
use crate::cli::{ClusterAddArgs, ClusterCommand, GlobalArgs, RoleArg};
use crate::output;

/// Runs a `cluster` subcommand.
pub async fn run(cmd: &ClusterCommand, g: &GlobalArgs) -> Result<u8> {
    match cmd {
        ClusterCommand::Add(args) => add(args, g).await,
        ClusterCommand::List { fed } => {
            let env = env_from_flags(g, fed).await?;
            let list: Vec<ClusterRecord> = env.records.into_values().collect();
            output::print(g.format, &list, |l| list_table(l))?;
            Ok(0)
        }
        ClusterCommand::Status {
            name,
            fed,
            probes,
            interval,
            failure_threshold,
            confirmations,
            observer,
        } => {
            let policy = Policy {
                failure_threshold: *failure_threshold,
                confirmations: *confirmations,
                ..Policy::default()
            };
            let probes = Probes {
                count: *probes,
                interval: *interval,
                observer: observer.clone(),
            };
            status(g, fed, name.as_deref(), &probes, policy).await
        }
        ClusterCommand::Remove { name, fed } => remove(g, fed, name).await,
    }
}

fn list_table(list: &[ClusterRecord]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.role.to_string(),
                r.region.clone(),
                r.cloud.clone(),
                r.server.clone(),
                r.context.clone().unwrap_or_default(),
                r.kubeconfig_secret
                    .as_ref()
                    .map(|s| s.name.clone())
                    .unwrap_or_default(),
            ]
        })
        .collect();
    output::table(
        &["NAME", "ROLE", "REGION", "CLOUD", "SERVER", "CONTEXT", "SECRET"],
        &rows,
    )
}

async fn add(args: &ClusterAddArgs, g: &GlobalArgs) -> Result<u8> {
    clusters::valid_name(&args.name).map_err(|e| anyhow::anyhow!("cluster name: {e}"))?;
    let Some(kubeconfig) = g.kubeconfig.clone().or_else(|| {
        args.fed
            .kubeconfig_for
            .iter()
            .find(|(n, _)| *n == args.name)
            .map(|(_, p)| p.clone())
    }) else {
        bail!("pass --kubeconfig FILE (and --context NAME) for the cluster to add");
    };
    if kubeconfig.to_string_lossy().contains(':') {
        bail!("--kubeconfig must name one file for `cluster add`, not a list");
    }
    let env = env_from_flags(g, &args.fed).await?;
    let (client, config) = clusters::connect_kubeconfig(&kubeconfig, g.context.as_deref())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (cluster_id, node_addresses) = clusters::inspect(&client)
        .await
        .with_context(|| format!("reach cluster {} at {}", args.name, config.cluster_url))?;
    let now = Utc::now();
    let added = env.records.get(&args.name).map(|r| r.added).unwrap_or(now);
    let secret = args.kubeconfig_secret.as_ref().map(|name| KubeconfigSecret {
        name: name.clone(),
        key: None,
    });
    let record = ClusterRecord {
        name: args.name.clone(),
        region: args.region.clone(),
        cloud: args.cloud.clone(),
        role: match args.role {
            RoleArg::Primary => Role::Primary,
            RoleArg::Standby => Role::Standby,
        },
        server: config.cluster_url.to_string(),
        context: g.context.clone(),
        kubeconfig_path: std::fs::canonicalize(&kubeconfig)
            .ok()
            .map(|p| p.display().to_string()),
        kubeconfig_secret: secret.clone(),
        cluster_id,
        node_addresses,
        ceph: args.ceph_conf.as_ref().map(|c| CephAccess {
            conf: c.display().to_string(),
            user: args.ceph_user.clone(),
        }),
        controller_namespace: args.controller_namespace.clone(),
        added,
        updated: now,
    };
    let report = clusters::put(&env.state, &record).await?;
    for (url, why) in &report.failed {
        note!("warning: not registered in {url}: {why}");
    }
    if let Some(secret) = &secret {
        let kc = kube::config::Kubeconfig::read_from(&kubeconfig)?;
        let mine = join::minify(&kc, g.context.as_deref()).map_err(|e| anyhow::anyhow!("{e}"))?;
        for other in env.records.values().filter(|r| r.name != record.name) {
            let Ok(theirs) = env.connector.connect(other).await else {
                note!(
                    "warning: {} is unreachable from here: install the Secret there later",
                    other.name
                );
                continue;
            };
            if let Err(e) = join::install(&theirs, &other.controller_namespace, &record, secret, &mine).await
            {
                note!("warning: {}: {e}", other.name);
            }
            // And the other way round, if we hold its kubeconfig here.
            let (Some(their_secret), Some(path)) = (&other.kubeconfig_secret, &other.kubeconfig_path) else {
                continue;
            };
            let Ok(their_kc) = kube::config::Kubeconfig::read_from(path) else {
                continue;
            };
            let Ok(theirs_small) = join::minify(&their_kc, other.context.as_deref()) else {
                continue;
            };
            if let Err(e) = join::install(
                &client,
                &record.controller_namespace,
                other,
                their_secret,
                &theirs_small,
            )
            .await
            {
                note!("warning: {}: {e}", record.name);
            }
        }
    }
    let mut a = AuditRecord::new(
        "cluster-add",
        "done",
        &env.actor,
        format!("{} at {}", record.name, record.server),
    );
    a.to = Some(record.name.clone());
    audit::append(&env.state, &a).await?;
    output::print(g.format, &record, |r| {
        format!(
            "registered {} ({}, {}) at {} in {} repositor{}\n",
            r.name,
            r.role,
            r.region,
            r.server,
            report.written.len(),
            if report.written.len() == 1 { "y" } else { "ies" }
        )
    })?;
    Ok(0)
}

#[derive(Debug, Serialize)]
struct StatusRow {
    cluster: String,
    verdict: Verdict,
    observers: Vec<(String, bool, u32)>,
    checks: Vec<health::Check>,
}

/// How `cluster status` probes: how often, and as which observer.
struct Probes {
    count: u32,
    interval: u64,
    observer: Option<String>,
}

async fn status(
    g: &GlobalArgs,
    fed: &crate::cli::FederationArgs,
    only: Option<&str>,
    probes: &Probes,
    policy: Policy,
) -> Result<u8> {
    let env = env_from_flags(g, fed).await?;
    let observer = probes.observer.clone().unwrap_or_else(|| env.actor.clone());
    if let Some(n) = only
        && !env.records.contains_key(n)
    {
        bail!("cluster {n} is not registered; `drctl cluster list` shows the registered ones");
    }
    let mut rows = Vec::new();
    for record in env.records.values().filter(|r| only.is_none_or(|n| n == r.name)) {
        let client = env.connector.connect(record).await.ok();
        let options = ProbeOptions {
            repositories: env.repositories.values().cloned().collect(),
            ..ProbeOptions::default()
        };
        let mut last = None;
        for n in 0..probes.count.max(1) {
            if n > 0 {
                tokio::time::sleep(Duration::from_secs(probes.interval)).await;
            }
            let result = health::probe(client.as_ref(), record, &options).await;
            last =
                Some(health::observe_and_record(&env.state, &record.name, &observer, result, &policy).await?);
        }
        let Some((obs, verdict)) = last else { continue };
        let all = health::observations(&env.state, &record.name).await?;
        rows.push(StatusRow {
            cluster: record.name.clone(),
            verdict,
            observers: all
                .iter()
                .map(|o| (o.observer.clone(), o.ok, o.consecutive_failures))
                .collect(),
            checks: obs.checks,
        });
    }
    output::print(g.format, &rows, |rows| {
        let mut s = String::new();
        let table_rows: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    r.cluster.clone(),
                    r.verdict.phase().to_string(),
                    r.observers
                        .iter()
                        .map(|(o, ok, n)| {
                            if *ok {
                                format!("{o}:ok")
                            } else {
                                format!("{o}:{n} failed")
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(" "),
                    r.verdict.describe(&policy),
                ]
            })
            .collect();
        s.push_str(&output::table(
            &["CLUSTER", "HEALTH", "OBSERVERS", "VERDICT"],
            &table_rows,
        ));
        for r in rows {
            for c in &r.checks {
                s.push_str(&format!(
                    "  {} {}: {} ({}) {}\n",
                    r.cluster,
                    c.name,
                    if c.ok {
                        "ok"
                    } else if c.critical {
                        "FAILED"
                    } else {
                        "degraded"
                    },
                    c.message,
                    format_args!("{} ms", c.millis)
                ));
            }
        }
        s
    })?;
    Ok(
        if rows.iter().any(|r| matches!(r.verdict, Verdict::Failed { .. })) {
            crate::exit::PARTIAL
        } else {
            0
        },
    )
}

async fn remove(g: &GlobalArgs, fed: &crate::cli::FederationArgs, name: &str) -> Result<u8> {
    let env = env_from_flags(g, fed).await?;
    let Some(record) = env.records.get(name).cloned() else {
        bail!("cluster {name} is not registered; `drctl cluster list` shows the registered ones");
    };
    for other in env.records.values().filter(|r| r.name != name) {
        if let Ok(client) = env.connector.connect(other).await
            && let Err(e) = join::uninstall(&client, &other.controller_namespace, name).await
        {
            note!("warning: {}: {e}", other.name);
        }
    }
    clusters::remove(&env.state, name).await?;
    let mut a = AuditRecord::new(
        "cluster-remove",
        "done",
        &env.actor,
        format!("{} at {}", record.name, record.server),
    );
    a.from = Some(record.name.clone());
    audit::append(&env.state, &a).await?;
    crate::output::write(format!("removed {name}\n").as_bytes())?;
    Ok(0)
}
