//! User keys of a repository: add, list, remove, and unlocking with them.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;

use super::object_io::Objects;
use super::{Config, RepoError, Repository};
use crate::blob::Id;
use crate::crypto::{KeyType, RepoKey, UserKey, UserRecipient};

/// One `keys/` entry, as `repo key list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyInfo {
    /// Its id (the object name).
    pub id: String,
    /// What kind of user key opens it.
    pub key_type: KeyType,
    /// When it was written.
    pub created: DateTime<Utc>,
    /// Whether it is the key that opened this session.
    pub current: bool,
}

pub(super) async fn unlock(
    objects: &Objects,
    config: &Config,
    keys: &[UserKey],
) -> Result<(RepoKey, String), RepoError> {
    let mut names = objects.list_keys("keys/").await?;
    super::names::keep_valid(&mut names, objects.url());
    for name in &names {
        let ciphertext = objects.get(name).await?;
        for user_key in keys {
            // An object that is not an age file (a stray README, an rsync temporary, a damaged
            // key) opens nothing: the others may still open the repository.
            let unwrapped = match user_key.unwrap(&ciphertext, name) {
                Ok(unwrapped) => unwrapped,
                Err(e) => {
                    tracing::warn!(
                        "{name} in {} is not a readable key file, skipped: {e}",
                        objects.url()
                    );
                    break;
                }
            };
            if let Some(text) = unwrapped {
                let text = String::from_utf8_lossy(&text);
                let repo_key = RepoKey::from_identity_file_text(&text, name)?;
                if repo_key.recipient() != config.recipient {
                    return Err(RepoError::Corrupt {
                        object: name.clone(),
                        message: "holds a key that is not this repository's".to_string(),
                    });
                }
                let id = name.trim_start_matches("keys/").to_string();
                return Ok((repo_key, id));
            }
        }
    }
    Err(RepoError::WrongKey {
        url: objects.url().to_string(),
        tried: keys.iter().map(UserKey::describe).collect::<Vec<_>>().join(", "),
        key_count: names.len(),
    })
}

impl Repository {
    /// Wraps the repository key for one more user key; returns the new key's id.
    pub async fn add_key(&self, recipient: &UserRecipient) -> Result<String, RepoError> {
        let id = Id::random().to_hex()[..16].to_string();
        let name = format!("keys/{id}");
        let text = self.key.to_identity_file_text(&self.config.id);
        let wrapped = recipient.wrap(text.as_bytes(), &name)?;
        self.objects().put_new(&name, wrapped.into()).await?;
        Ok(id)
    }

    /// Lists the user keys.
    pub async fn list_keys(&self) -> Result<Vec<KeyInfo>, RepoError> {
        let metas: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&ObjectPath::from("keys")))
            .try_collect()
            .await
            .map_err(|e| RepoError::store("list", "keys/", &self.url, e))?;
        let mut out = Vec::new();
        for meta in metas {
            let name = meta.location.to_string();
            if !super::names::is_valid(&name) {
                tracing::warn!(
                    "{name} in {} is not a key file (its name is not a key id), skipped",
                    self.url
                );
                continue;
            }
            let bytes = self.objects().get(&name).await?;
            let id = name.trim_start_matches("keys/").to_string();
            out.push(KeyInfo {
                current: id == self.key_id,
                id,
                key_type: KeyType::of_age_file(&bytes),
                created: meta.last_modified,
            });
        }
        out.sort_by_key(|k| k.created);
        Ok(out)
    }

    /// Removes a user key. Refuses to remove the last one, which would lock everyone out, and
    /// the one that opened this session unless `force` (its holder may have no other).
    pub async fn remove_key(&self, id: &str, force: bool) -> Result<(), RepoError> {
        let keys = self.list_keys().await?;
        if !keys.iter().any(|k| k.id == id) {
            return Err(RepoError::KeyNotFound {
                id: id.to_string(),
                url: self.url.clone(),
            });
        }
        if keys.len() == 1 {
            return Err(RepoError::LastKey {
                id: id.to_string(),
                url: self.url.clone(),
            });
        }
        if id == self.key_id && !force {
            return Err(RepoError::KeyInUse {
                id: id.to_string(),
                url: self.url.clone(),
            });
        }
        self.objects().delete(&format!("keys/{id}")).await
    }
}
