//! `drctl backup …`

use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use lifeboat_backup::progress::Progress;
use lifeboat_backup::sources::files::{Exclusions, FilesOptions, backup_files, patterns_in_file};

use crate::cli::{BackupCommand, GlobalArgs};
use crate::output::{self, bytes};
use crate::progress::Bar;
use crate::{UsageError, exit, open};

pub async fn run(cmd: BackupCommand, g: &GlobalArgs) -> Result<u8> {
    match cmd {
        BackupCommand::Create(args) => super::kube_objects::backup::create(&args, g).await,
        BackupCommand::List(args) => super::kube_objects::backup::list(&args, g).await,
        BackupCommand::Describe(args) => super::kube_objects::backup::describe(&args, g).await,
        BackupCommand::Delete(args) => super::kube_objects::backup::delete(&args, g).await,
        BackupCommand::Files {
            repo,
            key,
            paths,
            tags,
            force,
            host,
            excludes,
            exclude_files,
            one_file_system,
            exclude_caches,
        } => {
            let tags = crate::cli::pairs_to_map("--tag", &tags)?;
            let mut exclusions = exclusions(excludes, &exclude_files)?;
            exclusions.one_file_system = one_file_system;
            exclusions.caches = exclude_caches;
            note_device_nodes(&paths);
            note_excluded_paths(&paths, &exclusions);
            let r = open::repository(&repo, &key).await?;
            let options = FilesOptions {
                tags,
                force_full: force,
                workers: 0,
                host,
                exclusions,
            };
            let progress = Arc::new(Progress::default());
            let bar = Bar::start(&progress, "backup", g.quiet);
            let snap = backup_files(&r, &paths, &options, progress).await?;
            drop(bar);
            for skipped in &snap.summary.skipped {
                note!("not saved: {}: {}", skipped.path, skipped.error);
            }
            for w in &snap.summary.warnings {
                note!("warning: {w}");
            }
            let s = &snap.summary;
            if !s.other_filesystems.is_empty() {
                note!(
                    "not entered (other filesystems, --one-file-system): {}",
                    s.other_filesystems.join(", ")
                );
            }
            note!(
                "{} files ({}), {} directories, {} symlinks{}{}, {} read, {} new, {} stored in {:.1}s",
                s.files,
                bytes(s.bytes),
                s.dirs,
                s.symlinks,
                match s.special_files {
                    0 => String::new(),
                    n => format!(", {n} FIFOs, sockets and device nodes"),
                },
                match s.excluded {
                    0 => String::new(),
                    n => format!(", {n} excluded"),
                },
                s.files_read,
                bytes(s.new_bytes),
                bytes(s.stored_bytes),
                s.duration_ms as f64 / 1000.0
            );
            let id = snap.id.map(|i| i.to_hex()).unwrap_or_default();
            /// The manifest with its id, which the manifest itself does not hold.
            #[derive(serde::Serialize)]
            struct WithId<'a> {
                id: &'a str,
                #[serde(flatten)]
                snapshot: &'a lifeboat_backup::snapshot::Snapshot,
            }
            let printed = WithId {
                id: &id,
                snapshot: &snap,
            };
            output::print(g.format, &printed, |_| format!("{id}\n"))?;
            if s.skipped.is_empty() && s.warnings.is_empty() {
                Ok(0)
            } else {
                note!(
                    "snapshot {} is partial: {} path(s) not saved, {} warning(s) (listed above and in its summary)",
                    &id[..8.min(id.len())],
                    s.skipped.len(),
                    s.warnings.len()
                );
                Ok(exit::PARTIAL)
            }
        }
    }
}

/// `--exclude` patterns and those of each `--exclude-file`, compiled; a pattern that cannot be
/// used or a file that cannot be read is a usage error naming it (and, for a file's pattern,
/// the file and line).
pub(super) fn exclusions(mut patterns: Vec<String>, files: &[PathBuf]) -> Result<Exclusions> {
    // Where each pattern came from: `None` for --exclude, else "--exclude-file F line N".
    let mut origins: Vec<Option<String>> = vec![None; patterns.len()];
    for file in files {
        let text = std::fs::read(file)
            .map_err(|e| UsageError(format!("--exclude-file {}: cannot be read: {e}", file.display())))?;
        let text = String::from_utf8(text).map_err(|_| {
            UsageError(format!(
                "--exclude-file {}: is not UTF-8 text (patterns are UTF-8; ? matches any byte of a name)",
                file.display()
            ))
        })?;
        for (n, line) in text.lines().enumerate() {
            for pattern in patterns_in_file(line) {
                patterns.push(pattern);
                origins.push(Some(format!("--exclude-file {} line {}", file.display(), n + 1)));
            }
        }
    }
    Exclusions::new(&patterns).map_err(|e| {
        // The first pattern with the failing text is the one that failed (they compile in order).
        let origin = patterns
            .iter()
            .position(|p| *p == e.pattern)
            .and_then(|at| origins[at].as_deref());
        match origin {
            Some(origin) => UsageError(format!("{origin}: {e}")).into(),
            None => UsageError(e.to_string()).into(),
        }
    })
}

/// A path given that a pattern excludes (or lies in an excluded directory) is not saved at
/// all: say so, naming it, since the backup's counts alone do not.
fn note_excluded_paths(paths: &[PathBuf], exclusions: &Exclusions) {
    for path in paths {
        let Ok(abs) = lifeboat_backup::sources::files::source_path(path) else {
            continue;
        };
        let is_dir = std::fs::symlink_metadata(&abs).is_ok_and(|m| m.is_dir());
        if exclusions.excludes_root(&abs, is_dir) {
            note!(
                "{} is excluded by an --exclude pattern: nothing of it is saved",
                path.display()
            );
        }
    }
}

/// A device node given as a path is saved as a node (type, major and minor, as tar does),
/// never as the data behind it: say so, since `drctl backup files /dev/sdb` reads like a
/// disk backup.
fn note_device_nodes(paths: &[PathBuf]) {
    for path in paths {
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            continue;
        };
        let kind = if meta.file_type().is_block_device() {
            "a block device"
        } else if meta.file_type().is_char_device() {
            "a character device"
        } else {
            continue;
        };
        note!(
            "{} is {kind}: its device node is saved, not the data on it; a Ceph RBD volume's \
             data is backed up with `drctl volume backup --pool P --image I`",
            path.display()
        );
    }
}
