//! An open RBD image: size, snapshots, clones' parents, data and changed-extent diffs.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_void};
use std::ptr;

use crate::cluster::{Pool, cstring};
use crate::error::{RbdError, check};
use crate::ffi;

/// Image feature bits (`rbd/features.h`).
pub mod features {
    /// Needed for clones.
    pub const LAYERING: u64 = 1 << 0;
    /// One writer at a time; needed by object-map.
    pub const EXCLUSIVE_LOCK: u64 = 1 << 2;
    /// Tracks which objects exist; makes diff and resize fast.
    pub const OBJECT_MAP: u64 = 1 << 3;
    /// Makes `diff_iterate` between snapshots fast.
    pub const FAST_DIFF: u64 = 1 << 4;
    /// Lets a flattened clone drop its parent's snapshots.
    pub const DEEP_FLATTEN: u64 = 1 << 5;

    /// An image feature name this library does not know.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    #[error(
        "unknown RBD image feature {0:?}; known: layering, exclusive-lock, object-map, fast-diff, \
         deep-flatten"
    )]
    pub struct UnknownFeature(pub String);

    /// Parses the comma-separated names StorageClasses use (`layering,exclusive-lock`) into
    /// feature bits.
    pub fn parse(list: &str) -> Result<u64, UnknownFeature> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .try_fold(0u64, |acc, name| {
                let bit = match name {
                    "layering" => LAYERING,
                    "exclusive-lock" => EXCLUSIVE_LOCK,
                    "object-map" => OBJECT_MAP,
                    "fast-diff" => FAST_DIFF,
                    "deep-flatten" => DEEP_FLATTEN,
                    other => return Err(UnknownFeature(other.to_string())),
                };
                Ok(acc | bit)
            })
    }
}

/// Options for new images and clones. `None` leaves the pool/cluster default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageOptions {
    /// Feature bits (see [`features`]).
    pub features: Option<u64>,
    /// Object size as a power of two (22 = 4 MiB).
    pub order: Option<u8>,
    /// Separate pool for data objects (erasure-coded pools).
    pub data_pool: Option<String>,
}

pub(crate) struct RawOptions(pub(crate) ffi::rbd_image_options_t);

impl Drop for RawOptions {
    fn drop(&mut self) {
        // SAFETY: created by rbd_image_options_create and destroyed exactly once here.
        unsafe { ffi::rbd_image_options_destroy(self.0) }
    }
}

impl ImageOptions {
    pub(crate) fn to_raw(&self) -> Result<RawOptions, RbdError> {
        let mut raw: ffi::rbd_image_options_t = ptr::null_mut();
        // SAFETY: librbd allocates the options object and writes its handle into `raw`.
        unsafe { ffi::rbd_image_options_create(&mut raw) };
        let opts = RawOptions(raw);
        let set_u64 = |opt, value: u64, what: &'static str| {
            // SAFETY: `opts.0` is a live options handle.
            let ret = unsafe { ffi::rbd_image_options_set_uint64(opts.0, opt, value) };
            check(ret.into(), "set image option", || what.to_string())
        };
        set_u64(ffi::RBD_IMAGE_OPTION_FORMAT, 2, "format")?;
        if let Some(f) = self.features {
            set_u64(ffi::RBD_IMAGE_OPTION_FEATURES, f, "features")?;
        }
        if let Some(order) = self.order {
            set_u64(ffi::RBD_IMAGE_OPTION_ORDER, u64::from(order), "order")?;
        }
        if let Some(pool) = &self.data_pool {
            let c_pool = cstring("data pool", pool)?;
            // SAFETY: live handle; librbd copies the string.
            let ret = unsafe {
                ffi::rbd_image_options_set_string(opts.0, ffi::RBD_IMAGE_OPTION_DATA_POOL, c_pool.as_ptr())
            };
            check(ret.into(), "set image option", || "data_pool".to_string())?;
        }
        Ok(opts)
    }
}

