//! `drctl restore create|describe` for Kubernetes objects.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use kube::Api;
use kube::api::PostParams;
use lifeboat_backup::progress::Progress;
use lifeboat_controller::crd::{ExistingResourcePolicy, Restore, RestorePhase, RestoreSpec, RestoreSummary};
use lifeboat_controller::kube_objects::{BACKUP_TAG, RestoreOptions, snapshot_to_restore};
use lifeboat_controller::volumes::{
    RestoredOutcome, RestoredVolume, VolumeRestoreRequest, restore_with_volumes,
};
use lifeboat_controller::wait::restore_finished;
use serde::Serialize;

use super::{Mode, decide, print_items};
use crate::UsageError;
use crate::cli::{ExistingPolicyArg, GlobalArgs, RestoreCreateArgs, RestoreRefArgs};
use crate::exit;
use crate::kube::connect;
use crate::output;
use crate::output::bytes;
use crate::progress::{Bar, Lines};

/// What a direct restore did, for `-o json|yaml`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DirectRestore {
    snapshot_id: String,
    phase: RestorePhase,
    dry_run: bool,
    summary: RestoreSummary,
    changes: Vec<String>,
    errors: Vec<lifeboat_controller::crd::ItemMessage>,
    warnings: Vec<lifeboat_controller::crd::ItemMessage>,
    volumes: Vec<RestoredVolume>,
}

/// `--labels` as a map of labels the API server takes (else it would refuse every object).
fn labels(pairs: &[(String, String)]) -> Result<BTreeMap<String, String>, UsageError> {
    let labels = crate::cli::pairs_to_map("--labels", pairs)?;
    for (key, value) in &labels {
        if let Some(why) = lifeboat_controller::kube_objects::restore::objects_plan::label_problem(key, value)
        {
            return Err(UsageError(format!("--labels {key}={value}: {why}")));
        }
    }
    Ok(labels)
}

fn spec(args: &RestoreCreateArgs) -> Result<RestoreSpec, UsageError> {
    Ok(RestoreSpec {
        backup_name: args.from_backup.clone(),
        snapshot_id: args.from_snapshot.clone(),
        included_namespaces: args.selection.include_namespaces.clone(),
        excluded_namespaces: args.selection.exclude_namespaces.clone(),
        included_resources: args.selection.include_resources.clone(),
        excluded_resources: args.selection.exclude_resources.clone(),
        label_selector: args.selector.clone(),
        namespace_mapping: args.namespace_mapping.iter().cloned().collect::<BTreeMap<_, _>>(),
        existing_resource_policy: match args.existing_resource_policy {
            ExistingPolicyArg::None => ExistingResourcePolicy::None,
            ExistingPolicyArg::Update => ExistingResourcePolicy::Update,
        },
        restore_status: args.restore_status,
        labels: labels(&args.labels)?,
        storage_class_mapping: args.storage_class_mapping.iter().cloned().collect(),
        restore_pvs: args.volumes.no_volumes.then_some(false),
        ceph_secret: args.volumes.ceph.ceph_secret.clone(),
        dry_run: args.dry_run,
        ..RestoreSpec::default()
    })
}

/// One line per claim whose data was written (failures and skips are among the errors and
/// warnings).
fn print_volumes(volumes: &[RestoredVolume]) {
    for v in volumes {
        let claim = format!("{}/{}", v.namespace, v.claim);
        let at = v.nfs.clone().unwrap_or_else(|| {
            format!(
                "{}/{}",
                v.pool.as_deref().unwrap_or("?"),
                v.image.as_deref().unwrap_or("?")
            )
        });
        let into = format!(
            "{at} as PersistentVolume {} (StorageClass {})",
            v.persistent_volume.as_deref().unwrap_or("?"),
            v.storage_class.as_deref().unwrap_or("?"),
        );
        match v.outcome {
            RestoredOutcome::Restored => note!(
                "volume {claim}: {} written into {into}",
                bytes(v.written.unwrap_or(0))
            ),
            RestoredOutcome::Planned => note!("volume {claim}: would be written into {into}"),
            RestoredOutcome::Reused => note!(
                "volume {claim}: bound to PersistentVolume {}, written by an earlier run",
                v.persistent_volume.as_deref().unwrap_or("?")
            ),
            RestoredOutcome::Skipped | RestoredOutcome::Failed => {}
        }
    }
}

