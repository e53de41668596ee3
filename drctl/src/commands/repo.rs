//! `drctl repo …`

use std::sync::Arc;

use anyhow::{Result, bail};
use lifeboat_backup::Repository;
use lifeboat_backup::blob::Compression;
use lifeboat_backup::crypto::UserRecipient;
use lifeboat_backup::maintenance::{check, object_lock, prune, repair, stats};
use lifeboat_backup::progress::Progress;
use lifeboat_backup::repository::InitOptions;

use crate::cli::{GlobalArgs, KeyCommand, RepairCommand, RepoCommand};
use crate::output::{self, bytes, table};
use crate::progress::Bar;
use crate::{exit, open};

pub async fn run(cmd: RepoCommand, g: &GlobalArgs) -> Result<u8> {
    match cmd {
        RepoCommand::Init {
            repo,
            recipients,
            passphrase_file,
            compression_level,
        } => {
            let mut users = recipients
                .iter()
                .map(|r| UserRecipient::parse(r))
                .collect::<Result<Vec<_>, _>>()?;
            if let Some(p) = &passphrase_file {
                users.push(UserRecipient::passphrase_file(p)?);
            }
            let store = open::store_for_init(&repo)?;
            let options = InitOptions {
                compression: Compression {
                    level: compression_level,
                },
                ..InitOptions::default()
            };
            let r = Repository::init(&store, &users, options).await?;
            output::print(g.format, r.config(), |c| format!("{}\n", c.id))?;
            Ok(0)
        }
        RepoCommand::Key(cmd) => key(cmd, g).await,
        RepoCommand::Copy(args) => super::copy::run(&args, g).await,
        RepoCommand::Check {
            repo,
            key,
            read_data,
            no_lock,
        } => {
            let mut r = open::repository(&repo, &key).await?;
            if no_lock {
                r = r.without_locks();
            }
            let progress = Arc::new(Progress::default());
            let bar = Bar::start(&progress, "check", g.quiet || !read_data);
            let report = check::check(&r, read_data, progress).await?;
            let lock = object_lock::report(&r).await?;
            let url = r.url().to_string();
            drop(bar);
            #[derive(serde::Serialize)]
            #[serde(rename_all = "camelCase")]
            struct Checked<'a> {
                #[serde(flatten)]
                report: &'a check::CheckReport,
                object_lock: &'a object_lock::LockReport,
            }
            let checked = Checked {
                report: &report,
                object_lock: &lock,
            };
            output::print(g.format, &checked, |c| {
                let rep = c.report;
                let mut s = format!(
                    "{} snapshots, {} packs ({} read){}\n",
                    rep.snapshots,
                    rep.packs,
                    rep.packs_read,
                    if rep.unindexed_packs > 0 {
                        format!(", {} packs no index lists", rep.unindexed_packs)
                    } else {
                        String::new()
                    }
                );
                for (pack, why) in &rep.damaged_packs {
                    s.push_str(&format!("damaged pack {pack}: {why}\n"));
                }
                for (snap, files) in &rep.affected {
                    s.push_str(&format!("snapshot {snap} cannot be fully restored:\n"));
                    for f in files {
                        s.push_str(&format!("  {f}\n"));
                    }
                }
                for (snap, why) in &rep.damaged_snapshots {
                    s.push_str(&format!("damaged snapshot {snap}: {why}\n"));
                }
                for stray in &rep.stray_objects {
                    s.push_str(&format!(
                        "stray object {stray}: not Lifeboat's (its name is not an id)\n"
                    ));
                }
                for e in &rep.errors {
                    s.push_str(&format!("error: {e}\n"));
                }
                for a in &rep.advice {
                    s.push_str(&format!("fix: {}\n", crate::hint::check_advice(a, &url)));
                }
                s.push_str(&lock_text(c.object_lock));
                s.push_str(if rep.ok() {
                    "no errors found\n"
                } else {
                    "errors found\n"
                });
                s
            })?;
            Ok(if report.ok() { 0 } else { exit::PARTIAL })
        }
        RepoCommand::Stats { repo, key } => {
            let r = open::repository(&repo, &key).await?;
            let st = stats::stats(&r).await?;
            output::print(g.format, &st, |s| {
                table(
                    &["FIELD", "VALUE"],
                    &[
                        vec!["id".into(), s.id.clone()],
                        vec!["snapshots".into(), s.snapshots.to_string()],
                        vec!["packs".into(), s.packs.to_string()],
                        vec!["stored".into(), bytes(s.stored_bytes)],
                        vec!["blobs".into(), s.blobs.to_string()],
                        vec!["unique data".into(), bytes(s.unique_raw_bytes)],
                        vec!["all snapshots' data".into(), bytes(s.snapshot_bytes)],
                        vec!["index files".into(), s.index_files.to_string()],
                        vec!["index memory".into(), bytes(s.index_memory_bytes as u64)],
                    ],
                )
            })?;
            Ok(0)
        }
        RepoCommand::Unlock {
            repo,
            key,
            remove_all,
        } => {
            let r = open::repository(&repo, &key).await?;
            if remove_all {
                note!(
                    "warning: --remove-all removes every lock, including those of processes that may still run \
                     on other hosts; a prune started now can delete data a running backup still needs"
                );
            }
            let report = r.unlock(remove_all).await?;
            output::print(g.format, &report, |rep| {
                let mut s = String::new();
                for l in &rep.removed {
                    s.push_str(&format!("removed: {l}\n"));
                }
                for l in &rep.kept {
                    s.push_str(&format!("kept: {l}\n"));
                }
                s
            })?;
            note!(
                "removed {} lock(s){}",
                report.removed.len(),
                if report.kept.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", kept {} (their holders may still run; --remove-all removes them once you are sure they do not)",
                        report.kept.len()
                    )
                }
            );
            Ok(0)
        }
        RepoCommand::Repair(RepairCommand::Index {
            repo,
            key,
            read_all_packs,
        }) => {
            let r = open::repository(&repo, &key).await?;
            let progress = Arc::new(Progress::default());
            let bar = Bar::start(&progress, "repair index", g.quiet);
            let report = repair::repair_index(&r, read_all_packs, progress).await?;
            drop(bar);
            output::print(g.format, &report, |rep| {
                let mut s = String::new();
                for (file, why) in &rep.damaged_index_files {
                    s.push_str(&format!("damaged index file {file} replaced: {why}\n"));
                }
                for pack in &rep.missing_packs {
                    s.push_str(&format!(
                        "pack {pack} is missing from storage: dropped from the index\n"
                    ));
                }
                for (pack, why) in &rep.unreadable_packs {
                    s.push_str(&format!("pack {pack} cannot be read, not indexed: {why}\n"));
                }
                for (pack, blobs) in &rep.bad_blobs {
                    for b in blobs {
                        s.push_str(&format!("pack {pack}: blob {b}: not indexed\n"));
                    }
                }
                s.push_str(&format!(
                    "{} packs indexed ({} read), {} index files written, {} removed\n",
                    rep.packs, rep.packs_read, rep.index_files_written, rep.index_files_removed
                ));
                if !rep.missing_packs.is_empty()
                    || !rep.unreadable_packs.is_empty()
                    || !rep.bad_blobs.is_empty()
                {
                    s.push_str(
                        "blobs of missing or unreadable packs, and blobs that do not match their ids, are lost: \
                         back up the sources again (they are stored anew), then run `drctl repo check` to see \
                         which snapshots remain damaged\n",
                    );
                }
                s
            })?;
            Ok(
                if report.unreadable_packs.is_empty()
                    && report.missing_packs.is_empty()
                    && report.bad_blobs.is_empty()
                {
                    0
                } else {
                    exit::PARTIAL
                },
            )
        }
        RepoCommand::Prune { repo, key, dry_run } => {
            let r = open::repository(&repo, &key).await?;
            let plan = prune::prune(&r, dry_run).await?;
            output::print(g.format, &plan, |p| {
                let mut held = String::new();
                if let Some(until) = p.held.values().max() {
                    held = format!(
                        "{} objects kept because S3 Object Lock retains them (the last until {until}); a later prune removes them\n",
                        p.held.len()
                    );
                }
                format!(
                    "{}{} blobs used, {} unused\n{} packs kept, {} repacked ({}), {} deleted, {} unindexed deleted\n{held}{} freed\n",
                    if dry_run { "dry run: nothing changed\n" } else { "" },
                    p.used_blobs,
                    p.unused_blobs,
                    p.keep,
                    p.repack.len(),
                    bytes(p.repack_bytes),
                    p.delete.len(),
                    p.unindexed.len(),
                    bytes(p.freed_bytes)
                )
            })?;
            Ok(0)
        }
    }
}

