//! User keys: who may open a repository. Each `keys/<id>` object is the repository key
//! encrypted to one user key; users present an identity file or a passphrase to open it.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use age::secrecy::SecretString;
use zeroize::Zeroizing;

use super::CryptoError;
use super::repo_key::corrupt;

/// A user key to wrap the repository key for (public: safe to log).
pub enum UserRecipient {
    /// An age X25519 public key (`age1…`).
    X25519(age::x25519::Recipient),
    /// An SSH public key (`ssh-ed25519 …` or `ssh-rsa …`).
    Ssh(Box<age::ssh::Recipient>, String),
    /// A passphrase (scrypt), read from a file.
    Passphrase(SecretString),
}

impl fmt::Debug for UserRecipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::X25519(r) => write!(f, "X25519({r})"),
            Self::Ssh(_, text) => write!(f, "Ssh({text})"),
            Self::Passphrase(_) => f.write_str("Passphrase(<redacted>)"),
        }
    }
}

impl UserRecipient {
    /// Parses an age or SSH public key.
    pub fn parse(text: &str) -> Result<Self, CryptoError> {
        let text = text.trim();
        let bad = |message: &str| CryptoError::BadRecipient {
            recipient: text.to_string(),
            message: message.to_string(),
        };
        if text.starts_with("age1") {
            return text
                .parse::<age::x25519::Recipient>()
                .map(Self::X25519)
                .map_err(|e| bad(&format!("not a valid age X25519 public key ({e})")));
        }
        if text.starts_with("ssh-") {
            return text
                .parse::<age::ssh::Recipient>()
                .map(|r| Self::Ssh(Box::new(r), text.to_string()))
                .map_err(|_| bad("not a supported SSH public key (use ssh-ed25519 or ssh-rsa)"));
        }
        Err(bad(
            "expected an age public key (age1…) or an SSH public key (ssh-ed25519 …, ssh-rsa …)",
        ))
    }

    /// Reads a passphrase from a file (one line; the trailing newline is dropped).
    pub fn passphrase_file(path: &Path) -> Result<Self, CryptoError> {
        Ok(Self::Passphrase(read_passphrase(path)?))
    }

    /// The kind of key, as `repo key list` shows it.
    pub fn key_type(&self) -> KeyType {
        match self {
            Self::X25519(_) => KeyType::X25519,
            Self::Ssh(_, text) if text.starts_with("ssh-rsa") => KeyType::SshRsa,
            Self::Ssh(..) => KeyType::SshEd25519,
            Self::Passphrase(_) => KeyType::Passphrase,
        }
    }

    /// Encrypts `plaintext` (the repository key's identity file) to this user key.
    pub fn wrap(&self, plaintext: &[u8], object: &str) -> Result<Vec<u8>, CryptoError> {
        let encryptor = match self {
            Self::X25519(r) => age::Encryptor::with_recipients(std::iter::once(r as &dyn age::Recipient)),
            Self::Ssh(r, _) => {
                age::Encryptor::with_recipients(std::iter::once(r.as_ref() as &dyn age::Recipient))
            }
            Self::Passphrase(p) => Ok(age::Encryptor::with_user_passphrase(p.clone())),
        }
        .map_err(|e| CryptoError::Encrypt {
            object: object.to_string(),
            message: e.to_string(),
        })?;
        let mut out = Vec::new();
        let mut w = encryptor.wrap_output(&mut out).map_err(|e| corrupt(object, e))?;
        std::io::Write::write_all(&mut w, plaintext).map_err(|e| corrupt(object, e))?;
        w.finish().map_err(|e| corrupt(object, e))?;
        Ok(out)
    }
}

/// What a user presents to open a repository (secret: never `Debug`-printed in full).
pub enum UserKey {
    /// Identities from an age identity file or an unencrypted SSH private key.
    Identities {
        /// Where they came from, for messages.
        path: PathBuf,
        /// The parsed identities.
        identities: Vec<Box<dyn age::Identity + Send + Sync>>,
    },
    /// A passphrase, read from a file.
    Passphrase {
        /// Where it came from, for messages.
        path: PathBuf,
        /// The passphrase.
        passphrase: SecretString,
    },
}

impl fmt::Debug for UserKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl UserKey {
    /// Loads identities from an age identity file (`AGE-SECRET-KEY-1…` lines) or an
    /// unencrypted OpenSSH private key.
    pub fn identity_file(path: &Path) -> Result<Self, CryptoError> {
        let data = Zeroizing::new(std::fs::read(path).map_err(|e| CryptoError::BadIdentity {
            path: path.display().to_string(),
            message: format!("cannot read: {e}"),
        })?);
        Self::identity_bytes(&data, path)
    }