/// Names a snapshot of an image in a pool, e.g. a clone's parent.
pub struct SnapshotRef<'a> {
    /// The pool holding the image.
    pub pool: &'a Pool,
    /// The image name.
    pub image: &'a str,
    /// The snapshot name.
    pub snapshot: &'a str,
}

/// Size and layout of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// Provisioned size in bytes.
    pub size: u64,
    /// Object size in bytes.
    pub object_size: u64,
    /// Feature bits.
    pub features: u64,
}

/// One snapshot of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Ceph's id for it.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// The image size when it was taken.
    pub size: u64,
}

/// A byte range that differs between two points in an image's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Offset in bytes.
    pub offset: u64,
    /// Length in bytes.
    pub length: u64,
    /// True when the range holds data; false when it was discarded (reads as zeros).
    pub exists: bool,
}

/// An open image. Closed on drop.
pub struct Image<'p> {
    pub(crate) raw: ffi::rbd_image_t,
    pool: &'p Pool,
    name: String,
}

// SAFETY: an rbd_image_t may be used from another thread as long as calls are not concurrent,
// which `&mut self` on the mutating methods and the absence of `Sync` guarantee.
unsafe impl Send for Image<'_> {}

impl<'p> Image<'p> {
    pub(crate) fn open(
        pool: &'p Pool,
        name: &str,
        snapshot: Option<&str>,
        read_only: bool,
    ) -> Result<Self, RbdError> {
        let c_name = cstring("image name", name)?;
        let c_snap = snapshot.map(|s| cstring("snapshot name", s)).transpose()?;
        let snap_ptr = c_snap.as_ref().map_or(ptr::null(), |s| s.as_ptr());
        let mut raw: ffi::rbd_image_t = ptr::null_mut();
        // SAFETY: ioctx is live; strings outlive the call; librbd writes the handle to `raw`.
        let ret = unsafe {
            if read_only {
                ffi::rbd_open_read_only(pool.raw(), c_name.as_ptr(), &mut raw, snap_ptr)
            } else {
                ffi::rbd_open(pool.raw(), c_name.as_ptr(), &mut raw, snap_ptr)
            }
        };
        check(ret.into(), "open image", || pool.spec(name))?;
        Ok(Self {
            raw,
            pool,
            name: name.to_string(),
        })
    }

    pub(crate) fn spec(&self) -> String {
        self.pool.spec(&self.name)
    }

    fn snap_spec(&self, snap: &str) -> String {
        format!("{}@{snap}", self.spec())
    }

    /// The image's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Size, object size and features.
    pub fn info(&self) -> Result<ImageInfo, RbdError> {
        // SAFETY: zeroed is a valid bit pattern for this plain C struct.
        let mut info: ffi::rbd_image_info_t = unsafe { std::mem::zeroed() };
        // SAFETY: live handle; `info` is writable and its size is passed.
        let ret = unsafe { ffi::rbd_stat(self.raw, &mut info, std::mem::size_of::<ffi::rbd_image_info_t>()) };
        check(ret.into(), "stat image", || self.spec())?;
        let mut features = 0u64;
        // SAFETY: live handle, writable out-parameter.
        let ret = unsafe { ffi::rbd_get_features(self.raw, &mut features) };
        check(ret.into(), "get features", || self.spec())?;
        Ok(ImageInfo {
            size: info.size,
            object_size: info.obj_size,
            features,
        })
    }

    /// Grows (or, with `allow_shrink`, shrinks) the image to `size` bytes.
    pub fn resize(&mut self, size: u64, allow_shrink: bool) -> Result<(), RbdError> {
        // SAFETY: live handle; no progress callback.
        let ret = unsafe { ffi::rbd_resize2(self.raw, size, allow_shrink, None, ptr::null_mut()) };
        check(ret.into(), "resize image", || {
            format!("{} to {size} bytes", self.spec())
        })
        .map(|_| ())
    }