/// `drctl restore create`.
pub async fn create(args: &RestoreCreateArgs, g: &GlobalArgs) -> Result<u8> {
    let spec = spec(args)?;
    // Checked before the cluster is reached, whichever runs the restore.
    let mut options = RestoreOptions::from_spec(&spec).map_err(|e| UsageError(e.to_string()))?;
    let target = connect(g).await?;
    match decide(&args.mode, &target).await? {
        Mode::Direct(repo) => {
            let snapshot =
                snapshot_to_restore(&repo, args.from_snapshot.as_deref(), args.from_backup.as_deref())
                    .await?;
            if !snapshot.summary.skipped.is_empty() {
                note!(
                    "warning: snapshot {} of backup {} is partial: {} resource type(s) could not be read \
                     when it was taken (`drctl backup describe` names them); restoring what it holds",
                    snapshot.id.map(|i| i.short()).unwrap_or_default(),
                    snapshot.tags.get(BACKUP_TAG).map(String::as_str).unwrap_or("?"),
                    snapshot.summary.skipped.len()
                );
            }
            options.parallelism = args.parallelism.max(1);
            let volumes = VolumeRestoreRequest {
                enabled: !args.volumes.no_volumes,
                access: super::ceph_access(&args.volumes.ceph)?,
                secret: super::ceph_secret(&args.volumes.ceph, &target.namespace),
                parallelism: args.volumes.volume_parallelism,
                workers: 0,
            };
            // One line per volume written, then one for the objects, drawn together.
            let lines = Lines::new(g.quiet);
            let progress: Arc<Progress> = lines.add_items("objects");
            let outcome = restore_with_volumes(
                &target.client,
                &repo,
                &snapshot,
                &options,
                &volumes,
                progress,
                &|claim| lines.add(&format!("volume {claim}")),
            )
            .await?;
            drop(lines);
            let phase = outcome.phase();
            print_volumes(&outcome.volumes);
            print_items("warning", &outcome.warnings);
            print_items("error", &outcome.errors);
            for advice in &outcome.repository_advice {
                note!("hint: {}", crate::hint::repository_advice(*advice, repo.url()));
            }
            let s = &outcome.summary;
            note!(
                "{}{} created, {} updated, {} unchanged, {} skipped (exist), {} filtered, {} failed",
                if args.dry_run { "dry run: would have " } else { "" },
                s.created,
                s.updated,
                s.unchanged,
                s.skipped_existing,
                s.filtered,
                outcome.errors.len()
            );
            let report = DirectRestore {
                snapshot_id: snapshot.id.map(|i| i.to_hex()).unwrap_or_default(),
                phase,
                dry_run: args.dry_run,
                summary: outcome.summary,
                changes: outcome.changes,
                errors: outcome.errors,
                warnings: outcome.warnings,
                volumes: outcome.volumes,
            };
            output::print(g.format, &report, |r| {
                if r.dry_run {
                    r.changes.iter().map(|c| format!("{c}\n")).collect()
                } else {
                    String::new()
                }
            })?;
            Ok(if phase == RestorePhase::Completed {
                0
            } else {
                exit::PARTIAL
            })
        }
        Mode::Controller => {
            if args.volumes.ceph.ceph_conf.is_some() {
                anyhow::bail!(
                    "--ceph-conf is read by drctl itself: use it with --direct (the controller \
                     reads the StorageClasses' secrets)"
                );
            }
            let name = args.name.clone().unwrap_or_else(|| {
                format!(
                    "{}-{}",
                    args.from_backup.as_deref().unwrap_or("snapshot"),
                    chrono::Utc::now().format("%Y%m%d%H%M%S")
                )
            });
            let api: Api<Restore> = Api::namespaced(target.client.clone(), &target.namespace);
            let restore = Restore::new(&name, spec);
            api.create(&PostParams::default(), &restore).await.map_err(|e| {
                super::resource_error(e, format!("create Restore {}/{}", target.namespace, name))
            })?;
            if !args.wait {
                output::print(g.format, &restore, |_| {
                    format!("restore.lifeboat.dev/{name} created\n")
                })?;
                return Ok(0);
            }
            let progress = Arc::new(Progress::default());
            let bar = Bar::start_items(&progress, "restore", g.quiet);
            let done = restore_finished(&api, &name, progress).await?;
            drop(bar);
            finish(&done, g)
        }
    }
}

fn finish(r: &Restore, g: &GlobalArgs) -> Result<u8> {
    let status = r.status.clone().unwrap_or_default();
    print_items("warning", &status.warnings);
    print_items("error", &status.errors);
    if let Some(m) = &status.message {
        note!("{m}");
    }
    output::print(g.format, r, |r| {
        let mut out = format!(
            "{} {:?}: {} restored, {} skipped, {} failed\n",
            r.metadata.name.clone().unwrap_or_default(),
            status.phase,
            status.items_restored,
            status.items_skipped,
            status.items_failed
        );
        for c in &status.changes {
            out.push_str(&format!("{c}\n"));
        }
        out
    })?;
    Ok(match status.phase {
        RestorePhase::Completed => 0,
        RestorePhase::PartiallyFailed => exit::PARTIAL,
        _ => 1,
    })
}

/// `drctl restore describe NAME`.
pub async fn describe(args: &RestoreRefArgs, g: &GlobalArgs) -> Result<u8> {
    let target = connect(g).await?;
    let api: Api<Restore> = Api::namespaced(target.client.clone(), &target.namespace);
    let r = api
        .get(&args.name)
        .await
        .with_context(|| format!("read Restore {}/{}", target.namespace, args.name))?;
    finish(&r, g)
}
