//! Boot-time memory for the demo itself (checker bitmaps, per-CPU work
//! arrays, allocator adapters): a bump allocator over the RAM right above the
//! kernel image. It is closed before the heap ranges are computed, so
//! everything from its end upward goes to the allocators under test.

use crate::arch::boot::Range;
use core::sync::atomic::{AtomicUsize, Ordering};

static NEXT: AtomicUsize = AtomicUsize::new(0);
static END: AtomicUsize = AtomicUsize::new(0);
static CLOSED: AtomicUsize = AtomicUsize::new(0);

/// Starts bumping at `from` inside RAM range `ram`.
pub fn init(from: u64, ram: Range) {
    assert!(
        ram.start <= from && from < ram.end,
        "kernel image not inside RAM {ram:x?}"
    );
    NEXT.store(from as usize, Ordering::Relaxed);
    END.store(ram.end as usize, Ordering::Relaxed);
}

/// `bytes` zeroed bytes aligned to `align` (BSP only, before `close`).
pub fn alloc_zeroed(bytes: usize, align: usize) -> *mut u8 {
    assert!(
        CLOSED.load(Ordering::Relaxed) == 0,
        "early allocation after the heap took RAM"
    );
    let start = NEXT.load(Ordering::Relaxed).next_multiple_of(align);
    let end = start + bytes;
    assert!(
        end <= END.load(Ordering::Relaxed),
        "early memory exhausted ({bytes} B wanted)"
    );
    NEXT.store(end, Ordering::Relaxed);
    // SAFETY: `start..end` is RAM above the kernel image that no one else
    // uses: the heap ranges start at `close()`'s result, above it.
    unsafe { core::ptr::write_bytes(start as *mut u8, 0, bytes) };
    start as *mut u8
}

/// Moves `value` into early memory for the rest of the run.
pub fn leak<T>(value: T) -> &'static mut T {
    let p = alloc_zeroed(core::mem::size_of::<T>(), core::mem::align_of::<T>()) as *mut T;
    // SAFETY: fresh, aligned, large enough and never handed out again.
    unsafe {
        p.write(value);
        &mut *p
    }
}

/// A zeroed slice of `n` `T`s, for types whose all-zero bytes are valid
/// (integers, atomics, plain structs of them).
///
/// # Safety
/// All-zero bytes must be a valid `T`.
pub unsafe fn zeroed_slice<T>(n: usize) -> &'static mut [T] {
    let p = alloc_zeroed(
        n * core::mem::size_of::<T>(),
        core::mem::align_of::<T>().max(64),
    );
    // SAFETY: fresh zeroed memory, valid as `T` by the caller's promise.
    unsafe { core::slice::from_raw_parts_mut(p as *mut T, n) }
}

/// Ends early allocation; returns the first byte it did not use (page-aligned).
pub fn close() -> u64 {
    CLOSED.store(1, Ordering::Relaxed);
    NEXT.load(Ordering::Relaxed).next_multiple_of(4096) as u64
}
