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

/// Removes a record (absent is fine).
pub fn remove(dir: &Path, volume_id: &str) -> Result<()> {
    match std::fs::remove_file(path(dir, volume_id)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CsiError::Internal(format!("remove stage record: {e}"))),
    }
}
