//! A restore's completion mark on a directory: a small file beside it in its parent,
//! `.<name>.lifeboat-restored-from`, holding a text (the volume snapshot restored). NFSv3 has no
//! extended attributes, and a file inside the directory would be part of the volume's data.
//! Written once every file is in, the mark tells a finished directory (which may have been
//! used since, and must not be written over) from one an interrupted restore left.

use nfs3_client::nfs3_types::nfs3::nfsstat3;

use super::client::Client;
use super::{NfsError, NfsLocation, client_what, resolve_dir};

/// The mark's name and its parent directory's location; `None` for the export's root,
/// which has no parent to hold a mark.
fn mark_of(location: &NfsLocation) -> Option<(NfsLocation, String)> {
    let (parent, name) = match location.path.rsplit_once('/') {
        Some((parent, name)) => (parent.to_string(), name),
        None if location.path.is_empty() => return None,
        None => (String::new(), location.path.as_str()),
    };
    let parent = NfsLocation {
        path: parent,
        ..location.clone()
    };
    Some((parent, format!(".{name}.lifeboat-restored-from")))
}

fn status(location: &NfsLocation, op: &'static str, path: &str, status: nfsstat3) -> NfsError {
    NfsError::Status {
        server: client_what(location),
        op,
        path: path.to_string(),
        status,
    }
}

/// The text of `location`'s completion mark; `None` when there is none (or no parent).
///
/// Errors: the export unreachable, or the parent or mark unreadable for another reason than
/// not existing.
pub async fn read_restore_mark(location: &NfsLocation) -> Result<Option<String>, NfsError> {
    let Some((parent, name)) = mark_of(location) else {
        return Ok(None);
    };
    let mut client = Client::connect(&location.server, &location.export).await?;
    let result = read(&mut client, &parent, &name).await;
    client.close().await;
    result
}

async fn read(client: &mut Client, parent: &NfsLocation, name: &str) -> Result<Option<String>, NfsError> {
    let dir = match resolve_dir(client, parent, false).await {
        Ok(dir) => dir,
        Err(NfsError::Status {
            status: nfsstat3::NFS3ERR_NOENT,
            ..
        }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let path = format!("{}/{name}", parent.display());
    let fh = match client.lookup(&dir, name.as_bytes(), &path).await? {
        Ok((fh, _)) => fh,
        Err(nfsstat3::NFS3ERR_NOENT) => return Ok(None),
        Err(s) => return Err(status(parent, "LOOKUP", &path, s)),
    };
    match client.read(&fh, 0, 4096, &path).await? {
        Ok((data, _, _)) => Ok(Some(String::from_utf8_lossy(&data).trim().to_string())),
        Err(s) => Err(status(parent, "READ", &path, s)),
    }
}

/// Writes `text` as `location`'s completion mark, replacing an earlier one. Does nothing
/// for the export's root.
///
/// Errors: the export unreachable, or the mark could not be made.
pub async fn write_restore_mark(location: &NfsLocation, text: &str) -> Result<(), NfsError> {
    let Some((parent, name)) = mark_of(location) else {
        return Ok(());
    };
    let mut client = Client::connect(&location.server, &location.export).await?;
    let result = write(&mut client, &parent, &name, text).await;
    client.close().await;
    result
}

async fn write(client: &mut Client, parent: &NfsLocation, name: &str, text: &str) -> Result<(), NfsError> {
    let dir = resolve_dir(client, parent, false).await?;
    let path = format!("{}/{name}", parent.display());
    match client.remove(&dir, name.as_bytes(), &path).await? {
        Ok(()) | Err(nfsstat3::NFS3ERR_NOENT) => {}
        Err(s) => return Err(status(parent, "REMOVE", &path, s)),
    }
    let fh = match client.create(&dir, name.as_bytes(), &path).await? {
        Ok(fh) => fh,
        Err(s) => return Err(status(parent, "CREATE", &path, s)),
    };
    match client.write(&fh, 0, text.as_bytes(), &path).await? {
        Ok(()) => Ok(()),
        Err(s) => Err(status(parent, "WRITE", &path, s)),
    }
}

/// What [`remove_restored_dir`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoredRemoval {
    /// The directory (if still there) and its mark were removed.
    Removed,
    /// Neither the directory nor a mark is there: nothing to remove.
    Absent,
    /// The directory is there without a mark: not known to be a restore's, so not removed.
    Unmarked,
    /// The mark names another volume snapshot (this text): nothing was removed.
    OtherRestore(String),
}

/// Removes the directory a restore of `snapshot_id` wrote at `location`, and then its
/// completion mark — only when the mark names `snapshot_id`, so data that is not that
/// restore's is never touched. Symlinks inside are removed as links, never followed. A removal
/// cut short leaves the mark, so running it again finishes the job.
///
/// Errors: the export unreachable, or an entry that could not be removed (the status and path).
pub async fn remove_restored_dir(
    location: &NfsLocation,
    snapshot_id: &str,
) -> Result<RestoredRemoval, NfsError> {
    let Some((parent, name)) = mark_of(location) else {
        return Ok(RestoredRemoval::Unmarked);
    };
    let mut client = Client::connect(&location.server, &location.export).await?;
    let result = remove(&mut client, location, &parent, &name, snapshot_id).await;
    client.close().await;
    result
}

async fn remove(
    client: &mut Client,
    location: &NfsLocation,
    parent: &NfsLocation,
    mark: &str,
    snapshot_id: &str,
) -> Result<RestoredRemoval, NfsError> {
    let name = location.path.rsplit('/').next().unwrap_or(&location.path);
    let path = location.display();
    match read(client, parent, mark).await? {
        None => {
            let dir = match resolve_dir(client, parent, false).await {
                Ok(dir) => dir,
                Err(NfsError::Status {
                    status: nfsstat3::NFS3ERR_NOENT,
                    ..
                }) => return Ok(RestoredRemoval::Absent),
                Err(e) => return Err(e),
            };
            return match client.lookup(&dir, name.as_bytes(), &path).await? {
                Ok(_) => Ok(RestoredRemoval::Unmarked),
                Err(nfsstat3::NFS3ERR_NOENT) => Ok(RestoredRemoval::Absent),
                Err(s) => Err(status(location, "LOOKUP", &path, s)),
            };
        }
        Some(text) if text != snapshot_id => return Ok(RestoredRemoval::OtherRestore(text)),
        Some(_) => {}
    }
    let dir = resolve_dir(client, parent, false).await?;
    if let Err(s) = client.remove_tree(&dir, name.as_bytes(), &path).await? {
        return Err(status(location, "REMOVE", &path, s));
    }
    let mark_path = format!("{}/{mark}", parent.display());
    match client.remove(&dir, mark.as_bytes(), &mark_path).await? {
        Ok(()) | Err(nfsstat3::NFS3ERR_NOENT) => Ok(RestoredRemoval::Removed),
        Err(s) => Err(status(parent, "REMOVE", &mark_path, s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mark_sits_beside_the_directory() {
        let at = |p: &str| NfsLocation::new("10.0.0.5", "/exports", p).unwrap();
        let (parent, name) = mark_of(&at("k8s/vol-ab")).unwrap();
        assert_eq!(
            (parent.path.as_str(), name.as_str()),
            ("k8s", ".vol-ab.lifeboat-restored-from")
        );
        let (parent, name) = mark_of(&at("vol-ab")).unwrap();
        assert_eq!(
            (parent.path.as_str(), name.as_str()),
            ("", ".vol-ab.lifeboat-restored-from")
        );
        assert!(mark_of(&at("")).is_none());
    }
}
