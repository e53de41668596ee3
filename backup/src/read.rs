//! Reading blobs back: fetch the pack, verify and decrypt it, decode the blob.

use std::sync::{Arc, Mutex};

use crate::blob::{BlobId, PackId};
use crate::index::Index;
use crate::pack::{OpenPack, pack_key};
use crate::repository::{RepoError, Repository};
use crate::snapshot::Node;

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
        let bytes = repo.objects().get(&key).await?;
        let repo_key = repo.key().clone();
        let id = *id;
        tokio::task::spawn_blocking(move || OpenPack::open(&repo_key, &id, &key, &bytes))
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

    /// A snapshot's whole tree listing.
    pub async fn read_tree(&self, tree: &[BlobId]) -> Result<Vec<Node>, RepoError> {
        let mut listing = Vec::new();
        for id in tree {
            listing.extend(self.read(id).await?);
        }
        listing
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|line| {
                serde_json::from_slice(line).map_err(|e| RepoError::Corrupt {
                    object: format!("tree of snapshot ({} blobs)", tree.len()),
                    message: e.to_string(),
                })
            })
            .collect()
    }
}