async fn key(cmd: KeyCommand, g: &GlobalArgs) -> Result<u8> {
    match cmd {
        KeyCommand::Add {
            repo,
            key,
            recipient,
            new_passphrase_file,
        } => {
            let new = match (recipient, new_passphrase_file) {
                (Some(r), None) => UserRecipient::parse(&r)?,
                (None, Some(p)) => UserRecipient::passphrase_file(&p)?,
                _ => bail!("give the new key as --recipient PUBLIC_KEY or --new-passphrase-file FILE"),
            };
            let r = open::repository(&repo, &key).await?;
            let id = r.add_key(&new).await?;
            output::write(format!("{id}\n").as_bytes())?;
            Ok(0)
        }
        KeyCommand::List { repo, key } => {
            let r = open::repository(&repo, &key).await?;
            let keys = r.list_keys().await?;
            output::print(g.format, &keys, |ks| {
                let rows: Vec<Vec<String>> = ks
                    .iter()
                    .map(|k| {
                        vec![
                            format!("{}{}", if k.current { "*" } else { " " }, k.id),
                            k.key_type.to_string(),
                            k.created.format("%Y-%m-%d %H:%M:%S").to_string(),
                        ]
                    })
                    .collect();
                table(&[" ID", "TYPE", "CREATED"], &rows)
            })?;
            Ok(0)
        }
        KeyCommand::Remove { repo, key, id, force } => {
            let r = open::repository(&repo, &key).await?;
            r.remove_key(&id, force).await?;
            note!("removed key {id}");
            Ok(0)
        }
    }
}

/// The object lock lines of `repo check`.
fn lock_text(l: &object_lock::LockReport) -> String {
    if !l.support.enabled() {
        return format!("{}\n", l.support);
    }
    let mut s = format!("{}: {} of {} objects locked", l.support, l.locked, l.objects);
    if let (Some(a), Some(b)) = (l.earliest_expiry, l.latest_expiry) {
        s.push_str(&format!(
            ", until {} … {}",
            a.format("%Y-%m-%d %H:%M"),
            b.format("%Y-%m-%d %H:%M")
        ));
    }
    s.push('\n');
    for (kind, n) in &l.unlocked {
        s.push_str(&format!("  not locked: {n} {kind} objects\n"));
    }
    for snap in &l.unlocked_snapshots {
        s.push_str(&format!("  not locked: {snap}\n"));
    }
    s
}
