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

/// The largest blob a repository holds, in bytes: content-defined chunks are at most 16 MiB,
/// and what is stored whole (a Kubernetes object, a snapshot's catalog) is far smaller (etcd
/// refuses objects over 1.5 MiB by default). Writers refuse more; readers refuse an index or
/// pack entry claiming more before allocating for it, since anyone holding the repository's
/// public recipient can write an index that claims 4 GiB.
pub const MAX_BLOB_LENGTH: u32 = 128 * 1024 * 1024;

/// The largest zstd frame a blob of `raw_length` bytes can take: zstd's worst-case bound
/// (`ZSTD_compressBound`: the input plus 1/256 of it, plus a header), which also covers a
/// frame of raw blocks (13 header bytes and 3 per 128 KiB block).
pub fn max_frame_length(raw_length: u32) -> u64 {
    u64::from(raw_length) + u64::from(raw_length) / 256 + 1024
}

impl PackedBlob {
    /// Why this entry cannot be a blob this format writes (more than [`MAX_BLOB_LENGTH`]
    /// bytes, or a frame longer than [`max_frame_length`] of them), or `None` when it can.
    pub fn impossible_length(&self) -> Option<String> {
        if self.raw_length > MAX_BLOB_LENGTH {
            Some(format!(
                "claims {} bytes, more than any blob ({MAX_BLOB_LENGTH})",
                self.raw_length
            ))
        } else if u64::from(self.length) > max_frame_length(self.raw_length) {
            Some(format!(
                "claims a {}-byte frame for {} bytes, more than any blob's frame ({})",
                self.length,
                self.raw_length,
                max_frame_length(self.raw_length)
            ))
        } else {
            None
        }
    }
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
