//! Volume and snapshot ids: everything needed to find the volume again, with no lookup table.
//!
//! `rbd:<clusterID>:<pool>:csi-vol-<hash>` and the same followed by `:csi-snap-<hash>` (or
//! `:csi-gsnap-<hash>` for a member of a group snapshot); `nfs:<server>:<share>:<baseDir>/vol-<hash>:<onDelete>`
//! and the same followed by `:snap-<hash>`; group snapshots `rbd-group:<clusterID>:<pool>:csi-group-<hash>`.
//! `<hash>` is [`name_hash`] of the CO's request name (32 lowercase hex digits).
//!
//! Every part is checked on the way in, including that the last name is one this driver
//! makes, so an id from a CO can never name a path outside the share (`..`, `/` in a name),
//! smuggle a separator, or name a directory, image or snapshot the driver did not create
//! (a base directory, `.lifeboat-meta`, someone else's folder).

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

/// A short, stable, filesystem- and RBD-safe digest of a CO-supplied name: the first 16 bytes
/// of its SHA-256, as 32 lowercase hex digits.
pub fn name_hash(name: &str) -> String {
    hex::encode(&Sha256::digest(name.as_bytes())[..16])
}

/// Prefix of every RBD image the driver creates for a volume.
pub const RBD_IMAGE_PREFIX: &str = "csi-vol-";
/// Prefix of every RBD snapshot the driver creates for a CSI snapshot.
pub const RBD_SNAP_PREFIX: &str = "csi-snap-";
/// Prefix of the group snapshot (and so of its members' snapshot ids) of a volume group snapshot.
pub const RBD_GROUP_SNAP_PREFIX: &str = "csi-gsnap-";
/// Prefix of the RBD group behind a volume group snapshot.
pub const RBD_GROUP_PREFIX: &str = "csi-group-";
/// Prefix of every NFS volume directory.
pub const NFS_VOLUME_PREFIX: &str = "vol-";
/// Prefix of every NFS snapshot directory.
pub const NFS_SNAP_PREFIX: &str = "snap-";

/// `prefix` followed by a [`name_hash`]: the only shape of name the driver gives anything.
pub fn hashed_name(prefix: &str, request_name: &str) -> String {
    format!("{prefix}{}", name_hash(request_name))
}

/// True if `name` is `prefix` followed by 32 lowercase hex digits.
pub fn is_hashed_name(prefix: &str, name: &str) -> bool {
    name.strip_prefix(prefix).is_some_and(|h| {
        h.len() == 32
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn check_hashed(what: &str, prefix: &str, name: &str) -> Result<()> {
    if is_hashed_name(prefix, name) {
        Ok(())
    } else {
        Err(invalid(format!(
            "{what} {name:?} is not one this driver creates ({prefix}<32 hex digits>)"
        )))
    }
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
    /// Checks every part: cluster and pool names, and an image name this driver makes.
    pub fn new(cluster: &str, pool: &str, image: &str) -> Result<Self> {
        check_name("clusterID", cluster)?;
        check_name("pool", pool)?;
        check_hashed("image", RBD_IMAGE_PREFIX, image)?;
        Ok(Self {
            cluster: cluster.into(),
            pool: pool.into(),
            image: image.into(),
        })
    }
}

impl NfsVolume {
    /// Checks every part: server, absolute share, a relative directory whose last name is one
    /// this driver makes (`vol-<hash>`), and the policy.
    pub fn new(server: &str, share: &str, dir: &str, on_delete: &str) -> Result<Self> {
        check_export(server, share)?;
        check_rel_path("volume directory", dir)?;
        if let Some(own) = dir
            .split('/')
            .find(|c| [crate::nfs::SNAP_DIR, crate::nfs::records::META_DIR].contains(c))
        {
            return Err(invalid(format!(
                "volume directory {dir:?}: {own} holds the driver's own records, never volumes"
            )));
        }
        let last = dir.rsplit('/').next().unwrap_or(dir);
        check_hashed("volume directory", NFS_VOLUME_PREFIX, last)?;
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

    /// The directory holding the volume (and its `.lifeboat-meta` records), "" for the share root.
    pub fn base(&self) -> &str {
        self.dir.rsplit_once('/').map_or("", |(b, _)| b)
    }

    /// The volume directory's own name (`vol-<hash>`).
    pub fn name(&self) -> &str {
        self.dir.rsplit_once('/').map_or(self.dir.as_str(), |(_, n)| n)
    }
}

/// Checks an NFS server and share the way ids are checked (for parameters and config).
pub fn check_export(server: &str, share: &str) -> Result<()> {
    check_server(server)?;
    check_share(share)
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
        let volume = VolumeId::parse(vol)
            .map_err(|_| invalid(format!("snapshot id {id:?} was not made by this driver")))?;
        match &volume {
            VolumeId::Rbd(_) if is_hashed_name(RBD_GROUP_SNAP_PREFIX, name) => {}
            VolumeId::Rbd(_) => check_hashed("snapshot", RBD_SNAP_PREFIX, name)?,
            VolumeId::Nfs(_) => check_hashed("snapshot", NFS_SNAP_PREFIX, name)?,
        }
        Ok(Self {
            volume,
            name: name.into(),
        })
    }
}

impl SnapshotId {
    /// True for a member of a volume group snapshot (restored by copying, deleted with the group).
    pub fn is_group_member(&self) -> bool {
        is_hashed_name(RBD_GROUP_SNAP_PREFIX, &self.name)
    }
}

impl std::fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.volume, self.name)
    }
}

