//! Tree listings: one JSON line per file, directory, symlink or special file (FIFO, socket,
//! device node), sorted by path bytes. Stored
//! as content-defined chunks like file data, so an unchanged part of a large tree deduplicates.
//!
//! Names and symlink targets are bytes on Unix. A path or target that is valid UTF-8 is
//! written as a JSON string (`path`, `target`); one that is not is written base64-encoded
//! under `path_raw` / `target_raw` instead, so nothing is ever changed on the way through
//! (format 2; format 1 trees have only the string forms and read the same way).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::blob::BlobId;

/// A volume node whose extents break the layout [`VolumeExtent`] promises (a damaged or forged
/// tree); each names the extent (its index and byte offset).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VolumeLayoutError {
    /// The extent ends past the volume's size.
    #[error("extent {extent} at {offset} passes the volume size {size}")]
    PastEnd {
        /// Its index.
        extent: usize,
        /// Its offset in bytes.
        offset: u64,
        /// The volume's size in bytes.
        size: u64,
    },
    /// The extent starts before the previous one ends.
    #[error("extent {extent} at {offset} overlaps the one before it")]
    Overlaps {
        /// Its index.
        extent: usize,
        /// Its offset in bytes.
        offset: u64,
    },
    /// The extent holds no bytes or no chunks.
    #[error("extent {extent} at {offset} is empty")]
    Empty {
        /// Its index.
        extent: usize,
        /// Its offset in bytes.
        offset: u64,
    },
    /// The extent names chunks past the node's list.
    #[error("extent {extent} at {offset} names chunks the node does not list")]
    ChunksMissing {
        /// Its index.
        extent: usize,
        /// Its offset in bytes.
        offset: u64,
    },
    /// The node lists more chunks than its extents use.
    #[error("{listed} chunks listed, but the extents use {used}")]
    ChunkCount {
        /// Chunks the node lists.
        listed: usize,
        /// Chunks its extents use.
        used: usize,
    },
}

/// What a node is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// A regular file (or a stream from a non-file source).
    #[default]
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A block volume image (an RBD image, a raw device): `size` bytes, of which only the
    /// `extents` hold data and the rest reads as zeros (holes). `chunks` is every extent's
    /// chunks in extent order (docs/FORMAT.md, "Volume nodes").
    Volume,
    /// A named pipe (`mkfifo`): no content, recreated empty.
    Fifo,
    /// A Unix domain socket's name in the filesystem: no content; recreated as an unbound
    /// socket inode (as `cp -a` and `rsync -a` do), which its program replaces when it listens.
    Socket,
    /// A character device node; `rdev` says which device.
    #[serde(rename = "chardev")]
    CharDevice,
    /// A block device node; `rdev` says which device.
    #[serde(rename = "blockdev")]
    BlockDevice,
}

impl NodeKind {
    /// The name the tree format and listings use (`file`, `chardev`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Dir => "dir",
            Self::Symlink => "symlink",
            Self::Volume => "volume",
            Self::Fifo => "fifo",
            Self::Socket => "socket",
            Self::CharDevice => "chardev",
            Self::BlockDevice => "blockdev",
        }
    }
}

/// One stored range of a [`NodeKind::Volume`] node: `length` bytes at byte `offset` of the
/// volume, held by the next `chunks` of the node's chunk list. Extents are sorted by offset,
/// never overlap, never pass the volume's size, and their chunk counts add up to the node's
/// chunk list; whatever no extent covers is a hole (zeros, never written on restore).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VolumeExtent {
    /// Byte offset in the volume.
    pub offset: u64,
    /// Length in bytes (the chunks' raw lengths add up to it).
    pub length: u64,
    /// How many of the node's chunks hold it, taken in order after the previous extent's.
    pub chunks: u32,
}

/// One extended attribute (`user.*`, `trusted.*`, `security.*`, and POSIX ACLs as
/// `system.posix_acl_access` / `system.posix_acl_default`), value as the kernel returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Xattr {
    /// Its name, with its namespace prefix.
    pub name: String,
    /// Its value, raw bytes.
    pub value: Vec<u8>,
}

