//! The `config` object: plaintext, written once, read first.

use chrono::{DateTime, Utc};

use super::RepoError;
use crate::blob::{Compression, Id};
use crate::chunker::ChunkerParams;
use crate::crypto::RepoKey;
use crate::pack::DEFAULT_PACK_SIZE;

/// What every reader of the repository must know before decrypting anything.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Config {
    /// Always `lifeboat-repository`.
    pub format: String,
    /// Format version: 2 since tree listings may hold raw (non-UTF-8) names, hard-link and
    /// extended-attribute fields; 1 before. Both are read.
    pub version: u32,
    /// Random repository id.
    pub id: String,
    /// When it was created.
    pub created: DateTime<Utc>,
    /// The repository key's public half: every object is encrypted to it.
    pub recipient: String,
    /// Chunk sizes for file data.
    pub chunker: ChunkerParams,
    /// Pack size target in bytes.
    pub pack_size: u32,
    /// Compression.
    pub compression: Compression,
}

/// Choices made at `init`.
#[derive(Debug, Clone, Copy, Default)]
pub struct InitOptions {
    /// Chunk sizes.
    pub chunker: ChunkerParams,
    /// Compression.
    pub compression: Compression,
}

const FORMAT: &str = "lifeboat-repository";
/// The version new repositories get.
const VERSION: u32 = 2;
/// The oldest version still read (and written to: a format 1 repository takes format 2
/// tree nodes, which only readers of format 2 understand).
const OLDEST_VERSION: u32 = 1;

impl Config {
    pub(crate) fn new(key: &RepoKey, options: InitOptions) -> Self {
        Self {
            format: FORMAT.to_string(),
            version: VERSION,
            id: Id::random().to_hex()[..32].to_string(),
            created: Utc::now(),
            recipient: key.recipient(),
            chunker: options.chunker,
            pack_size: DEFAULT_PACK_SIZE,
            compression: options.compression,
        }
    }

    pub(crate) fn to_json(&self) -> Result<Vec<u8>, RepoError> {
        serde_json::to_vec_pretty(self).map_err(|e| RepoError::Corrupt {
            object: "config".to_string(),
            message: e.to_string(),
        })
    }

    pub(crate) fn from_json(bytes: &[u8], url: &str) -> Result<Self, RepoError> {
        let bad = |message: String| RepoError::Corrupt {
            object: format!("{url}/config"),
            message,
        };
        let config: Self =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not a repository config: {e}")))?;
        if config.format != FORMAT {
            return Err(bad(format!("format {:?} is not {FORMAT:?}", config.format)));
        }
        if !(OLDEST_VERSION..=VERSION).contains(&config.version) {
            return Err(bad(format!(
                "format version {} is not supported by this version of Lifeboat (supports {OLDEST_VERSION} to {VERSION}); upgrade it",
                config.version
            )));
        }
        config.chunker.validate().map_err(|e| bad(e.to_string()))?;
        Ok(config)
    }

    /// The seed for the chunker's gear table, derived from the repository key.
    pub(crate) fn chunker_seed(key: &RepoKey) -> u64 {
        let k = key.chunk_id_key();
        u64::from_le_bytes([k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7]])
    }
}
