//! RBD groups and group snapshots (`rbd group …` in the CLI): several images snapshotted at
//! one instant, crash-consistent across all of them. librbd quiesces every member, takes each
//! image's snapshot in the group snapshot namespace and records them under the group, so the
//! member snapshots are not in the images' user namespace: they are found with
//! [`Image::snapshot_namespace`](crate::Image::snapshot_namespace) and read by id.
//!
//! An image belongs to at most one group at a time (`EEXIST` when it is in another); a group
//! snapshot outlives its images leaving the group, and its member snapshots keep the images
//! from being removed (`ENOTEMPTY`) until the group snapshot is removed.
#![allow(unsafe_code)]

use crate::cluster::{Pool, cstring, text};
use crate::error::{RbdError, check};
use crate::ffi;

/// One image of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupImage {
    /// The image's name.
    pub name: String,
    /// Id of the pool holding the image.
    pub pool_id: i64,
    /// False while an add or remove is half done.
    pub attached: bool,
}

/// One snapshot of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSnapshot {
    /// Its name.
    pub name: String,
    /// False when a crash interrupted its creation: some members may lack their snapshot.
    pub complete: bool,
}

impl Pool {
    fn group_spec(&self, group: &str) -> String {
        format!("group {}/{group}", self.name())
    }

    /// Creates group `name` in this pool. Fails with `EEXIST` if it exists.
    pub fn create_group(&self, name: &str) -> Result<(), RbdError> {
        let c = cstring("group name", name)?;
        // SAFETY: the ioctx lives as long as `self`; the name outlives the call.
        let ret = unsafe { ffi::rbd_group_create(self.raw(), c.as_ptr()) };
        check(ret.into(), "create group", || self.group_spec(name)).map(|_| ())
    }

    /// Removes group `name` and its snapshots (not the images). An absent group is success
    /// (librbd's answer).
    pub fn remove_group(&self, name: &str) -> Result<(), RbdError> {
        let c = cstring("group name", name)?;
        // SAFETY: live ioctx; the name outlives the call.
        let ret = unsafe { ffi::rbd_group_remove(self.raw(), c.as_ptr()) };
        check(ret.into(), "remove group", || self.group_spec(name)).map(|_| ())
    }

    /// Adds `image` of `image_pool` to group `group` of this pool. Adding an image already in
    /// this group succeeds; one in another group fails with `EEXIST`.
    pub fn add_group_image(&self, group: &str, image_pool: &Pool, image: &str) -> Result<(), RbdError> {
        let g = cstring("group name", group)?;
        let i = cstring("image name", image)?;
        // SAFETY: both ioctxs are live for the call; the names outlive it.
        let ret = unsafe { ffi::rbd_group_image_add(self.raw(), g.as_ptr(), image_pool.raw(), i.as_ptr()) };
        check(ret.into(), "add image to group", || {
            format!("{} to {}", image_pool.spec(image), self.group_spec(group))
        })
        .map(|_| ())
    }

    /// Removes `image` of `image_pool` from group `group`; `ENOENT` if it is not a member.
    pub fn remove_group_image(&self, group: &str, image_pool: &Pool, image: &str) -> Result<(), RbdError> {
        let g = cstring("group name", group)?;
        let i = cstring("image name", image)?;
        // SAFETY: both ioctxs are live for the call; the names outlive it.
        let ret =
            unsafe { ffi::rbd_group_image_remove(self.raw(), g.as_ptr(), image_pool.raw(), i.as_ptr()) };
        check(ret.into(), "remove image from group", || {
            format!("{} from {}", image_pool.spec(image), self.group_spec(group))
        })
        .map(|_| ())
    }

    /// The images of group `group`.
    pub fn group_images(&self, group: &str) -> Result<Vec<GroupImage>, RbdError> {
        let g = cstring("group name", group)?;
        let size = std::mem::size_of::<ffi::rbd_group_image_info_t>();
        let mut capacity = 16usize;
        loop {
            let mut buf: Vec<ffi::rbd_group_image_info_t> = Vec::with_capacity(capacity);
            let mut count = capacity;
            // SAFETY: `buf` has room for `count` entries of the size passed; librbd writes at
            // most that many and sets `count` to the number written (or needed, with -ERANGE).
            let ret = unsafe {
                ffi::rbd_group_image_list(self.raw(), g.as_ptr(), buf.as_mut_ptr(), size, &mut count)
            };
            if ret == -libc::ERANGE && count > capacity {
                capacity = count;
                continue;
            }
            check(ret.into(), "list group images", || self.group_spec(group))?;
            // SAFETY: librbd initialised the first `count` entries.
            unsafe { buf.set_len(count) };
            let out = buf
                .iter()
                .map(|i| GroupImage {
                    name: text(i.name),
                    pool_id: i.pool,
                    attached: i.state == ffi::RBD_GROUP_IMAGE_STATE_ATTACHED,
                })
                .collect();
            // SAFETY: frees exactly the entries librbd filled in, once.
            unsafe { ffi::rbd_group_image_list_cleanup(buf.as_mut_ptr(), size, count) };
            return Ok(out);
        }
    }

    /// Snapshots every image of group `group` at one instant as group snapshot `snap`.
    /// `EEXIST` if the group already has a snapshot of that name (complete or not).
    pub fn create_group_snapshot(&self, group: &str, snap: &str) -> Result<(), RbdError> {
        let g = cstring("group name", group)?;
        let s = cstring("group snapshot name", snap)?;
        // SAFETY: live ioctx; the names outlive the call.
        let ret = unsafe { ffi::rbd_group_snap_create(self.raw(), g.as_ptr(), s.as_ptr()) };
        check(ret.into(), "create group snapshot", || {
            format!("{}@{snap}", self.group_spec(group))
        })
        .map(|_| ())
    }

