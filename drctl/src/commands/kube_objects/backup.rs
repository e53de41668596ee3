//! `drctl backup create|list|describe|delete` for Kubernetes objects.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use lifeboat_backup::progress::Progress;
use lifeboat_backup::snapshot::Snapshot;
use lifeboat_controller::crd::{
    Backup, BackupPhase, BackupSpec, ClusterScoped, EtcdSource, ItemMessage, SecretKeyRef, VolumeSelection,
};
use lifeboat_controller::kube_objects::{
    BACKUP_TAG, BackupRequest, backup_snapshots, forget_backup, object_snapshots,
};
use lifeboat_controller::volumes::{
    CatalogEntry, EtcdPoint, VolumeOutcome, VolumeRequest, backup_with_volumes, read_catalog,
};
use lifeboat_controller::wait::backup_finished;
use lifeboat_etcd::{EtcdEndpoints, EtcdTlsFiles};
use serde::Serialize;

use super::{Mode, Resolved, age, decide, print_items, resolve};
use crate::UsageError;
use crate::cli::{BackupCreateArgs, BackupEtcdArgs, BackupRefArgs, ClusterScopedArg, GlobalArgs};
use crate::exit;
use crate::kube::connect;
use crate::output::{self, bytes};
use crate::progress::{Bar, Lines};

/// What a direct backup did, for `-o json|yaml`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DirectBackup {
    name: String,
    snapshot_id: String,
    phase: BackupPhase,
    items_backed_up: u64,
    items_skipped: u64,
    bytes_added: u64,
    /// Aggregated API group versions not backed up because their server is unavailable.
    skipped_api_groups: Vec<ItemMessage>,
    warnings: Vec<ItemMessage>,
    errors: Vec<ItemMessage>,
    /// What became of each claim's volume data.
    volumes: Vec<CatalogEntry>,
    /// The etcd snapshot taken in the same recovery point (`--etcd-endpoints`).
    #[serde(skip_serializing_if = "Option::is_none")]
    etcd: Option<EtcdPoint>,
}

fn spec(args: &BackupCreateArgs) -> BackupSpec {
    let etcd = (!args.etcd.etcd_endpoints.is_empty()).then(|| EtcdSource {
        endpoints: args.etcd.etcd_endpoints.clone(),
        tls_secret: args
            .etcd
            .etcd_tls_secret
            .clone()
            .map(|name| SecretKeyRef { name, key: None }),
    });
    // `spec.etcd` without namespaces is an etcd-only Backup: `*` keeps every namespace.
    let included_namespaces = match (&etcd, args.selection.include_namespaces.is_empty()) {
        (Some(_), true) => vec!["*".to_string()],
        _ => args.selection.include_namespaces.clone(),
    };
    BackupSpec {
        repository: args.repository.clone(),
        included_namespaces,
        etcd,
        excluded_namespaces: args.selection.exclude_namespaces.clone(),
        included_resources: args.selection.include_resources.clone(),
        excluded_resources: args.selection.exclude_resources.clone(),
        cluster_scoped: match args.cluster_scoped {
            ClusterScopedArg::Auto => ClusterScoped::Auto,
            ClusterScopedArg::Include => ClusterScoped::Include,
            ClusterScopedArg::Exclude => ClusterScoped::Exclude,
        },
        label_selector: args.selector.clone(),
        ttl: args.ttl.clone(),
        volumes: volume_selection(args),
        ..BackupSpec::default()
    }
}

/// The etcd endpoints of a direct run, TLS files included; none without `--etcd-endpoints`.
fn direct_etcd(args: &BackupEtcdArgs) -> Result<Option<EtcdEndpoints>> {
    if args.etcd_endpoints.is_empty() {
        return Ok(None);
    }
    if args.etcd_tls_secret.is_some() {
        bail!(
            "--etcd-tls-secret is read by the controller: with --direct give the files \
             (--etcd-cacert, --etcd-cert, --etcd-key)"
        );
    }
    let tls = match (&args.etcd_cacert, &args.etcd_cert, &args.etcd_key) {
        (Some(ca), cert, key) => Some(EtcdTlsFiles {
            ca: ca.clone(),
            cert: cert.clone(),
            key: key.clone(),
        }),
        (None, None, None) => None,
        (None, _, _) => bail!("--etcd-cert and --etcd-key need --etcd-cacert to verify the etcd server"),
    };
    Ok(Some(EtcdEndpoints {
        urls: args.etcd_endpoints.clone(),
        tls,
    }))
}

