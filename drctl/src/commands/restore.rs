//! `drctl restore …`

use std::sync::Arc;

use anyhow::Result;
use lifeboat_backup::progress::Progress;
use lifeboat_backup::repository::SnapshotFilter;
use lifeboat_backup::restore::{RestoreOptions, restore_files};
use lifeboat_backup::sources::files::{path_text, source_path};

use crate::cli::{GlobalArgs, RestoreCommand};
use crate::output::{self, bytes};
use crate::progress::Bar;
use crate::{exit, open};

pub async fn run(cmd: RestoreCommand, g: &GlobalArgs) -> Result<u8> {
    match cmd {
        RestoreCommand::Create(args) => super::kube_objects::restore::create(&args, g).await,
        RestoreCommand::Describe(args) => super::kube_objects::restore::describe(&args, g).await,
        RestoreCommand::Files {
            repo,
            key,
            snapshot,
            target,
            include,
            excludes,
            exclude_files,
            host,
            paths,
            no_lock,
        } => {
            if snapshot != "latest" && (host.is_some() || !paths.is_empty()) {
                return Err(crate::UsageError(format!(
                    "--host and --path choose among snapshots for `latest`; snapshot {snapshot:?} names one \
                     already, so they would be ignored: give the id alone, or `latest` with them"
                ))
                .into());
            }
            let filter = SnapshotFilter {
                kind: "files".to_string(),
                host,
                paths: paths
                    .iter()
                    .map(|p| source_path(p).map(|p| path_text(&p)))
                    .collect::<Result<_, _>>()?,
            };
            let options = RestoreOptions {
                include,
                exclude: super::backup::exclusions(excludes, &exclude_files)?,
            };
            let mut r = open::repository(&repo, &key).await?;
            if no_lock {
                r = r.without_locks();
            }
            let snap = r.find_snapshot_matching(&snapshot, &filter).await?;
            let progress = Arc::new(Progress::default());
            let bar = Bar::start(&progress, "restore", g.quiet);
            let report = restore_files(&r, &snap, &target, &options, progress).await?;
            drop(bar);
            output::print(g.format, &report, |rep| {
                let special = match rep.special_files {
                    0 => String::new(),
                    n => format!(", {n} FIFOs, sockets and device nodes"),
                };
                let mut s = format!(
                    "restored {} files, {} directories, {} symlinks{special} ({}) into {}\n",
                    rep.files,
                    rep.dirs,
                    rep.symlinks,
                    bytes(rep.bytes),
                    target.display()
                );
                if rep.excluded > 0 {
                    let entries = if rep.excluded == 1 { "entry" } else { "entries" };
                    s.push_str(&format!(
                        "left out {} {entries} matching --exclude\n",
                        rep.excluded
                    ));
                    if rep.files + rep.dirs + rep.symlinks + rep.special_files == 0 {
                        s.push_str("warning: --exclude left out everything the snapshot holds: nothing was restored\n");
                    }
                }
                for e in &rep.errors {
                    s.push_str(&format!("not restored: {e}\n"));
                }
                for w in &rep.warnings {
                    s.push_str(&format!("warning: {w}\n"));
                }
                s
            })?;
            if !report.damaged_packs.is_empty() {
                note!(
                    "hint: {}",
                    crate::hint::damaged_packs(&report.damaged_packs, &repo.repo)
                );
            }
            Ok(if report.errors.is_empty() {
                0
            } else {
                exit::PARTIAL
            })
        }
    }
}
