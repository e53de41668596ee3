//! Which object names are Lifeboat's (docs/FORMAT.md, "Layout"): `keys/<16 hex>`,
//! `data/<2 hex>/<64 hex>` (the directory is the name's first two digits), `index/<64 hex>`,
//! `snapshots/<64 hex>`, `locks/<24 hex>`, lower-case hex. Anything else in those directories — a README, an
//! interrupted rsync's `.name.XXXXXX` temporary — is someone else's: commands skip it with a
//! warning naming it, never delete it, and `repo check` lists it.

/// The directories whose objects are named by ids.
pub(crate) const ID_DIRS: [&str; 5] = ["keys/", "data/", "index/", "snapshots/", "locks/"];

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `key` (a full object key such as `data/ab/ab12…`) is a valid name for the
/// id-named directory it is in. Keys outside those directories are not judged (true).
pub(crate) fn is_valid(key: &str) -> bool {
    if let Some(id) = key.strip_prefix("keys/") {
        return is_hex(id, 16);
    }
    if let Some(id) = key.strip_prefix("locks/") {
        return is_hex(id, 24);
    }
    if let Some(rest) = key.strip_prefix("data/") {
        return rest
            .split_once('/')
            .is_some_and(|(dir, id)| is_hex(id, 64) && id.starts_with(dir) && dir.len() == 2);
    }
    if let Some(id) = key
        .strip_prefix("index/")
        .or_else(|| key.strip_prefix("snapshots/"))
    {
        return is_hex(id, 64);
    }
    true
}

/// Whether `key` is valid ([`is_valid`]); if not, warns naming it and `url`.
pub(crate) fn valid_or_warn(key: &str, url: &str) -> bool {
    let valid = is_valid(key);
    if !valid {
        tracing::warn!(
            "{key} in {url} is not a Lifeboat object (its name is not an id for its directory), skipped"
        );
    }
    valid
}

/// Keeps the valid names of `keys`, warning about each other one (naming it and `url`).
pub(crate) fn keep_valid(keys: &mut Vec<String>, url: &str) {
    keys.retain(|k| valid_or_warn(k, url));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_id_names_are_valid() {
        let h = "ab".repeat(32);
        assert!(is_valid(&format!("data/ab/{h}")));
        assert!(is_valid(&format!("index/{h}")));
        assert!(is_valid(&format!("snapshots/{h}")));
        assert!(is_valid("keys/0123456789abcdef"));
        assert!(is_valid("locks/0123456789abcdef01234567"));
        assert!(is_valid("config"));
        for bad in [
            format!("data/00/{h}"),
            format!("data/{h}"),
            "data/README".to_string(),
            "data/ab/.xyz.AbC123".to_string(),
            format!("index/{}", h.to_uppercase()),
            "index/README".to_string(),
            format!("snapshots/{h}x"),
            "keys/README".to_string(),
            "keys/0123456789ABCDEF".to_string(),
            "locks/README".to_string(),
        ] {
            assert!(!is_valid(&bad), "{bad}");
        }
    }
}