/// `spec.volumes` from the flags; none when they say nothing (every bound claim).
fn volume_selection(args: &BackupCreateArgs) -> Option<VolumeSelection> {
    let v = &args.volumes;
    let selection = VolumeSelection {
        enabled: !v.no_volumes,
        label_selector: v.volume_selector.clone(),
        included_storage_classes: v.volume_include_storage_class.clone(),
        excluded_storage_classes: v.volume_exclude_storage_class.clone(),
        ceph_secret: v.ceph.ceph_secret.clone(),
        ..VolumeSelection::default()
    };
    (selection != VolumeSelection::default()).then_some(selection)
}

/// One line per claim whose data was taken or left out by the selection (the ones that
/// could not be taken are among the errors).
fn print_volumes(volumes: &[CatalogEntry]) {
    for v in volumes {
        let claim = format!("{}/{}", v.namespace, v.claim);
        match v.outcome {
            VolumeOutcome::BackedUp => note!(
                "volume {claim}: {} ({}), {} read, snapshot {}",
                v.location(),
                bytes(v.size.unwrap_or(0)),
                v.read.as_deref().unwrap_or("?"),
                v.snapshot_id.as_deref().map_or("-", |s| &s[..s.len().min(12)]),
            ),
            VolumeOutcome::Excluded => {
                note!("volume {claim}: excluded: {}", v.reason.as_deref().unwrap_or(""))
            }
            VolumeOutcome::NotBackedUp | VolumeOutcome::Failed => {}
        }
    }
}

