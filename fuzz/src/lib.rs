//! What every fuzz target shares: an allocator that aborts on any single allocation over
//! [`LIMIT`], so that a length read from untrusted bytes sizing an allocation is a crash the
//! fuzzer reports (libFuzzer's own `-malloc_limit_mb` needs a sanitizer's malloc hooks, which a
//! stable `--sanitizer none` build lacks). Each target links it with `use lifeboat_fuzz as _;`.

use std::alloc::{GlobalAlloc, Layout, System};

/// The largest single allocation a target may make: 1 GiB.
pub const LIMIT: usize = 1 << 30;

/// [`System`], refusing allocations over [`LIMIT`] by aborting (libFuzzer saves the input).
pub struct Limited;

impl Limited {
    fn check(size: usize) {
        if size > LIMIT {
            eprintln!("==lifeboat-fuzz== allocation of {size} bytes exceeds the {LIMIT}-byte limit");
            std::process::abort();
        }
    }
}

// SAFETY: every call is passed to `System` unchanged after the size check.
unsafe impl GlobalAlloc for Limited {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::check(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::check(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::check(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Limited = Limited;
