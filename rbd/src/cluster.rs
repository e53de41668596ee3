//! A connection to a Ceph cluster and the pools (I/O contexts) opened through it.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::path::Path;
use std::sync::Arc;

use crate::error::{RbdError, check};
use crate::image::{Image, ImageOptions, SnapshotRef};
use crate::rados::{IoCtx, RadosHandle};

/// A connected Ceph cluster. Cheap to clone; the connection closes with the last clone.
#[derive(Clone)]
pub struct Cluster {
    handle: Arc<RadosHandle>,
}

impl Cluster {
    /// Connects as `user` (without the `client.` prefix) using a `ceph.conf` that names the
    /// monitors and the keyring.
    ///
    /// Connecting gives up after 60 s unless the file sets `client_mount_timeout` (librados'
    /// default is 300 s); operations wait for the cluster unless the file sets
    /// `rados_osd_op_timeout`/`rados_mon_op_timeout`, and a timed-out object-map update does
    /// not invalidate the map. A failed connect shuts its handle down (no librados thread is
    /// left). Errors name the step (`read config`, `connect`) and the errno text
    /// (`Connection timed out (errno 110)`).
    pub fn connect(user: &str, config: &Path) -> Result<Self, RbdError> {
        let handle = RadosHandle::connect(user, config).map_err(|message| RbdError::Connect {
            user: user.to_string(),
            config: config.display().to_string(),
            message,
        })?;
        Ok(Self {
            handle: Arc::new(handle),
        })
    }

    /// The value in force of config option `option` (e.g. `rados_osd_op_timeout`, in
    /// seconds), as set by Lifeboat's defaults, the config file or the monitors.
    pub fn config(&self, option: &str) -> Result<String, RbdError> {
        self.handle.config(option).map_err(|errno| RbdError::Ceph {
            op: "get config option",
            target: option.to_string(),
            errno,
        })
    }

    /// Opens an I/O context on `pool`, written as the `rbd` CLI writes a pool spec: `POOL`
    /// (the default RADOS namespace) or `POOL/NAMESPACE` (as ceph-csi's `radosNamespace`
    /// places images). Errors: `ENOENT` for a pool that does not exist; a namespace that does
    /// not exist shows on the first operation (`ENOENT` from librbd).
    pub fn pool(&self, pool: &str) -> Result<Pool, RbdError> {
        let (name, namespace) = split_pool_spec(pool);
        let ioctx = self
            .handle
            .ioctx(name, namespace)
            .map_err(|errno| RbdError::Ceph {
                op: "open pool",
                target: pool.to_string(),
                errno,
            })?;
        Ok(Pool {
            ioctx,
            name: pool.to_string(),
            _cluster: self.clone(),
        })
    }

    /// Names of all pools in the cluster.
    pub fn pools(&self) -> Result<Vec<String>, RbdError> {
        self.handle.pool_list().map_err(|errno| RbdError::Ceph {
            op: "list pools",
            target: "cluster".to_string(),
            errno,
        })
    }

