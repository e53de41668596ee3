//! One run of a Backup: validate, open the repository, back up objects or etcd while writing
//! progress to status, then write the result. Runs as a task of its own so a long backup does
//! not hold a reconcile worker.

use std::sync::Arc;

use kube::{Api, Resource, ResourceExt};
use lifeboat_backup::progress::Progress;

use super::etcd::{backup_etcd, etcd_endpoints};
use crate::crd::{AccessMode, Backup, BackupPhase, BackupStatus, Condition, ItemMessage};
use crate::kube_objects::{BACKUP_TAG, BackupRequest};
use crate::reconcile::context::Context;
use crate::reconcile::finish::{Finished, Run, RunKind, Succeeded};
use crate::reconcile::in_flight::{VolumeBoard, run_reporting};
use crate::reconcile::outcome::{Failure, MAX_VOLUMES_IN_STATUS, capped};
use crate::repository::{get_repository, open_repository};
use crate::volumes::{
    CatalogEntry, CephAccess, EtcdPoint, SecretRef, VolumeOutcome, VolumeRequest, backup_with_volumes,
};

/// Refuses a backup that would include an application this cluster was fenced off (see
/// [`crate::fence`]).
fn refuse_if_fenced(
    repo_obj: &crate::crd::BackupRepository,
    namespace: &str,
    filter: &crate::kube_objects::NamespaceFilter,
) -> Result<(), Failure> {
    let name = format!("{namespace}/{}", repo_obj.name_any());
    match crate::fence::refusal(&name, repo_obj.annotations(), filter) {
        Some(refused) => Err(Failure::Invalid(refused.to_string())),
        None => Ok(()),
    }
}

/// What a successful run stored.
struct Stored {
    snapshot_id: String,
    items: u64,
    skipped: u64,
    bytes: u64,
    warnings: Vec<ItemMessage>,
    errors: Vec<ItemMessage>,
    /// Aggregated API group versions left out (their server is unavailable).
    skipped_groups: Vec<ItemMessage>,
    /// Group versions of this cluster that could not be read.
    unreadable_groups: Vec<String>,
    /// What became of each claim's volume data.
    volumes: Vec<CatalogEntry>,
    /// The etcd snapshot taken in the same recovery point.
    etcd: Option<EtcdPoint>,
}

async fn execute(
    ctx: &Context,
    backup: &Backup,
    progress: Arc<Progress>,
    board: VolumeBoard,
) -> Result<Stored, Failure> {
    let name = backup.name_any();
    let namespace = backup.namespace().unwrap_or_default();
    let spec = &backup.spec;
    // An etcd Backup that names namespaces too takes them in the same recovery point.
    let request = match &spec.etcd {
        Some(_) if spec.included_namespaces.is_empty() => None,
        _ => Some(BackupRequest::from_spec(&name, spec)?),
    };
    let repo_obj = get_repository(&ctx.client, &namespace, &spec.repository).await?;
    if repo_obj.spec.access_mode == AccessMode::ReadOnly {
        return Err(Failure::Invalid(format!(
            "BackupRepository {namespace}/{} is ReadOnly (restores only); back up into a ReadWrite \
             repository or set its spec.accessMode to ReadWrite",
            spec.repository
        )));
    }
    if let Some(request) = &request {
        refuse_if_fenced(&repo_obj, &namespace, &request.filter.namespaces)?;
    }
    let repo = open_repository(&ctx.client, &repo_obj).await?;
    match (&spec.etcd, request) {
        (Some(source), None) => {
            let mut tags = spec.tags.clone();
            tags.insert(BACKUP_TAG.to_string(), name.clone());
            let snap = backup_etcd(&ctx.client, &namespace, source, &repo, tags, progress).await?;
            Ok(Stored {
                snapshot_id: snap.id.map(|i| i.to_hex()).unwrap_or_default(),
                items: 1,
                skipped: 0,
                bytes: snap.summary.new_bytes,
                warnings: Vec::new(),
                errors: Vec::new(),
                skipped_groups: Vec::new(),
                unreadable_groups: Vec::new(),
                volumes: Vec::new(),
                etcd: None,
            })
        }
        (etcd, Some(request)) => {
            let etcd = match etcd {
                Some(source) => Some(etcd_endpoints(&ctx.client, &namespace, source).await?),
                None => None,
            };
            // Ceph keys from the claims' Secrets go through a short-lived file under /tmp
            // (the chart mounts a memory-backed emptyDir there).
            let volumes = VolumeRequest {
                selection: spec.volumes.clone(),
                access: CephAccess::FromCluster {
                    dir: std::env::temp_dir(),
                },
                // The Backup's Secret, else its repository's (both in its namespace).
                secret: spec
                    .volumes
                    .as_ref()
                    .and_then(|v| v.ceph_secret.clone())
                    .or_else(|| repo_obj.spec.ceph_secret.clone())
                    .map(|name| SecretRef {
                        namespace: namespace.clone(),
                        name,
                    }),
                parallelism: 4,
                workers: 0,
            };
            // Each volume's counters go to status.volumeProgress, and add up in status.progress.
            let etcd = etcd.as_ref().map(|(endpoints, _tls_dir)| endpoints);
            let out = backup_with_volumes(&ctx.client, &repo, &request, &volumes, etcd, progress, &|claim| {
                board.track(claim)
            })
            .await?;
            Ok(Stored {
                snapshot_id: out.snapshot.id.map(|i| i.to_hex()).unwrap_or_default(),
                items: out.items,
                skipped: out.skipped,
                bytes: out.snapshot.summary.new_bytes,
                warnings: out.warnings,
                errors: out.errors,
                skipped_groups: out.skipped_groups,
                unreadable_groups: out.unreadable_groups,
                volumes: out.volumes,
                etcd: out.etcd,
            })
        }
        (None, None) => Err(Failure::Failed("nothing to back up".to_string())),
    }
}