/// `drctl backup create`.
pub async fn create(args: &BackupCreateArgs, g: &GlobalArgs) -> Result<u8> {
    let target = connect(g).await?;
    let spec = spec(args);
    match decide(&args.mode, &target).await? {
        Mode::Direct(repo) => {
            let request =
                BackupRequest::from_spec(&args.name, &spec).map_err(|e| UsageError(e.to_string()))?;
            // A cluster fenced off an application (another took it over) must not back it up
            // into the shared repository, whoever runs the backup.
            let filter = &request.filter.namespaces;
            match lifeboat_controller::fence::refusal_on_cluster(&target.client, repo.url(), filter).await {
                Ok(None) => {}
                Ok(Some(refused)) => return Err(refused.into()),
                // Someone allowed to back up but not to list BackupRepositories: the controller
                // still enforces the marks on its own backups.
                Err(kube::Error::Api(e)) if e.code == 403 => note!(
                    "warning: cannot read the BackupRepositories' fencing marks ({}); backing up without \
                     checking whether this cluster was fenced off",
                    e.message
                ),
                Err(e) => return Err(e).context("read the BackupRepositories' fencing marks"),
            }
            let etcd = direct_etcd(&args.etcd)?;
            let volumes = VolumeRequest {
                selection: spec.volumes.clone(),
                access: super::ceph_access(&args.volumes.ceph)?,
                secret: super::ceph_secret(&args.volumes.ceph, &target.namespace),
                parallelism: args.volumes.volume_parallelism,
                workers: 0,
            };
            // One line for the objects and one per volume, drawn together.
            let lines = Lines::new(g.quiet);
            let progress = lines.add_items("objects");
            let outcome = backup_with_volumes(
                &target.client,
                &repo,
                &request,
                &volumes,
                etcd.as_ref(),
                progress,
                &|claim| lines.add(&format!("volume {claim}")),
            )
            .await?;
            drop(lines);
            let phase = outcome.phase();
            print_volumes(&outcome.volumes);
            print_items("skipped API group", &outcome.skipped_groups);
            print_items("warning", &outcome.warnings);
            print_items("error", &outcome.errors);
            let s = &outcome.snapshot.summary;
            note!(
                "{}: {} objects, {} skipped, {} new, {} stored in {:.1}s",
                args.name,
                outcome.items,
                outcome.skipped,
                bytes(s.new_bytes),
                bytes(s.stored_bytes),
                s.duration_ms as f64 / 1000.0
            );
            if let Some(e) = &outcome.etcd {
                note!(
                    "etcd snapshot {} at revision {}, in the same recovery point",
                    e.snapshot_id,
                    e.revision
                );
            }
            if outcome.items == 0 {
                note!("warning: the backup matched no objects; check --include-namespaces and --selector");
            }
            let report = DirectBackup {
                name: args.name.clone(),
                snapshot_id: outcome.snapshot.id.map(|i| i.to_hex()).unwrap_or_default(),
                phase,
                items_backed_up: outcome.items,
                items_skipped: outcome.skipped,
                bytes_added: s.new_bytes,
                skipped_api_groups: outcome.skipped_groups,
                warnings: outcome.warnings,
                errors: outcome.errors,
                volumes: outcome.volumes,
                etcd: outcome.etcd,
            };
            output::print(g.format, &report, |r| format!("{}\n", r.snapshot_id))?;
            Ok(if phase == BackupPhase::Completed {
                0
            } else {
                exit::PARTIAL
            })
        }
        Mode::Controller => {
            let e = &args.etcd;
            if e.etcd_cacert.is_some() || e.etcd_cert.is_some() {
                bail!(
                    "--etcd-cacert, --etcd-cert and --etcd-key are read by drctl itself: use them \
                     with --direct, or give the controller a Secret with --etcd-tls-secret"
                );
            }
            if args.volumes.ceph.ceph_conf.is_some() {
                bail!(
                    "--ceph-conf is read by drctl itself: use it with --direct (the controller \
                     reads the StorageClasses' secrets)"
                );
            }
            let api: Api<Backup> = Api::namespaced(target.client.clone(), &target.namespace);
            let backup = Backup::new(&args.name, spec);
            api.create(&PostParams::default(), &backup).await.map_err(|e| {
                super::resource_error(e, format!("create Backup {}/{}", target.namespace, args.name))
            })?;
            if !args.wait {
                output::print(g.format, &backup, |_| {
                    format!("backup.lifeboat.dev/{} created\n", args.name)
                })?;
                return Ok(0);
            }
            let progress = Arc::new(Progress::default());
            let bar = Bar::start_items(&progress, "backup", g.quiet);
            let done = backup_finished(&api, &args.name, progress).await?;
            drop(bar);
            finish(&done, g)
        }
    }
}

fn finish(b: &Backup, g: &GlobalArgs) -> Result<u8> {
    let status = b.status.clone().unwrap_or_default();
    print_items("warning", &status.warnings);
    print_items("error", &status.errors);
    for c in status.conditions.iter().filter(|c| c.status == "False") {
        note!("condition {} is False ({}): {}", c.type_, c.reason, c.message);
    }
    if let Some(m) = &status.message {
        note!("{m}");
    }
    output::print(g.format, b, |b| {
        format!(
            "{} {:?}: {} objects, snapshot {}\n",
            b.metadata.name.clone().unwrap_or_default(),
            status.phase,
            status.items_backed_up,
            status.snapshot_id.clone().unwrap_or_else(|| "-".to_string())
        )
    })?;
    Ok(match status.phase {
        BackupPhase::Completed => 0,
        BackupPhase::PartiallyFailed => exit::PARTIAL,
        _ => 1,
    })
}

fn snapshot_rows(snaps: &[Snapshot]) -> String {
    let rows: Vec<Vec<String>> = snaps
        .iter()
        .map(|s| {
            vec![
                s.tags.get(BACKUP_TAG).cloned().unwrap_or_default(),
                s.id.map(|i| i.to_hex()[..12].to_string()).unwrap_or_default(),
                s.time.format("%Y-%m-%d %H:%M:%S").to_string(),
                snapshot_phase(s).to_string(),
                s.summary.files.to_string(),
                bytes(s.summary.new_bytes),
                s.summary.skipped.len().to_string(),
                s.summary.warnings.len().to_string(),
            ]
        })
        .collect();
    output::table(
        &[
            "NAME", "SNAPSHOT", "TIME", "PHASE", "OBJECTS", "ADDED", "ERRORS", "WARNINGS",
        ],
        &rows,
    )
}

