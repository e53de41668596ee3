//! ListVolumes/ListSnapshots paging: entries sorted by id, `next_token` the hex of the last id
//! returned, and a token the driver did not make answered with ABORTED.

use crate::error::{CsiError, Result, invalid};

/// Decodes a pagination token (hex of the last id returned); anything else is ABORTED.
pub fn decode_token(token: &str, valid: impl Fn(&str) -> bool) -> Result<Option<String>> {
    if token.is_empty() {
        return Ok(None);
    }
    let bytes = hex::decode(token).map_err(|_| CsiError::BadToken(token.into()))?;
    let text = String::from_utf8(bytes).map_err(|_| CsiError::BadToken(token.into()))?;
    if !valid(&text) {
        return Err(CsiError::BadToken(token.into()));
    }
    Ok(Some(text))
}

/// Checks `max_entries` (0 = no limit; negative is INVALID_ARGUMENT).
pub fn check_max(max_entries: i32) -> Result<()> {
    if max_entries < 0 {
        return Err(invalid("max_entries must not be negative"));
    }
    Ok(())
}

/// One page of a sorted list, starting after `after`, and the token for the next page.
pub fn paginate<T>(
    items: Vec<T>,
    after: Option<&str>,
    max: i32,
    key: impl Fn(&T) -> String,
) -> (Vec<T>, String) {
    let rest: Vec<T> = items
        .into_iter()
        .filter(|i| after.is_none_or(|a| key(i).as_str() > a))
        .collect();
    if max <= 0 || rest.len() <= max as usize {
        return (rest, String::new());
    }
    let page: Vec<T> = rest.into_iter().take(max as usize).collect();
    let next = page.last().map(|i| hex::encode(key(i))).unwrap_or_default();
    (page, next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::VolumeId;

    #[test]
    fn pages_follow_tokens_and_refuse_forged_ones() {
        let ids: Vec<String> = (0..5)
            .map(|i| format!("rbd:c:p:{}", crate::ids::hashed_name("csi-vol-", &i.to_string())))
            .collect();
        let mut ids = ids;
        ids.sort();
        let (p1, t1) = paginate(ids.clone(), None, 2, |s| s.clone());
        assert_eq!(p1, ids[..2]);
        let after = decode_token(&t1, |t| VolumeId::parse(t).is_ok()).expect("token");
        let (p2, _) = paginate(ids.clone(), after.as_deref(), 0, |s| s.clone());
        assert_eq!(p2, ids[2..]);
        for bad in ["zz", "00", &hex::encode("rbd:only:three")] {
            assert!(matches!(
                decode_token(bad, |t| VolumeId::parse(t).is_ok()),
                Err(CsiError::BadToken(_))
            ));
        }
        let (all, t) = paginate(ids.clone(), None, 5, |s| s.clone());
        assert_eq!((all.len(), t.as_str()), (5, ""));
        assert!(check_max(-1).is_err() && check_max(0).is_ok());
    }
}