    /// The name of the pool with id `id` (as group namespaces and group image lists give
    /// pools), or `None` if no pool this client can open has it.
    pub fn pool_name(&self, id: i64) -> Result<Option<String>, RbdError> {
        for name in self.pools()? {
            match self.pool(&name) {
                Ok(p) if p.id() == id => return Ok(Some(name)),
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Sends a monitor command (a JSON object, as the `ceph` CLI does) and returns its
    /// output, e.g. `{"prefix": "df", "format": "json"}` for pool capacity.
    pub fn mon_command(&self, command: &serde_json::Value) -> Result<Vec<u8>, RbdError> {
        self.handle
            .mon_command(&command.to_string())
            .map_err(|(errno, _status)| RbdError::Ceph {
                op: "mon command",
                target: command["prefix"].as_str().unwrap_or("?").to_string(),
                errno,
            })
    }
}

/// `(pool, RADOS namespace)` of a pool spec `POOL[/NAMESPACE]`; an empty namespace is the
/// default one.
pub fn split_pool_spec(spec: &str) -> (&str, Option<&str>) {
    match spec.split_once('/') {
        Some((pool, namespace)) if !namespace.is_empty() => (pool, Some(namespace)),
        Some((pool, _)) => (pool, None),
        None => (spec, None),
    }
}

/// An I/O context on one pool (and RADOS namespace): the place images live.
pub struct Pool {
    // Field order matters: the ioctx must be destroyed before the cluster handle.
    ioctx: IoCtx,
    name: String,
    _cluster: Cluster,
}

impl Pool {
    /// The pool spec it was opened with: `POOL` or `POOL/NAMESPACE`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The pool's numeric id (as group namespaces and `ceph df` name pools).
    pub fn id(&self) -> i64 {
        // SAFETY: the ioctx is live for `self`'s lifetime; the call only reads it.
        unsafe { crate::ffi::rados_ioctx_get_id(self.raw()) }
    }

    pub(crate) fn ioctx(&self) -> &IoCtx {
        &self.ioctx
    }

    pub(crate) fn raw(&self) -> crate::ffi::rados_ioctx_t {
        self.ioctx.raw()
    }

    pub(crate) fn spec(&self, image: &str) -> String {
        format!("{}/{}", self.name, image)
    }

    /// Creates an image of `size` bytes. Fails with `EEXIST` if it exists.
    pub fn create_image(&self, name: &str, size: u64, opts: &ImageOptions) -> Result<(), RbdError> {
        let c_name = cstring("image name", name)?;
        let raw_opts = opts.to_raw()?;
        // SAFETY: ioctx is live for `self`'s lifetime; name and options outlive the call.
        let ret = unsafe { crate::ffi::rbd_create4(self.raw(), c_name.as_ptr(), size, raw_opts.0) };
        check(ret.into(), "create image", || self.spec(name)).map(|_| ())
    }

    /// Removes an image. Fails with `ENOENT` if absent, `EBUSY`/`ENOTEMPTY` if it has watchers,
    /// snapshots or children.
    pub fn remove_image(&self, name: &str) -> Result<(), RbdError> {
        let c_name = cstring("image name", name)?;
        // SAFETY: ioctx and name are valid for the call.
        let ret = unsafe { crate::ffi::rbd_remove(self.raw(), c_name.as_ptr()) };
        check(ret.into(), "remove image", || self.spec(name)).map(|_| ())
    }

    /// Names of the images in this pool.
    pub fn list_images(&self) -> Result<Vec<String>, RbdError> {
        Ok(self.list_image_ids()?.into_iter().map(|(_, name)| name).collect())
    }

    /// `(id, name)` of every image `rbd ls` lists: the pool directory's images, and images a
    /// remove left in the trash as "removing" (under the name they had).
    pub fn list_image_ids(&self) -> Result<Vec<(String, String)>, RbdError> {
        let mut capacity: usize = 64;
        loop {
            let mut specs: Vec<crate::ffi::rbd_image_spec_t> = Vec::with_capacity(capacity);
            let mut count = capacity;
            // SAFETY: `specs` has room for `count` entries; librbd writes at most that many and
            // sets `count` to the number written (or needed, with -ERANGE).
            let ret = unsafe { crate::ffi::rbd_list2(self.raw(), specs.as_mut_ptr(), &mut count) };
            if ret == -libc::ERANGE {
                capacity = count.max(capacity * 2);
                continue;
            }
            check(ret.into(), "list images", || self.name.clone())?;
            // SAFETY: librbd initialised the first `count` entries.
            unsafe { specs.set_len(count) };
            let specs_out = specs.iter().map(|s| (text(s.id), text(s.name))).collect();
            // SAFETY: releases exactly the entries librbd filled in.
            unsafe { crate::ffi::rbd_image_spec_list_cleanup(specs.as_mut_ptr(), count) };
            return Ok(specs_out);
        }
    }

    /// Opens an image for reading and writing (or at a snapshot, read-only).
    pub fn open(&self, name: &str, snapshot: Option<&str>) -> Result<Image<'_>, RbdError> {
        Image::open(self, name, snapshot, false)
    }

    /// Opens an image read-only: no watch on the header, so it needs only read caps.
    pub fn open_read_only(&self, name: &str, snapshot: Option<&str>) -> Result<Image<'_>, RbdError> {
        Image::open(self, name, snapshot, true)
    }

    /// Creates a copy-on-write clone of a protected snapshot (or any snapshot with clone v2).
    pub fn clone_image(
        &self,
        parent: &SnapshotRef<'_>,
        child: &str,
        opts: &ImageOptions,
    ) -> Result<(), RbdError> {
        let p_name = cstring("image name", parent.image)?;
        let p_snap = cstring("snapshot name", parent.snapshot)?;
        let c_name = cstring("image name", child)?;
        let raw_opts = opts.to_raw()?;
        // SAFETY: both ioctxs live for the call; strings and options outlive it.
        let ret = unsafe {
            crate::ffi::rbd_clone3(
                parent.pool.raw(),
                p_name.as_ptr(),
                p_snap.as_ptr(),
                self.raw(),
                c_name.as_ptr(),
                raw_opts.0,
            )
        };
        check(ret.into(), "clone image", || {
            format!(
                "{}@{} -> {}",
                parent.pool.spec(parent.image),
                parent.snapshot,
                self.spec(child)
            )
        })
        .map(|_| ())
    }
}

/// A string librbd handed out (empty for null), copied. The caller copies every string of a
/// listing before the listing's cleanup call.
pub(crate) fn text(p: *const libc::c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: librbd hands out NUL-terminated strings it owns until the matching cleanup call,
    // which every caller makes only after copying them here.
    unsafe { std::ffi::CStr::from_ptr(p) }
        .to_string_lossy()
        .into_owned()
}

pub(crate) fn cstring(what: &'static str, name: &str) -> Result<CString, RbdError> {
    CString::new(name).map_err(|_| RbdError::InvalidName {
        what,
        name: name.to_string(),
    })
}