/// A direct backup's phase, as its snapshot records it: `PartiallyFailed` when some types
/// could not be read (`summary.skipped`), else `Completed`.
pub fn snapshot_phase(s: &Snapshot) -> &'static str {
    if s.summary.skipped.is_empty() {
        "Completed"
    } else {
        "PartiallyFailed"
    }
}

/// The volume catalog as a table.
fn volume_rows(volumes: &[CatalogEntry]) -> String {
    let rows: Vec<Vec<String>> = volumes
        .iter()
        .map(|v| {
            let image = v.location();
            vec![
                format!("{}/{}", v.namespace, v.claim),
                format!("{:?}", v.outcome),
                v.driver.clone().unwrap_or_else(|| "-".to_string()),
                image,
                v.size.map_or("-".to_string(), bytes),
                v.read.clone().unwrap_or_else(|| "-".to_string()),
                v.snapshot_id
                    .as_deref()
                    .map_or("-".to_string(), |s| s.chars().take(12).collect()),
                if v.outcome == VolumeOutcome::BackedUp {
                    v.time.clone().unwrap_or_default()
                } else {
                    v.reason.clone().unwrap_or_default()
                },
            ]
        })
        .collect();
    output::table(
        &[
            "CLAIM",
            "OUTCOME",
            "DRIVER",
            "IMAGE / DIRECTORY",
            "SIZE",
            "READ",
            "SNAPSHOT",
            "TIME / REASON",
        ],
        &rows,
    )
}

/// `drctl backup list`.
pub async fn list(args: &BackupRefArgs, g: &GlobalArgs) -> Result<u8> {
    match resolve(&args.mode, g).await? {
        Resolved::Direct(repo) => {
            let snaps = object_snapshots(&repo, args.name.as_deref()).await?;
            output::print(g.format, &snaps, |s| snapshot_rows(s))?;
        }
        Resolved::Controller(target) => {
            let api: Api<Backup> = Api::namespaced(target.client.clone(), &target.namespace);
            let list = api.list(&Default::default()).await.context("list Backups")?;
            output::print(g.format, &list.items, |items| {
                let rows: Vec<Vec<String>> = items
                    .iter()
                    .map(|b| {
                        let s = b.status.clone().unwrap_or_default();
                        vec![
                            b.metadata.name.clone().unwrap_or_default(),
                            format!("{:?}", s.phase),
                            s.items_backed_up.to_string(),
                            s.errors.len().to_string(),
                            s.snapshot_id
                                .map(|i| i.chars().take(12).collect())
                                .unwrap_or_default(),
                            age(b
                                .metadata
                                .creation_timestamp
                                .as_ref()
                                .map(|t| t.0.to_string())
                                .as_deref()),
                        ]
                    })
                    .collect();
                output::table(&["NAME", "PHASE", "ITEMS", "ERRORS", "SNAPSHOT", "AGE"], &rows)
            })?;
        }
    }
    Ok(0)
}

