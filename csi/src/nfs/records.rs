//! Small records the NFS backend keeps next to the volumes, in `<baseDir>/.lifeboat-meta/`:
//! for each volume its CO name and capacity, so a second CreateVolume with the same name and
//! an incompatible size gets ALREADY_EXISTS as the spec requires; for each snapshot the volume
//! it was taken of, so one snapshot name cannot silently stand for two volumes. A record is
//! written to `<record>.tmp` and renamed into place, so it is whole or absent.

use nfs3_client::nfs3_types::nfs3::nfs_fh3;

use super::client::{Kind, Session};
use crate::error::{CsiError, Result};

/// Where records live, below the base directory.
pub const META_DIR: &str = ".lifeboat-meta";
/// Records are a few hundred bytes; anything longer is not ours.
const MAX_RECORD: u32 = 64 * 1024;

/// Reads a record; `None` if there is none.
pub async fn read(s: &mut Session, base: &nfs_fh3, record: &str) -> Result<Option<Vec<u8>>> {
    let Some((meta, Kind::Dir)) = s.lookup(base, META_DIR).await? else {
        return Ok(None);
    };
    match s.lookup(&meta, record).await? {
        Some((fh, Kind::File)) => Ok(Some(s.read_at(&fh, 0, MAX_RECORD, record).await?.0)),
        Some(_) => Err(CsiError::FailedPrecondition(format!(
            "{META_DIR}/{record} is not a regular file; remove it"
        ))),
        None => Ok(None),
    }
}

/// Writes (or replaces) a record atomically.
pub async fn write(s: &mut Session, base: &nfs_fh3, record: &str, data: &[u8]) -> Result<()> {
    let meta = s.mkdir(base, META_DIR).await?;
    let tmp = format!("{record}.tmp");
    let fh = s.create_file(&meta, &tmp).await?;
    s.write_at(&fh, 0, data, &tmp).await?;
    s.rename(&meta, &tmp, &meta, record).await
}

/// Removes a record (absent is fine).
pub async fn remove(s: &mut Session, base: &nfs_fh3, record: &str) -> Result<()> {
    match s.lookup(base, META_DIR).await? {
        Some((meta, Kind::Dir)) => s.remove_tree(&meta, record).await,
        _ => Ok(()),
    }
}

/// Every record whose name starts with `prefix` (a finished one: `.tmp` names are skipped),
/// with its content; the metadata directory is looked up once.
pub async fn read_all(s: &mut Session, base: &nfs_fh3, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let Some((meta, Kind::Dir)) = s.lookup(base, META_DIR).await? else {
        return Ok(vec![]);
    };
    let mut out = Vec::new();
    for name in s.list(&meta).await? {
        if !name.starts_with(prefix) || name.ends_with(".tmp") {
            continue;
        }
        if let Some((fh, Kind::File)) = s.lookup(&meta, &name).await? {
            let data = s.read_at(&fh, 0, MAX_RECORD, &name).await?.0;
            out.push((name, data));
        }
    }
    Ok(out)
}