/// One entry of a tree listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    /// Relative path, `/`-separated, no leading slash, never `..`. When the path is not UTF-8
    /// this is only a readable rendering (U+FFFD for bad bytes); `path_raw` holds the truth.
    pub path: String,
    /// The path's exact bytes when they are not UTF-8; `None` when `path` is exact.
    pub path_raw: Option<Vec<u8>>,
    /// What it is.
    pub kind: NodeKind,
    /// Permission bits including set-user-ID (0o4000), set-group-ID (0o2000) and sticky
    /// (0o1000); never the file type bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, ns since the epoch. 128 bits: 64 hold only 1677–2262, and files
    /// carry times outside that (`touch -d 2300-01-01`).
    pub mtime_ns: i128,
    /// Change time, ns since the epoch (detects changes that keep mtime).
    pub ctime_ns: i128,
    /// Inode number (detects replaced files; with `dev`, identifies hard links).
    pub inode: u64,
    /// Device number of the filesystem holding it; recorded for files with `nlink` > 1.
    pub dev: u64,
    /// Hard link count at backup time; recorded when > 1.
    pub nlink: u64,
    /// Which device a [`NodeKind::CharDevice`] or [`NodeKind::BlockDevice`] node is: Linux's
    /// `st_rdev` (major and minor as glibc's `makedev` packs them); 0 for every other kind.
    pub rdev: u64,
    /// Content size (the logical size: holes included).
    pub size: u64,
    /// Content chunks, in order (files).
    pub chunks: Vec<BlobId>,
    /// Link target (symlinks); a readable rendering when `target_raw` is set.
    pub target: Option<String>,
    /// The target's exact bytes when they are not UTF-8.
    pub target_raw: Option<Vec<u8>>,
    /// Extended attributes and POSIX ACLs, in the order listed.
    pub xattrs: Vec<Xattr>,
    /// Where the chunks go in a [`NodeKind::Volume`]; empty for every other kind.
    pub extents: Vec<VolumeExtent>,
}

/// Splits bytes into the text form and, when that would lose something, the raw form.
fn text_or_raw(bytes: &[u8]) -> (String, Option<Vec<u8>>) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_string(), None),
        Err(_) => (String::from_utf8_lossy(bytes).into_owned(), Some(bytes.to_vec())),
    }
}

impl Node {
    /// Parses a tree listing: one JSON node per line (empty lines skipped), as
    /// docs/FORMAT.md describes. The bytes are untrusted (anyone with the repository's public
    /// recipient can write a tree); the nodes still need [`super::tree_damage`] before use.
    pub fn parse_listing(listing: &[u8]) -> Result<Vec<Node>, serde_json::Error> {
        listing
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(serde_json::from_slice)
            .collect()
    }

    /// A private (0600) file node for a stream source (an etcd database, a delta listing),
    /// which has no inode or owner of its own.
    pub fn stream(path: &str, size: u64, chunks: Vec<BlobId>, time: chrono::DateTime<chrono::Utc>) -> Self {
        Self {
            path: path.to_string(),
            kind: NodeKind::File,
            mode: 0o600,
            mtime_ns: time.timestamp_nanos_opt().map_or(0, i128::from),
            size,
            chunks,
            ..Self::default()
        }
    }

    /// A node of `kind` at `path` (exact bytes), everything else zero or empty.
    pub fn with_path(path: &[u8], kind: NodeKind) -> Self {
        let mut node = Self {
            kind,
            ..Self::default()
        };
        node.set_path_bytes(path);
        node
    }

    /// The path's exact bytes.
    pub fn path_bytes(&self) -> &[u8] {
        self.path_raw.as_deref().unwrap_or(self.path.as_bytes())
    }

    /// The path as a (relative) filesystem path, exact.
    pub fn fs_path(&self) -> &Path {
        Path::new(OsStr::from_bytes(self.path_bytes()))
    }

    /// Sets the path from its exact bytes.
    pub fn set_path_bytes(&mut self, bytes: &[u8]) {
        (self.path, self.path_raw) = text_or_raw(bytes);
    }

    /// The symlink target's exact bytes.
    pub fn target_bytes(&self) -> Option<&[u8]> {
        self.target_raw
            .as_deref()
            .or(self.target.as_deref().map(str::as_bytes))
    }