/// A volume group snapshot: an RBD group (`csi-group-<hash of name>`) holding one group
/// snapshot (`csi-gsnap-<same hash>`), in the pool its record lives in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSnapshotId {
    /// Key into the driver config.
    pub cluster: String,
    /// Pool of the RBD group and of the record of its members.
    pub pool: String,
    /// The RBD group's name.
    pub group: String,
}

impl GroupSnapshotId {
    /// The ids a CreateVolumeGroupSnapshot name maps to.
    pub fn for_name(cluster: &str, pool: &str, request_name: &str) -> Result<Self> {
        Self::new(cluster, pool, &hashed_name(RBD_GROUP_PREFIX, request_name))
    }

    /// Checks every part.
    pub fn new(cluster: &str, pool: &str, group: &str) -> Result<Self> {
        check_name("clusterID", cluster)?;
        check_name("pool", pool)?;
        check_hashed("group", RBD_GROUP_PREFIX, group)?;
        Ok(Self {
            cluster: cluster.into(),
            pool: pool.into(),
            group: group.into(),
        })
    }

    /// Parses a group snapshot id from a CO.
    pub fn parse(id: &str) -> Result<Self> {
        match id.split(':').collect::<Vec<_>>().as_slice() {
            ["rbd-group", c, p, g] => Self::new(c, p, g),
            _ => Err(invalid(format!(
                "group snapshot id {id:?} was not made by this driver"
            ))),
        }
    }

    /// The name of the group snapshot inside the group (and of each member's snapshot id).
    pub fn snapshot_name(&self) -> String {
        format!("{RBD_GROUP_SNAP_PREFIX}{}", &self.group[RBD_GROUP_PREFIX.len()..])
    }
}

impl std::fmt::Display for GroupSnapshotId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rbd-group:{}:{}:{}", self.cluster, self.pool, self.group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_refuse_escapes() {
        let h = name_hash("pvc-1");
        let rbd = format!("rbd:c1:pool:csi-vol-{h}");
        let nfs = format!("nfs:127.0.0.1:/srv/export:base/vol-{h}:retain");
        for id in [&rbd, &nfs, &format!("nfs:h:/srv:vol-{h}:delete")] {
            assert_eq!(VolumeId::parse(id).expect(id).to_string(), *id);
        }
        for snap in [
            format!("{rbd}:csi-snap-{h}"),
            format!("{rbd}:csi-gsnap-{h}"),
            format!("{nfs}:snap-{h}"),
        ] {
            assert_eq!(SnapshotId::parse(&snap).expect("snap").to_string(), snap);
        }
        let group = format!("rbd-group:c1:pool:csi-group-{h}");
        let g = GroupSnapshotId::parse(&group).expect("group");
        assert_eq!(
            (g.to_string(), g.snapshot_name()),
            (group, format!("csi-gsnap-{h}"))
        );
        // Everything the driver cannot have made: other images, the base directory, the
        // metadata and snapshot directories, archived volumes, foreign folders.
        for bad in [
            "rbd:c1:pool:csi-vol-ab".to_string(),
            "rbd:c1:pool:someones-image".to_string(),
            format!("rbd:c1:pool:csi-vol-{}", h.to_uppercase()),
            format!("rbd:c1:pool:csi-vol-{h}0"),
            "nfs:h:/srv:base:delete".to_string(),
            "nfs:h:/srv:other-app:delete".to_string(),
            "nfs:h:/srv:.lifeboat-meta:delete".to_string(),
            format!("nfs:h:/srv:.lifeboat-meta/vol-{h}:delete"),
            format!("nfs:h:/srv:archived-vol-{h}-1700000000:archive"),
            format!("nfs:h:/srv:base/vol-{h}/sub:delete"),
            "nfs:h:/srv::delete".to_string(),
        ] {
            assert!(VolumeId::parse(&bad).is_err(), "{bad} accepted");
        }
        for bad in [
            format!("{rbd}:user-snap"),
            format!("{rbd}:snap-{h}"),
            format!("{nfs}:csi-snap-{h}"),
            format!("{nfs}:.."),
            format!("rbd-group:c1:pool:csi-vol-{h}"),
        ] {
            assert!(SnapshotId::parse(&bad).is_err(), "{bad} accepted");
        }
        assert!(GroupSnapshotId::parse(&rbd).is_err());
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
