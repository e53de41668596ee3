//! The database file a restore writes: built in a temporary file beside the output, and
//! moved into place only once etcd's integrity trailer checks out, so a failure leaves
//! nothing half-written where `etcdctl snapshot restore` would pick it up.

use std::path::Path;

use tempfile::NamedTempFile;

use crate::{EtcdError, verify_trailer_file};

/// A database file being written.
pub(crate) struct DbOutput<'a> {
    output: &'a Path,
    tmp: NamedTempFile,
}

impl<'a> DbOutput<'a> {
    /// Starts writing the database that will become `output`.
    pub(crate) fn new(output: &'a Path) -> Result<Self, EtcdError> {
        let dir = output
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = NamedTempFile::new_in(dir).map_err(|e| EtcdError::io(dir, e))?;
        Ok(Self { output, tmp })
    }

    /// The file to write into.
    pub(crate) fn file(&self) -> &std::fs::File {
        self.tmp.as_file()
    }

    /// Appends `data`.
    pub(crate) fn append(&mut self, data: &[u8]) -> Result<(), EtcdError> {
        std::io::Write::write_all(&mut self.tmp, data).map_err(|e| EtcdError::io(self.output, e))
    }

    /// Checks the trailer, syncs and moves the file to the output; `what` names the
    /// database in the error if the check fails. Returns its size.
    pub(crate) async fn publish(self, what: String) -> Result<u64, EtcdError> {
        let output = self.output;
        let mut file = self
            .tmp
            .as_file()
            .try_clone()
            .map_err(|e| EtcdError::io(output, e))?;
        let intact = tokio::task::spawn_blocking(move || verify_trailer_file(&mut file))
            .await
            .map_err(|e| EtcdError::replay("check the database", e))?
            .map_err(|e| EtcdError::io(output, e))?;
        if !intact {
            return Err(EtcdError::CorruptDatabase { what });
        }
        let file = self.tmp.as_file();
        file.sync_all().map_err(|e| EtcdError::io(output, e))?;
        let size = file.metadata().map_err(|e| EtcdError::io(output, e))?.len();
        self.tmp
            .persist(output)
            .map_err(|e| EtcdError::io(output, e.error))?;
        Ok(size)
    }
}
