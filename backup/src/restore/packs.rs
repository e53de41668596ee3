//! Fetching a restore's packs, a few at a time, each decoded while it downloads and its blobs
//! written wherever they go.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;

use super::body;
use super::files_plan::{PlannedBlob, RestorePlan};
use super::handles::Dirs;
use super::output::{BlobWriter, FileSlot};
use crate::aligned::Placed;
use crate::blob::BlobId;
use crate::crypto::RepoKey;
use crate::pack::{PackStream, pack_key};
use crate::progress::Progress;
use crate::repository::{RepoError, Repository};

/// Packs fetched at once during a restore. Each holds a few body chunks and its decoding
/// buffers (about twice its largest blob), ~13 MiB RSS each here. Restoring 1 GiB from RGW:
/// 2 took 2.0–2.3 s, 3 took 1.9–2.0 s, 4 took 1.8–1.9 s, 6 no less than 4.
const PACKS_IN_FLIGHT: usize = 4;

/// One worker's decoding buffers: the current compressed frame, and the blob decoded from it
/// (or decrypted straight into it, for raw frames), placed for direct writes.
#[derive(Default)]
struct Scratch {
    frame: Vec<u8>,
    placed: Placed,
}

/// Where the blobs of a restore go.
pub(super) struct Outputs {
    /// The target's directories.
    pub(super) dirs: Arc<Dirs>,
    /// Per tree node: its file being restored, if it is one.
    pub(super) slots: Arc<Vec<Option<FileSlot>>>,
    /// Nodes not to write (they already failed).
    pub(super) skip: Arc<BTreeSet<usize>>,
}

/// What [`write_packs`] could not do.
#[derive(Default)]
pub(super) struct PackFailures {
    /// Files that failed, with why.
    pub(super) files: Vec<(usize, String)>,
    /// Keys of packs whose content is damaged or forged (a blob not matching its id, a frame
    /// that does not decode, a blob list that does not match the index).
    pub(super) damaged: BTreeSet<String>,
}

/// Fetches every pack of `plan` and writes its blobs. Returns the bytes written and what
/// failed; a pack that cannot be fetched or fails its check fails every file with a blob in
/// it.
pub(super) async fn write_packs(
    repo: &Repository,
    plan: &RestorePlan,
    outputs: &Outputs,
    progress: &Arc<Progress>,
) -> (u64, PackFailures) {
    let failures: Arc<Mutex<PackFailures>> = Arc::new(Mutex::new(PackFailures::default()));
    let written = Arc::new(AtomicU64::new(0));
    let direct = Arc::new(AtomicBool::new(true));
    // Decoding buffers of finished packs, for the next ones (fresh ones would be faulted in
    // and zeroed for every pack).
    let scratches: Arc<Mutex<Vec<Scratch>>> = Arc::new(Mutex::new(Vec::new()));
    futures::stream::iter(plan.packs.iter())
        .map(|(pack_id, blobs)| {
            let (dirs, slots, skip) = (outputs.dirs.clone(), outputs.slots.clone(), outputs.skip.clone());
            let (failures, written, progress) = (failures.clone(), written.clone(), progress.clone());
            let (direct, scratches) = (direct.clone(), scratches.clone());
            async move {
                let key = pack_key(pack_id);
                let pack = key.clone();
                let result = match repo.objects().get_streamed(&key).await {
                    Ok(content) => {
                        let (blobs, repo_key) = (blobs.clone(), repo.key().clone());
                        let progress = progress.clone();
                        // A local pack is decoded straight from its file; a remote one from
                        // its body's chunks as they arrive.
                        let (input, download) = body::pack_input(content);
                        let decode = tokio::task::spawn_blocking(move || {
                            let mut stream = PackStream::open(&repo_key, &key, input)?;
                            let mut scratch = scratches
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .pop()
                                .unwrap_or_default();
                            let out = PackOutput {
                                key: &repo_key,
                                slots: &slots,
                                skip: &skip,
                                progress: &progress,
                            };
                            let mut writer = BlobWriter::new(&dirs, &direct);
                            let (failed, bytes, damaged) =
                                out.write_blobs(&mut stream, &blobs, &mut writer, &mut scratch);
                            drop(writer);
                            scratches.lock().unwrap_or_else(|p| p.into_inner()).push(scratch);
                            // Only now is the pack known to be the one the index named.
                            let used: Vec<_> = blobs.iter().map(|b| b.entry).collect();
                            stream.finish(&used)?;
                            written.fetch_add(bytes, Ordering::Relaxed);
                            Ok((failed, damaged))
                        });
                        let decoded = match download {
                            Some(download) => tokio::join!(download, decode).1,
                            None => decode.await,
                        };
                        decoded.unwrap_or_else(|e| Err(RepoError::Task(e.to_string())))
                    }
                    Err(e) => Err(e),
                };
                let mut f = failures.lock().unwrap_or_else(|p| p.into_inner());
                match result {
                    Ok((per_file, damaged)) => {
                        f.files.extend(per_file);
                        if damaged {
                            f.damaged.insert(pack);
                        }
                    }
                    // The whole pack is unreadable: every file with a blob in it is affected.
                    Err(e) => {
                        if matches!(e, RepoError::Pack(_)) {
                            f.damaged.insert(pack);
                        }
                        f.files.extend(
                            blobs
                                .iter()
                                .flat_map(|b| b.targets.iter().map(|(file, _)| (*file, e.to_string()))),
                        );
                    }
                }
                progress.add_done(0, 1);
            }
        })
        .buffer_unordered(PACKS_IN_FLIGHT)
        .collect::<()>()
        .await;
    let failures = std::mem::take(&mut *failures.lock().unwrap_or_else(|p| p.into_inner()));
    (written.load(Ordering::Relaxed), failures)
}

