//! Raw declarations for the parts of `librbd` (Ceph 16, `rbd/librbd.h`) that Lifeboat uses.
//!
//! Written by hand instead of generated: the surface is small, stable since Nautilus, and a
//! bindgen build step would need libclang on every machine that builds the driver.
#![allow(unsafe_code, non_camel_case_types, missing_docs)]

use libc::{c_char, c_int, c_void, size_t, ssize_t};

pub type rados_ioctx_t = *mut c_void;
pub type rbd_image_t = *mut c_void;
pub type rbd_image_options_t = *mut c_void;
pub type librbd_progress_fn_t = Option<unsafe extern "C" fn(u64, u64, *mut c_void) -> c_int>;
pub type diff_cb_t = unsafe extern "C" fn(u64, size_t, c_int, *mut c_void) -> c_int;
pub type rbd_completion_t = *mut c_void;
pub type rbd_callback_t = Option<unsafe extern "C" fn(rbd_completion_t, *mut c_void)>;

pub const RBD_MAX_IMAGE_NAME_SIZE: usize = 96;
pub const RBD_MAX_BLOCK_NAME_SIZE: usize = 24;

pub const RBD_IMAGE_OPTION_FORMAT: c_int = 0;
pub const RBD_IMAGE_OPTION_FEATURES: c_int = 1;
pub const RBD_IMAGE_OPTION_ORDER: c_int = 2;
pub const RBD_IMAGE_OPTION_DATA_POOL: c_int = 10;

#[repr(C)]
pub struct rbd_image_info_t {
    pub size: u64,
    pub obj_size: u64,
    pub num_objs: u64,
    pub order: c_int,
    pub block_name_prefix: [c_char; RBD_MAX_BLOCK_NAME_SIZE],
    pub parent_pool: i64,
    pub parent_name: [c_char; RBD_MAX_IMAGE_NAME_SIZE],
}

#[repr(C)]
pub struct rbd_image_watcher_t {
    pub addr: *mut c_char,
    pub id: i64,
    pub cookie: u64,
}

#[repr(C)]
pub struct rbd_snap_info_t {
    pub id: u64,
    pub size: u64,
    pub name: *const c_char,
}

#[repr(C)]
pub struct rbd_group_image_info_t {
    pub name: *mut c_char,
    pub pool: i64,
    pub state: c_int,
}

#[repr(C)]
pub struct rbd_group_info_t {
    pub name: *mut c_char,
    pub pool: i64,
}

#[repr(C)]
pub struct rbd_group_snap_info_t {
    pub name: *mut c_char,
    pub state: c_int,
}

#[repr(C)]
pub struct rbd_snap_group_namespace_t {
    pub group_pool: i64,
    pub group_name: *mut c_char,
    pub group_snap_name: *mut c_char,
}

pub const RBD_GROUP_IMAGE_STATE_ATTACHED: c_int = 0;
pub const RBD_GROUP_SNAP_STATE_COMPLETE: c_int = 1;
pub const RBD_SNAP_NAMESPACE_TYPE_USER: c_int = 0;
pub const RBD_SNAP_NAMESPACE_TYPE_GROUP: c_int = 1;
pub const RBD_SNAP_NAMESPACE_TYPE_TRASH: c_int = 2;

#[repr(C)]
pub struct rbd_image_spec_t {
    pub id: *mut c_char,
    pub name: *mut c_char,
}

pub const RBD_TRASH_IMAGE_SOURCE_USER: c_int = 0;
pub const RBD_TRASH_IMAGE_SOURCE_MIRRORING: c_int = 1;
pub const RBD_TRASH_IMAGE_SOURCE_MIGRATION: c_int = 2;
pub const RBD_TRASH_IMAGE_SOURCE_REMOVING: c_int = 3;
pub const RBD_TRASH_IMAGE_SOURCE_USER_PARENT: c_int = 4;

#[repr(C)]
pub struct rbd_trash_image_info_t {
    pub id: *mut c_char,
    pub name: *mut c_char,
    pub source: c_int,
    pub deletion_time: libc::time_t,
    pub deferment_end_time: libc::time_t,
}