    /// Parses identities held in memory (a Kubernetes Secret's value); `source` names where
    /// they came from in messages (`secret ns/name key identity`).
    pub fn identity_bytes(data: &[u8], source: &Path) -> Result<Self, CryptoError> {
        let path = source;
        let bad = |message: String| CryptoError::BadIdentity {
            path: path.display().to_string(),
            message,
        };
        let text = String::from_utf8_lossy(data);
        let identities: Vec<Box<dyn age::Identity + Send + Sync>> = if text.contains("AGE-SECRET-KEY-1") {
            text.lines()
                .map(str::trim)
                .filter(|l| l.starts_with("AGE-SECRET-KEY-1"))
                .map(|l| {
                    l.parse::<age::x25519::Identity>()
                        .map(|i| Box::new(i) as Box<dyn age::Identity + Send + Sync>)
                        .map_err(|_| bad("holds a malformed AGE-SECRET-KEY line".to_string()))
                })
                .collect::<Result<_, _>>()?
        } else if text.contains("PRIVATE KEY") {
            let id = age::ssh::Identity::from_buffer(data, Some(path.display().to_string()))
                .map_err(|e| bad(format!("not a usable SSH private key: {e}")))?;
            match id {
                age::ssh::Identity::Unencrypted(_) => vec![Box::new(id)],
                age::ssh::Identity::Encrypted(_) => {
                    return Err(bad(
                        "is a passphrase-protected SSH key; decrypt a copy with `ssh-keygen -p` or use an age identity"
                            .to_string(),
                    ));
                }
                age::ssh::Identity::Unsupported(k) => {
                    return Err(bad(format!("unsupported SSH key type: {k:?}")));
                }
            }
        } else {
            return Err(bad(
                "holds neither an age identity (AGE-SECRET-KEY-1…) nor an OpenSSH private key".to_string(),
            ));
        };
        Ok(Self::Identities {
            path: path.to_path_buf(),
            identities,
        })
    }

    /// Reads a passphrase from a file.
    pub fn passphrase_file(path: &Path) -> Result<Self, CryptoError> {
        Ok(Self::Passphrase {
            path: path.to_path_buf(),
            passphrase: read_passphrase(path)?,
        })
    }

    /// A passphrase held in memory (a Secret's value: its first line); `source` names it.
    pub fn passphrase_bytes(data: &[u8], source: &Path) -> Result<Self, CryptoError> {
        let text = Zeroizing::new(String::from_utf8_lossy(data).into_owned());
        let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
        if line.is_empty() {
            return Err(CryptoError::BadIdentity {
                path: source.display().to_string(),
                message: "is empty; put the passphrase on its first line".to_string(),
            });
        }
        Ok(Self::Passphrase {
            path: source.to_path_buf(),
            passphrase: super::repo_key::secret(line),
        })
    }

    /// Names the key source without its secret, for error messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Identities { path, .. } => format!("identity file {}", path.display()),
            Self::Passphrase { path, .. } => format!("passphrase file {}", path.display()),
        }
    }

    /// Tries to decrypt a `keys/<id>` object; `Ok(None)` when this key is not the one.
    pub fn unwrap(&self, ciphertext: &[u8], object: &str) -> Result<Option<Zeroizing<Vec<u8>>>, CryptoError> {
        let decryptor = age::Decryptor::new_buffered(ciphertext).map_err(|e| corrupt(object, e))?;
        let is_scrypt = decryptor.is_scrypt();
        let result = match self {
            Self::Identities { identities, .. } if !is_scrypt => {
                decryptor.decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
            }
            Self::Passphrase { passphrase, .. } if is_scrypt => {
                let mut id = age::scrypt::Identity::new(passphrase.clone());
                id.set_max_work_factor(22);
                decryptor.decrypt(std::iter::once(&id as &dyn age::Identity))
            }
            _ => return Ok(None),
        };
        let mut reader = match result {
            Ok(r) => r,
            Err(age::DecryptError::NoMatchingKeys) | Err(age::DecryptError::DecryptionFailed) => {
                return Ok(None);
            }
            Err(e) => return Err(corrupt(object, e)),
        };
        let mut out = Zeroizing::new(Vec::new());
        reader.read_to_end(&mut out).map_err(|e| corrupt(object, e))?;
        Ok(Some(out))
    }
}

/// The kind of user key a `keys/` object is wrapped for, read from its age header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum KeyType {
    /// age X25519.
    X25519,
    /// SSH Ed25519.
    SshEd25519,
    /// SSH RSA.
    SshRsa,
    /// Passphrase (scrypt).
    Passphrase,
    /// Something else (a plugin recipient).
    Other,
}

impl KeyType {
    /// Reads the first recipient stanza of an age header (`-> X25519 …`).
    pub fn of_age_file(ciphertext: &[u8]) -> Self {
        let head = &ciphertext[..ciphertext.len().min(1024)];
        let text = String::from_utf8_lossy(head);
        let tag = text
            .lines()
            .find_map(|l| l.strip_prefix("-> "))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or("");
        match tag {
            "X25519" => Self::X25519,
            "ssh-ed25519" => Self::SshEd25519,
            "ssh-rsa" => Self::SshRsa,
            "scrypt" => Self::Passphrase,
            _ => Self::Other,
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::X25519 => "age-x25519",
            Self::SshEd25519 => "ssh-ed25519",
            Self::SshRsa => "ssh-rsa",
            Self::Passphrase => "passphrase",
            Self::Other => "other",
        })
    }
}

fn read_passphrase(path: &Path) -> Result<SecretString, CryptoError> {
    let bad = |message: String| CryptoError::BadIdentity {
        path: path.display().to_string(),
        message,
    };
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read: {e}")))?);
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        return Err(bad("is empty; put the passphrase on its first line".to_string()));
    }
    Ok(super::repo_key::secret(line))
}
