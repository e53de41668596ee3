//! `drctl schedule create|list|pause|unpause`: Schedules are run by the controller.

use anyhow::{Context, Result};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use lifeboat_controller::crd::{BackupSpec, Retention, Schedule, ScheduleSpec};
use serde_json::json;

use super::age;
use crate::cli::{GlobalArgs, ScheduleCommand, ScheduleCreateArgs};
use crate::kube::connect;
use crate::output;

/// Runs a `schedule` subcommand.
pub async fn run(cmd: &ScheduleCommand, g: &GlobalArgs) -> Result<u8> {
    let target = connect(g).await?;
    let api: Api<Schedule> = Api::namespaced(target.client.clone(), &target.namespace);
    match cmd {
        ScheduleCommand::Create(args) => {
            let schedule = Schedule::new(&args.name, spec(args)?);
            api.create(&PostParams::default(), &schedule).await.map_err(|e| {
                super::resource_error(e, format!("create Schedule {}/{}", target.namespace, args.name))
            })?;
            output::print(g.format, &schedule, |_| {
                format!("schedule.lifeboat.dev/{} created\n", args.name)
            })?;
        }
        ScheduleCommand::List => {
            let list = api.list(&Default::default()).await.context("list Schedules")?;
            output::print(g.format, &list.items, |items| {
                let rows: Vec<Vec<String>> = items
                    .iter()
                    .map(|s| {
                        let st = s.status.clone().unwrap_or_default();
                        vec![
                            s.metadata.name.clone().unwrap_or_default(),
                            s.spec.schedule.clone(),
                            s.spec.paused.to_string(),
                            age(st.last_run_time.as_deref()),
                            st.next_run_time.unwrap_or_else(|| "-".to_string()),
                            st.last_successful_backup.unwrap_or_else(|| "-".to_string()),
                        ]
                    })
                    .collect();
                output::table(
                    &[
                        "NAME",
                        "SCHEDULE",
                        "PAUSED",
                        "LAST RUN",
                        "NEXT RUN",
                        "LAST SUCCESS",
                    ],
                    &rows,
                )
            })?;
        }
        ScheduleCommand::Pause { name } | ScheduleCommand::Unpause { name } => {
            let paused = matches!(cmd, ScheduleCommand::Pause { .. });
            api.patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"paused": paused}})),
            )
            .await
            .with_context(|| format!("update Schedule {}/{name}", target.namespace))?;
            note!(
                "schedule.lifeboat.dev/{name} {}",
                if paused { "paused" } else { "unpaused" }
            );
        }
    }
    Ok(0)
}

fn spec(args: &ScheduleCreateArgs) -> Result<ScheduleSpec> {
    // Check the expression and zone here so a typo fails now, not at 2 a.m.
    croner_check(&args.schedule)?;
    if let Some(tz) = &args.time_zone {
        tz.parse::<chrono_tz::Tz>().map_err(|_| {
            anyhow::anyhow!("--time-zone {tz:?} is not an IANA time zone (like Europe/Berlin or UTC)")
        })?;
    }
    Ok(ScheduleSpec {
        schedule: args.schedule.clone(),
        time_zone: args.time_zone.clone(),
        template: BackupSpec {
            repository: args.repository.clone(),
            included_namespaces: args.selection.include_namespaces.clone(),
            excluded_namespaces: args.selection.exclude_namespaces.clone(),
            included_resources: args.selection.include_resources.clone(),
            excluded_resources: args.selection.exclude_resources.clone(),
            label_selector: args.selector.clone(),
            ..BackupSpec::default()
        },
        paused: args.paused,
        retention: Retention {
            keep_last: args.keep_last,
            keep_hourly: args.keep_hourly,
            keep_daily: args.keep_daily,
            keep_weekly: args.keep_weekly,
            keep_monthly: args.keep_monthly,
        },
        ..ScheduleSpec::default()
    })
}

fn croner_check(expr: &str) -> Result<()> {
    expr.parse::<croner::Cron>().map(|_| ()).map_err(|e| {
        anyhow::anyhow!("--schedule {expr:?} is not a cron expression ({e}); e.g. \"0 2 * * *\" or @daily")
    })
}
