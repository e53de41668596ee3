//! The two librados handles everything else hangs off: the cluster connection (`rados_t`) and
//! a pool's I/O context (`rados_ioctx_t`), each released exactly once on drop, and the few
//! plain librados calls Lifeboat makes through them (pool list, monitor command, whole-object
//! read/write/remove). Declarations come from the `ceph` crate's raw bindings
//! (`ceph::rados`, `rados/librados.h`).
//!
//! Written here rather than through `ceph::ceph::connect_to_ceph` because that leaves the
//! half-made handle (its log, admin-socket and service threads) running when the config
//! cannot be read or the monitors refuse, and has no place to set options before connecting.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::path::Path;
use std::ptr;

use ceph::rados::{self as sys, rados_ioctx_t, rados_t};

use crate::cluster::cstring;
use crate::error::errno_text;

/// Options Lifeboat sets where the config file left librados' own default: `(option,
/// librados' default, Lifeboat's)`, compared as numbers where both parse as one.
///
/// - `client_mount_timeout`: the first contact with the monitors gives up after 60 s instead
///   of 5 minutes (a wrong monitor address or key answers within a minute).
/// - `rbd_invalidate_object_map_on_timeout`: where the file sets op timeouts
///   (`rados_osd_op_timeout`), librbd would mark an image's object map invalid when an update
///   times out (ceph PR #34059), after which every incremental backup falls back to a slow diff
///   until `rbd object-map rebuild`: turned off.
///
/// Operation timeouts themselves stay librados' (none: an operation waits for the cluster).
/// With them set (60/120 s) the kill campaign's backups aborted inside librados twice in
/// three runs (`std::system_error` in an `io_context_pool` thread), against none in a dozen
/// here without (and once in a CI run); a file that wants them sets `rados_osd_op_timeout`
/// and `rados_mon_op_timeout` itself.
///
/// A value set through the API outranks the file and the monitors' central config (`ceph
/// config set client …`), so only the file chooses other values: one that differs from
/// librados' default is kept.
pub(crate) const DEFAULT_OPTIONS: [(&str, &str, &str); 2] = [
    ("client_mount_timeout", "300", "60"),
    ("rbd_invalidate_object_map_on_timeout", "true", "false"),
];

/// Two option values are the same: as numbers (`300` = `300.000000`), else as text.
fn same_value(a: &str, b: &str) -> bool {
    match (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a.trim().eq_ignore_ascii_case(b.trim()),
    }
}

/// A connected `rados_t`; `rados_shutdown` on drop.
pub(crate) struct RadosHandle(rados_t);

// SAFETY: librados documents a `rados_t` as usable from any thread at once; it is shut down
// only in `Drop`, which runs once, when no borrow of the handle is left.
unsafe impl Send for RadosHandle {}
// SAFETY: as above: every call made through `&RadosHandle` is one librados makes thread-safe.
unsafe impl Sync for RadosHandle {}

impl Drop for RadosHandle {
    fn drop(&mut self) {
        // SAFETY: `self.0` came from `rados_create` and is shut down exactly once, here.
        unsafe { sys::rados_shutdown(self.0) }
    }
}

/// A C string for the connect path's text errors.
fn c(what: &'static str, s: &str) -> Result<CString, String> {
    cstring(what, s).map_err(|e| e.to_string())
}

impl RadosHandle {
    /// Creates a handle for `client.<user>`, reads `config`, applies [`DEFAULT_OPTIONS`] where
    /// it left librados' defaults, and connects. `CEPH_ARGS` is not read: a shell set up for
    /// another cluster must not redirect a restore (its `-m`/`--keyring` would replace the
    /// file's monitors and key). On failure the handle is shut down before this returns and
    /// the message names the step (`read config`, `connect`) and librados' errno.
    pub(crate) fn connect(user: &str, config: &Path) -> Result<Self, String> {
        let c_user = c("user", user)?;
        let c_config = c("config path", &config.display().to_string())?;
        let mut raw: rados_t = ptr::null_mut();
        // SAFETY: librados writes a new handle into `raw`; the id string outlives the call.
        let ret = unsafe { sys::rados_create(&mut raw, c_user.as_ptr()) };
        if ret < 0 || raw.is_null() {
            return Err(format!("create a librados handle: {}", errno_text(-ret)));
        }
        // From here on the handle is shut down on every path out.
        let handle = RadosHandle(raw);
        // SAFETY: live handle; the path outlives the call.
        let ret = unsafe { sys::rados_conf_read_file(handle.0, c_config.as_ptr()) };
        if ret < 0 {
            return Err(format!("read config: {}", errno_text(-ret)));
        }
        for (option, librados_default, ours) in DEFAULT_OPTIONS {
            let set = handle
                .config(option)
                .map_err(|e| format!("get {option}: {}", errno_text(e)))?;
            if !same_value(&set, librados_default) {
                continue;
            }
            let (o, v) = (c("option", option)?, c("value", ours)?);
            // SAFETY: live, unconnected handle; both strings outlive the call.
            let ret = unsafe { sys::rados_conf_set(handle.0, o.as_ptr(), v.as_ptr()) };
            if ret < 0 {
                return Err(format!("set {option}: {}", errno_text(-ret)));
            }
        }
        // SAFETY: live, configured handle.
        let ret = unsafe { sys::rados_connect(handle.0) };
        if ret < 0 {
            return Err(format!("connect: {}", errno_text(-ret)));
        }
        Ok(handle)
    }