/// `drctl backup describe NAME`.
pub async fn describe(args: &BackupRefArgs, g: &GlobalArgs) -> Result<u8> {
    let Some(name) = &args.name else {
        bail!("which Backup? pass its name");
    };
    match resolve(&args.mode, g).await? {
        Resolved::Direct(repo) => {
            let snaps = backup_snapshots(&repo, name).await?;
            let snap = &snaps[0];
            let catalog = read_catalog(&repo, snap).await?.unwrap_or_default();
            let (volumes, point) = (catalog.volumes, catalog.point);
            // The snapshot as `backup list` shows it, plus its volume catalog and point.
            let mut shown = serde_json::to_value(snap)?;
            shown["phase"] = snapshot_phase(snap).into();
            shown["volumes"] = serde_json::to_value(&volumes)?;
            if let Some(point) = &point {
                shown["point"] = serde_json::to_value(point)?;
            }
            output::print(g.format, &shown, |_| {
                let mut out = snapshot_rows(std::slice::from_ref(snap));
                for e in &snap.summary.skipped {
                    out.push_str(&format!("error: {}: {}\n", e.path, e.error));
                }
                for w in &snap.summary.warnings {
                    out.push_str(&format!("warning: {w}\n"));
                }
                if let Some(p) = &point {
                    let volumes = match &p.volumes_at {
                        Some(at) => format!("volumes snapshotted by {at}, "),
                        None => "no volume snapshot, ".to_string(),
                    };
                    out.push_str(&format!(
                        "recovery point: {volumes}objects read from {} (resourceVersion {})\n",
                        p.objects_from,
                        p.resource_version.as_deref().unwrap_or("unknown"),
                    ));
                    if let Some(e) = &p.etcd {
                        out.push_str(&format!(
                            "etcd: snapshot {} at revision {}, taken {} (drctl etcd restore {} --output FILE)\n",
                            e.snapshot_id, e.revision, e.taken_at, e.snapshot_id
                        ));
                    }
                }
                if !volumes.is_empty() {
                    out.push('\n');
                    out.push_str(&volume_rows(&volumes));
                }
                out
            })?;
        }
        Resolved::Controller(target) => {
            let api: Api<Backup> = Api::namespaced(target.client.clone(), &target.namespace);
            let b = api
                .get(name)
                .await
                .with_context(|| format!("read Backup {}/{name}", target.namespace))?;
            output::print(g.format, &b, |b| serde_yaml::to_string(b).unwrap_or_default())?;
        }
    }
    Ok(0)
}

/// `drctl backup delete NAME`.
pub async fn delete(args: &BackupRefArgs, g: &GlobalArgs) -> Result<u8> {
    let Some(name) = &args.name else {
        bail!("which Backup? pass its name");
    };
    match resolve(&args.mode, g).await? {
        Resolved::Direct(repo) => {
            for id in forget_backup(&repo, name).await? {
                note!("forgot snapshot {} of {name}", id.to_hex());
            }
            note!("run `drctl repo prune` to free the space");
        }
        Resolved::Controller(target) => {
            let api: Api<Backup> = Api::namespaced(target.client.clone(), &target.namespace);
            api.delete(name, &DeleteParams::default())
                .await
                .with_context(|| format!("delete Backup {}/{name}", target.namespace))?;
            note!("backup.lifeboat.dev/{name} deleted (its snapshot follows its deletion policy)");
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{BackupCommand, Cli, Command};

    fn create_spec(flags: &[&str]) -> BackupSpec {
        let cli = Cli::try_parse_from([&["drctl", "backup", "create", "b"], flags].concat()).expect("parses");
        match cli.command {
            Command::Backup(BackupCommand::Create(args)) => spec(&args),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn etcd_endpoints_make_one_recovery_point_with_every_namespace_by_default() {
        let all = create_spec(&["--etcd-endpoints", "http://a:2379,http://b:2379"]);
        let etcd = all.etcd.expect("spec.etcd");
        assert_eq!(etcd.endpoints, ["http://a:2379", "http://b:2379"]);
        // Without namespaces, spec.etcd alone would be an etcd-only Backup.
        assert_eq!(all.included_namespaces, ["*"]);
        let some = create_spec(&[
            "--etcd-endpoints",
            "http://a:2379",
            "--include-namespaces",
            "shop",
        ]);
        assert_eq!(some.included_namespaces, ["shop"]);
        let secret = create_spec(&[
            "--etcd-endpoints",
            "http://a:2379",
            "--etcd-tls-secret",
            "etcd-client",
        ]);
        assert_eq!(
            secret.etcd.and_then(|e| e.tls_secret).map(|s| s.name).as_deref(),
            Some("etcd-client")
        );
        assert!(create_spec(&[]).etcd.is_none());
        assert!(Cli::try_parse_from(["drctl", "backup", "create", "b", "--etcd-tls-secret", "s"]).is_err());
    }
}
