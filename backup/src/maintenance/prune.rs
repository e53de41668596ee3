//! `repo prune`: delete what no snapshot references. The plan is computed first (and is all
//! `--dry-run` prints); applying it under an exclusive lock keeps every step crash-safe:
//! new packs and a new index are written before old index files go, and packs are deleted
//! last, so an interruption leaves only unreferenced garbage for the next prune.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use crate::blob::{BlobId, BlobKind, Id, PackId};
use crate::index::{Index, IndexFile, IndexPack};
use crate::pack::pack_key;
use crate::read::BlobReader;
use crate::repository::{LockKind, RepoError, Repository};
use crate::session::{BlobSink, Session};
use crate::snapshot::NodeKind;

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
}

/// Decides, per pack, keep / repack / delete. Pure: tests drive it with hand-made indexes.
pub fn plan_prune(index: &Index, used: &HashSet<BlobId>, stored: &HashMap<String, u64>) -> PrunePlan {
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
        if used_n == 0 {
            plan.delete.push(pack.id);
            plan.freed_bytes += pack.size;
        } else if unused_n > 0 && (used_b as f64) < REPACK_BELOW_USED * (used_b + unused_b) as f64 {
            plan.repack.push(pack.id);
            plan.freed_bytes += pack.size;
            plan.repack_bytes += used_b;
        } else {
            plan.keep += 1;
        }
    }
    let indexed: HashSet<String> = index.packs().iter().map(|p| pack_key(&p.id)).collect();
    for (key, size) in stored {
        if !indexed.contains(key) {
            plan.unindexed.push(key.clone());
            plan.freed_bytes += size;
        }
    }
    plan.unindexed.sort();
    plan
}

/// Every blob the snapshots reference (tree blobs and file chunks).
pub async fn used_blobs(repo: &Repository, index: &Index) -> Result<HashSet<BlobId>, RepoError> {
    let reader = BlobReader::new(repo, index);
    let mut used = HashSet::new();
    for snap in repo.snapshots().await? {
        used.extend(snap.tree.iter().copied());
        for node in reader.read_tree(&snap.tree).await? {
            if node.kind == NodeKind::File {
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
    let plan = plan_prune(&index, &used, &stored);
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
            tokio::task::spawn_blocking(move || {
                let mut sink = BlobSink::new(shared, kind);
                for e in &entries {
                    sink.put(&open.blob(e, &chunk_key)?)?;
                }
                sink.finish()
            })
            .await
            .map_err(|e| RepoError::Task(e.to_string()))??;
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
        let bytes = crate::repository::objects::seal_json(repo.key(), "index", &file)?;
        repo.objects()
            .put_new(&crate::index::index_key(&Id::of(&bytes)), bytes.into())
            .await?;
    }

    // 3. Old index files, now superseded (the repack session's new ones are not in `files`).
    for (key, _) in &files {
        repo.objects().delete(key).await?;
    }

    // 4. Packs, last.
    for id in plan.repack.iter().chain(&plan.delete) {
        repo.objects().delete(&pack_key(id)).await?;
    }
    for key in &plan.unindexed {
        repo.objects().delete(key).await?;
    }
    repo.remove_stale_locks().await?;
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::BlobKind;
    use crate::pack::PackedBlob;

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
            plan_prune(&index, &used, &stored),
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
            }
        );
        // With nothing used, every indexed pack goes.
        let plan = plan_prune(&index, &HashSet::new(), &stored);
        assert_eq!((plan.keep, plan.repack.len(), plan.delete.len()), (0, 0, 5));
    }
}