#[link(name = "rbd")]
unsafe extern "C" {
    pub fn rbd_trash_list(
        io: rados_ioctx_t,
        trash_entries: *mut rbd_trash_image_info_t,
        num_entries: *mut size_t,
    ) -> c_int;
    pub fn rbd_trash_list_cleanup(trash_entries: *mut rbd_trash_image_info_t, num_entries: size_t);
    pub fn rbd_trash_remove(io: rados_ioctx_t, id: *const c_char, force: bool) -> c_int;
    pub fn rbd_image_options_create(opts: *mut rbd_image_options_t);
    pub fn rbd_image_options_destroy(opts: rbd_image_options_t);
    pub fn rbd_image_options_set_string(
        opts: rbd_image_options_t,
        optname: c_int,
        optval: *const c_char,
    ) -> c_int;
    pub fn rbd_image_options_set_uint64(opts: rbd_image_options_t, optname: c_int, optval: u64) -> c_int;

    pub fn rbd_list2(io: rados_ioctx_t, images: *mut rbd_image_spec_t, max: *mut size_t) -> c_int;
    pub fn rbd_image_spec_list_cleanup(images: *mut rbd_image_spec_t, num: size_t);
    pub fn rbd_create4(io: rados_ioctx_t, name: *const c_char, size: u64, opts: rbd_image_options_t)
    -> c_int;
    pub fn rbd_clone3(
        p_ioctx: rados_ioctx_t,
        p_name: *const c_char,
        p_snapname: *const c_char,
        c_ioctx: rados_ioctx_t,
        c_name: *const c_char,
        c_opts: rbd_image_options_t,
    ) -> c_int;
    pub fn rbd_remove(io: rados_ioctx_t, name: *const c_char) -> c_int;

    pub fn rbd_open(
        io: rados_ioctx_t,
        name: *const c_char,
        image: *mut rbd_image_t,
        snap_name: *const c_char,
    ) -> c_int;
    pub fn rbd_open_read_only(
        io: rados_ioctx_t,
        name: *const c_char,
        image: *mut rbd_image_t,
        snap_name: *const c_char,
    ) -> c_int;
    pub fn rbd_close(image: rbd_image_t) -> c_int;
    pub fn rbd_resize2(
        image: rbd_image_t,
        size: u64,
        allow_shrink: bool,
        cb: librbd_progress_fn_t,
        cbdata: *mut c_void,
    ) -> c_int;
    pub fn rbd_stat(image: rbd_image_t, info: *mut rbd_image_info_t, infosize: size_t) -> c_int;
    pub fn rbd_get_features(image: rbd_image_t, features: *mut u64) -> c_int;
    pub fn rbd_flatten(image: rbd_image_t) -> c_int;

    pub fn rbd_snap_list(image: rbd_image_t, snaps: *mut rbd_snap_info_t, max: *mut c_int) -> c_int;
    pub fn rbd_snap_list_end(snaps: *mut rbd_snap_info_t);
    pub fn rbd_watchers_list(
        image: rbd_image_t,
        watchers: *mut rbd_image_watcher_t,
        max: *mut usize,
    ) -> c_int;
    pub fn rbd_watchers_list_cleanup(watchers: *mut rbd_image_watcher_t, count: usize);
    pub fn rbd_aio_create_completion(
        cb_arg: *mut c_void,
        complete_cb: rbd_callback_t,
        c: *mut rbd_completion_t,
    ) -> c_int;
    pub fn rbd_aio_write(
        image: rbd_image_t,
        off: u64,
        len: size_t,
        buf: *const c_char,
        c: rbd_completion_t,
    ) -> c_int;
    pub fn rbd_aio_wait_for_complete(c: rbd_completion_t) -> c_int;
    pub fn rbd_aio_get_return_value(c: rbd_completion_t) -> ssize_t;
    pub fn rbd_aio_release(c: rbd_completion_t);
    pub fn rbd_snap_create(image: rbd_image_t, snapname: *const c_char) -> c_int;
    pub fn rbd_snap_remove(image: rbd_image_t, snapname: *const c_char) -> c_int;
    pub fn rbd_snap_remove_by_id(image: rbd_image_t, snap_id: u64) -> c_int;
    pub fn rbd_snap_protect(image: rbd_image_t, snapname: *const c_char) -> c_int;
    pub fn rbd_snap_unprotect(image: rbd_image_t, snapname: *const c_char) -> c_int;
    pub fn rbd_snap_is_protected(
        image: rbd_image_t,
        snapname: *const c_char,
        is_protected: *mut c_int,
    ) -> c_int;

    pub fn rbd_diff_iterate2(
        image: rbd_image_t,
        fromsnapname: *const c_char,
        ofs: u64,
        len: u64,
        include_parent: u8,
        whole_object: u8,
        cb: diff_cb_t,
        arg: *mut c_void,
    ) -> c_int;
    pub fn rbd_read(image: rbd_image_t, ofs: u64, len: size_t, buf: *mut c_char) -> ssize_t;
    pub fn rbd_write(image: rbd_image_t, ofs: u64, len: size_t, buf: *const c_char) -> ssize_t;
    pub fn rbd_flush(image: rbd_image_t) -> c_int;

    pub fn rbd_metadata_get(
        image: rbd_image_t,
        key: *const c_char,
        value: *mut c_char,
        val_len: *mut size_t,
    ) -> c_int;
    pub fn rbd_metadata_set(image: rbd_image_t, key: *const c_char, value: *const c_char) -> c_int;
    pub fn rbd_snap_get_timestamp(image: rbd_image_t, snap_id: u64, timestamp: *mut libc::timespec) -> c_int;
    pub fn rbd_metadata_remove(image: rbd_image_t, key: *const c_char) -> c_int;
    pub fn rbd_snap_set_by_id(image: rbd_image_t, snap_id: u64) -> c_int;
    pub fn rbd_snap_get_namespace_type(image: rbd_image_t, snap_id: u64, namespace_type: *mut c_int)
    -> c_int;
    pub fn rbd_snap_get_group_namespace(
        image: rbd_image_t,
        snap_id: u64,
        group_snap: *mut rbd_snap_group_namespace_t,
        group_snap_size: size_t,
    ) -> c_int;
    pub fn rbd_snap_group_namespace_cleanup(
        group_snap: *mut rbd_snap_group_namespace_t,
        group_snap_size: size_t,
    ) -> c_int;
    pub fn rbd_get_group(
        image: rbd_image_t,
        group_info: *mut rbd_group_info_t,
        group_info_size: size_t,
    ) -> c_int;
    pub fn rbd_group_info_cleanup(group_info: *mut rbd_group_info_t, group_info_size: size_t) -> c_int;

    pub fn rbd_group_create(io: rados_ioctx_t, name: *const c_char) -> c_int;
    pub fn rbd_group_remove(io: rados_ioctx_t, name: *const c_char) -> c_int;
    pub fn rbd_group_image_add(
        group_p: rados_ioctx_t,
        group_name: *const c_char,
        image_p: rados_ioctx_t,
        image_name: *const c_char,
    ) -> c_int;
    pub fn rbd_group_image_remove(
        group_p: rados_ioctx_t,
        group_name: *const c_char,
        image_p: rados_ioctx_t,
        image_name: *const c_char,
    ) -> c_int;
    pub fn rbd_group_image_list(
        group_p: rados_ioctx_t,
        group_name: *const c_char,
        images: *mut rbd_group_image_info_t,
        group_image_info_size: size_t,
        num_entries: *mut size_t,
    ) -> c_int;
    pub fn rbd_group_image_list_cleanup(
        images: *mut rbd_group_image_info_t,
        group_image_info_size: size_t,
        num_entries: size_t,
    ) -> c_int;
    pub fn rbd_group_snap_create(
        group_p: rados_ioctx_t,
        group_name: *const c_char,
        snap_name: *const c_char,
    ) -> c_int;
    pub fn rbd_group_snap_remove(
        group_p: rados_ioctx_t,
        group_name: *const c_char,
        snap_name: *const c_char,
    ) -> c_int;
    pub fn rbd_group_snap_list(
        group_p: rados_ioctx_t,
        group_name: *const c_char,
        snaps: *mut rbd_group_snap_info_t,
        group_snap_info_size: size_t,
        num_entries: *mut size_t,
    ) -> c_int;
    pub fn rbd_group_snap_list_cleanup(
        snaps: *mut rbd_group_snap_info_t,
        group_snap_info_size: size_t,
        num_entries: size_t,
    ) -> c_int;
}

#[link(name = "rados")]
unsafe extern "C" {
    /// The id of the pool an I/O context is open on.
    pub fn rados_ioctx_get_id(io: rados_ioctx_t) -> i64;
    /// Runs an OSD class method on one object; returns the output length or a negative errno
    /// (`-ERANGE` when `out` is too small).
    pub fn rados_exec(
        io: rados_ioctx_t,
        oid: *const c_char,
        cls: *const c_char,
        method: *const c_char,
        in_buf: *const c_char,
        in_len: size_t,
        out_buf: *mut c_char,
        out_len: size_t,
    ) -> c_int;
}
