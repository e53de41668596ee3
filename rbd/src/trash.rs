//! The RBD trash (`rbd trash …` in the CLI): images moved aside before removal. Besides the
//! images a user defers, librbd's own remove passes every image through it — it moves the
//! image to the trash as source "removing", deletes its data objects, then removes the trash
//! entry — so a client killed during a remove leaves a "removing" entry that `rbd ls` (and
//! [`Pool::list_image_ids`]) still lists under the old name and its id, that nobody can open,
//! that the trash listings (`rbd_trash_list`, `rbd trash ls --all`) leave out, and that only a
//! forced trash remove by id finishes (verified against Ceph 16, `tests/tests/rbd_trash.rs`).
#![allow(unsafe_code)]

use crate::cluster::{Pool, cstring, text};
use crate::error::{RbdError, check};
use crate::ffi;

/// Why an image is in the trash (librbd's `rbd_trash_image_source_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrashSource {
    /// Moved by a user (`rbd trash mv`).
    User,
    /// Moved by rbd-mirror.
    Mirroring,
    /// The source of a live migration.
    Migration,
    /// Part of a remove that has not finished: librbd's own remove moved it here.
    Removing,
    /// A parent image moved with its clone.
    UserParent,
    /// A source this binding does not know (a newer librbd).
    Other(i32),
}

impl TrashSource {
    fn from_raw(raw: libc::c_int) -> Self {
        match raw {
            ffi::RBD_TRASH_IMAGE_SOURCE_USER => Self::User,
            ffi::RBD_TRASH_IMAGE_SOURCE_MIRRORING => Self::Mirroring,
            ffi::RBD_TRASH_IMAGE_SOURCE_MIGRATION => Self::Migration,
            ffi::RBD_TRASH_IMAGE_SOURCE_REMOVING => Self::Removing,
            ffi::RBD_TRASH_IMAGE_SOURCE_USER_PARENT => Self::UserParent,
            other => Self::Other(other),
        }
    }
}

/// One image in a pool's trash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrashEntry {
    /// The image's internal id: what [`Pool::trash_remove`] takes.
    pub id: String,
    /// The name the image had.
    pub name: String,
    /// Why it is there.
    pub source: TrashSource,
}

impl Pool {
    /// The images in this pool's trash, as `rbd trash ls --all` lists them: librbd leaves out
    /// the "removing" entries of unfinished removes (find those with
    /// [`Pool::list_image_ids`]: listed, but with no directory entry).
    pub fn trash_list(&self) -> Result<Vec<TrashEntry>, RbdError> {
        let mut capacity: usize = 16;
        loop {
            let mut raw: Vec<ffi::rbd_trash_image_info_t> = Vec::with_capacity(capacity);
            let mut count = capacity;
            // SAFETY: `raw` has room for `count` entries; librbd writes at most that many and
            // sets `count` to the number written (or needed, with -ERANGE).
            let ret = unsafe { ffi::rbd_trash_list(self.raw(), raw.as_mut_ptr(), &mut count) };
            if ret == -libc::ERANGE {
                capacity = count.max(capacity * 2);
                continue;
            }
            check(ret.into(), "list trash", || self.name().to_string())?;
            // SAFETY: librbd initialised the first `count` entries.
            unsafe { raw.set_len(count) };
            let entries = raw
                .iter()
                .map(|e| TrashEntry {
                    id: text(e.id),
                    name: text(e.name),
                    source: TrashSource::from_raw(e.source),
                })
                .collect();
            // SAFETY: releases exactly the entries librbd filled in, once.
            unsafe { ffi::rbd_trash_list_cleanup(raw.as_mut_ptr(), count) };
            return Ok(entries);
        }
    }

    /// Removes trash entry `id` and the image's data. `force` also removes an entry whose
    /// deferment has not ended or whose source is not the user (a "removing" entry needs it).
    /// Fails with `ENOENT` if absent, `EBUSY`/`ENOTEMPTY` if the image still has watchers,
    /// snapshots or clones.
    pub fn trash_remove(&self, id: &str, force: bool) -> Result<(), RbdError> {
        let c_id = cstring("image id", id)?;
        // SAFETY: the ioctx lives as long as `self`; the id outlives the call.
        let ret = unsafe { ffi::rbd_trash_remove(self.raw(), c_id.as_ptr(), force) };
        check(ret.into(), "remove from trash", || self.spec(id)).map(|_| ())
    }
}
