//! A connection to a Ceph cluster and the pools (I/O contexts) opened through it.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::path::Path;
use std::sync::Arc;

use crate::error::{RbdError, check};
use crate::image::{Image, ImageOptions, SnapshotRef};

/// A librados cluster handle.
///
/// librados handles are documented as thread-safe; the `ceph` crate only marks them `Sync`,
/// so this wrapper adds `Send` to let async code move them across tasks.
struct Handle(ceph::ceph::Rados);

// SAFETY: a `rados_t` may be used from any thread (librados is thread-safe); the handle is
// only shut down in `Drop`, which runs once, after every `Pool` holding an `Arc` is gone.
unsafe impl Send for Handle {}

/// A connected Ceph cluster. Cheap to clone; the connection closes with the last clone.
#[derive(Clone)]
pub struct Cluster {
    handle: Arc<Handle>,
}

impl Cluster {
    /// Connects as `user` (without the `client.` prefix) using a `ceph.conf` that names the
    /// monitors and the keyring.
    pub fn connect(user: &str, config: &Path) -> Result<Self, RbdError> {
        let config_text = config.display().to_string();
        let rados = ceph::ceph::connect_to_ceph(user, &config_text).map_err(|e| RbdError::Connect {
            user: user.to_string(),
            config: config_text.clone(),
            message: e.to_string(),
        })?;
        Ok(Self {
            handle: Arc::new(Handle(rados)),
        })
    }

    /// Opens an I/O context on `pool`.
    pub fn pool(&self, pool: &str) -> Result<Pool, RbdError> {
        let ioctx = self.handle.0.get_rados_ioctx(pool).map_err(|e| RbdError::Ceph {
            op: "open pool",
            target: pool.to_string(),
            errno: radoserr_errno(&e),
        })?;
        Ok(Pool {
            ioctx,
            name: pool.to_string(),
            _cluster: self.clone(),
        })
    }

    /// Names of all pools in the cluster.
    pub fn pools(&self) -> Result<Vec<String>, RbdError> {
        self.handle.0.rados_pools().map_err(|e| RbdError::Ceph {
            op: "list pools",
            target: "cluster".to_string(),
            errno: radoserr_errno(&e),
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
        let (out, _status) = self
            .handle
            .0
            .ceph_mon_command_without_data(command)
            .map_err(|e| RbdError::Ceph {
                op: "mon command",
                target: command["prefix"].as_str().unwrap_or("?").to_string(),
                errno: radoserr_errno(&e),
            })?;
        Ok(out)
    }
}

pub(crate) fn radoserr_errno(e: &ceph::error::RadosError) -> i32 {
    match e {
        ceph::error::RadosError::ApiError(errno) => *errno as i32,
        _ => libc::EIO,
    }
}

/// An I/O context on one pool: the place images live.
pub struct Pool {
    // Field order matters: the ioctx must be destroyed before the cluster handle.
    ioctx: ceph::ceph::IoCtx,
    name: String,
    _cluster: Cluster,
}

impl Pool {
    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The pool's numeric id (as group namespaces and `ceph df` name pools).
    pub fn id(&self) -> i64 {
        // SAFETY: the ioctx is live for `self`'s lifetime; the call only reads it.
        unsafe { crate::ffi::rados_ioctx_get_id(self.raw()) }
    }

    pub(crate) fn ioctx(&self) -> &ceph::ceph::IoCtx {
        &self.ioctx
    }

    pub(crate) fn raw(&self) -> crate::ffi::rados_ioctx_t {
        *self.ioctx.inner()
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
