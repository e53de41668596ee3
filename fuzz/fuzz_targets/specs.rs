//! Specs and the small languages users write in them: a FailoverPlan file (YAML or JSON, with
//! its validation), Backup/Restore/Schedule/BackupRepository specs as the API server hands
//! them over, cron expressions with time zones, TTLs, durations, bandwidth rates, label
//! selectors, repository URLs, recipients and object paths. The first line of the input is
//! the short text; the rest is the document.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use lifeboat_backup::copy::parse_rate;
use lifeboat_backup::crypto::UserRecipient;
use lifeboat_backup::duration::parse_duration;
use lifeboat_backup::store::Location;
use lifeboat_controller::crd::{BackupRepositorySpec, BackupSpec, RestoreSpec, ScheduleSpec};
use lifeboat_controller::kube_objects::restore::objects_plan::valid_namespace;
use lifeboat_controller::kube_objects::{NamespaceFilter, ResourceFilter};
use lifeboat_controller::reconcile::backup::parse_ttl;
use lifeboat_controller::reconcile::schedule::CronSchedule;
use lifeboat_controller::volumes::LabelSelector;
use lifeboat_federation::crd::FailoverPlan;
use lifeboat_fuzz as _;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (short, document) = text.split_once('\n').unwrap_or((&text, ""));

    let _ = parse_duration(short);
    let _ = parse_ttl(short);
    let _ = parse_rate(short);
    let _ = Location::parse(short);
    let _ = UserRecipient::parse(short);
    let _ = valid_namespace(short);
    if let Ok(selector) = LabelSelector::parse(short) {
        let labels: BTreeMap<String, String> = [("app".to_string(), short.to_string())].into();
        let _ = selector.matches(&labels);
    }
    let (zone, expression) = short.split_once('|').map_or((None, short), |(z, e)| (Some(z), e));
    if let Ok(cron) = CronSchedule::parse(expression, zone) {
        let now = chrono::DateTime::UNIX_EPOCH + chrono::Duration::days(20_000);
        let _ = (cron.latest(now), cron.next(now));
    }
    let globs: Vec<String> = short.split(',').map(str::to_string).collect();
    if let Ok(filter) = NamespaceFilter::new(&globs, &[]) {
        let _ = filter.matches(short);
    }
    if let Ok(filter) = ResourceFilter::new(&[], &globs) {
        let _ = filter.matches(short, short);
    }

    let _ = FailoverPlan::parse(document, "fuzz");
    let _ = serde_yaml::from_str::<BackupSpec>(document);
    let _ = serde_yaml::from_str::<RestoreSpec>(document);
    let _ = serde_yaml::from_str::<ScheduleSpec>(document);
    let _ = serde_yaml::from_str::<BackupRepositorySpec>(document);
});