    /// Sets the symlink target from its exact bytes.
    pub fn set_target_bytes(&mut self, bytes: &[u8]) {
        let (text, raw) = text_or_raw(bytes);
        self.target = Some(text);
        self.target_raw = raw;
    }

    /// True for nodes whose `chunks` hold content (files and volumes): what prune keeps,
    /// check verifies and copy transfers.
    pub fn has_content(&self) -> bool {
        matches!(self.kind, NodeKind::File | NodeKind::Volume)
    }

    /// The bytes the chunks hold: `size` for a file, the extents' lengths for a volume
    /// (holes hold nothing).
    pub fn stored_length(&self) -> u64 {
        match self.kind {
            NodeKind::Volume => self.extents.iter().map(|e| e.length).sum(),
            _ => self.size,
        }
    }

    /// A volume's extents with their chunks, after checking the layout [`VolumeExtent`]
    /// promises (sorted, not overlapping, inside `size`, chunk counts adding up); the error
    /// says which rule an extent breaks.
    pub fn volume_extents(&self) -> Result<Vec<(VolumeExtent, &[BlobId])>, VolumeLayoutError> {
        let mut out = Vec::with_capacity(self.extents.len());
        let mut next_chunk = 0usize;
        let mut end = 0u64;
        for (i, e) in self.extents.iter().enumerate() {
            let stop = e.offset.checked_add(e.length).filter(|s| *s <= self.size).ok_or(
                VolumeLayoutError::PastEnd {
                    extent: i,
                    offset: e.offset,
                    size: self.size,
                },
            )?;
            if e.offset < end {
                return Err(VolumeLayoutError::Overlaps {
                    extent: i,
                    offset: e.offset,
                });
            }
            if e.length == 0 || e.chunks == 0 {
                return Err(VolumeLayoutError::Empty {
                    extent: i,
                    offset: e.offset,
                });
            }
            let chunks = self
                .chunks
                .get(next_chunk..next_chunk + e.chunks as usize)
                .ok_or(VolumeLayoutError::ChunksMissing {
                    extent: i,
                    offset: e.offset,
                })?;
            out.push((*e, chunks));
            next_chunk += e.chunks as usize;
            end = stop;
        }
        if next_chunk != self.chunks.len() {
            return Err(VolumeLayoutError::ChunkCount {
                listed: self.chunks.len(),
                used: next_chunk,
            });
        }
        Ok(out)
    }

    /// True when `other` (from the parent snapshot) describes the same unchanged file, so its
    /// chunk list can be reused without reading the file.
    pub fn unchanged_since(&self, other: &Node) -> bool {
        self.kind == NodeKind::File
            && other.kind == NodeKind::File
            && self.size == other.size
            && self.mtime_ns == other.mtime_ns
            && self.ctime_ns == other.ctime_ns
            && self.inode == other.inode
            && (self.size == 0 || !other.chunks.is_empty())
    }
}

/// The JSON form of a node, borrowed for writing.
#[derive(serde::Serialize)]
struct NodeOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_raw: Option<String>,
    #[serde(rename = "type")]
    kind: NodeKind,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime_ns: i128,
    ctime_ns: i128,
    inode: u64,
    #[serde(skip_serializing_if = "is_zero")]
    dev: u64,
    #[serde(skip_serializing_if = "at_most_one")]
    nlink: u64,
    #[serde(skip_serializing_if = "is_zero")]
    rdev: u64,
    size: u64,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    chunks: &'a [BlobId],
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_raw: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    xattrs: Vec<XattrJson>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    extents: &'a [VolumeExtent],
}

pub(super) fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn at_most_one(n: &u64) -> bool {
    *n <= 1
}

