//! `repo prune`: delete what no snapshot references. The plan is computed first (and is all
//! `--dry-run` prints); applying it under an exclusive lock keeps every step crash-safe:
//! new packs and a new index are written before old index files go, and packs are deleted
//! last, so an interruption leaves only unreferenced garbage for the next prune.
//!
//! On a bucket with S3 Object Lock, objects still retained are never deleted: the plan keeps
//! them (`held`, with the date they may go) and so does every pack a retained index file
//! lists, since deleting those would leave that index naming packs that are gone.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::blob::{BlobId, BlobKind, Id, PackId};
use crate::index::{Index, IndexFile, IndexPack};
use crate::pack::pack_key;
use crate::read::BlobReader;
use crate::repository::{LockKind, RepoError, Repository};
use crate::session::{BlobSink, Session};

/// Packs with less than this share of their bytes still used are repacked.
const REPACK_BELOW_USED: f64 = 0.8;
/// Packs listed per consolidated index file.
const PACKS_PER_INDEX_FILE: usize = 5000;

/// What prune will do.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PrunePlan {
    /// Packs kept as they are.
    pub keep: usize,
    /// Packs whose used blobs are copied into new packs, then deleted.
    pub repack: Vec<PackId>,
    /// Packs with no used blob, deleted.
    pub delete: Vec<PackId>,
    /// Pack objects no index lists (from interrupted backups), deleted.
    pub unindexed: Vec<String>,
    /// Blobs still referenced.
    pub used_blobs: usize,
    /// Blobs no snapshot references.
    pub unused_blobs: usize,
    /// Stored bytes freed (before repacked data is written again).
    pub freed_bytes: u64,
    /// Raw bytes copied by repacking.
    pub repack_bytes: u64,
    /// Objects that would go but S3 Object Lock retains, with the time they may be deleted
    /// (a prune after that removes them). Index files listed here are kept too.
    pub held: BTreeMap<String, DateTime<Utc>>,
}

/// Decides, per pack, keep / repack / delete. `held` names objects (pack keys) that cannot
/// be deleted before the given time: such packs are kept whatever they hold. Pure: tests
/// drive it with hand-made indexes.
pub fn plan_prune(
    index: &Index,
    used: &HashSet<BlobId>,
    stored: &HashMap<String, u64>,
    held: &BTreeMap<String, DateTime<Utc>>,
) -> PrunePlan {
    let mut per_pack: HashMap<PackId, (u64, u64, usize, usize)> = HashMap::new();
    for b in index.blobs() {
        let e = per_pack.entry(b.pack).or_default();
        if used.contains(&b.entry.id) {
            e.0 += u64::from(b.entry.length);
            e.2 += 1;
        } else {
            e.1 += u64::from(b.entry.length);
            e.3 += 1;
        }
    }
    let mut plan = PrunePlan::default();
    for pack in index.packs() {
        let (used_b, unused_b, used_n, unused_n) = per_pack.get(&pack.id).copied().unwrap_or_default();
        plan.used_blobs += used_n;
        plan.unused_blobs += unused_n;
        let key = pack_key(&pack.id);
        let sparse = unused_n > 0 && (used_b as f64) < REPACK_BELOW_USED * (used_b + unused_b) as f64;
        if let Some(until) = held.get(&key).filter(|_| used_n == 0 || sparse) {
            plan.held.insert(key, *until);
            plan.keep += 1;
        } else if used_n == 0 {
            plan.delete.push(pack.id);
            plan.freed_bytes += pack.size;
        } else if sparse {
            plan.repack.push(pack.id);
            plan.freed_bytes += pack.size;
            plan.repack_bytes += used_b;
        } else {
            plan.keep += 1;
        }
    }
    let indexed: HashSet<String> = index.packs().iter().map(|p| pack_key(&p.id)).collect();
    for (key, size) in stored {
        if let Some(until) = held.get(key).filter(|_| !indexed.contains(key)) {
            plan.held.insert(key.clone(), *until);
        } else if !indexed.contains(key) {
            plan.unindexed.push(key.clone());
            plan.freed_bytes += size;
        }
    }
    plan.unindexed.sort();
    plan
}

/// Every blob the snapshots reference (tree blobs and file chunks). A tree whose blobs are
/// not all in the index is not read: its tree blobs are in the set, its chunks cannot be
/// known (prune then refuses while packs no index lists may hold them).
pub async fn used_blobs(repo: &Repository, index: &Index) -> Result<HashSet<BlobId>, RepoError> {
    let reader = BlobReader::new(repo, index);
    let mut used = HashSet::new();
    for snap in repo.snapshots_strict().await? {
        used.extend(snap.tree.iter().copied());
        if !snap.tree.iter().all(|id| index.contains(id)) {
            continue;
        }
        for node in reader.read_tree(&snap.tree).await? {
            if node.has_content() {
                used.extend(node.chunks);
            }
        }
    }
    Ok(used)
}