/// Where a pack's blobs go.
struct PackOutput<'a> {
    /// Checks each blob against its id (keyed BLAKE3 under the repository's chunk-id key):
    /// the one check that a writer without the repository key cannot satisfy.
    key: &'a RepoKey,
    slots: &'a [Option<FileSlot>],
    skip: &'a BTreeSet<usize>,
    progress: &'a Progress,
}

impl PackOutput<'_> {
    /// Decodes each planned blob of a pack, in pack order, and writes it wherever it goes. A
    /// bad blob or a failed write affects only the files involved; they are returned with the
    /// reason, with the bytes written, and whether any blob was bad (the pack is damaged).
    fn write_blobs<R: std::io::BufRead>(
        &self,
        stream: &mut PackStream<R>,
        blobs: &[PlannedBlob],
        writer: &mut BlobWriter<'_>,
        scratch: &mut Scratch,
    ) -> (Vec<(usize, String)>, u64, bool) {
        let mut failures = Vec::new();
        let mut written = 0;
        let mut damaged = false;
        for b in blobs {
            let targets: Vec<(usize, u64, &FileSlot)> = b
                .targets
                .iter()
                .filter(|(file, _)| !self.skip.contains(file))
                .filter_map(|&(file, offset)| Some((file, offset, self.slots.get(file)?.as_ref()?)))
                .collect();
            let Some(&(_, first_offset, _)) = targets.first() else {
                continue;
            };
            // Sized from the index, so an impossible length is refused before allocating.
            if let Some(why) = b.entry.impossible_length() {
                damaged = true;
                let e = stream.blob_error(&b.entry, why);
                failures.extend(targets.iter().map(|(file, _, _)| (*file, e.to_string())));
                continue;
            }
            // Placed for the first target's offset: its whole blocks need no more copies.
            let out = scratch.placed.slot(b.entry.raw_length as usize, first_offset);
            // Verified before any byte of it is written: a blob that decodes cleanly but is
            // not the one its id names (a forged or mixed-up pack) fails its files.
            let decoded = match stream.decode_into(&b.entry, &mut scratch.frame, out) {
                Ok(()) if BlobId::keyed(self.key.chunk_id_key(), out) == b.entry.id => Ok(()),
                Ok(()) => Err(stream.blob_mismatch(&b.entry)),
                Err(e) => Err(e),
            };
            let data = match decoded {
                Ok(()) => &*out,
                Err(e) => {
                    damaged = true;
                    failures.extend(targets.iter().map(|(file, _, _)| (*file, e.to_string())));
                    continue;
                }
            };
            let len = data.len() as u64;
            for (file, offset, slot) in targets {
                match writer.write(file, slot, data, offset) {
                    Ok(()) => {
                        written += len;
                        self.progress.add_done(len, 0);
                    }
                    Err(e) => failures.push((file, e.to_string())),
                }
            }
        }
        (failures, written, damaged)
    }
}
