//! `drctl snapshots` and `drctl forget`.

use anyhow::Result;
use lifeboat_backup::maintenance::forget::{RetentionPolicy, forget as apply_forget};

use crate::cli::{ForgetArgs, GlobalArgs, KeyArgs, RepoArgs};
use crate::open;
use crate::output::{self, bytes, table};

pub async fn list(repo: &RepoArgs, key: &KeyArgs, g: &GlobalArgs) -> Result<u8> {
    let r = open::repository(repo, key).await?;
    let snaps = r.snapshots().await?;
    #[derive(serde::Serialize)]
    struct Row<'a> {
        id: String,
        #[serde(flatten)]
        snapshot: &'a lifeboat_backup::snapshot::Snapshot,
    }
    let rows: Vec<Row<'_>> = snaps
        .iter()
        .map(|s| Row {
            id: s.id.map(|i| i.to_hex()).unwrap_or_default(),
            snapshot: s,
        })
        .collect();
    output::print(g.format, &rows, |rows| {
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                let s = r.snapshot;
                vec![
                    r.id[..8.min(r.id.len())].to_string(),
                    s.time.format("%Y-%m-%d %H:%M:%S").to_string(),
                    s.hostname.clone(),
                    s.kind().to_string(),
                    s.paths.join(","),
                    s.summary.files.to_string(),
                    bytes(s.summary.bytes),
                    s.tags
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(","),
                ]
            })
            .collect();
        table(
            &["ID", "TIME", "HOST", "KIND", "PATHS", "FILES", "SIZE", "TAGS"],
            &cells,
        )
    })?;
    Ok(0)
}

pub async fn forget(args: &ForgetArgs, g: &GlobalArgs) -> Result<u8> {
    if !args.ids.is_empty() {
        return forget_ids(args, g).await;
    }
    let policy = RetentionPolicy {
        keep_last: args.keep_last,
        keep_hourly: args.keep_hourly,
        keep_daily: args.keep_daily,
        keep_weekly: args.keep_weekly,
        keep_monthly: args.keep_monthly,
        keep_within: args.keep_within.and_then(|d| d.to_std().ok()),
        keep_tags: args.keep_tags.clone(),
    };
    if policy.is_empty() {
        return Err(crate::UsageError(
            "no --keep-* option that keeps anything (a zero --keep-within keeps nothing) and no snapshot id \
             given; refusing to forget every snapshot (give e.g. --keep-last 7, or the ids to remove)"
                .to_string(),
        )
        .into());
    }
    let r = open::repository(&args.repo, &args.key).await?;
    let forgotten = apply_forget(&r, &policy, args.group_by, args.dry_run).await?;
    // S3 Object Lock may retain some of them: those stay, and are named.
    for (key, retention) in &forgotten.held {
        note!(
            "{key} is locked ({}) until {}: kept; a later forget removes it",
            retention.mode,
            retention.until
        );
    }
    let plan = forgotten.groups;
    output::print(g.format, &plan, |groups| {
        let mut s = String::new();
        if args.dry_run {
            s.push_str("dry run: nothing removed\n");
        }
        for grp in groups {
            s.push_str(&format!("{}\n", grp.group));
            for (id, why) in &grp.keep {
                s.push_str(&format!("  keep   {} ({})\n", id.short(), why.join(", ")));
            }
            for id in &grp.remove {
                s.push_str(&format!("  remove {}\n", id.short()));
            }
        }
        s
    })?;
    Ok(0)
}

/// `forget ID...`: removes the named snapshots (restic's `forget ID`), damaged ones too.
async fn forget_ids(args: &ForgetArgs, g: &GlobalArgs) -> Result<u8> {
    if args.ids.iter().any(|id| id.is_empty()) {
        return Err(crate::UsageError(
            "an empty snapshot id names no snapshot (an unset variable?); give ids or unique prefixes"
                .to_string(),
        )
        .into());
    }
    let r = open::repository(&args.repo, &args.key).await?;
    let ids = r.resolve_snapshot_ids(&args.ids).await?;
    if !args.dry_run {
        r.forget_snapshots(&ids).await?;
    }
    let ids: Vec<String> = ids.iter().map(|id| id.to_hex()).collect();
    #[derive(serde::Serialize)]
    struct Forgotten {
        dry_run: bool,
        remove: Vec<String>,
    }
    let done = Forgotten {
        dry_run: args.dry_run,
        remove: ids,
    };
    output::print(g.format, &done, |f| {
        let mut s = String::new();
        if f.dry_run {
            s.push_str("dry run: nothing removed\n");
        }
        for id in &f.remove {
            s.push_str(&format!("remove {id}\n"));
        }
        s
    })?;
    Ok(0)
}
