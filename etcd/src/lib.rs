//! The etcd source: full snapshots through etcd's maintenance API, delta chains captured by a
//! watch, and restores that produce a database file `etcdctl snapshot restore` accepts (a full
//! snapshot as stored, or a point after it rebuilt by replaying deltas into a private etcd).
//!
//! It sits beside the engine (`lifeboat-backup`), which knows no etcd: [`FullSnapshot`] and
//! the delta batches are [`lifeboat_backup::Source`]s, [`DatabaseFile`] a
//! [`lifeboat_backup::Sink`]; the engine owns locking, the index, sessions and manifests.
//!
//! A snapshot is stored as one stream chunked small (32 KiB average), because bbolt changes
//! scattered 4 KiB pages: consecutive snapshots of a slowly changing database then share
//! almost all chunks.

mod bolt;
mod chain;
mod connect;
mod delta;
mod error;
mod full;
mod output;
mod replay;
mod restore;
mod select;
mod watch;

pub use bolt::{BoltError, RevisionScanner};
pub use chain::{RestorePlan, chain, plan_restore};
pub use connect::{EtcdEndpoints, EtcdTlsFiles};
pub use delta::{DeltaBatch, DeltaEvent};
pub use error::EtcdError;
pub use full::{FullSnapshot, snapshot_etcd};
pub use replay::{EtcdRestoreSummary, RestorePoint, restore_etcd_at};
pub use restore::{DatabaseFile, restore_etcd};
pub use select::{etcd_snapshots, find_snapshot};
pub use watch::{DeltaOptions, DeltaOutcome, stream_deltas, watch};

use lifeboat_backup::chunker::ChunkerParams;

/// Chunk sizes for etcd databases: small enough that a changed page taints little.
pub const ETCD_CHUNKS: ChunkerParams = ChunkerParams {
    min: 8 * 1024,
    avg: 32 * 1024,
    max: 128 * 1024,
};

/// The tree path of the database inside a full snapshot.
pub const DB_PATH: &str = "etcd/snapshot.db";

/// The tree path of a delta's event list.
pub const DELTA_PATH: &str = "etcd/delta.jsonl";

/// Checks etcd's integrity trailer: the last 32 bytes are the SHA-256 of everything before.
pub fn verify_trailer_file(file: &mut std::fs::File) -> std::io::Result<bool> {
    use sha2::Digest;
    use std::io::{Read, Seek, SeekFrom};
    let len = file.seek(SeekFrom::End(0))?;
    if len <= 32 {
        return Ok(false);
    }
    file.seek(SeekFrom::Start(0))?;
    let mut hasher = sha2::Sha256::new();
    let mut body = (&mut *file).take(len - 32);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = body.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let mut trailer = [0u8; 32];
    file.read_exact(&mut trailer)?;
    Ok(hasher.finalize().as_slice() == trailer)
}

/// [`verify_trailer_file`] for a database in memory.
pub fn verify_trailer(db: &[u8]) -> bool {
    use sha2::Digest;
    db.len() > 32 && sha2::Sha256::digest(&db[..db.len() - 32]).as_slice() == &db[db.len() - 32..]
}
