//! A repository with its index loaded: the only state in which snapshot content can be read
//! or new content written with deduplication (rustic's `Repository<P, IndexedStatus>`).
//! An open [`Repository`] becomes one through [`Repository::indexed`], so "index not loaded"
//! is not a state any reader or writer can be in.

use std::ops::Deref;
use std::sync::Arc;

use super::{RepoError, Repository};
use crate::index::Index;
use crate::read::BlobReader;
use crate::session::Session;
use crate::snapshot::{Node, Snapshot};

/// An open repository and its whole index. Dereferences to the [`Repository`]; cheap to clone.
#[derive(Clone)]
pub struct IndexedRepository {
    repo: Repository,
    index: Arc<Index>,
}

impl IndexedRepository {
    pub(super) fn new(repo: Repository, index: Index) -> Self {
        Self {
            repo,
            index: Arc::new(index),
        }
    }

    /// The open repository.
    pub fn repository(&self) -> &Repository {
        &self.repo
    }

    /// Which pack holds each blob.
    pub fn index(&self) -> &Arc<Index> {
        &self.index
    }

    /// Reads blobs, streams and trees.
    pub fn reader(&self) -> BlobReader<'_> {
        BlobReader::new(&self.repo, &self.index)
    }

    /// Every node of `snapshot`'s tree listing, sorted by path.
    pub async fn tree(&self, snapshot: &Snapshot) -> Result<Vec<Node>, RepoError> {
        self.reader().read_tree(&snapshot.tree).await
    }

    /// Starts writing: blobs the index lists are not stored again.
    pub fn start_session(&self) -> Session {
        Session::start(&self.repo, self.index.clone())
    }
}

impl Deref for IndexedRepository {
    type Target = Repository;

    fn deref(&self) -> &Repository {
        &self.repo
    }
}