    /// Copies all parent data into this clone so it no longer depends on the parent snapshot.
    pub fn flatten(&mut self) -> Result<(), RbdError> {
        // SAFETY: live handle.
        let ret = unsafe { ffi::rbd_flatten(self.raw) };
        check(ret.into(), "flatten image", || self.spec()).map(|_| ())
    }

    /// Creates a snapshot. Fails with `EEXIST` if the name is taken.
    pub fn create_snapshot(&mut self, snap: &str) -> Result<(), RbdError> {
        let c = cstring("snapshot name", snap)?;
        // SAFETY: live handle; string outlives the call.
        let ret = unsafe { ffi::rbd_snap_create(self.raw, c.as_ptr()) };
        check(ret.into(), "create snapshot", || self.snap_spec(snap)).map(|_| ())
    }

    /// Removes a snapshot. Fails with `EBUSY` while it is protected.
    pub fn remove_snapshot(&mut self, snap: &str) -> Result<(), RbdError> {
        let c = cstring("snapshot name", snap)?;
        // SAFETY: live handle; string outlives the call.
        let ret = unsafe { ffi::rbd_snap_remove(self.raw, c.as_ptr()) };
        check(ret.into(), "remove snapshot", || self.snap_spec(snap)).map(|_| ())
    }

    /// Protects a snapshot so v1 clones can be made from it and it cannot be removed.
    pub fn protect_snapshot(&mut self, snap: &str) -> Result<(), RbdError> {
        let c = cstring("snapshot name", snap)?;
        // SAFETY: live handle; string outlives the call.
        let ret = unsafe { ffi::rbd_snap_protect(self.raw, c.as_ptr()) };
        check(ret.into(), "protect snapshot", || self.snap_spec(snap)).map(|_| ())
    }

    /// Unprotects a snapshot. Fails with `EBUSY` while clones depend on it.
    pub fn unprotect_snapshot(&mut self, snap: &str) -> Result<(), RbdError> {
        let c = cstring("snapshot name", snap)?;
        // SAFETY: live handle; string outlives the call.
        let ret = unsafe { ffi::rbd_snap_unprotect(self.raw, c.as_ptr()) };
        check(ret.into(), "unprotect snapshot", || self.snap_spec(snap)).map(|_| ())
    }

    /// Whether a snapshot is protected.
    pub fn is_snapshot_protected(&self, snap: &str) -> Result<bool, RbdError> {
        let c = cstring("snapshot name", snap)?;
        let mut protected = 0;
        // SAFETY: live handle; writable out-parameter.
        let ret = unsafe { ffi::rbd_snap_is_protected(self.raw, c.as_ptr(), &mut protected) };
        check(ret.into(), "query snapshot protection", || self.snap_spec(snap))?;
        Ok(protected != 0)
    }

    /// All snapshots of the image, oldest first, of every namespace (user snapshots and
    /// group snapshot members alike; see [`Image::snapshot_namespace`]).
    pub fn snapshots(&self) -> Result<Vec<Snapshot>, RbdError> {
        let mut capacity: i32 = 16;
        loop {
            let mut buf: Vec<ffi::rbd_snap_info_t> = Vec::with_capacity(capacity as usize + 1);
            let mut max = capacity;
            // SAFETY: `buf` has room for `max` entries (plus librbd's terminator).
            let ret = unsafe { ffi::rbd_snap_list(self.raw, buf.as_mut_ptr(), &mut max) };
            if ret == -libc::ERANGE {
                capacity = max.max(capacity * 2);
                continue;
            }
            let count = check(ret.into(), "list snapshots", || self.spec())? as usize;
            // SAFETY: librbd initialised `count` entries.
            unsafe { buf.set_len(count) };
            let snaps = buf
                .iter()
                .map(|s| Snapshot {
                    id: s.id,
                    size: s.size,
                    // SAFETY: names are NUL-terminated strings owned by librbd until list_end.
                    name: unsafe { CStr::from_ptr(s.name) }.to_string_lossy().into_owned(),
                })
                .collect();
            // SAFETY: frees the names librbd allocated in this list.
            unsafe { ffi::rbd_snap_list_end(buf.as_mut_ptr()) };
            return Ok(snaps);
        }
    }