/// Computes the plan and, unless `dry_run`, applies it.
pub async fn prune(repo: &Repository, dry_run: bool) -> Result<PrunePlan, RepoError> {
    repo.while_locked(LockKind::Exclusive, "prune", run(repo, dry_run))
        .await
}

async fn run(repo: &Repository, dry_run: bool) -> Result<PrunePlan, RepoError> {
    let files = repo.index_files().await?;
    let index = Index::from_files(files.iter().map(|(_, f)| f));
    let used = used_blobs(repo, &index).await?;
    let stored: HashMap<String, u64> = repo.list("data/").await?.into_iter().collect();
    refuse_unless_index_matches_storage(repo, &index, &used, &stored).await?;
    let plan = plan_prune(&index, &used, &stored, &BTreeMap::new());
    let held = held_by_object_lock(repo, &plan, &files).await?;
    let mut plan = plan_prune(&index, &used, &stored, &held);
    for (key, _) in &files {
        if let Some(until) = held.get(key) {
            plan.held.insert(key.clone(), *until);
        }
    }
    if dry_run {
        return Ok(plan);
    }

    // 1. Copy still-used blobs out of packs being repacked (the session writes new packs and
    //    index files for them).
    if !plan.repack.is_empty() {
        let session = Session::start(repo, Arc::new(Index::default()));
        for pack_id in &plan.repack {
            let open = BlobReader::open_pack(repo, pack_id).await?;
            let kind = index
                .packs()
                .iter()
                .find(|p| p.id == *pack_id)
                .map_or(BlobKind::Data, |p| p.kind);
            let entries: Vec<_> = index
                .blobs()
                .filter(|b| b.pack == *pack_id && used.contains(&b.entry.id))
                .map(|b| b.entry)
                .collect();
            let shared = session.shared().clone();
            let chunk_key = *repo.key().chunk_id_key();
            let copied = tokio::task::spawn_blocking(move || {
                let mut sink = BlobSink::new(shared, kind);
                for e in &entries {
                    sink.put(&open.blob(e, &chunk_key)?)?;
                }
                sink.finish()
            })
            .await
            .map_err(|e| RepoError::Task(e.to_string()))
            .and_then(|copied| copied);
            if let Err(e) = copied {
                return Err(session.abandon(e).await);
            }
        }
        session.finish().await?;
    }

    // 2. One consolidated index of the packs kept as they are.
    let gone: HashSet<PackId> = plan.repack.iter().chain(&plan.delete).copied().collect();
    let mut kept: BTreeMap<PackId, IndexPack> = BTreeMap::new();
    for (_, file) in &files {
        for p in &file.packs {
            if !gone.contains(&p.id) {
                kept.entry(p.id).or_insert_with(|| p.clone());
            }
        }
    }
    let kept: Vec<IndexPack> = kept.into_values().collect();
    for batch in kept.chunks(PACKS_PER_INDEX_FILE) {
        let file = IndexFile {
            packs: batch.to_vec(),
        };
        let bytes = crate::repository::object_io::seal_json(repo.key(), "index", &file)?;
        repo.objects()
            .put_new(&crate::index::index_key(&Id::of(&bytes)), bytes.into())
            .await?;
    }

    // 3. Old index files, now superseded (the repack session's new ones are not in `files`),
    //    except those object lock retains.
    for (key, _) in &files {
        if !plan.held.contains_key(key) {
            repo.objects().delete(key).await?;
        }
    }

    // 4. Packs, last.
    for id in plan.repack.iter().chain(&plan.delete) {
        repo.objects().delete(&pack_key(id)).await?;
    }
    for key in &plan.unindexed {
        repo.objects().delete(key).await?;
    }
    repo.remove_expired_locks().await?;
    Ok(plan)
}

/// Why prune refused to run; nothing was deleted. The messages say what to do in words; drctl
/// adds its commands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PruneRefusal {
    /// The index lists packs storage no longer has.
    #[error(
        "{count} pack(s) the index lists are missing from storage (first: {first}); rebuild the \
         index from the packs, then prune again (the next backup then stores their blobs again \
         where the source still has them; a check names the snapshots that lost data)"
    )]
    MissingPacks {
        /// How many.
        count: usize,
        /// The first one's object key.
        first: String,
    },
    /// Snapshots need blobs the index lacks, and a pack no index lists holds some of them.
    #[error(
        "snapshots need {needed} blob(s) the index does not list, and pack {pack}, which no index \
         lists, holds some of them (an index file is missing or damaged); rebuild the index from \
         the packs, then prune again"
    )]
    UnindexedPackHoldsNeeded {
        /// Blobs needed and not indexed.
        needed: usize,
        /// A pack holding some of them (object key).
        pack: String,
    },
    /// Snapshots need blobs no pack holds: their data was lost.
    #[error(
        "snapshots need {needed} blob(s) that no pack holds (data was lost); a check names the \
         damaged snapshots: back up their sources again (that stores the blobs anew where the \
         source still has them) or forget those snapshots, then prune again"
    )]
    LostBlobs {
        /// Blobs needed that no pack holds.
        needed: usize,
    },
}

