//! Packs: many blobs in one object, so a backup writes a few dozen objects per GiB instead of
//! one per chunk. A pack is one age file whose plaintext is the blobs' zstd frames back to
//! back, then a skippable zstd frame listing them (so an index can be rebuilt from packs
//! alone, and `age -d | zstd -d` still yields just the data).

mod reader;
mod stream;
mod writer;

pub use reader::{OpenPack, PackError};
pub use stream::PackStream;
pub use writer::{PackWriter, SealedPack};

use crate::blob::{BlobId, PackId};

/// Where one blob sits inside a pack's plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PackedBlob {
    /// The blob.
    pub id: BlobId,
    /// Byte offset of its zstd frame in the pack's plaintext.
    pub offset: u32,
    /// Length of its zstd frame.
    pub length: u32,
    /// Its uncompressed length.
    pub raw_length: u32,
}

/// The object key of a pack: `data/<first two hex digits>/<id>`, spreading packs over
/// prefixes the way S3 likes.
pub fn pack_key(id: &PackId) -> String {
    let hex = id.to_hex();
    format!("data/{}/{hex}", &hex[..2])
}

/// Packs are sealed once their plaintext reaches this size. 16 MiB keeps a backup's memory
/// (one open pack per worker plus a few in upload) well under 256 MiB and objects large
/// enough for efficient cloud transfers.
pub const DEFAULT_PACK_SIZE: u32 = 16 * 1024 * 1024;
