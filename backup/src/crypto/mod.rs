//! Encryption: every object the repository writes (packs, index files, snapshots) is a standard
//! age file encrypted to the repository's own X25519 key, and that key is stored wrapped for
//! each user key (age X25519, SSH, or a passphrase). Adding or removing a user key rewrites
//! one small `keys/` object, never data.

mod repo_key;
mod user_key;

pub use repo_key::{PartsReader, RepoKey};
pub use user_key::{KeyType, UserKey, UserRecipient};

/// Why encryption or decryption failed.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// None of the given keys opens this object.
    #[error("{object}: none of the given keys can decrypt it")]
    NoMatchingKey {
        /// The object's key in the store.
        object: String,
    },
    /// The bytes are not an age file, or were altered (age authenticates every 64 KiB).
    #[error("{object}: not a valid age file or corrupted: {message}")]
    Corrupt {
        /// The object's key in the store.
        object: String,
        /// What age said.
        message: String,
    },
    /// A recipient string could not be parsed.
    #[error("recipient {recipient:?}: {message}")]
    BadRecipient {
        /// The recipient as given (public, safe to show).
        recipient: String,
        /// What is wrong, and the expected forms.
        message: String,
    },
    /// An identity file could not be read or parsed (its contents are never shown).
    #[error("identity file {path}: {message}")]
    BadIdentity {
        /// The file's path.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Encryption itself failed (only on I/O into memory, so practically never).
    #[error("encrypt {object}: {message}")]
    Encrypt {
        /// The object being written.
        object: String,
        /// What age said.
        message: String,
    },
}
