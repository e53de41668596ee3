//! `drctl drill`: plan, run in isolation, print the measured RPO and RTO, and write the
//! report as JSON, Markdown and HTML.

use std::path::PathBuf;

use anyhow::{Context, Result};
use lifeboat_federation::drill::{self, DrillReport, DrillRequest, render};

use super::failover::plan_table;
use super::plan_env;
use crate::cli::{DrillArgs, GlobalArgs, Output};
use crate::exit;
use crate::output;
use crate::progress::Bar;

fn table(r: &DrillReport) -> String {
    let mut s = String::new();
    let rows: Vec<Vec<String>> = r
        .steps
        .iter()
        .enumerate()
        .map(|(i, st)| {
            vec![
                (i + 1).to_string(),
                st.title.clone(),
                st.state.clone(),
                format!("+{:.1}s", st.start_seconds),
                format!("{:.1}s", st.duration_seconds),
            ]
        })
        .collect();
    s.push_str(&output::table(&["#", "STEP", "STATE", "START", "TOOK"], &rows));
    let target = |name: &str, t: &lifeboat_federation::drill::report::Target| {
        format!(
            "{name}: {} (objective {}) — {}\n",
            t.measured_seconds
                .map(|m| format!("{m:.1} s"))
                .unwrap_or_else(|| "not measured".into()),
            t.objective_seconds
                .map(|o| format!("{o} s"))
                .unwrap_or_else(|| "none".into()),
            if t.met { "met" } else { "MISSED" }
        )
    };
    s.push_str(&target("RPO", &r.rpo));
    s.push_str(&target("RTO", &r.rto));
    s.push_str(&format!(
        "drill {} into {}: {}\n",
        r.run,
        r.target,
        if r.success {
            "succeeded".to_string()
        } else {
            format!("FAILED: {}", r.failure())
        }
    ));
    s
}

/// `drctl drill`.
pub async fn drill(args: &DrillArgs, g: &GlobalArgs) -> Result<u8> {
    let (fp, env) = plan_env(g, &args.fed, &args.volumes, &args.plan).await?;
    let request = DrillRequest {
        to: args.to.clone(),
        namespace_suffix: args.namespace_suffix.clone(),
    };
    let plan = drill::plan(&env, &fp, &request).await?;
    if args.dry_run {
        output::print(g.format, &plan, plan_table)?;
        return Ok(0);
    }
    if g.format == Output::Table {
        note!("{}", plan_table(&plan).trim_end());
    }
    let bar = Bar::start_items(&env.items, "objects", g.quiet);
    let (_, report) = drill::run(&env, &fp, plan).await?;
    drop(bar);
    let dir = args
        .report_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("drill-{}", report.run)));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let write = |name: &str, text: String| -> Result<()> {
        let p = dir.join(name);
        std::fs::write(&p, text).with_context(|| format!("write {}", p.display()))
    };
    write("report.json", serde_json::to_string_pretty(&report)?)?;
    write("report.md", render::markdown(&report))?;
    write("report.html", render::html(&report))?;
    output::print(g.format, &report, table)?;
    if g.format == Output::Table {
        output::write(format!("report: {}/report.{{json,md,html}}\n", dir.display()).as_bytes())?;
    }
    Ok(if report.success { 0 } else { exit::PARTIAL })
}
