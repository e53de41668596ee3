//! Reading many small single-blob items (Kubernetes objects, tree chunks) as their packs
//! download: each pack is decoded front to back by [`PackStream`] on a blocking thread, and its
//! blobs are handed over in small batches through a short channel, so neither a pack nor its
//! plaintext is ever whole in memory — only the few decoded blobs waiting for the consumer.

use std::collections::BTreeSet;
use std::sync::Mutex;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

use super::body;
use crate::blob::{BlobId, PackId};
use crate::crypto::RepoKey;
use crate::pack::{PackError, PackStream, PackedBlob, pack_key};
use crate::repository::{RepoError, Repository};

/// Batches of decoded blobs of one pack waiting for the consumer; the decoder pauses beyond.
const BATCHES_WAITING: usize = 2;
/// Blobs handed over at once. One at a time, a decoder ahead of its consumer was woken for
/// every blob the consumer took (a full channel frees one slot per receive): at 10,000
/// Kubernetes objects a quarter of the restore's CPU went to those thread switches.
const BATCH_BLOBS: usize = 32;
/// A batch is handed over early once its blobs hold this many bytes.
const BATCH_BYTES: usize = 1 << 20;

/// One blob of a pack as decoded: its content, or why it could not be read.
pub(super) type Decoded = Result<Vec<u8>, RepoError>;

/// Downloads pack `pack` and decodes `entries` (in increasing offset order; an entry may
/// repeat, and is then decoded once) while it downloads. Every blob is checked against its id
/// (keyed BLAKE3 under the repository's chunk-id key: age proves a pack was not altered, not
/// who wrote it, and anyone with the public recipient can encrypt one) before it is handed
/// out. Yields one result per entry, in order: a blob that does not decode or is not the
/// content its id names fails alone ([`crate::pack::PackError::BlobMismatch`] inside
/// [`RepoError::Pack`] for the latter); a pack that cannot be fetched or whose stream breaks
/// fails every entry from there on ([`RepoError::PackUnreadable`]). Once every entry is out,
/// the rest of the pack is read and its own blob list checked against `entries`
/// ([`PackStream::finish`]); a pack failing that is added to `damaged` (why, naming it): what was
/// handed out was checked blob by blob already, but the index and the pack disagree.
pub(super) async fn decode_pack<'a>(
    repo: &Repository,
    pack: PackId,
    entries: Vec<PackedBlob>,
    damaged: &'a Mutex<BTreeSet<String>>,
) -> impl Stream<Item = Decoded> + 'a {
    let key = pack_key(&pack);
    let unreadable = move |why: String| RepoError::PackUnreadable {
        pack: pack.to_hex(),
        why,
    };
    let input = match repo.objects().get_streamed(&key).await {
        Ok(streamed) => {
            let (input, download) = body::pack_input(streamed);
            if let Some(download) = download {
                tokio::spawn(download);
            }
            input
        }
        Err(e) => {
            let why = e.to_string();
            let failed: Vec<Decoded> = entries.iter().map(|_| Err(unreadable(why.clone()))).collect();
            return futures::stream::iter(failed).left_stream();
        }
    };
    let (tx, rx) = mpsc::channel::<Vec<Decoded>>(BATCHES_WAITING);
    let repo_key = repo.key().clone();
    let decoder = tokio::task::spawn_blocking(move || {
        let opened = PackStream::open(&repo_key, &key, input)
            .map(|stream| decode_entries(stream, &repo_key, &entries, &tx));
        opened.unwrap_or_else(|e| {
            let why = e.to_string();
            let failed = entries.iter().map(|_| Err(unreadable(why.clone()))).collect();
            let _ = tx.blocking_send(failed);
            None
        })
    });
    // Once every blob is out: the pack's own blob list, checked by the decoder.
    let checked = async move {
        if let Ok(Some(why)) = decoder.await {
            tracing::warn!("{why}");
            damaged.lock().unwrap_or_else(|p| p.into_inner()).insert(why);
        }
        None
    };
    receiver_stream(rx)
        .flat_map(futures::stream::iter)
        .chain(futures::stream::once(checked).filter_map(std::future::ready))
        .right_stream()
}

/// Decodes `entries` from `stream` in order, sending them (each checked against its id) on
/// `tx` in batches; then checks the pack's blob list. Returns why the pack failed that check,
/// if it did.
fn decode_entries<R: std::io::BufRead>(
    mut stream: PackStream<R>,
    repo_key: &RepoKey,
    entries: &[PackedBlob],
    tx: &mpsc::Sender<Vec<Decoded>>,
) -> Option<String> {
    let mut frame = Vec::new();
    let mut batch: Vec<Decoded> = Vec::with_capacity(BATCH_BLOBS);
    let mut batch_bytes = 0;
    // A blob listed again right after itself (two items of equal content) is decoded once.
    let mut kept: Option<(u32, Decoded)> = None;
    for (i, entry) in entries.iter().enumerate() {
        let decoded = match kept.take() {
            Some((offset, decoded)) if offset == entry.offset => decoded,
            // `out` is sized from the index: an impossible length is refused before allocating.
            _ => match entry.impossible_length() {
                Some(why) => Err(RepoError::Pack(stream.blob_error(entry, why))),
                None => {
                    let mut out = vec![0u8; entry.raw_length as usize];
                    match stream.decode_into(entry, &mut frame, &mut out) {
                        Ok(()) if BlobId::keyed(repo_key.chunk_id_key(), &out) == entry.id => Ok(out),
                        Ok(()) => Err(RepoError::Pack(stream.blob_mismatch(entry))),
                        Err(e) => Err(RepoError::Pack(e)),
                    }
                }
            },
        };
        if entries.get(i + 1).is_some_and(|next| next.offset == entry.offset) {
            let again = match &decoded {
                Ok(data) => Ok(data.clone()),
                Err(RepoError::Pack(PackError::BlobMismatch { .. })) => {
                    Err(RepoError::Pack(stream.blob_mismatch(entry)))
                }
                Err(e) => Err(RepoError::Pack(stream.blob_error(entry, e.to_string()))),
            };
            kept = Some((entry.offset, again));
        }
        batch_bytes += decoded.as_ref().map_or(0, Vec::len);
        batch.push(decoded);
        let last = i + 1 == entries.len();
        if (last || batch.len() >= BATCH_BLOBS || batch_bytes >= BATCH_BYTES)
            && tx
                .blocking_send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH_BLOBS)))
                .is_err()
        {
            return None;
        }
        batch_bytes = if batch.is_empty() { 0 } else { batch_bytes };
    }
    let mut used = entries.to_vec();
    used.dedup_by_key(|e| e.offset);
    stream.finish(&used).err().map(|e| e.to_string())
}

/// The receiver as a stream.
fn receiver_stream<T: Send + 'static>(rx: mpsc::Receiver<T>) -> impl Stream<Item = T> + Send {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
}
