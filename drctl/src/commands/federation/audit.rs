//! `drctl audit`: the append-only log of DR actions.

use anyhow::{Result, bail};
use chrono::Utc;
use lifeboat_federation::audit::{self, AuditRecord};

use super::env_from_flags;
use crate::cli::{AuditArgs, GlobalArgs};
use crate::output;

/// `30m`, `24h`, `7d` → seconds.
fn parse_age(s: &str) -> Result<i64> {
    let (n, unit) = s.split_at(s.trim_end_matches(|c: char| c.is_ascii_alphabetic()).len());
    let n: i64 = n
        .parse()
        .map_err(|_| anyhow::anyhow!("--since {s:?}: write a number and s, m, h or d (`24h`)"))?;
    Ok(match unit {
        "s" | "" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => bail!("--since {s:?}: the unit must be s, m, h or d"),
    })
}

fn table(records: &[AuditRecord]) -> String {
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            vec![
                r.time.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                r.action.clone(),
                r.outcome.clone(),
                r.actor.clone(),
                r.plan.clone().unwrap_or_default(),
                r.from.clone().unwrap_or_default(),
                r.to.clone().unwrap_or_default(),
                r.epoch.map(|e| e.to_string()).unwrap_or_default(),
                r.message.clone(),
            ]
        })
        .collect();
    output::table(
        &[
            "TIME", "ACTION", "OUTCOME", "ACTOR", "PLAN", "FROM", "TO", "EPOCH", "MESSAGE",
        ],
        &rows,
    )
}

/// `drctl audit`.
pub async fn audit(args: &AuditArgs, g: &GlobalArgs) -> Result<u8> {
    let since = match &args.since {
        Some(s) => Some(Utc::now() - chrono::Duration::seconds(parse_age(s)?)),
        None => None,
    };
    let env = env_from_flags(g, &args.fed).await?;
    let mut records = audit::list(&env.state, since).await?;
    if let Some(p) = &args.plan {
        records.retain(|r| r.plan.as_deref() == Some(p.as_str()));
    }
    if let Some(since) = since {
        records.retain(|r| r.time >= since);
    }
    output::print(g.format, &records, |r| table(r))?;
    Ok(0)
}
