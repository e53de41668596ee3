//! `drctl repo copy`: plan (or copy), then print what was done.

use std::sync::Arc;

use anyhow::Result;
use lifeboat_backup::copy::{self, CopyOptions, CopyPlan, CopyReport, Selection};
use lifeboat_backup::progress::Progress;
use lifeboat_backup::store::{LockMode, LockSettings};

use crate::cli::{CopyArgs, GlobalArgs, LockModeArg};
use crate::output::{self, bytes};
use crate::progress::Bar;
use crate::{exit, open};

pub async fn run(args: &CopyArgs, g: &GlobalArgs) -> Result<u8> {
    let source = open::repository(&args.repo, &args.key).await?;
    let destination = open::destination_store(args)?;
    let selection = if !args.snapshots.is_empty() {
        Selection::Snapshots(args.snapshots.clone())
    } else if !args.tags.is_empty() {
        Selection::Tags(crate::cli::pairs_to_map("--tag", &args.tags)?)
    } else {
        Selection::All
    };
    let options = CopyOptions {
        selection,
        parallelism: args.parallel.max(1),
        bandwidth: args.bandwidth,
        object_lock: args
            .lock_mode
            .zip(args.lock_days)
            .map(|(mode, days)| LockSettings {
                mode: match mode {
                    LockModeArg::Governance => LockMode::Governance,
                    LockModeArg::Compliance => LockMode::Compliance,
                },
                days,
            }),
    };
    let prepared = copy::prepare(&source, &destination, &options).await?;
    if args.dry_run {
        let plan = prepared.plan.clone();
        prepared.release().await;
        output::print(g.format, &plan, plan_text)?;
        return Ok(0);
    }
    let progress = Arc::new(Progress::default());
    let bar = Bar::start(&progress, "copy", g.quiet);
    let report = copy::execute(&source, prepared, &options, progress).await?;
    drop(bar);
    output::print(g.format, &report, report_text)?;
    Ok(if report.ok() { 0 } else { exit::PARTIAL })
}

fn plan_text(p: &CopyPlan) -> String {
    let mut s = format!("dry run: nothing copied\n{} → {}\n", p.source, p.destination);
    if p.create_repository {
        s.push_str("create the repository at the destination (config and key files)\n");
    } else if !p.keys.is_empty() {
        s.push_str(&format!("copy {} key files\n", p.keys.len()));
    }
    s.push_str(&format!(
        "send {} packs ({}); index {} packs already there; {} snapshots already there\n",
        p.transfer.len(),
        bytes(p.bytes),
        p.index_only.len(),
        p.present.len()
    ));
    for snap in &p.snapshots {
        s.push_str(&format!(
            "  copy snapshot {} {} (waits for {} packs, reuses {})\n",
            snap.id.short(),
            snap.time.format("%Y-%m-%d %H:%M:%S"),
            snap.new_packs,
            snap.reused_packs
        ));
    }
    for (id, why) in &p.skipped {
        s.push_str(&format!("  skip snapshot {}: {why}\n", &id[..8.min(id.len())]));
    }
    s
}

fn report_text(r: &CopyReport) -> String {
    let mut s = format!(
        "{} → {}: {} snapshots copied ({} already there), {} packs sent ({}), {} indexed from an earlier run, {} index files{}\n",
        r.source,
        r.destination,
        r.snapshots_copied.len(),
        r.snapshots_present,
        r.packs_copied,
        bytes(r.bytes_copied),
        r.packs_indexed,
        r.index_files_written,
        if r.created { "; repository created" } else { "" }
    );
    if let Some(ret) = &r.retention {
        s.push_str(&format!(
            "objects written are locked ({}) until {}; {} existing objects extended\n",
            ret.mode, ret.until, r.retention_extended
        ));
    }
    if let Some(n) = &r.newest {
        let age = chrono::Utc::now() - n.time;
        s.push_str(&format!(
            "newest snapshot at the destination: {} from {} ({} min old)\n",
            n.id.short(),
            n.time.format("%Y-%m-%d %H:%M:%S"),
            age.num_minutes()
        ));
    }
    for (key, why) in &r.damaged {
        s.push_str(&format!("not copied: {key}: {why}\n"));
    }
    for (id, why) in &r.skipped {
        s.push_str(&format!(
            "snapshot {} not copied: {why}\n",
            &id[..8.min(id.len())]
        ));
    }
    s
}
