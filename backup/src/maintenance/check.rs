//! `repo check`: is every snapshot restorable? Names each damaged pack and the snapshots and
//! files it affects.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use futures::StreamExt;

use crate::blob::{BlobId, PackId};
use crate::index::Index;
use crate::pack::pack_key;
use crate::progress::Progress;
use crate::read::BlobReader;
use crate::repository::{LockKind, RepoError, Repository};
use crate::snapshot::{NodeKind, tree_damage};

/// Packs verified at once with `--read-data`.
const PACKS_IN_FLIGHT: usize = 3;

/// What `check` found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CheckReport {
    /// Snapshots checked.
    pub snapshots: usize,
    /// Packs in the index.
    pub packs: usize,
    /// Packs whose data was downloaded and verified.
    pub packs_read: usize,
    /// Damaged or missing packs, with why.
    pub damaged_packs: BTreeMap<String, String>,
    /// Per damaged snapshot id: the files that cannot be restored, and `tree: …` lines for a
    /// tree that cannot be read or is damaged (a name listed twice, an unsafe path).
    pub affected: BTreeMap<String, Vec<String>>,
    /// Other problems.
    pub errors: Vec<String>,
    /// Packs in storage that no index lists (left by an interrupted backup, which prune
    /// removes; or listed by an index file that is lost or damaged, which `repo repair index`
    /// recovers).
    pub unindexed_packs: usize,
    /// Snapshot objects that cannot be read (damaged, or encrypted to another key), with
    /// why: every command skips them; `drctl forget ID` removes them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub damaged_snapshots: BTreeMap<String, String>,
    /// Objects in `keys/`, `data/`, `index/`, `snapshots/` or `locks/` whose names are not ids: not
    /// Lifeboat's (a README, an rsync temporary file). Skipped by every command, never deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stray_objects: Vec<String>,
    /// What to do about what was found, one fix each (empty when nothing is wrong).
    pub advice: Vec<CheckAdvice>,
}

impl CheckReport {
    /// True when everything checked out.
    pub fn ok(&self) -> bool {
        self.damaged_packs.is_empty()
            && self.affected.is_empty()
            && self.errors.is_empty()
            && self.damaged_snapshots.is_empty()
            && self.stray_objects.is_empty()
    }
}

/// Checks structure (every referenced pack exists with the right size, every snapshot's
/// blobs are indexed, every file's size is what its chunks hold); with `read_data`,
/// downloads every pack and verifies every blob against its id. Under a shared lock, as
/// restic's check: a concurrent prune (exclusive) would make packs vanish mid-check and be
/// reported as damage.
pub async fn check(
    repo: &Repository,
    read_data: bool,
    progress: Arc<Progress>,
) -> Result<CheckReport, RepoError> {
    repo.while_locked(LockKind::Shared, "check", run(repo, read_data, progress))
        .await
}

