//! Volume and snapshot ids: everything needed to find the volume again, with no lookup table.
//!
//! `rbd:<clusterID>:<pool>:<image>` and `rbd:<clusterID>:<pool>:<image>:<snapshot>`;
//! `nfs:<server>:<share>:<dir>:<onDelete>` and the same followed by `:<snapshot dir>`.
//! Every part is checked on the way in, so an id from a CO can never name a path outside the
//! share (`..`, `/` in a name) or smuggle a separator.

use sha2::{Digest, Sha256};

use crate::error::{Result, invalid};

/// A volume this driver provisioned.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum VolumeId {
    /// An RBD image.
    Rbd(RbdVolume),
    /// A directory on an NFS export.
    Nfs(NfsVolume),
}

/// Where an RBD image lives.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RbdVolume {
    /// Key into the driver's cluster config (monitors).
    pub cluster: String,
    /// The pool holding the image.
    pub pool: String,
    /// The image name.
    pub image: String,
}

/// Where an NFS volume directory lives.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct NfsVolume {
    /// Server host name or IPv4 address.
    pub server: String,
    /// The exported path, absolute.
    pub share: String,
    /// Path of the volume directory below the share: checked names joined by `/`.
    pub dir: String,
    /// What DeleteVolume does: `delete`, `retain` or `archive` (kept in the id because
    /// DeleteVolume carries no parameters).
    pub on_delete: String,
}

/// A snapshot: its volume plus the snapshot's name there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotId {
    /// The source volume.
    pub volume: VolumeId,
    /// The RBD snapshot name or the NFS snapshot directory name.
    pub name: String,
}

/// A short, stable, filesystem- and RBD-safe digest of a CO-supplied name.
pub fn name_hash(name: &str) -> String {
    hex::encode(&Sha256::digest(name.as_bytes())[..16])
}

/// Checks one path or object name: `[A-Za-z0-9._-]`, not `.` or `..`, at most 128 bytes.
pub fn check_name(what: &str, part: &str) -> Result<()> {
    let ok = !part.is_empty()
        && part.len() <= 128
        && part != "."
        && part != ".."
        && part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{what} {part:?} must be [A-Za-z0-9._-], not . or .."
        )))
    }
}

/// Checks a relative directory path: names joined by single `/`.
pub fn check_rel_path(what: &str, path: &str) -> Result<()> {
    path.split('/').try_for_each(|p| check_name(what, p))
}

fn check_share(share: &str) -> Result<()> {
    if !share.starts_with('/') || share.contains(':') || share.contains("//") {
        return Err(invalid(format!(
            "share {share:?} must be an absolute path without ':'"
        )));
    }
    if share == "/" {
        return Ok(());
    }
    check_rel_path("share component", &share[1..])
}

fn check_server(server: &str) -> Result<()> {
    let ok = !server.is_empty()
        && server
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "server {server:?} must be a host name or IPv4 address"
        )))
    }
}

impl RbdVolume {
    /// Checks every part.
    pub fn new(cluster: &str, pool: &str, image: &str) -> Result<Self> {
        check_name("clusterID", cluster)?;
        check_name("pool", pool)?;
        check_name("image", image)?;
        Ok(Self {
            cluster: cluster.into(),
            pool: pool.into(),
            image: image.into(),
        })
    }
}

impl NfsVolume {
    /// Checks every part.
    pub fn new(server: &str, share: &str, dir: &str, on_delete: &str) -> Result<Self> {
        check_server(server)?;
        check_share(share)?;
        check_rel_path("volume directory", dir)?;
        if !["delete", "retain", "archive"].contains(&on_delete) {
            return Err(invalid(format!(
                "onDelete {on_delete:?}: delete, retain or archive"
            )));
        }
        Ok(Self {
            server: server.into(),
            share: share.into(),
            dir: dir.into(),
            on_delete: on_delete.into(),
        })
    }
}

impl VolumeId {
    /// Parses an id from a CO; anything this driver could not have made is INVALID_ARGUMENT.
    pub fn parse(id: &str) -> Result<Self> {
        if id.is_empty() {
            return Err(invalid("volume id is required"));
        }
        let parts: Vec<&str> = id.split(':').collect();
        match parts.as_slice() {
            ["rbd", c, p, i] => Ok(VolumeId::Rbd(RbdVolume::new(c, p, i)?)),
            ["nfs", s, sh, d, o] => Ok(VolumeId::Nfs(NfsVolume::new(s, sh, d, o)?)),
            _ => Err(invalid(format!("volume id {id:?} was not made by this driver"))),
        }
    }
}

impl std::fmt::Display for VolumeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VolumeId::Rbd(v) => write!(f, "rbd:{}:{}:{}", v.cluster, v.pool, v.image),
            VolumeId::Nfs(v) => write!(f, "nfs:{}:{}:{}:{}", v.server, v.share, v.dir, v.on_delete),
        }
    }
}

impl SnapshotId {
    /// Parses a snapshot id from a CO.
    pub fn parse(id: &str) -> Result<Self> {
        if id.is_empty() {
            return Err(invalid("snapshot id is required"));
        }
        let (vol, name) = id
            .rsplit_once(':')
            .ok_or_else(|| invalid(format!("snapshot id {id:?} was not made by this driver")))?;
        check_name("snapshot", name)?;
        let volume = VolumeId::parse(vol)
            .map_err(|_| invalid(format!("snapshot id {id:?} was not made by this driver")))?;
        Ok(Self {
            volume,
            name: name.into(),
        })
    }
}

impl std::fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.volume, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_refuse_escapes() {
        for id in [
            "rbd:c1:pool:csi-vol-ab",
            "nfs:127.0.0.1:/srv/export:base/pvc-1:retain",
        ] {
            assert_eq!(VolumeId::parse(id).expect(id).to_string(), id);
        }
        let snap = "rbd:c1:pool:img:csi-snap-1";
        assert_eq!(SnapshotId::parse(snap).expect("snap").to_string(), snap);
        for bad in [
            "",
            "rbd:c1:pool",
            "nfs:h:/srv:../etc:delete",
            "nfs:h:/srv:a/../../b:delete",
            "nfs:h:relative:a:delete",
            "nfs:h:/srv/../x:a:delete",
            "nfs:h:/srv:a:shred",
            "rbd:c1:po/ol:img",
            "gcs:a:b:c",
        ] {
            assert!(VolumeId::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
