//! Restoring a full snapshot's database to a file `etcdctl snapshot restore` takes.

use std::path::{Path, PathBuf};

use lifeboat_backup::snapshot::{Snapshot, SnapshotDetails};
use lifeboat_backup::{Repository, Sink, SnapshotReader};

use crate::output::DbOutput;
use crate::{DB_PATH, EtcdError};

/// A database file as a restore target: written to a temporary file beside `path` first,
/// a pack at a time (memory stays small however large the database), and moved into place
/// only once etcd's integrity trailer checks out.
pub struct DatabaseFile {
    /// Where the database goes.
    pub path: PathBuf,
    /// Replace an existing file.
    pub force: bool,
}

impl DatabaseFile {
    /// Refuses to replace an existing file unless `force`.
    pub(crate) fn check_output(path: &Path, force: bool) -> Result<(), EtcdError> {
        if path.exists() && !force {
            return Err(EtcdError::OutputExists {
                path: path.display().to_string(),
            });
        }
        Ok(())
    }
}

/// The full snapshot's database node.
pub(crate) async fn db_node<'a>(
    reader: &'a SnapshotReader<'_>,
    id: &str,
) -> Result<&'a lifeboat_backup::snapshot::Node, EtcdError> {
    reader.node(DB_PATH).await?.ok_or_else(|| {
        EtcdError::Repo(lifeboat_backup::RepoError::Corrupt {
            object: format!("snapshot {id}"),
            message: format!("has no {DB_PATH}"),
        })
    })
}

impl Sink for DatabaseFile {
    type Output = u64;
    type Error = EtcdError;

    fn purpose(&self) -> &'static str {
        "etcd restore"
    }

    fn accepts(&self, snapshot: &Snapshot) -> Result<(), EtcdError> {
        let id = || snapshot.id.map(|i| i.to_hex()).unwrap_or_default();
        match &snapshot.details {
            SnapshotDetails::EtcdFull(_) => Self::check_output(&self.path, self.force),
            SnapshotDetails::EtcdDelta(_) => Err(EtcdError::NotFull { id: id() }),
            other => Err(EtcdError::NotEtcd {
                id: id(),
                kind: other.kind().to_string(),
            }),
        }
    }

    async fn restore(self, reader: &SnapshotReader<'_>) -> Result<u64, EtcdError> {
        let id = reader.snapshot().id.map(|i| i.to_hex()).unwrap_or_default();
        let db = DbOutput::new(&self.path)?;
        reader.read_to(db_node(reader, &id).await?, db.file()).await?;
        db.publish(format!("the database of snapshot {id}")).await
    }
}

/// Writes the database of the full etcd `snapshot` to `output`, verifying etcd's integrity
/// trailer; returns its size. Refuses to replace an existing file unless `force`.
pub async fn restore_etcd(
    repo: &Repository,
    snapshot: &Snapshot,
    output: &Path,
    force: bool,
) -> Result<u64, EtcdError> {
    let sink = DatabaseFile {
        path: output.to_path_buf(),
        force,
    };
    repo.restore(snapshot, sink).await
}
