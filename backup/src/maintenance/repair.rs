//! `repo repair index`: rebuild the index from what storage holds (restic's `repair index`).
//!
//! Every pack ends in a trailer listing its blobs exactly as an index does (docs/FORMAT.md,
//! "Packs"), so the index can always be recovered from the packs. The repair keeps entries of
//! readable index files whose pack is stored with the listed size, reads every other stored
//! pack (all of them with `read_all_packs`) and indexes the blobs its trailer lists whose
//! content matches their id (keyed BLAKE3: a damaged or forged blob is dropped and named, so
//! a backup stores it anew and no restore reads it), drops entries of packs that are gone
//! (so the next backup stores those blobs again), writes the result as new index files and
//! only then deletes the old ones, damaged ones included. Killed part-way, it leaves the old
//! and new index files side by side, which together describe the same packs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::Utc;
use futures::StreamExt;

use crate::blob::{Id, PackId};
use crate::index::{IndexFile, IndexPack, index_key};
use crate::pack::pack_key;
use crate::progress::Progress;
use crate::read::BlobReader;
use crate::repository::{LockKind, RepoError, Repository};

/// Packs whose trailers are read at once.
const PACKS_IN_FLIGHT: usize = 4;
/// Packs listed per index file written.
const PACKS_PER_INDEX_FILE: usize = 5000;

/// What the repair did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RepairReport {
    /// Packs the new index lists.
    pub packs: usize,
    /// Packs whose trailer was read (not, or not correctly, in a readable index file).
    pub packs_read: usize,
    /// Index files that could not be read, with why (replaced by the new index).
    pub damaged_index_files: BTreeMap<String, String>,
    /// Packs an index listed that storage does not hold (entries dropped: a backup stores
    /// those blobs again if their source still has them).
    pub missing_packs: Vec<String>,
    /// Stored packs whose trailer could not be read, with why (left in storage, not indexed).
    pub unreadable_packs: BTreeMap<String, String>,
    /// Per pack read: blobs its trailer lists whose content does not match their id (damaged
    /// or forged), each `<blob id>: why`; not indexed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub bad_blobs: BTreeMap<String, Vec<String>>,
    /// Index files written.
    pub index_files_written: usize,
    /// Old index files deleted.
    pub index_files_removed: usize,
}

/// Rebuilds the index under an exclusive lock (no backup may add packs meanwhile).
pub async fn repair_index(
    repo: &Repository,
    read_all_packs: bool,
    progress: Arc<Progress>,
) -> Result<RepairReport, RepoError> {
    repo.while_locked(
        LockKind::Exclusive,
        "repair index",
        run(repo, read_all_packs, progress),
    )
    .await
}