async fn run(repo: &Repository, read_data: bool, progress: Arc<Progress>) -> Result<CheckReport, RepoError> {
    // Snapshots first: a backup writes its index files before its snapshot, so every snapshot
    // listed now has its blobs in the index loaded next. Listed after the index, a snapshot a
    // concurrent backup (shared lock) saved in between would be "damaged": tree not indexed.
    let (snapshots, damaged_snapshots) = repo.snapshots_checked().await?;
    let (files, damaged_files) = repo.index_files_checked().await?;
    let index = Index::from_files(files.iter().map(|(_, f)| f));
    let stored: HashMap<String, u64> = repo.list("data/").await?.into_iter().collect();
    let mut report = CheckReport {
        packs: index.packs().len(),
        errors: damaged_files.iter().map(|e| e.to_string()).collect(),
        ..CheckReport::default()
    };
    let mut damaged: BTreeSet<PackId> = BTreeSet::new();
    for pack in index.packs() {
        let key = pack_key(&pack.id);
        match stored.get(&key) {
            None => {
                report
                    .damaged_packs
                    .insert(key, "missing from storage".to_string());
                damaged.insert(pack.id);
            }
            Some(&size) if size != pack.size => {
                report
                    .damaged_packs
                    .insert(key, format!("is {size} bytes, the index says {}", pack.size));
                damaged.insert(pack.id);
            }
            Some(_) => {}
        }
    }
    // An entry no writer makes (a forged or damaged index): readers refuse its blob, so the
    // pack's files cannot be restored until the index is rebuilt from the packs themselves.
    let mut impossible_entries = false;
    for (key, file) in &files {
        for pack in &file.packs {
            if let Some((blob, why)) = pack
                .blobs
                .iter()
                .find_map(|b| Some((b.id, b.impossible_length()?)))
            {
                report.errors.push(format!(
                    "{key} lists blob {} of pack {} that {why}",
                    blob.short(),
                    pack_key(&pack.id)
                ));
                damaged.insert(pack.id);
                impossible_entries = true;
            }
        }
    }
    let indexed: BTreeSet<String> = index.packs().iter().map(|p| pack_key(&p.id)).collect();
    report.unindexed_packs = stored.keys().filter(|k| !indexed.contains(*k)).count();

    if read_data {
        let blobs_by_pack: HashMap<PackId, Vec<_>> = files
            .iter()
            .flat_map(|(_, f)| f.packs.iter())
            .map(|p| (p.id, p.blobs.clone()))
            .collect();
        let to_read: Vec<PackId> = index
            .packs()
            .iter()
            .map(|p| p.id)
            .filter(|id| !damaged.contains(id))
            .collect();
        progress.add_total(index.packs().iter().map(|p| p.size).sum(), to_read.len() as u64);
        let results: Vec<(PackId, Result<(), String>)> = futures::stream::iter(to_read)
            .map(|id| {
                let blobs = blobs_by_pack.get(&id).cloned().unwrap_or_default();
                let progress = progress.clone();
                async move {
                    let result = async {
                        let open = BlobReader::open_pack(repo, &id)
                            .await
                            .map_err(|e| e.to_string())?;
                        let chunk_key = *repo.key().chunk_id_key();
                        tokio::task::spawn_blocking(move || {
                            blobs.iter().try_for_each(|b| {
                                open.blob(b, &chunk_key).map(|_| ()).map_err(|e| e.to_string())
                            })
                        })
                        .await
                        .map_err(|e| e.to_string())?
                    }
                    .await;
                    progress.add_done(0, 1);
                    (id, result)
                }
            })
            .buffer_unordered(PACKS_IN_FLIGHT)
            .collect()
            .await;
        for (id, result) in results {
            report.packs_read += 1;
            if let Err(why) = result {
                report.damaged_packs.insert(pack_key(&id), why);
                damaged.insert(id);
            }
        }
    }

    report.snapshots = snapshots.len() + damaged_snapshots.len();
    report.damaged_snapshots = damaged_snapshots.into_iter().collect();
    report.stray_objects = repo.stray_objects().await?;
    let reader = BlobReader::new(repo, &index);
    let bad_blob = |id: &BlobId| match index.get(id) {
        None => Some("not in the index".to_string()),
        Some(loc) if damaged.contains(&loc.pack) => Some(format!("in damaged pack {}", loc.pack.short())),
        Some(_) => None,
    };
    for snap in &snapshots {
        let Some(sid) = snap.id else { continue };
        let mut files_hit = Vec::new();
        if let Some(why) = snap.tree.iter().find_map(bad_blob) {
            files_hit.push(format!("tree: {why}"));
        } else {
            match reader.read_tree(&snap.tree).await {
                Ok(nodes) => {
                    // A tree that lists a name twice (or something under a non-directory)
                    // is damaged: restores refuse those entries.
                    for damage in tree_damage(&nodes) {
                        files_hit.push(format!("tree: {}", damage.why));
                    }
                    for node in nodes.iter().filter(|n| n.has_content()) {
                        if node.kind == NodeKind::Volume
                            && let Err(why) = node.volume_extents()
                        {
                            files_hit.push(format!("{}: damaged volume layout: {why}", node.path));
                            continue;
                        }
                        if let Some(why) = node.chunks.iter().find_map(bad_blob) {
                            files_hit.push(format!("{}: chunk {why}", node.path));
                            continue;
                        }
                        let held: u64 = node
                            .chunks
                            .iter()
                            .filter_map(|id| index.get(id))
                            .map(|loc| u64::from(loc.entry.raw_length))
                            .sum();
                        if held != node.stored_length() {
                            let what = if node.kind == NodeKind::Volume {
                                "extents of"
                            } else {
                                "size"
                            };
                            files_hit.push(format!(
                                "{}: {what} {} bytes in the tree, but its chunks hold {held} (damaged tree; restore refuses this file)",
                                node.path,
                                node.stored_length()
                            ));
                        }
                    }
                }
                Err(e) => files_hit.push(format!("tree: {e}")),
            }
        }
        if !files_hit.is_empty() {
            report.affected.insert(sid.to_hex(), files_hit);
        }
    }
    report.advice = advice(&report, !damaged_files.is_empty(), impossible_entries);
    Ok(report)
}

