//! Reading blobs back: fetch the pack, verify and decrypt it, decode the blob.

use std::sync::{Arc, Mutex};

use futures::TryStreamExt;

use crate::blob::{BlobId, PackId};
use crate::index::Index;
use crate::pack::{OpenPack, pack_key};
use crate::repository::{RepoError, Repository};
use crate::snapshot::Node;

/// A stream's chunks by pack: (offset in the stream, place in the pack).
type StreamLayout = std::collections::BTreeMap<PackId, Vec<(u64, crate::pack::PackedBlob)>>;

/// Reads blobs one at a time, keeping the last pack open (tree blobs of one snapshot sit
/// together, so sequential reads mostly hit it).
pub struct BlobReader<'a> {
    repo: &'a Repository,
    index: &'a Index,
    last: Mutex<Option<(PackId, Arc<OpenPack>)>>,
}

impl<'a> BlobReader<'a> {
    /// A reader over `repo` using `index`.
    pub fn new(repo: &'a Repository, index: &'a Index) -> Self {
        Self {
            repo,
            index,
            last: Mutex::new(None),
        }
    }

    /// Downloads, verifies and decrypts one pack.
    pub async fn open_pack(repo: &Repository, id: &PackId) -> Result<OpenPack, RepoError> {
        let key = pack_key(id);
        let parts: Vec<bytes::Bytes> = repo.objects().get_body(&key).await?.try_collect().await?;
        let repo_key = repo.key().clone();
        let id = *id;
        tokio::task::spawn_blocking(move || OpenPack::open(&repo_key, &id, &key, &parts))
            .await
            .map_err(|e| RepoError::Task(e.to_string()))?
            .map_err(RepoError::from)
    }

    /// One blob's content.
    pub async fn read(&self, id: &BlobId) -> Result<Vec<u8>, RepoError> {
        let loc = self.index.get(id).ok_or_else(|| RepoError::MissingBlob {
            blob: id.to_hex(),
            url: self.repo.url().to_string(),
        })?;
        let cached = {
            let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            last.as_ref()
                .filter(|(p, _)| *p == loc.pack)
                .map(|(_, open)| open.clone())
        };
        let open = match cached {
            Some(open) => open,
            None => {
                let open = Arc::new(Self::open_pack(self.repo, &loc.pack).await?);
                *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some((loc.pack, open.clone()));
                open
            }
        };
        Ok(open.blob(&loc.entry, self.repo.key().chunk_id_key())?)
    }

    /// Where each chunk of a stream lies (its pack, and its offset in the stream), grouped by
    /// pack so each is fetched once however the chunks are spread (parallel writers interleave
    /// a stream's chunks across their packs); and the stream's length.
    fn layout(&self, chunks: &[BlobId]) -> Result<(StreamLayout, u64), RepoError> {
        let mut by_pack = StreamLayout::new();
        let mut offset = 0u64;
        for id in chunks {
            let loc = self.index.get(id).ok_or_else(|| RepoError::MissingBlob {
                blob: id.to_hex(),
                url: self.repo.url().to_string(),
            })?;
            by_pack.entry(loc.pack).or_default().push((offset, loc.entry));
            offset += u64::from(loc.entry.raw_length);
        }
        Ok((by_pack, offset))
    }

    /// Decodes every chunk of `layout`, a pack at a time, handing each to `put` with its offset.
    async fn each_chunk(
        &self,
        layout: StreamLayout,
        mut put: impl FnMut(u64, &[u8]) -> Result<(), RepoError>,
    ) -> Result<(), RepoError> {
        for (pack, blobs) in layout {
            let open = Self::open_pack(self.repo, &pack).await?;
            for (at, entry) in blobs {
                put(at, &open.blob(&entry, self.repo.key().chunk_id_key())?)?;
            }
        }
        Ok(())
    }

    /// A stream's content from its chunk list, fetching each pack once.
    pub async fn read_stream(&self, chunks: &[BlobId]) -> Result<Vec<u8>, RepoError> {
        let (layout, len) = self.layout(chunks)?;
        let mut out = vec![0u8; len as usize];
        self.each_chunk(layout, |at, data| {
            out[at as usize..at as usize + data.len()].copy_from_slice(data);
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// Writes a stream's content into `file` (from offset 0), one pack in memory at a time,
    /// so restoring a database of many GiB needs no more memory than a small one. Returns the
    /// byte count.
    pub async fn read_stream_to(&self, chunks: &[BlobId], file: &std::fs::File) -> Result<u64, RepoError> {
        use std::os::unix::fs::FileExt;
        let failed = |e: std::io::Error| RepoError::Io {
            path: "stream output".to_string(),
            message: e.to_string(),
        };
        let (layout, len) = self.layout(chunks)?;
        file.set_len(len).map_err(failed)?;
        self.each_chunk(layout, |at, data| file.write_all_at(data, at).map_err(failed))
            .await?;
        Ok(len)
    }

    /// A snapshot's whole tree listing.
    pub async fn read_tree(&self, tree: &[BlobId]) -> Result<Vec<Node>, RepoError> {
        let listing = self.read_stream(tree).await?;
        Node::parse_listing(&listing).map_err(|e| RepoError::Corrupt {
            object: format!("tree of snapshot ({} blobs)", tree.len()),
            message: e.to_string(),
        })
    }
}