    /// Removes group snapshot `snap` and every member snapshot it recorded; `ENOENT` if absent.
    pub fn remove_group_snapshot(&self, group: &str, snap: &str) -> Result<(), RbdError> {
        let g = cstring("group name", group)?;
        let s = cstring("group snapshot name", snap)?;
        // SAFETY: live ioctx; the names outlive the call.
        let ret = unsafe { ffi::rbd_group_snap_remove(self.raw(), g.as_ptr(), s.as_ptr()) };
        check(ret.into(), "remove group snapshot", || {
            format!("{}@{snap}", self.group_spec(group))
        })
        .map(|_| ())
    }

    /// The snapshots of group `group` (none for an absent group, as librbd answers).
    pub fn group_snapshots(&self, group: &str) -> Result<Vec<GroupSnapshot>, RbdError> {
        let g = cstring("group name", group)?;
        let size = std::mem::size_of::<ffi::rbd_group_snap_info_t>();
        let mut capacity = 16usize;
        loop {
            let mut buf: Vec<ffi::rbd_group_snap_info_t> = Vec::with_capacity(capacity);
            let mut count = capacity;
            // SAFETY: as in `group_images`: room for `count` entries of the size passed.
            let ret = unsafe {
                ffi::rbd_group_snap_list(self.raw(), g.as_ptr(), buf.as_mut_ptr(), size, &mut count)
            };
            if ret == -libc::ERANGE && count > capacity {
                capacity = count;
                continue;
            }
            check(ret.into(), "list group snapshots", || self.group_spec(group))?;
            // SAFETY: librbd initialised the first `count` entries.
            unsafe { buf.set_len(count) };
            let out = buf
                .iter()
                .map(|s| GroupSnapshot {
                    name: text(s.name),
                    complete: s.state == ffi::RBD_GROUP_SNAP_STATE_COMPLETE,
                })
                .collect();
            // SAFETY: frees exactly the entries librbd filled in, once.
            unsafe { ffi::rbd_group_snap_list_cleanup(buf.as_mut_ptr(), size, count) };
            return Ok(out);
        }
    }
}

/// Which namespace a snapshot of an image lives in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotNamespace {
    /// An ordinary snapshot (`rbd snap create`).
    User,
    /// A member of a group snapshot.
    Group {
        /// Id of the pool holding the group.
        pool_id: i64,
        /// The group's name.
        group: String,
        /// The group snapshot's name.
        snapshot: String,
    },
    /// A removed snapshot librbd keeps until its last clone goes (clone v2), or whose removal
    /// was interrupted between moving it here and deleting it.
    Trash,
    /// Mirror or a namespace newer than this binding.
    Other,
}

pub(crate) fn group_namespace(image: ffi::rbd_image_t, snap_id: u64) -> Result<SnapshotNamespace, RbdError> {
    let mut kind: libc::c_int = 0;
    // SAFETY: live image handle; writable out-parameter.
    let ret = unsafe { ffi::rbd_snap_get_namespace_type(image, snap_id, &mut kind) };
    check(ret.into(), "get snapshot namespace", || {
        format!("snapshot id {snap_id}")
    })?;
    match kind {
        ffi::RBD_SNAP_NAMESPACE_TYPE_USER => Ok(SnapshotNamespace::User),
        ffi::RBD_SNAP_NAMESPACE_TYPE_GROUP => {
            let size = std::mem::size_of::<ffi::rbd_snap_group_namespace_t>();
            let mut ns = ffi::rbd_snap_group_namespace_t {
                group_pool: 0,
                group_name: std::ptr::null_mut(),
                group_snap_name: std::ptr::null_mut(),
            };
            // SAFETY: live image handle; `ns` is writable and its size is passed.
            let ret = unsafe { ffi::rbd_snap_get_group_namespace(image, snap_id, &mut ns, size) };
            check(ret.into(), "get snapshot group", || {
                format!("snapshot id {snap_id}")
            })?;
            let out = SnapshotNamespace::Group {
                pool_id: ns.group_pool,
                group: text(ns.group_name),
                snapshot: text(ns.group_snap_name),
            };
            // SAFETY: frees the two strings librbd allocated into `ns`, once.
            unsafe { ffi::rbd_snap_group_namespace_cleanup(&mut ns, size) };
            Ok(out)
        }
        ffi::RBD_SNAP_NAMESPACE_TYPE_TRASH => Ok(SnapshotNamespace::Trash),
        _ => Ok(SnapshotNamespace::Other),
    }
}

pub(crate) fn image_group(image: ffi::rbd_image_t) -> Result<Option<(i64, String)>, RbdError> {
    let size = std::mem::size_of::<ffi::rbd_group_info_t>();
    let mut info = ffi::rbd_group_info_t {
        name: std::ptr::null_mut(),
        pool: -1,
    };
    // SAFETY: live image handle; `info` is writable and its size is passed.
    let ret = unsafe { ffi::rbd_get_group(image, &mut info, size) };
    check(ret.into(), "get image group", String::new)?;
    let name = text(info.name);
    let pool = info.pool;
    // SAFETY: frees the name librbd allocated into `info` (a no-op for an empty one), once.
    unsafe { ffi::rbd_group_info_cleanup(&mut info, size) };
    Ok((pool >= 0 && !name.is_empty()).then_some((pool, name)))
}
