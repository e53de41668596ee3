//! Restoring a files snapshot into a directory: a plan (which entries, which blobs of which
//! pack go where), then an executor that makes the entries, fetches each pack once and
//! writes its blobs into place, and finally gives every entry its recorded metadata.
//!
//! A restore never touches anything outside its target: entries are reached only through
//! directory handles opened without following symlinks ([`handles`]), files are written under
//! fresh temporary names and renamed over whatever was there ([`apply`]), and a tree that
//! lists a name twice, or something under a non-directory, has those entries refused.

mod apply;
mod body;
mod entries;
mod error;
mod files_plan;
mod handles;
mod items;
mod output;
mod packs;
mod sink;

pub use apply::temporary_name;
pub use error::EntryError;
pub use files_plan::{EntryKind, InvalidInclude, PlannedBlob, PlannedEntry, RestorePlan, plan_restore};
pub use sink::{Sink, SnapshotReader};

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use crate::index::Index;
use crate::progress::Progress;
use crate::read::BlobReader;
use crate::repository::{RepoError, Repository};
use crate::snapshot::{Node, Snapshot};
use crate::sources::files::Exclusions;

/// Options for a restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Glob patterns; when given, only matching paths (and everything under matching
    /// directories) are restored, with the directories above them.
    pub include: Vec<String>,
    /// Paths left out (restic's `restore --exclude`), matched as a backup's `--exclude` is:
    /// against the absolute path, an excluded directory with all it holds. Applied after
    /// `include`, so it can take a part back out of an included directory.
    pub exclude: Exclusions,
}

/// What a restore did, and what it could not do.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RestoreReport {
    /// Files restored completely (each name of a hard-linked file counts).
    pub files: u64,
    /// Directories restored.
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Entries left out by [`RestoreOptions::exclude`], counted as a backup counts them: an
    /// excluded directory once, with all it holds.
    pub excluded: u64,
    /// FIFOs, sockets and device nodes created.
    pub special_files: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Paths that could not be restored (or not completely), each with the reason.
    pub errors: Vec<String>,
    /// Things left out by choice, each with why (attributes only root may set).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Object keys of packs found damaged or forged (a blob that is not the content its id
    /// names, a frame that does not decode): the files with blobs in them are in `errors`.
    /// Checking the repository with all data read finds every such pack.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub damaged_packs: BTreeSet<String>,
}

/// Restores `snapshot` under `target`. The lifecycle around it (lock, index, tree) is
/// [`Repository::restore`]'s.
pub async fn restore_files(
    repo: &Repository,
    snapshot: &Snapshot,
    target: &Path,
    options: &RestoreOptions,
    progress: Arc<Progress>,
) -> Result<RestoreReport, RepoError> {
    let sink = DirectorySink {
        target,
        options,
        progress,
    };
    repo.restore(snapshot, sink).await
}

/// A directory receiving a snapshot's files.
struct DirectorySink<'a> {
    target: &'a Path,
    options: &'a RestoreOptions,
    progress: Arc<Progress>,
}

impl Sink for DirectorySink<'_> {
    type Output = RestoreReport;
    type Error = RepoError;

    fn purpose(&self) -> &'static str {
        "restore"
    }

    /// Every kind: a snapshot's tree is files whatever its source (an etcd snapshot restores
    /// as its database file).
    fn accepts(&self, _snapshot: &Snapshot) -> Result<(), RepoError> {
        Ok(())
    }

    async fn restore(self, reader: &SnapshotReader<'_>) -> Result<RestoreReport, RepoError> {
        run(reader, self.target, self.options, self.progress).await
    }
}

async fn run(
    reader: &SnapshotReader<'_>,
    target: &Path,
    options: &RestoreOptions,
    progress: Arc<Progress>,
) -> Result<RestoreReport, RepoError> {
    if target.exists() && !target.is_dir() {
        return Err(RepoError::io(
            target,
            std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                "the restore target exists and is not a directory: give a directory (created when missing)",
            ),
        ));
    }
    std::fs::create_dir_all(target).map_err(|e| RepoError::io(target, e))?;
    let target = target.canonicalize().map_err(|e| RepoError::io(target, e))?;
    let repo = reader.repository();
    let index = repo.index();
    let nodes = reader.nodes().await?;
    let plan = plan_restore(nodes, index, &options.include, &options.exclude)?;
    let mut report = RestoreReport {
        errors: plan.refused.clone(),
        excluded: plan.excluded,
        ..RestoreReport::default()
    };
    for pattern in &plan.unmatched {
        report.errors.push(format!(
            "include pattern {pattern:?} matches nothing in the snapshot (patterns match stored paths: \
             absolute, without the leading /, e.g. {:?})",
            nodes.first().map_or("tmp/data", |n| n.path.as_str())
        ));
    }
    progress.add_total(plan.bytes, plan.packs.len() as u64);

    let dirs = Arc::new(handles::Dirs::open(&target).map_err(|e| RepoError::io(&target, e))?);
    let mut failed: BTreeSet<usize> = plan.missing.keys().copied().collect();
    for (i, why) in &plan.missing {
        report.errors.push(format!("{}: {why}", nodes[*i].path));
    }
    // Directories, then empty files at their full size, so blobs can land in any order.
    let slots = Arc::new(entries::prepare(nodes, &plan, &dirs, &mut failed, &mut report));

    let outputs = packs::Outputs {
        dirs: dirs.clone(),
        slots: slots.clone(),
        skip: Arc::new(failed.clone()),
    };
    let (bytes, pack_failures) = packs::write_packs(repo, &plan, &outputs, &progress).await;
    report.bytes = bytes;
    report.damaged_packs = pack_failures.damaged;
    for (file, why) in pack_failures.files {
        if failed.insert(file) {
            report
                .errors
                .push(format!("{}: not restored: {why}", nodes[file].path));
            // A partly written file would look restored: its temporary file goes.
            if let Some(slot) = &slots[file] {
                entries::discard_file(&dirs, slot);
            }
        }
    }

    // Metadata last: files (renamed into place once complete), symlinks, then directories.
    entries::finish(nodes, &plan, &dirs, &slots, &failed, &mut report);
    // A directory that cannot be used fails itself and each entry below it with the same
    // message (it names the directory): listed once.
    let mut seen = std::collections::HashSet::new();
    report.errors.retain(|e| seen.insert(e.clone()));
    Ok(report)
}

/// Every tree node of a snapshot (for listing and tests).
pub async fn snapshot_nodes(
    repo: &Repository,
    index: &Index,
    snapshot: &Snapshot,
) -> Result<Vec<Node>, RepoError> {
    BlobReader::new(repo, index).read_tree(&snapshot.tree).await
}