/// The JSON form of a node, as read (format 1 or 2).
#[derive(serde::Deserialize)]
struct NodeIn {
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    path_raw: Option<String>,
    #[serde(rename = "type")]
    kind: NodeKind,
    #[serde(default)]
    mode: u32,
    #[serde(default)]
    uid: u32,
    #[serde(default)]
    gid: u32,
    #[serde(default)]
    mtime_ns: i128,
    #[serde(default)]
    ctime_ns: i128,
    #[serde(default)]
    inode: u64,
    #[serde(default)]
    dev: u64,
    #[serde(default)]
    nlink: u64,
    #[serde(default)]
    rdev: u64,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    chunks: Vec<BlobId>,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    target_raw: Option<String>,
    #[serde(default)]
    xattrs: Vec<XattrJson>,
    #[serde(default)]
    extents: Vec<VolumeExtent>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct XattrJson {
    name: String,
    /// Base64 (standard alphabet, padded).
    value: String,
}

impl serde::Serialize for Node {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        NodeOut {
            path: self.path_raw.is_none().then_some(self.path.as_str()),
            path_raw: self.path_raw.as_ref().map(|b| BASE64.encode(b)),
            kind: self.kind,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            mtime_ns: self.mtime_ns,
            ctime_ns: self.ctime_ns,
            inode: self.inode,
            dev: self.dev,
            nlink: self.nlink,
            rdev: self.rdev,
            size: self.size,
            chunks: &self.chunks,
            target: self.target.as_deref().filter(|_| self.target_raw.is_none()),
            target_raw: self.target_raw.as_ref().map(|b| BASE64.encode(b)),
            xattrs: self
                .xattrs
                .iter()
                .map(|x| XattrJson {
                    name: x.name.clone(),
                    value: BASE64.encode(&x.value),
                })
                .collect(),
            extents: &self.extents,
        }
        .serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Node {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let n = NodeIn::deserialize(d)?;
        let raw = |field: &str, b64: &str| {
            BASE64
                .decode(b64)
                .map_err(|e| D::Error::custom(format!("{field} is not base64: {e}")))
        };
        let mut node = Node {
            kind: n.kind,
            mode: n.mode,
            uid: n.uid,
            gid: n.gid,
            mtime_ns: n.mtime_ns,
            ctime_ns: n.ctime_ns,
            inode: n.inode,
            dev: n.dev,
            nlink: n.nlink,
            rdev: n.rdev,
            size: n.size,
            chunks: n.chunks,
            extents: n.extents,
            ..Node::default()
        };
        match (n.path, n.path_raw) {
            (_, Some(b64)) => node.set_path_bytes(&raw("path_raw", &b64)?),
            (Some(path), None) => node.path = path,
            (None, None) => return Err(D::Error::missing_field("path")),
        }
        match (n.target, n.target_raw) {
            (_, Some(b64)) => node.set_target_bytes(&raw("target_raw", &b64)?),
            (target, None) => node.target = target,
        }
        for x in n.xattrs {
            let value = raw("xattr value", &x.value)?;
            node.xattrs.push(Xattr { name: x.name, value });
        }
        Ok(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_files_round_trip_with_their_device_numbers() {
        let mut dev = Node::with_path(b"dev/loop200", NodeKind::BlockDevice);
        dev.rdev = 0x7c8;
        let json = serde_json::to_string(&dev).unwrap();
        assert!(
            json.contains(r#""type":"blockdev""#) && json.contains(r#""rdev":1992"#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Node>(&json).unwrap(), dev);
        for (kind, name) in [
            (NodeKind::Fifo, "fifo"),
            (NodeKind::Socket, "socket"),
            (NodeKind::CharDevice, "chardev"),
        ] {
            let json = serde_json::to_string(&Node::with_path(b"x", kind)).unwrap();
            assert!(
                json.contains(&format!(r#""type":"{name}""#)) && !json.contains(r#""rdev""#),
                "{json}"
            );
            assert_eq!(kind.name(), name);
        }
    }

    #[test]
    fn non_utf8_names_and_targets_round_trip_byte_for_byte() {
        let mut node = Node::with_path(b"data/caf\xe9", NodeKind::Symlink);
        node.mode = 0o777;
        node.set_target_bytes(b"../\xff\xfe");
        let json = serde_json::to_string(&node).unwrap();
        assert!(!json.contains("\"path\""), "{json}");
        assert!(json.contains("\"path_raw\":\"ZGF0YS9jYWbp\""), "{json}");
        let back: Node = serde_json::from_str(&json).unwrap();
        assert_eq!(back.path_bytes(), b"data/caf\xe9");
        assert_eq!(back.target_bytes(), Some(&b"../\xff\xfe"[..]));
        assert_eq!(back, node);
    }

    #[test]
    fn format_1_nodes_read_unchanged() {
        let line = r#"{"path":"data/x","type":"file","mode":420,"uid":0,"gid":0,"mtime_ns":5,"ctime_ns":6,"inode":7,"size":0}"#;
        let node: Node = serde_json::from_str(line).unwrap();
        assert_eq!(node.path_bytes(), b"data/x");
        assert!(node.path_raw.is_none() && node.nlink == 0 && node.xattrs.is_empty());
        // UTF-8 paths are still written in the format 1 form.
        assert_eq!(serde_json::to_string(&node).unwrap(), line);
        // A node with neither form of path is refused, not given an empty one.
        assert!(serde_json::from_str::<Node>(r#"{"type":"file"}"#).is_err());
    }

    /// Times outside 1677–2262 do not fit 64-bit nanoseconds; they are written as the
    /// JSON integer they are and read back exactly.
    #[test]
    fn times_beyond_64_bit_nanoseconds_round_trip() {
        // 2300-01-01T00:00:00Z and 1600-01-01T00:00:00Z, plus some nanoseconds.
        for secs in [10_413_792_000i128, -11_676_096_000] {
            let node = Node {
                path: "a".into(),
                mtime_ns: secs * 1_000_000_000 + 123,
                ctime_ns: secs * 1_000_000_000,
                ..Node::default()
            };
            let json = serde_json::to_string(&node).unwrap();
            assert!(
                json.contains(&format!("\"mtime_ns\":{}", node.mtime_ns)),
                "{json}"
            );
            assert_eq!(serde_json::from_str::<Node>(&json).unwrap(), node);
        }
    }

    #[test]
    fn xattrs_and_hard_link_fields_round_trip() {
        let node = Node {
            path: "a".into(),
            dev: 2049,
            nlink: 3,
            inode: 12,
            xattrs: vec![Xattr {
                name: "system.posix_acl_access".into(),
                value: vec![2, 0, 0, 0, 1, 0, 6, 0],
            }],
            ..Node::default()
        };
        let json = serde_json::to_string(&node).unwrap();
        assert!(json.contains(r#""dev":2049,"nlink":3"#), "{json}");
        assert_eq!(serde_json::from_str::<Node>(&json).unwrap(), node);
    }

    #[test]
    fn volume_nodes_round_trip_and_their_layout_is_checked() {
        let id = |n: u8| -> BlobId { format!("{n:02x}").repeat(32).parse().unwrap() };
        let mut node = Node::with_path(b"volume.img", NodeKind::Volume);
        node.size = 1 << 30;
        node.chunks = vec![id(1), id(2), id(3)];
        node.extents = vec![
            VolumeExtent {
                offset: 0,
                length: 4096,
                chunks: 1,
            },
            VolumeExtent {
                offset: 8 << 20,
                length: 300_000,
                chunks: 2,
            },
        ];
        let json = serde_json::to_string(&node).unwrap();
        assert!(
            json.contains(r#""type":"volume""#)
                && json.contains(r#""extents":[{"offset":0,"length":4096,"chunks":1}"#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Node>(&json).unwrap(), node);
        let layout = node.volume_extents().unwrap();
        assert_eq!(layout[1].1, &[id(2), id(3)]);
        assert_eq!(node.stored_length(), 304_096);

        let mut overlapping = node.clone();
        overlapping.extents[1].offset = 100;
        assert!(
            overlapping
                .volume_extents()
                .unwrap_err()
                .to_string()
                .contains("overlaps")
        );
        let mut past_end = node.clone();
        past_end.extents[1].offset = (1 << 30) - 10;
        assert!(matches!(
            past_end.volume_extents().unwrap_err(),
            VolumeLayoutError::PastEnd { extent: 1, .. }
        ));
        let mut short = node.clone();
        short.chunks.pop();
        assert!(short.volume_extents().is_err());
        let mut extra = node;
        extra.chunks.push(id(4));
        assert!(
            extra
                .volume_extents()
                .unwrap_err()
                .to_string()
                .contains("extents use 3")
        );
    }
}