/// The fixes for what `check` found, restic's procedure: rebuild the index from the packs'
/// own trailers (recovers lost or damaged index files, drops packs that are gone), then back
/// up again so blobs that were lost are stored anew.
fn advice(report: &CheckReport, damaged_index: bool, impossible_entries: bool) -> Vec<CheckAdvice> {
    let missing_pack = report
        .damaged_packs
        .values()
        .any(|why| why.starts_with("missing"));
    let unindexed_needed = report.unindexed_packs > 0
        && report
            .affected
            .values()
            .flatten()
            .any(|line| line.contains("not in the index"));
    // Index entries no writer makes are rebuilt from the packs' own lists, as for damage.
    let present_but_damaged = impossible_entries
        || report
            .damaged_packs
            .values()
            .any(|why| !why.starts_with("missing"));
    let mut advice = Vec::new();
    // Reading every pack also does all a plain repair does: one fix, not two.
    if (damaged_index || missing_pack || unindexed_needed) && !present_but_damaged {
        advice.push(CheckAdvice::RepairIndex {
            damaged_index,
            unindexed_needed,
            missing_pack,
        });
    }
    if present_but_damaged {
        advice.push(CheckAdvice::RepairIndexReadingAllPacks);
    }
    if !report.damaged_snapshots.is_empty() {
        advice.push(CheckAdvice::ForgetUnreadableSnapshots {
            ids: report
                .damaged_snapshots
                .keys()
                .map(|k| k.trim_start_matches("snapshots/").to_string())
                .collect(),
        });
    }
    if !report.stray_objects.is_empty() {
        advice.push(CheckAdvice::MoveStrayObjects);
    }
    if !report.damaged_packs.is_empty() || (!report.affected.is_empty() && !unindexed_needed) {
        advice.push(CheckAdvice::RecoverLostData);
    }
    if report.unindexed_packs > 0 && !unindexed_needed && !damaged_index {
        advice.push(CheckAdvice::PruneUnindexed {
            packs: report.unindexed_packs,
        });
    }
    advice
}

/// One fix for what `check` found. The messages say it in words; drctl names its commands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "fix", rename_all = "snake_case")]
pub enum CheckAdvice {
    /// Rebuild the index from the packs' own blob lists (restic's `repair index`).
    RepairIndex {
        /// It replaces damaged index files.
        damaged_index: bool,
        /// It indexes packs no index lists that hold blobs snapshots need.
        unindexed_needed: bool,
        /// It drops packs that are missing from storage.
        missing_pack: bool,
    },
    /// Read every pack, verify every blob against its id and index only intact blobs, so the
    /// next backup stores damaged ones anew (a pack damaged in place, same size).
    RepairIndexReadingAllPacks,
    /// Snapshot objects that cannot be read: every command skips them; forget them by id.
    ForgetUnreadableSnapshots {
        /// Their ids.
        ids: Vec<String>,
    },
    /// Objects whose names are not ids are not Lifeboat's: skipped, never deleted; move them
    /// out of the repository.
    MoveStrayObjects,
    /// Data in damaged or missing packs is lost unless a replica has those packs.
    RecoverLostData,
    /// Packs no index lists and no snapshot needs (from interrupted backups): prune removes
    /// them.
    PruneUnindexed {
        /// How many.
        packs: usize,
    },
}

impl CheckAdvice {
    /// What the index repair does, for [`CheckAdvice::RepairIndex`]: `it rebuilds the index …`.
    pub fn repair_effect(damaged_index: bool, unindexed_needed: bool, missing_pack: bool) -> String {
        format!(
            "it rebuilds the index from the packs' own blob lists{}{}{}",
            if damaged_index {
                ", replacing the damaged index files"
            } else {
                ""
            },
            if unindexed_needed {
                ", indexing the packs no index lists"
            } else {
                ""
            },
            if missing_pack {
                ", and drops the packs that are missing"
            } else {
                ""
            },
        )
    }
}

impl std::fmt::Display for CheckAdvice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::RepairIndex {
                damaged_index,
                unindexed_needed,
                missing_pack,
            } => write!(
                f,
                "repair the index: {}",
                Self::repair_effect(*damaged_index, *unindexed_needed, *missing_pack)
            ),
            Self::RepairIndexReadingAllPacks => f.write_str(
                "repair the index reading every pack: it verifies every blob against its id and \
                 indexes only the intact ones, so the next backup stores the damaged ones anew",
            ),
            Self::ForgetUnreadableSnapshots { ids } => write!(
                f,
                "snapshot objects that cannot be read are skipped; forget them by id: {}",
                ids.join(" ")
            ),
            Self::MoveStrayObjects => f.write_str(
                "the stray objects are not Lifeboat's (their names are not ids): they are skipped \
                 and never deleted; move them out of the repository",
            ),
            Self::RecoverLostData => f.write_str(
                "data in damaged or missing packs is lost unless a replica has those packs: copy \
                 them back into data/, or, after repairing the index, back up the sources again so \
                 their blobs are stored anew, then forget the damaged snapshots",
            ),
            Self::PruneUnindexed { packs } => write!(
                f,
                "{packs} pack(s) no index lists and no snapshot needs (from interrupted backups): \
                 prune removes them"
            ),
        }
    }
}