async fn run(
    repo: &Repository,
    read_all_packs: bool,
    progress: Arc<Progress>,
) -> Result<RepairReport, RepoError> {
    let mut report = RepairReport::default();
    let stored: HashMap<String, u64> = repo.list("data/").await?.into_iter().collect();
    let (files, damaged) = repo.index_files_checked().await?;
    for e in damaged {
        if let RepoError::DamagedIndex { key, message, .. } = e {
            report.damaged_index_files.insert(key, message);
        }
    }
    let old_keys: Vec<String> = files
        .iter()
        .map(|(k, _)| k.clone())
        .chain(report.damaged_index_files.keys().cloned())
        .collect();

    // Entries of readable index files that match storage.
    let mut packs: BTreeMap<PackId, IndexPack> = BTreeMap::new();
    let mut missing: BTreeMap<String, ()> = BTreeMap::new();
    for (_, file) in &files {
        for p in &file.packs {
            let key = pack_key(&p.id);
            match stored.get(&key) {
                None => {
                    missing.insert(key, ());
                }
                Some(&size) if size == p.size && !read_all_packs => {
                    packs.entry(p.id).or_insert_with(|| p.clone());
                }
                Some(_) => {}
            }
        }
    }
    report.missing_packs = missing.into_keys().collect();

    // Every other stored pack: its own trailer says what it holds.
    let to_read: Vec<(String, u64)> = stored
        .iter()
        .filter(|(k, _)| pack_id_of(k).is_none_or(|id| !packs.contains_key(&id)))
        .map(|(k, s)| (k.clone(), *s))
        .collect();
    progress.add_total(to_read.iter().map(|(_, s)| s).sum(), to_read.len() as u64);
    let read: Vec<(String, Result<Verified, String>)> = futures::stream::iter(to_read)
        .map(|(key, size)| {
            let progress = progress.clone();
            async move {
                let result = read_trailer(repo, &key, size).await;
                progress.add_done(size, 1);
                (key, result)
            }
        })
        .buffer_unordered(PACKS_IN_FLIGHT)
        .collect()
        .await;
    for (key, result) in read {
        report.packs_read += 1;
        match result {
            Ok(Verified { pack, bad }) => {
                if !bad.is_empty() {
                    report.bad_blobs.insert(key.clone(), bad);
                }
                if pack.blobs.is_empty() {
                    report
                        .unreadable_packs
                        .insert(key, "no blob in it matches its id".to_string());
                } else {
                    packs.insert(pack.id, pack);
                }
            }
            Err(why) => {
                report.unreadable_packs.insert(key, why);
            }
        }
    }
    report.packs = packs.len();

    // New index files first, then the old ones go (except what S3 Object Lock retains).
    let packs: Vec<IndexPack> = packs.into_values().collect();
    let mut written = Vec::new();
    for batch in packs.chunks(PACKS_PER_INDEX_FILE) {
        let file = IndexFile {
            packs: batch.to_vec(),
        };
        let bytes = crate::repository::object_io::seal_json(repo.key(), "index", &file)?;
        let key = index_key(&Id::of(&bytes));
        repo.objects().put_new(&key, bytes.into()).await?;
        written.push(key);
    }
    report.index_files_written = written.len();
    let retained = repo.retained(old_keys.iter().cloned(), Utc::now()).await?;
    for key in old_keys
        .iter()
        .filter(|k| !written.contains(k) && !retained.contains_key(*k))
    {
        repo.objects().delete(key).await?;
        report.index_files_removed += 1;
    }
    Ok(report)
}

/// The pack id a `data/xx/<64 hex>` key names, if it names one.
fn pack_id_of(key: &str) -> Option<PackId> {
    let id: PackId = key.rsplit('/').next()?.parse().ok()?;
    (pack_key(&id) == key).then_some(id)
}

/// A pack read whole: its index entry (the blobs that verified) and the blobs that did not.
struct Verified {
    pack: IndexPack,
    bad: Vec<String>,
}

/// Downloads a pack, verifies its name, reads its trailer and verifies every blob it lists
/// against its id (decompressed, keyed BLAKE3 under the repository's chunk-id key).
async fn read_trailer(repo: &Repository, key: &str, size: u64) -> Result<Verified, String> {
    let id = pack_id_of(key).ok_or_else(|| "not a pack name (data/xx/<64 hex digits>)".to_string())?;
    let open = BlobReader::open_pack(repo, &id)
        .await
        .map_err(|e| e.to_string())?;
    let chunk_key = *repo.key().chunk_id_key();
    let (kind, blobs, bad) = tokio::task::spawn_blocking(move || {
        let (kind, listed) = open.trailer()?;
        let (mut blobs, mut bad) = (Vec::new(), Vec::new());
        for b in listed {
            match open.blob(&b, &chunk_key) {
                Ok(_) => blobs.push(b),
                Err(e) => bad.push(format!("{}: {e}", b.id.to_hex())),
            }
        }
        Ok::<_, crate::pack::PackError>((kind, blobs, bad))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    Ok(Verified {
        pack: IndexPack {
            id,
            kind,
            size,
            blobs,
        },
        bad,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pack_keys_name_packs() {
        let id = PackId::of(b"x");
        assert_eq!(pack_id_of(&pack_key(&id)), Some(id));
        let hex = id.to_hex();
        assert_eq!(pack_id_of(&format!("data/00/{hex}")), None);
        assert_eq!(pack_id_of("data/ab/README"), None);
        assert_eq!(pack_id_of(&format!("data/{}/{hex}#123", &hex[..2])), None);
    }
}
