//! Asynchronous writes to one image (librbd aio), as `rbd import` writes: several in flight
//! through one handle. Several handles writing one image with the exclusive-lock feature pass
//! the lock back and forth on every write (measured: a 256 MiB restore took 20.7 s with four
//! handles, 5.3 s with one synchronous handle, 1.5 s for `rbd import`).
#![allow(unsafe_code)]

use std::collections::VecDeque;
use std::ptr;

use crate::error::{RbdError, check};
use crate::ffi;
use crate::image::Image;

/// One submitted write: its completion, and the buffer librbd reads until it completes.
struct InFlight {
    completion: ffi::rbd_completion_t,
    _data: Vec<u8>,
}

/// Writes to an image with up to `depth` writes in flight. Each buffer is owned until its
/// write completes; [`AioWriter::finish`] waits for all and flushes. Dropping the writer
/// waits for what is in flight (never frees a buffer librbd may still read).
pub struct AioWriter<'i, 'p> {
    image: &'i mut Image<'p>,
    depth: usize,
    pending: VecDeque<InFlight>,
}

impl<'i, 'p> AioWriter<'i, 'p> {
    /// A writer to `image` keeping at most `depth` (at least 1) writes in flight.
    pub fn new(image: &'i mut Image<'p>, depth: usize) -> Self {
        Self {
            image,
            depth: depth.max(1),
            pending: VecDeque::new(),
        }
    }

    /// Submits `data` to be written at byte `offset`, first waiting for the oldest write when
    /// `depth` are in flight. A failed earlier write is returned here.
    pub fn write(&mut self, offset: u64, data: Vec<u8>) -> Result<(), RbdError> {
        while self.pending.len() >= self.depth {
            self.wait_oldest()?;
        }
        let mut completion: ffi::rbd_completion_t = ptr::null_mut();
        // SAFETY: no callback; librbd stores the new completion in `completion`.
        let ret = unsafe { ffi::rbd_aio_create_completion(ptr::null_mut(), None, &mut completion) };
        check(ret.into(), "create aio completion", || self.image.spec())?;
        // SAFETY: live handle; `data` stays alive and unmoved on the heap (owned by `pending`)
        // until the completion is waited for.
        let ret = unsafe {
            ffi::rbd_aio_write(
                self.image.raw,
                offset,
                data.len(),
                data.as_ptr().cast(),
                completion,
            )
        };
        if ret < 0 {
            // SAFETY: the completion was not submitted; released once.
            unsafe { ffi::rbd_aio_release(completion) };
            check(ret.into(), "write image", || self.image.spec())?;
        }
        self.pending.push_back(InFlight {
            completion,
            _data: data,
        });
        Ok(())
    }

    /// Waits for every write, then flushes the image.
    pub fn finish(mut self) -> Result<(), RbdError> {
        while !self.pending.is_empty() {
            self.wait_oldest()?;
        }
        self.image.flush()
    }

    fn wait_oldest(&mut self) -> Result<(), RbdError> {
        let Some(w) = self.pending.pop_front() else {
            return Ok(());
        };
        // SAFETY: a submitted completion, waited for and released exactly once; its buffer
        // (`w._data`) is dropped only after the wait.
        let ret = unsafe {
            ffi::rbd_aio_wait_for_complete(w.completion);
            let ret = ffi::rbd_aio_get_return_value(w.completion);
            ffi::rbd_aio_release(w.completion);
            ret
        };
        drop(w);
        check(ret as i64, "write image", || self.image.spec()).map(|_| ())
    }
}

impl Drop for AioWriter<'_, '_> {
    fn drop(&mut self) {
        while !self.pending.is_empty() {
            let _ = self.wait_oldest();
        }
    }
}