    /// Reads an image metadata value (`rbd image-meta get`); `None` when the key is absent.
    pub fn metadata(&self, key: &str) -> Result<Option<String>, RbdError> {
        let c_key = cstring("metadata key", key)?;
        let mut len: usize = 256;
        loop {
            let mut buf = vec![0u8; len];
            let mut got = len;
            // SAFETY: live handle; `buf` is writable for `got` bytes; librbd sets `got` to the
            // length it needs (with -ERANGE) or wrote, including the NUL.
            let ret =
                unsafe { ffi::rbd_metadata_get(self.raw, c_key.as_ptr(), buf.as_mut_ptr().cast(), &mut got) };
            if ret == -libc::ERANGE && got > len {
                len = got;
                continue;
            }
            if ret == -libc::ENOENT {
                return Ok(None);
            }
            check(ret.into(), "get image metadata", || {
                format!("{} {key}", self.spec())
            })?;
            buf.truncate(got.min(len));
            if let Some(nul) = buf.iter().position(|b| *b == 0) {
                buf.truncate(nul);
            }
            return Ok(Some(String::from_utf8_lossy(&buf).into_owned()));
        }
    }

    /// Sets an image metadata value (`rbd image-meta set`).
    pub fn set_metadata(&mut self, key: &str, value: &str) -> Result<(), RbdError> {
        let c_key = cstring("metadata key", key)?;
        let c_value = cstring("metadata value", value)?;
        // SAFETY: live handle; both strings outlive the call.
        let ret = unsafe { ffi::rbd_metadata_set(self.raw, c_key.as_ptr(), c_value.as_ptr()) };
        check(ret.into(), "set image metadata", || {
            format!("{} {key}", self.spec())
        })
        .map(|_| ())
    }

    /// Removes an image metadata key (`rbd image-meta remove`); absent is fine.
    pub fn remove_metadata(&mut self, key: &str) -> Result<(), RbdError> {
        let c_key = cstring("metadata key", key)?;
        // SAFETY: live handle; the key outlives the call.
        let ret = unsafe { ffi::rbd_metadata_remove(self.raw, c_key.as_ptr()) };
        if ret == -libc::ENOENT {
            return Ok(());
        }
        check(ret.into(), "remove image metadata", || {
            format!("{} {key}", self.spec())
        })
        .map(|_| ())
    }

    /// Removes snapshot `snap_id` of any namespace (a trash-namespace one has no name to
    /// remove it by). Fails with `EBUSY` while clones depend on it.
    pub fn remove_snapshot_by_id(&mut self, snap_id: u64) -> Result<(), RbdError> {
        // SAFETY: live handle.
        let ret = unsafe { ffi::rbd_snap_remove_by_id(self.raw, snap_id) };
        check(ret.into(), "remove snapshot", || {
            format!("{} snapshot id {snap_id}", self.spec())
        })
        .map(|_| ())
    }

    /// Switches this handle to read snapshot `snap_id` (of any namespace, e.g. a group
    /// snapshot member), as `rbd_open` with a snapshot name does for user snapshots.
    pub fn set_snapshot_by_id(&mut self, snap_id: u64) -> Result<(), RbdError> {
        // SAFETY: live handle.
        let ret = unsafe { ffi::rbd_snap_set_by_id(self.raw, snap_id) };
        check(ret.into(), "set snapshot", || {
            format!("{} snapshot id {snap_id}", self.spec())
        })
        .map(|_| ())
    }

