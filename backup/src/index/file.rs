//! The stored form of index objects.

use crate::blob::{BlobKind, Id, PackId};
use crate::pack::PackedBlob;

/// One `index/<id>` object's content (JSON inside zstd inside age).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IndexFile {
    /// The packs it describes.
    pub packs: Vec<IndexPack>,
}

/// One pack's entry in an index file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IndexPack {
    /// The pack.
    pub id: PackId,
    /// Data or tree.
    pub kind: BlobKind,
    /// Its size in storage, checked by `repo check`.
    pub size: u64,
    /// Its blobs.
    pub blobs: Vec<PackedBlob>,
}

/// The object key of an index file.
pub fn index_key(id: &Id) -> String {
    format!("index/{}", id.to_hex())
}
