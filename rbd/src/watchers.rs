//! Who has an image open: its watchers (`rbd status`). A mapped image, a client writing to it,
//! or a client that ended without closing it (its watch lapses after the OSDs'
//! `osd_client_watch_timeout`, 30 s by default) each hold one; librbd refuses to remove an
//! image while any does (`EBUSY`). And who holds its lock: `rbd_lock` on its header (`rbd lock
//! ls`), which the exclusive-lock feature's writer takes and a crashed one leaves behind until
//! another client breaks it (once the holder's watch has lapsed).
#![allow(unsafe_code)]

use std::ffi::CStr;

use crate::cluster::{Pool, cstring};
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

/// One holder of an image's lock (`rbd lock ls`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locker {
    /// The holder's entity name (`client.4204`).
    pub client: String,
    /// The lock cookie (`auto 140691518863520`).
    pub cookie: String,
    /// The holder's address as `rbd lock ls` prints it (`127.0.0.1:0/2420385409`).
    pub address: String,
}

impl std::fmt::Display for Locker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at {}", self.client, self.address)
    }
}

/// `127.0.0.1:0/2420385409` of `v1:127.0.0.1:0/2420385409`.
fn bare_address(address: &str) -> &str {
    match address.split_once(':') {
        Some(("v1" | "v2" | "any", rest)) => rest,
        _ => address,
    }
}

impl Pool {
    /// Holders of the lock `rbd_lock` on the header of the image with id `id`: the
    /// exclusive-lock feature's holder (one at most), or those of advisory locks taken with
    /// `rbd lock add` (several when shared). Empty when unlocked or when the image has no
    /// header. Read from the header object without opening the image.
    ///
    /// # Errors
    /// [`RbdError::Ceph`] with the errno when the OSD refuses the read.
    pub fn image_lockers(&self, id: &str) -> Result<Vec<Locker>, RbdError> {
        let header = cstring("image id", &format!("rbd_header.{id}"))?;
        match self.ioctx().lockers(&header, c"rbd_lock") {
            Ok(l) => Ok(l
                .into_iter()
                .map(|(client, cookie, address)| Locker {
                    client,
                    cookie,
                    // librados tags the address with its type (`v1:`, `v2:`, `any:`); `rbd lock
                    // ls` and the watcher list print it bare.
                    address: bare_address(&address).to_string(),
                })
                .collect()),
            Err(libc::ENOENT) => Ok(Vec::new()),
            Err(errno) => Err(RbdError::Ceph {
                op: "list lock holders",
                target: self.spec(id),
                errno,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::bare_address;

    #[test]
    fn addresses_lose_their_type_tag_only() {
        assert_eq!(bare_address("v1:127.0.0.1:0/24203"), "127.0.0.1:0/24203");
        assert_eq!(bare_address("any:127.0.0.1:0/24203"), "127.0.0.1:0/24203");
        assert_eq!(bare_address("127.0.0.1:0/24203"), "127.0.0.1:0/24203");
        assert_eq!(bare_address("[::1]:0/24203"), "[::1]:0/24203");
    }
}
