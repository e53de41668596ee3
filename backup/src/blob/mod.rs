//! Blobs: the unit of deduplication. A blob is one chunk of file data (or of a tree listing),
//! named by its keyed BLAKE3 hash and stored as one zstd frame inside a pack.

mod compress;
mod id;

pub use compress::{
    Compression, compress, decompress, decompress_into, raw_frame, raw_frame_parts, skippable_frame,
};
pub use id::{BlobId, Id, IdParseError, PackId, SnapshotId};

/// What a blob holds; packs hold one kind each so trees can be read without data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobKind {
    /// File or stream content.
    Data,
    /// A slice of a snapshot's tree listing.
    Tree,
}

impl BlobKind {
    /// The name used in object keys and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Data => "data",
            Self::Tree => "tree",
        }
    }
}
