//! Direct calls to the `rbd` OSD class on an image's id and header objects, for the steps
//! where opening the image through librbd would cost far more than the step itself.
//!
//! Every librbd open builds a whole image context — a private copy of the client's
//! configuration (thousands of options), a watch on the header and, with exclusive-lock, a
//! lock round trip on the first write. A provisioner that only needs to know whether a name
//! is taken, or to stamp an image it has just created, would pay that several times per
//! volume; profiling the CSI driver under 16 parallel creates showed most of its CPU there.
//! The class methods used here (`get_id`, `dir_get_id`, `dir_remove_image`, `metadata_get`,
//! `metadata_set`, `trash_state_set`) are the ones librbd itself calls, with Ceph's encoding (little-endian `u32` length before every
//! string).
#![allow(unsafe_code)]

use crate::cluster::{Pool, cstring};
use crate::error::{RbdError, check};

impl Pool {
    /// The internal id of image `name`, or `None` when no image has that name: one small read
    /// of the image's id object, no image context.
    pub fn image_id(&self, name: &str) -> Result<Option<String>, RbdError> {
        match self.exec(&format!("rbd_id.{name}"), "get_id", &[], "get image id", name) {
            Ok(out) => decode_string(&out)
                .map(Some)
                .ok_or_else(|| self.bad_reply("get image id", name)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The id the pool's image directory (`rbd_directory`, what `rbd ls` lists) records for
    /// `name`, or `None` when it has no entry: one class call, without listing the pool.
    pub fn directory_id(&self, name: &str) -> Result<Option<String>, RbdError> {
        let mut input = Vec::new();
        encode_string(&mut input, name.as_bytes());
        match self.exec(
            "rbd_directory",
            "dir_get_id",
            &input,
            "look up image in directory",
            name,
        ) {
            Ok(out) => decode_string(&out)
                .map(Some)
                .ok_or_else(|| self.bad_reply("look up image in directory", name)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes the directory entry `name` → `id` and the image's id object: what is left of an
    /// image whose removal stopped after its header was deleted (librbd's own remove answers
    /// ENOENT for it). Absent is fine.
    pub fn remove_directory_entry(&self, name: &str, id: &str) -> Result<(), RbdError> {
        let mut input = Vec::new();
        encode_string(&mut input, name.as_bytes());
        encode_string(&mut input, id.as_bytes());
        match self.exec(
            "rbd_directory",
            "dir_remove_image",
            &input,
            "remove image from directory",
            name,
        ) {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        self.remove_object(&format!("rbd_id.{name}"))
    }

    /// Reads one image metadata value without opening the image: two small reads (the id
    /// object, then the header's metadata), no image context. `None` when the image or the key
    /// is absent.
    pub fn peek_image_metadata(&self, name: &str, key: &str) -> Result<Option<String>, RbdError> {
        let Some(id) = self.image_id(name)? else {
            return Ok(None);
        };
        let mut input = Vec::new();
        encode_string(&mut input, key.as_bytes());
        match self.exec(&header(&id), "metadata_get", &input, "get image metadata", name) {
            Ok(out) => decode_string(&out)
                .map(Some)
                .ok_or_else(|| self.bad_reply("get image metadata", name)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes image metadata without opening the image. Clients that have the image open are
    /// not told, so this is only for an image nobody has opened yet — the one just created.
    pub fn set_new_image_metadata(&self, name: &str, key: &str, value: &str) -> Result<(), RbdError> {
        let id = self.image_id(name)?.ok_or_else(|| RbdError::Ceph {
            op: "set image metadata",
            target: self.spec(name),
            errno: libc::ENOENT,
        })?;
        // A map<string, bufferlist> of one entry: count, key, value.
        let mut input = 1u32.to_le_bytes().to_vec();
        encode_string(&mut input, key.as_bytes());
        encode_string(&mut input, value.as_bytes());
        self.exec(&header(&id), "metadata_set", &input, "set image metadata", name)
            .map(|_| ())
    }

    /// Marks trash entry `id` as moved (state "normal") if it is still marked as being moved
    /// ("moving"): what librbd's own move does last, so a client killed between moving an image
    /// to the trash and that last step leaves an entry every trash remove refuses (EUCLEAN in
    /// Ceph 16). Succeeds when it is already "normal"; an error (`ESTALE`) in any other state,
    /// `ENOENT` when absent.
    pub fn trash_finish_move(&self, id: &str) -> Result<(), RbdError> {
        self.trash_set_state(id, TrashState::Normal, TrashState::Moving)
    }

    /// Sets trash entry `id`'s state to `state` if it is `expect` (the class method librbd's
    /// trash operations use to claim an entry). Only [`Pool::trash_finish_move`] needs it in
    /// shipped code; tests use it to put an entry in the state a crash leaves.
    pub fn trash_set_state(&self, id: &str, state: TrashState, expect: TrashState) -> Result<(), RbdError> {
        let mut input = Vec::new();
        encode_string(&mut input, id.as_bytes());
        input.push(state as u8);
        input.push(expect as u8);
        self.exec(
            "rbd_trash",
            "trash_state_set",
            &input,
            "set trash entry state",
            id,
        )
        .map(|_| ())
    }

    fn exec(
        &self,
        object: &str,
        method: &str,
        input: &[u8],
        op: &'static str,
        image: &str,
    ) -> Result<Vec<u8>, RbdError> {
        let c_object = cstring("object name", object)?;
        let c_method = cstring("class method", method)?;
        let mut capacity = 256usize;
        loop {
            let mut out = vec![0u8; capacity];
            // SAFETY: the ioctx lives as long as `self`; every pointer is valid for the length
            // passed with it, and librados writes at most `out.len()` bytes.
            let ret = unsafe {
                crate::ffi::rados_exec(
                    self.raw(),
                    c_object.as_ptr(),
                    c"rbd".as_ptr(),
                    c_method.as_ptr(),
                    input.as_ptr().cast(),
                    input.len(),
                    out.as_mut_ptr().cast(),
                    out.len(),
                )
            };
            if ret == -libc::ERANGE && capacity < 1 << 24 {
                capacity *= 16;
                continue;
            }
            let len = check(ret.into(), op, || self.spec(image))?;
            out.truncate(usize::try_from(len).unwrap_or(0));
            return Ok(out);
        }
    }

    fn bad_reply(&self, op: &'static str, image: &str) -> RbdError {
        RbdError::Ceph {
            op,
            target: self.spec(image),
            errno: libc::EBADMSG,
        }
    }
}

/// A trash entry's state (`cls::rbd::TrashImageState`, encoded as one byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum TrashState {
    /// In the trash, at rest.
    Normal = 0,
    /// Being moved to the trash (the move's last step has not run).
    Moving = 1,
    /// Being removed from the trash (its data objects are being deleted).
    Removing = 2,
    /// Being restored from the trash.
    Restoring = 3,
}

fn header(id: &str) -> String {
    format!("rbd_header.{id}")
}

fn encode_string(out: &mut Vec<u8>, s: &[u8]) {
    // Keys and values are far below 4 GiB; a longer one would be rejected by the OSD anyway.
    out.extend_from_slice(&u32::try_from(s.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(s);
}

fn decode_string(buf: &[u8]) -> Option<String> {
    let len = u32::from_le_bytes(buf.get(..4)?.try_into().ok()?) as usize;
    let bytes = buf.get(4..4 + len)?;
    Some(String::from_utf8_lossy(bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_round_trip_in_ceph_encoding() {
        let mut buf = Vec::new();
        encode_string(&mut buf, b"abc");
        assert_eq!(buf, [3, 0, 0, 0, b'a', b'b', b'c']);
        assert_eq!(decode_string(&buf).as_deref(), Some("abc"));
        assert_eq!(decode_string(&buf[..5]), None);
        assert_eq!(decode_string(&[]), None);
    }
}
