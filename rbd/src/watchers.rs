//! Who has an image open: its watchers (`rbd status`). A mapped image, a client writing to it,
//! or a client that ended without closing it (its watch lapses after the OSDs'
//! `osd_client_watch_timeout`, 30 s by default) each hold one; librbd refuses to remove an
//! image while any does (`EBUSY`).
#![allow(unsafe_code)]

use std::ffi::CStr;

use crate::error::{RbdError, check};
use crate::ffi;
use crate::image::Image;

/// One watch on an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watcher {
    /// The client's address (`127.0.0.1:0/2873411`).
    pub address: String,
    /// The client's global id: the `N` of `client.N`.
    pub client_id: i64,
    /// The watch's cookie.
    pub cookie: u64,
}

impl std::fmt::Display for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "client.{} at {}", self.client_id, self.address)
    }
}

impl Image<'_> {
    /// The image's watchers, this handle's own watch included (librbd watches every image it
    /// opens read-write).
    pub fn watchers(&self) -> Result<Vec<Watcher>, RbdError> {
        let mut capacity: usize = 4;
        loop {
            let mut buf: Vec<ffi::rbd_image_watcher_t> = Vec::with_capacity(capacity);
            let mut count = capacity;
            // SAFETY: `buf` has room for `count` entries; librbd writes at most that many.
            let ret = unsafe { ffi::rbd_watchers_list(self.raw, buf.as_mut_ptr(), &mut count) };
            if ret == -libc::ERANGE {
                capacity = count.max(capacity * 2);
                continue;
            }
            check(ret.into(), "list watchers", || self.spec())?;
            // SAFETY: on success librbd initialised `count` entries.
            unsafe { buf.set_len(count) };
            let watchers = buf
                .iter()
                .map(|w| Watcher {
                    // SAFETY: a NUL-terminated string owned by librbd until the cleanup below.
                    address: unsafe { CStr::from_ptr(w.addr) }.to_string_lossy().into_owned(),
                    client_id: w.id,
                    cookie: w.cookie,
                })
                .collect();
            // SAFETY: frees the addresses librbd allocated for these `count` entries, once.
            unsafe { ffi::rbd_watchers_list_cleanup(buf.as_mut_ptr(), count) };
            return Ok(watchers);
        }
    }
}
