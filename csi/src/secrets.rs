//! cephx credentials taken from CSI secrets. The key is zeroed on drop and never printed.

use std::collections::HashMap;
use std::fmt;

use zeroize::Zeroizing;

use crate::error::{Result, invalid};

/// A cephx user and key, as ceph-csi takes them (`userID`, `userKey`).
pub struct Credentials {
    /// The cephx user without the `client.` prefix.
    pub user: String,
    key: Zeroizing<String>,
}

impl Credentials {
    /// Builds credentials from a user and key, refusing characters that would break a config file.
    pub fn new(user: &str, key: &str) -> Result<Self> {
        let user = user.strip_prefix("client.").unwrap_or(user);
        if user.is_empty()
            || !user
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(invalid(
                "secret userID must be a cephx user name ([A-Za-z0-9._-])",
            ));
        }
        let key = key.trim();
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c))
        {
            return Err(invalid("secret userKey must be a base64 cephx key"));
        }
        Ok(Self {
            user: user.to_string(),
            key: Zeroizing::new(key.to_string()),
        })
    }

    /// Reads `userID`/`userKey` (or `adminID`/`adminKey`) from a CSI secrets map.
    pub fn from_secrets(secrets: &HashMap<String, String>) -> Result<Self> {
        let pair = |u: &str, k: &str| Some((secrets.get(u)?, secrets.get(k)?));
        let (user, key) = pair("userID", "userKey")
            .or_else(|| pair("adminID", "adminKey"))
            .ok_or_else(|| invalid("secrets must hold userID and userKey (cephx credentials)"))?;
        Self::new(user, key)
    }

    /// The key, for writing the short-lived config librados reads.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("key", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_key() {
        let c = Credentials::new("client.admin", "QUJDREVGRw==").expect("valid");
        assert_eq!(c.user, "admin");
        assert!(!format!("{c:?}").contains("QUJD"));
        assert!(Credentials::new("admin", "bad\nkey = x").is_err());
    }
}