/// Prune trusts the index to say what storage holds. It refuses, naming the fix, when the
/// index lists packs storage no longer has (the blobs they held must be stored again first),
/// and when snapshots need blobs the index lacks while packs no index lists (a lost or
/// damaged index file, an interrupted backup) hold them: deleting those packs as
/// "unindexed" would destroy data. Unindexed packs are only read in that case (their
/// trailers list their blobs); one that cannot be read holds nothing restorable.
async fn refuse_unless_index_matches_storage(
    repo: &Repository,
    index: &Index,
    used: &HashSet<BlobId>,
    stored: &HashMap<String, u64>,
) -> Result<(), RepoError> {
    let missing_packs: Vec<String> = index
        .packs()
        .iter()
        .map(|p| pack_key(&p.id))
        .filter(|k| !stored.contains_key(k))
        .collect();
    if let Some(first) = missing_packs.first() {
        return Err(RepoError::PruneRefused {
            url: repo.url().to_string(),
            reason: PruneRefusal::MissingPacks {
                count: missing_packs.len(),
                first: first.clone(),
            },
        });
    }
    let unindexed_needed: HashSet<BlobId> = used.iter().filter(|id| !index.contains(id)).copied().collect();
    if unindexed_needed.is_empty() {
        return Ok(());
    }
    let indexed: HashSet<String> = index.packs().iter().map(|p| pack_key(&p.id)).collect();
    for key in stored.keys().filter(|k| !indexed.contains(*k)) {
        let Some(id) = key.rsplit('/').next().and_then(|h| h.parse::<PackId>().ok()) else {
            continue;
        };
        let Ok(open) = BlobReader::open_pack(repo, &id).await else {
            continue;
        };
        let holds = open
            .trailer()
            .is_ok_and(|(_, blobs)| blobs.iter().any(|b| unindexed_needed.contains(&b.id)));
        if holds {
            return Err(RepoError::PruneRefused {
                url: repo.url().to_string(),
                reason: PruneRefusal::UnindexedPackHoldsNeeded {
                    needed: unindexed_needed.len(),
                    pack: key.clone(),
                },
            });
        }
    }
    // No pack holds them: their data is lost. A snapshot whose tree is lost cannot say which
    // chunks it needs, so nothing is deleted until the damaged snapshots are dealt with.
    Err(RepoError::PruneRefused {
        url: repo.url().to_string(),
        reason: PruneRefusal::LostBlobs {
            needed: unindexed_needed.len(),
        },
    })
}