    /// The value in force of config option `option` (`rados_osd_op_timeout`, …);
    /// `Err(errno)` (`ENOENT`: no such option).
    pub(crate) fn config(&self, option: &str) -> Result<String, i32> {
        let name = CString::new(option).map_err(|_| libc::EINVAL)?;
        let mut len = 256usize;
        loop {
            let mut buf = vec![0u8; len];
            // SAFETY: live handle; `buf` is writable for `len` bytes; librados writes a
            // NUL-terminated value or answers ENAMETOOLONG when it does not fit.
            let ret = unsafe { sys::rados_conf_get(self.0, name.as_ptr(), buf.as_mut_ptr().cast(), len) };
            if ret == -libc::ENAMETOOLONG && len < 1 << 20 {
                len *= 4;
                continue;
            }
            if ret < 0 {
                return Err(-ret);
            }
            let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
            buf.truncate(end);
            return Ok(String::from_utf8_lossy(&buf).into_owned());
        }
    }

    /// Opens an I/O context on `pool`, in RADOS namespace `namespace` when given (the
    /// default namespace otherwise); `Err(errno)` (`ENOENT`: no such pool).
    pub(crate) fn ioctx(&self, pool: &str, namespace: Option<&str>) -> Result<IoCtx, i32> {
        let name = CString::new(pool).map_err(|_| libc::EINVAL)?;
        let namespace = namespace
            .map(|n| CString::new(n).map_err(|_| libc::EINVAL))
            .transpose()?;
        let mut raw: rados_ioctx_t = ptr::null_mut();
        // SAFETY: live handle; librados writes the new context into `raw`.
        let ret = unsafe { sys::rados_ioctx_create(self.0, name.as_ptr(), &mut raw) };
        if ret < 0 || raw.is_null() {
            return Err(if ret < 0 { -ret } else { libc::EIO });
        }
        let ioctx = IoCtx(raw);
        if let Some(namespace) = &namespace {
            // SAFETY: the context is live and not yet shared; librados copies the name.
            unsafe { sys::rados_ioctx_set_namespace(ioctx.0, namespace.as_ptr()) };
        }
        Ok(ioctx)
    }

    /// Names of every pool; `Err(errno)`.
    pub(crate) fn pool_list(&self) -> Result<Vec<String>, i32> {
        let mut len = 4096usize;
        loop {
            let mut buf = vec![0u8; len];
            // SAFETY: live handle; `buf` is writable for `len` bytes. librados returns the
            // length the list needs, filling `buf` only when that fits.
            let ret = unsafe { sys::rados_pool_list(self.0, buf.as_mut_ptr().cast(), len) };
            if ret < 0 {
                return Err(-ret);
            }
            let needed = ret as usize;
            if needed > len {
                len = needed;
                continue;
            }
            // NUL-separated names, ending with an empty one.
            buf.truncate(needed);
            return Ok(buf
                .split(|b| *b == 0)
                .filter(|n| !n.is_empty())
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .collect());
        }
    }

    /// Sends one monitor command (JSON text) and returns its output; on failure the errno
    /// and the monitor's status text.
    pub(crate) fn mon_command(&self, command: &str) -> Result<Vec<u8>, (i32, String)> {
        let cmd =
            CString::new(command).map_err(|_| (libc::EINVAL, "command contains a NUL byte".to_string()))?;
        let mut cmds = [cmd.as_ptr()];
        let (mut out, mut out_len): (*mut libc::c_char, usize) = (ptr::null_mut(), 0);
        let (mut status, mut status_len): (*mut libc::c_char, usize) = (ptr::null_mut(), 0);
        // SAFETY: live handle; one command string that outlives the call; no input buffer;
        // librados allocates `out` and `status`, freed below after they are copied.
        let ret = unsafe {
            sys::rados_mon_command(
                self.0,
                cmds.as_mut_ptr(),
                1,
                ptr::null(),
                0,
                &mut out,
                &mut out_len,
                &mut status,
                &mut status_len,
            )
        };
        let copy = |p: *mut libc::c_char, len: usize| -> Vec<u8> {
            if p.is_null() || len == 0 {
                return Vec::new();
            }
            // SAFETY: librados set `p` to `len` readable bytes it owns until rados_buffer_free.
            unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) }.to_vec()
        };
        let (output, text) = (copy(out, out_len), copy(status, status_len));
        for p in [out, status] {
            if !p.is_null() {
                // SAFETY: a buffer librados allocated in this call, freed once, after its copy.
                unsafe { sys::rados_buffer_free(p) };
            }
        }
        if ret < 0 {
            return Err((-ret, String::from_utf8_lossy(&text).into_owned()));
        }
        Ok(output)
    }
}