/// The condition type saying whether every API group could be discovered.
pub const API_GROUPS_DISCOVERED: &str = "APIGroupsDiscovered";

/// `APIGroupsDiscovered`: False when an aggregated API was skipped (its server is down) or a
/// group the API server serves could not be read (then its objects are in `errors` too).
fn discovery_condition(skipped_groups: &[ItemMessage], unreadable: &[String]) -> Condition {
    let skipped: Vec<&str> = skipped_groups.iter().map(|g| g.item.as_str()).collect();
    match (skipped.is_empty(), unreadable.is_empty()) {
        (true, true) => Condition::new(API_GROUPS_DISCOVERED, true, "AllDiscovered", ""),
        (false, true) => Condition::new(
            API_GROUPS_DISCOVERED,
            false,
            "AggregatedAPIUnavailable",
            format!(
                "not backed up, their aggregated API server is unavailable (see status.warnings): {}",
                skipped.join(", ")
            ),
        ),
        _ => Condition::new(
            API_GROUPS_DISCOVERED,
            false,
            "APIGroupUnavailable",
            format!(
                "could not be read (see status.errors and status.warnings): {}",
                unreadable
                    .iter()
                    .map(String::as_str)
                    .chain(skipped.iter().copied())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
    }
}

/// Runs `backup`, whose status (`running`) already says InProgress, to the end.
pub async fn run(ctx: Arc<Context>, backup: Arc<Backup>, running: BackupStatus) {
    let name = backup.name_any();
    let namespace = backup.namespace().unwrap_or_default();
    let api: Api<Backup> = Api::namespaced(ctx.client.clone(), &namespace);
    let reference = backup.object_ref(&());
    let note = format!(
        "attempt {} into repository {}",
        running.attempts, backup.spec.repository
    );
    let run = Run::start(&ctx, &api, (&name, &namespace), &reference, RunKind::Backup, note).await;

    let progress = Arc::new(Progress::default());
    let board = VolumeBoard::default();
    let (result, current) = {
        let (run_ctx, run_backup, run_progress) = (ctx.clone(), backup.clone(), progress.clone());
        let run_board = board.clone();
        run_reporting(
            &api,
            &name,
            ctx.config.progress_interval,
            running.clone(),
            &progress,
            |s, mut p| {
                board.report(&mut p, &mut s.volume_progress);
                s.progress = Some(p);
            },
            move || async move { execute(&run_ctx, &run_backup, run_progress, run_board).await },
        )
        .await
    };
    let attempt = current.attempts;
    // An etcd-only Backup has no objects to match.
    let etcd = backup.spec.etcd.is_some() && backup.spec.included_namespaces.is_empty();
    run.finish(
        current,
        board.final_progress(&progress),
        result,
        |message| format!("attempt {attempt} interrupted: {message}; retrying"),
        |done, stored| stored_status(done, stored, etcd),
    )
    .await;
}

/// Puts what a successful run stored into `done` (an etcd backup, `etcd`, has no objects to
/// match).
fn stored_status(done: &mut BackupStatus, stored: Stored, etcd: bool) -> Succeeded {
    done.phase = BackupPhase::of_finished(stored.errors.len());
    done.snapshot_id = Some(stored.snapshot_id);
    done.etcd = stored.etcd;
    done.items_backed_up = stored.items;
    done.items_skipped = stored.skipped;
    done.bytes_added = stored.bytes;
    done.error_count = stored.errors.len() as u64;
    done.message = (!stored.errors.is_empty()).then(|| {
        format!(
            "{} items could not be backed up; each is listed in status.errors",
            stored.errors.len()
        )
    });
    Condition::set(
        &mut done.conditions,
        discovery_condition(&stored.skipped_groups, &stored.unreadable_groups),
    );
    done.warnings = capped(stored.skipped_groups.into_iter().chain(stored.warnings).collect());
    done.errors = capped(stored.errors);
    // The claims selection left out are in the catalog only: a Backup of a whole cluster
    // with volumes off would otherwise list every claim here.
    done.volume_progress = Vec::new();
    done.volumes = stored
        .volumes
        .into_iter()
        .filter(|v| v.outcome != VolumeOutcome::Excluded)
        .take(MAX_VOLUMES_IN_STATUS)
        .collect();
    Condition::set(&mut done.conditions, Condition::new("Valid", true, "Valid", ""));
    if stored.items == 0 && !etcd {
        // Not a failure (the namespaces may be empty on purpose), but never silent.
        let hint = "the backup matched no objects: check spec.includedNamespaces, \
                    spec.includedResources and spec.labelSelector";
        Condition::set(
            &mut done.conditions,
            Condition::new("MatchedObjects", false, "NothingMatched", hint),
        );
        done.message = Some(hint.to_string());
    } else {
        Condition::set(
            &mut done.conditions,
            Condition::new("MatchedObjects", true, "Matched", ""),
        );
    }
    let finished = if done.phase == BackupPhase::Completed {
        Finished::Completed
    } else {
        Finished::PartiallyFailed
    };
    Succeeded {
        finished,
        items: stored.items,
        bytes: stored.bytes,
        note: format!(
            "{} items in snapshot {}",
            stored.items,
            done.snapshot_id.as_deref().unwrap_or("")
        ),
    }
}
