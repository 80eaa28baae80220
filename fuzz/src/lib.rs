//! What the fuzz targets share: an allocator that turns one oversized allocation into a crash
//! libFuzzer records.
//!
//! libFuzzer's own `-malloc_limit_mb` needs a sanitizer's allocator hooks, which the stable
//! toolchain does not have; `-rss_limit_mb` still bounds the whole process.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Largest single allocation a target may make, in bytes (`GREGOR_FUZZ_MALLOC_LIMIT_MB`,
/// default 512). Inputs are at most a few KiB: anything near this is a size taken from the
/// input without a bound.
static MALLOC_LIMIT: AtomicUsize = AtomicUsize::new(0);

fn malloc_limit() -> usize {
    let limit = MALLOC_LIMIT.load(Ordering::Relaxed);
    if limit != 0 {
        return limit;
    }
    // Read once; std::env allocates, which is fine here (small).
    let mb = std::env::var("GREGOR_FUZZ_MALLOC_LIMIT_MB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(512);
    let limit = mb.max(1) << 20;
    MALLOC_LIMIT.store(limit, Ordering::Relaxed);
    limit
}

/// The system allocator, aborting (a crash to libFuzzer, which saves the input) on an
/// allocation over the limit instead of letting it exhaust memory.
pub struct BoundedAlloc;

static IN_LIMIT_LOOKUP: AtomicUsize = AtomicUsize::new(0);

impl BoundedAlloc {
    fn check(&self, size: usize) {
        // The first call reads the environment, which allocates: let those through.
        if IN_LIMIT_LOOKUP.load(Ordering::Relaxed) != 0 {
            return;
        }
        IN_LIMIT_LOOKUP.store(1, Ordering::Relaxed);
        let limit = malloc_limit();
        IN_LIMIT_LOOKUP.store(0, Ordering::Relaxed);
        if size > limit {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(
                err,
                "==gregor-fuzz== allocation of {size} bytes exceeds the {limit}-byte limit"
            );
            std::process::abort();
        }
    }
}

unsafe impl GlobalAlloc for BoundedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.check(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.check(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.check(new_size);
        System.realloc(ptr, layout, new_size)
    }
}