/// A pool's `rados_ioctx_t`; `rados_ioctx_destroy` on drop. Its [`RadosHandle`] must outlive
/// it ([`crate::Pool`] holds both, in that drop order).
pub(crate) struct IoCtx(rados_ioctx_t);

// SAFETY: librados I/O contexts may be used from several threads for I/O; Lifeboat never
// changes a context's state (snapshot, namespace, locator) once it is shared (the namespace is
// set in `RadosHandle::ioctx`, before it is returned).
unsafe impl Send for IoCtx {}
// SAFETY: as above.
unsafe impl Sync for IoCtx {}

impl Drop for IoCtx {
    fn drop(&mut self) {
        // SAFETY: created by rados_ioctx_create, destroyed exactly once, here.
        unsafe { sys::rados_ioctx_destroy(self.0) }
    }
}

impl IoCtx {
    pub(crate) fn raw(&self) -> rados_ioctx_t {
        self.0
    }

    /// Up to `max` bytes of object `name` from offset 0; `Err(errno)` (`ENOENT`: absent).
    pub(crate) fn read(&self, name: &CStr, max: usize) -> Result<Vec<u8>, i32> {
        let mut buf = vec![0u8; max.max(1)];
        // SAFETY: live context; `buf` is writable for its whole length.
        let ret = unsafe { sys::rados_read(self.0, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if ret < 0 {
            return Err(-ret);
        }
        buf.truncate(ret as usize);
        Ok(buf)
    }

    /// Replaces object `name` with `data` in one atomic write; `Err(errno)`.
    pub(crate) fn write_full(&self, name: &CStr, data: &[u8]) -> Result<(), i32> {
        // SAFETY: live context; `data` is readable for its whole length.
        let ret = unsafe { sys::rados_write_full(self.0, name.as_ptr(), data.as_ptr().cast(), data.len()) };
        if ret < 0 { Err(-ret) } else { Ok(()) }
    }

    /// Removes object `name`; `Err(errno)` (`ENOENT`: absent).
    pub(crate) fn remove(&self, name: &CStr) -> Result<(), i32> {
        // SAFETY: live context; the name outlives the call.
        let ret = unsafe { sys::rados_remove(self.0, name.as_ptr()) };
        if ret < 0 { Err(-ret) } else { Ok(()) }
    }

    /// Holders of advisory lock `lock` on object `name` (`cls_lock`, what `rados lock info`
    /// shows) as `(client, cookie, address)`; `Err(errno)` (`ENOENT`: no such object).
    pub(crate) fn lockers(&self, name: &CStr, lock: &CStr) -> Result<Vec<(String, String, String)>, i32> {
        let mut cap = 256usize;
        loop {
            let (mut tag, mut clients, mut cookies, mut addrs) =
                (vec![0u8; cap], vec![0u8; cap], vec![0u8; cap], vec![0u8; cap]);
            let (mut tag_len, mut clients_len, mut cookies_len, mut addrs_len) = (cap, cap, cap, cap);
            let mut exclusive = 0;
            // SAFETY: live context; every buffer is writable for the length passed beside it,
            // and librados writes at most that much (or answers ERANGE with the lengths needed).
            let ret = unsafe {
                sys::rados_list_lockers(
                    self.0,
                    name.as_ptr(),
                    lock.as_ptr(),
                    &mut exclusive,
                    tag.as_mut_ptr().cast(),
                    &mut tag_len,
                    clients.as_mut_ptr().cast(),
                    &mut clients_len,
                    cookies.as_mut_ptr().cast(),
                    &mut cookies_len,
                    addrs.as_mut_ptr().cast(),
                    &mut addrs_len,
                )
            };
            if ret == -(libc::ERANGE as isize) {
                cap = [tag_len, clients_len, cookies_len, addrs_len, cap * 2]
                    .into_iter()
                    .max()
                    .unwrap_or(cap * 2);
                continue;
            }
            if ret < 0 {
                return Err(i32::try_from(-ret).unwrap_or(libc::EIO));
            }
            let field = |buf: &[u8], len: usize| -> Vec<String> {
                buf[..len.min(buf.len())]
                    .split(|b| *b == 0)
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect()
            };
            let (clients, cookies, addrs) = (
                field(&clients, clients_len),
                field(&cookies, cookies_len),
                field(&addrs, addrs_len),
            );
            return Ok((0..ret as usize)
                .map(|i| {
                    let at = |v: &Vec<String>| v.get(i).cloned().unwrap_or_default();
                    (at(&clients), at(&cookies), at(&addrs))
                })
                .collect());
        }
    }
}
