//! What NodeStageVolume did, written down so unstage, stats and expansion (possibly after a
//! driver restart) undo or find exactly that.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{CsiError, Result};
use crate::ids::name_hash;
use crate::node::mapper::Mapped;

/// One staged volume.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageRecord {
    /// The volume id.
    pub volume_id: String,
    /// The staging path.
    pub staging: PathBuf,
    /// The mapped device (RBD only).
    pub mapped: Option<Mapped>,
    /// Raw block (no filesystem).
    pub block: bool,
    /// Filesystem type, for mount volumes.
    pub fs_type: String,
}

fn path(dir: &Path, volume_id: &str) -> PathBuf {
    dir.join("staged").join(format!("{}.json", name_hash(volume_id)))
}

/// The fuse mount directory for a volume.
pub fn fuse_dir(dir: &Path, volume_id: &str) -> PathBuf {
    dir.join("fuse").join(name_hash(volume_id))
}

/// Loads the record of a staged volume, if any.
pub fn load(dir: &Path, volume_id: &str) -> Result<Option<StageRecord>> {
    let p = path(dir, volume_id);
    match std::fs::read(&p) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| CsiError::Internal(format!("parse {}: {e}", p.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CsiError::Internal(format!("read {}: {e}", p.display()))),
    }
}

/// Saves a record atomically (write then rename).
pub fn save(dir: &Path, rec: &StageRecord) -> Result<()> {
    let p = path(dir, &rec.volume_id);
    let io = |e: std::io::Error| CsiError::Internal(format!("write {}: {e}", p.display()));
    std::fs::create_dir_all(dir.join("staged")).map_err(io)?;
    let tmp = p.with_extension("tmp");
    let bytes = serde_json::to_vec_pretty(rec).map_err(|e| CsiError::Internal(e.to_string()))?;
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, &p).map_err(io)
}

/// The mapped devices of every staged volume but `except`, from their records: a device with
/// the same pool and image names may belong to another cluster's volume.
pub fn devices_in_use(dir: &Path, except: &str) -> Result<Vec<String>> {
    let staged = dir.join("staged");
    let entries = match std::fs::read_dir(&staged) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(CsiError::Internal(format!("read {}: {e}", staged.display()))),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| CsiError::Internal(format!("read {}: {e}", staged.display())))?
            .path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let bytes =
            std::fs::read(&path).map_err(|e| CsiError::Internal(format!("read {}: {e}", path.display())))?;
        let rec: StageRecord = serde_json::from_slice(&bytes)
            .map_err(|e| CsiError::Internal(format!("parse {}: {e}", path.display())))?;
        if rec.volume_id != except
            && let Some(m) = rec.mapped
        {
            out.push(m.device);
        }
    }
    Ok(out)
}

/// Removes a record (absent is fine).
pub fn remove(dir: &Path, volume_id: &str) -> Result<()> {
    match std::fs::remove_file(path(dir, volume_id)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CsiError::Internal(format!("remove stage record: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::mapper::MapperKind;

    fn record(volume_id: &str, device: &str) -> StageRecord {
        StageRecord {
            volume_id: volume_id.into(),
            staging: PathBuf::from("/staging").join(volume_id),
            mapped: Some(Mapped {
                kind: MapperKind::Krbd,
                device: device.into(),
                fuse_dir: None,
                backing: None,
            }),
            block: false,
            fs_type: "ext4".into(),
        }
    }

    #[test]
    fn devices_in_use_are_those_of_other_staged_volumes() {
        let dir = std::env::temp_dir().join(format!("lifeboat-csi-state-{}", std::process::id()));
        assert!(devices_in_use(&dir, "a").expect("no records").is_empty());
        save(&dir, &record("a", "/dev/rbd0")).expect("save a");
        save(&dir, &record("b", "/dev/rbd1")).expect("save b");
        let in_use = devices_in_use(&dir, "a").expect("listed");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(in_use, vec!["/dev/rbd1".to_string()]);
    }
}