    /// The namespace of snapshot `snap_id`: user, or the group snapshot it belongs to.
    pub fn snapshot_namespace(&self, snap_id: u64) -> Result<crate::group::SnapshotNamespace, RbdError> {
        crate::group::group_namespace(self.raw, snap_id).map_err(|e| self.retarget(e))
    }

    /// The group this image belongs to, as (pool id, group name), if any.
    pub fn group(&self) -> Result<Option<(i64, String)>, RbdError> {
        crate::group::image_group(self.raw).map_err(|e| self.retarget(e))
    }

    fn retarget(&self, e: RbdError) -> RbdError {
        match e {
            RbdError::Ceph { op, target, errno } => RbdError::Ceph {
                op,
                target: if target.is_empty() {
                    self.spec()
                } else {
                    format!("{} {target}", self.spec())
                },
                errno,
            },
            other => other,
        }
    }

    /// When a snapshot was taken, in seconds since the Unix epoch.
    pub fn snapshot_timestamp(&self, snap_id: u64) -> Result<i64, RbdError> {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: live handle; `ts` is a writable timespec.
        let ret = unsafe { ffi::rbd_snap_get_timestamp(self.raw, snap_id, &mut ts) };
        check(ret.into(), "get snapshot timestamp", || self.spec())?;
        Ok(ts.tv_sec)
    }

    /// Reads `buf.len()` bytes at `offset`; returns how many were read.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, RbdError> {
        // SAFETY: live handle; `buf` is writable for its whole length.
        let ret = unsafe { ffi::rbd_read(self.raw, offset, buf.len(), buf.as_mut_ptr().cast()) };
        check(ret as i64, "read image", || self.spec()).map(|n| n as usize)
    }

    /// Writes `data` at `offset`.
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), RbdError> {
        // SAFETY: live handle; `data` is readable for its whole length.
        let ret = unsafe { ffi::rbd_write(self.raw, offset, data.len(), data.as_ptr().cast()) };
        check(ret as i64, "write image", || self.spec()).map(|_| ())
    }

    /// Makes earlier writes durable.
    pub fn flush(&mut self) -> Result<(), RbdError> {
        // SAFETY: live handle.
        let ret = unsafe { ffi::rbd_flush(self.raw) };
        check(ret.into(), "flush image", || self.spec()).map(|_| ())
    }

    /// Byte ranges changed since snapshot `from` (or all allocated ranges when `None`),
    /// in offset order. The base of incremental PV backups.
    pub fn changed_extents(&self, from: Option<&str>) -> Result<Vec<Extent>, RbdError> {
        let size = self.info()?.size;
        let c_from: Option<CString> = from.map(|s| cstring("snapshot name", s)).transpose()?;
        let from_ptr = c_from.as_ref().map_or(ptr::null(), |s| s.as_ptr());
        let mut extents: Vec<Extent> = Vec::new();

        unsafe extern "C" fn collect(
            offset: u64,
            len: usize,
            exists: libc::c_int,
            arg: *mut c_void,
        ) -> libc::c_int {
            // SAFETY: `arg` is the `&mut Vec<Extent>` passed below, alive for the whole call.
            let out = unsafe { &mut *arg.cast::<Vec<Extent>>() };
            out.push(Extent {
                offset,
                length: len as u64,
                exists: exists != 0,
            });
            0
        }

        // SAFETY: live handle; the callback only touches `extents`, which outlives the call.
        let ret = unsafe {
            ffi::rbd_diff_iterate2(
                self.raw,
                from_ptr,
                0,
                size,
                1,
                0,
                collect,
                (&mut extents as *mut Vec<Extent>).cast(),
            )
        };
        check(ret.into(), "diff image", || self.spec())?;
        extents.sort_by_key(|e| e.offset);
        Ok(extents)
    }
}

impl Drop for Image<'_> {
    fn drop(&mut self) {
        // SAFETY: the handle came from rbd_open and is closed exactly once.
        unsafe { ffi::rbd_close(self.raw) };
    }
}
