//! 256-bit ids, printed as 64 lowercase hex digits.

use std::fmt;
use std::str::FromStr;

/// A 256-bit id. Aliases name what it identifies; the type keeps them the same shape.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(pub [u8; 32]);

/// Names a blob: keyed BLAKE3 of its uncompressed content.
pub type BlobId = Id;
/// Names a pack: BLAKE3 of its encrypted bytes, so a pack's name proves its content.
pub type PackId = Id;
/// Names a snapshot (random).
pub type SnapshotId = Id;

/// An id string that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not an id (64 hex digits{})", if *.prefix_ok { ", or a unique prefix of one" } else { "" })]
pub struct IdParseError {
    /// What was given.
    pub input: String,
    /// Whether a prefix would have been accepted where this was parsed.
    pub prefix_ok: bool,
}

impl Id {
    /// Keyed BLAKE3 of `data`: the blob id under a repository's chunk-id key.
    pub fn keyed(key: &[u8; 32], data: &[u8]) -> Self {
        Self(*blake3::keyed_hash(key, data).as_bytes())
    }

    /// Plain BLAKE3 of `data`: content address of an encrypted object.
    pub fn of(data: &[u8]) -> Self {
        Self(*blake3::hash(data).as_bytes())
    }

    /// [`Self::of`] the concatenation of `parts`, without copying them together.
    pub fn of_parts<P: AsRef<[u8]>>(parts: &[P]) -> Self {
        let mut hasher = blake3::Hasher::new();
        for part in parts {
            hasher.update(part.as_ref());
        }
        Self(*hasher.finalize().as_bytes())
    }

    /// A random id.
    pub fn random() -> Self {
        Self(rand::random())
    }

    /// The full hex form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 8 hex digits, as lists show.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.short())
    }
}

impl FromStr for Id {
    type Err = IdParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || IdParseError {
            input: s.to_string(),
            prefix_ok: false,
        };
        let bytes = hex::decode(s).map_err(|_| err())?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| err())?;
        Ok(Self(arr))
    }
}

impl serde::Serialize for Id {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