/// What object lock keeps from a first plan: retained packs it would remove, retained index
/// files, and every pack a retained index file lists (held until that file's date).
async fn held_by_object_lock(
    repo: &Repository,
    plan: &PrunePlan,
    files: &[(String, IndexFile)],
) -> Result<BTreeMap<String, DateTime<Utc>>, RepoError> {
    if !repo.object_lock_enabled().await? {
        return Ok(BTreeMap::new());
    }
    let candidates = plan
        .repack
        .iter()
        .chain(&plan.delete)
        .map(pack_key)
        .chain(plan.unindexed.iter().cloned())
        .chain(files.iter().map(|(k, _)| k.clone()));
    let retained = repo.retained(candidates, Utc::now()).await?;
    let mut held: BTreeMap<String, DateTime<Utc>> =
        retained.iter().map(|(k, r)| (k.clone(), r.until)).collect();
    for (key, file) in files {
        if let Some(r) = retained.get(key) {
            for p in &file.packs {
                let until = held.entry(pack_key(&p.id)).or_insert(r.until);
                *until = (*until).max(r.until);
            }
        }
    }
    Ok(held)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::BlobKind;
    use crate::pack::PackedBlob;
    use chrono::TimeZone;

    fn pack(n: u8, kind: BlobKind, lengths: &[u32]) -> IndexPack {
        let mut offset = 0;
        let blobs = lengths
            .iter()
            .enumerate()
            .map(|(i, &length)| {
                let b = PackedBlob {
                    id: BlobId::of(&[n, i as u8]),
                    offset,
                    length,
                    raw_length: length * 2,
                };
                offset += length;
                b
            })
            .collect();
        IndexPack {
            id: PackId::of(&[n]),
            kind,
            size: u64::from(lengths.iter().sum::<u32>()) + 200,
            blobs,
        }
    }

    /// A repository after some forgets: a pack still fully used, one mostly used, one half
    /// used, one no longer used at all, a tree pack half used, and a pack an interrupted
    /// backup left without an index entry. The whole plan is asserted.
    #[test]
    fn golden_plan_keeps_repacks_and_deletes_by_use() {
        let files = [
            IndexFile {
                packs: vec![
                    pack(1, BlobKind::Data, &[1000, 1000, 1000, 1000]),
                    pack(2, BlobKind::Data, &[1200, 1200, 1200, 400]),
                ],
            },
            IndexFile {
                packs: vec![
                    pack(3, BlobKind::Data, &[1000, 1000, 1000, 1000]),
                    pack(4, BlobKind::Data, &[1000, 1000, 1000]),
                    pack(5, BlobKind::Tree, &[1000, 1000]),
                ],
            },
        ];
        let index = Index::from_files(&files);
        let used: HashSet<BlobId> = [
            (1, 0),
            (1, 1),
            (1, 2),
            (1, 3),
            (2, 0),
            (2, 1),
            (2, 2),
            (3, 1),
            (3, 3),
            (5, 0),
        ]
        .into_iter()
        .map(|(p, b)| BlobId::of(&[p, b]))
        .collect();
        let mut stored: HashMap<String, u64> = files
            .iter()
            .flat_map(|f| &f.packs)
            .map(|p| (pack_key(&p.id), p.size))
            .collect();
        let orphan = pack_key(&PackId::of(&[0xee]));
        stored.insert(orphan.clone(), 5000);

        assert_eq!(
            plan_prune(&index, &used, &stored, &BTreeMap::new()),
            PrunePlan {
                // Pack 1 is fully used; pack 2 is 90 % used, above the 80 % repack threshold.
                keep: 2,
                // Half of pack 3 and of tree pack 5 is used: their used blobs are copied.
                repack: vec![PackId::of(&[3]), PackId::of(&[5])],
                delete: vec![PackId::of(&[4])],
                unindexed: vec![orphan],
                used_blobs: 10,
                unused_blobs: 7,
                freed_bytes: 4200 + 3200 + 2200 + 5000,
                repack_bytes: 2000 + 1000,
                held: BTreeMap::new(),
            }
        );
        // With nothing used, every indexed pack goes.
        let plan = plan_prune(&index, &HashSet::new(), &stored, &BTreeMap::new());
        assert_eq!((plan.keep, plan.repack.len(), plan.delete.len()), (0, 0, 5));
    }

    #[test]
    fn locked_packs_are_held_not_deleted() {
        let blob = |n: u8| PackedBlob {
            id: BlobId::of(&[n]),
            offset: 0,
            length: 10,
            raw_length: 10,
        };
        let pack = |n: u8, blobs: Vec<PackedBlob>| IndexPack {
            id: PackId::of(&[n, 0xee]),
            kind: BlobKind::Data,
            size: 100,
            blobs,
        };
        let file = IndexFile {
            packs: vec![
                pack(1, vec![blob(1)]),
                pack(2, vec![blob(2)]),
                pack(3, vec![blob(3)]),
            ],
        };
        let index = Index::from_files([&file]);
        let stored: HashMap<String, u64> = file
            .packs
            .iter()
            .map(|p| (pack_key(&p.id), 100))
            .chain([("data/ff/orphan".to_string(), 5)])
            .collect();
        let used: HashSet<BlobId> = [BlobId::of(&[1])].into();
        let until = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
        let unlocked = plan_prune(&index, &used, &stored, &BTreeMap::new());
        assert_eq!(unlocked.delete.len(), 2);
        assert_eq!(unlocked.unindexed, ["data/ff/orphan"]);

        let held: BTreeMap<String, DateTime<Utc>> = [
            (pack_key(&PackId::of(&[2, 0xee])), until),
            ("data/ff/orphan".to_string(), until),
            // A used pack being locked changes nothing.
            (pack_key(&PackId::of(&[1, 0xee])), until),
        ]
        .into();
        let plan = plan_prune(&index, &used, &stored, &held);
        assert_eq!(plan.delete, [PackId::of(&[3, 0xee])]);
        assert!(plan.unindexed.is_empty());
        assert_eq!(plan.held.len(), 2, "{:?}", plan.held);
        assert_eq!(plan.keep, 2);
        assert_eq!(plan.freed_bytes, 100);
    }
}
