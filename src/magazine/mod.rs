//! Magazines (Bonwick & Adams, USENIX ATC 2001): small arrays of free
//! objects (or pages) that a CPU allocates from and frees into without any
//! atomic read-modify-write, and the lock-free *depot* that trades full and
//! empty magazines between CPUs.
//!
//! Each CPU holds, per cache class, a *loaded* and a *previous* magazine;
//! the second guarantees at least a magazine's worth of operations between
//! depot visits even when a workload oscillates at a boundary. Magazines come
//! from a type-stable pool built at init and never returned to the buddy
//! tree; the depot stacks link them by index with a version tag
//! ([`crate::stack`]), so a stale pop reads magazine metadata, never user
//! memory.

mod cache;
mod depot;
mod rounds;

pub(crate) use cache::CpuCache;
pub(crate) use depot::{Depot, DepotLimit, MagId, MagazinePool};
pub(crate) use rounds::Magazine;

use crate::slab::{self, MAX_SMALL, SMALL_CLASSES};
use crate::{PAGE_SHIFT, PAGE_SIZE};

/// Most rounds a magazine can hold; each class uses a capacity ≤ this.
pub const MAG_ROUNDS: usize = 32;

/// Block orders 0, 1, 2 (4, 8, 16 KiB) are cached in magazines too.
pub(crate) const PAGE_CLASSES: usize = 3;
/// Small classes plus page classes.
pub(crate) const CACHE_CLASSES: usize = SMALL_CLASSES + PAGE_CLASSES;
/// Largest request served through the per-CPU magazines (16 KiB): larger
/// blocks always go to and from the buddy tree. A wrapper that does extra
/// work on frees of large blocks (the C shim discards their pages) can
/// leave [`crate::Handle::free_fast`] to blocks up to this size.
pub const MAX_CACHED: usize = PAGE_SIZE << (PAGE_CLASSES - 1);

/// Cache class of a request of `1 ..= MAX_CACHED` bytes.
#[inline]
pub(crate) fn cache_class(size: usize) -> usize {
    if size <= MAX_SMALL {
        slab::class_of(size)
    } else {
        SMALL_CLASSES
            + size
                .div_ceil(PAGE_SIZE)
                .next_power_of_two()
                .trailing_zeros() as usize
    }
}

/// Cache class of a fitted request (as [`crate::Handle::alloc_fit`]
/// serves it) above 2 KiB and of up to 16 KiB with its alignment: the
/// multi-page class if one fits, else its page block's. `None` beyond
/// (and for `size == 0`). Where `slab::fit_small` is `None`, the same as
/// `slab::fit_big`, else `cache_class(size.max(align))`, with no division
/// or bit scan.
#[inline(always)]
pub(crate) fn fit_cached(size: usize, align: usize) -> Option<usize> {
    /// Page order of a block whose `s1 >> PAGE_SHIFT` (below 4) is the index.
    const ORDER: [u8; 4] = [0, 1, 2, 2];
    // Below `next_power_of_two(max(size, align))` for power-of-two `align`,
    // so its page block's order.
    let s1 = size.wrapping_sub(1) | align.wrapping_sub(1);
    if s1 >= MAX_CACHED {
        return None;
    }
    Some(slab::fit_big(size, align).unwrap_or(SMALL_CLASSES + ORDER[s1 >> PAGE_SHIFT] as usize))
}

/// Bytes of one round of cache class `cc`.
#[inline]
pub(crate) const fn round_size(cc: usize) -> usize {
    if cc < SMALL_CLASSES {
        slab::class_size(cc)
    } else {
        PAGE_SIZE << (cc - SMALL_CLASSES)
    }
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::*;

    #[test]
    fn fit_cached_is_fit_big_then_the_block_class() {
        for align in (0..16).map(|i| 1usize << i) {
            for size in 1..=MAX_CACHED + 4096 {
                if slab::fit_small(size, align).is_some() {
                    continue;
                }
                let big = size.max(align);
                let want = slab::fit_big(size, align)
                    .or_else(|| (big <= MAX_CACHED).then(|| cache_class(big)));
                assert_eq!(fit_cached(size, align), want, "size {size} align {align}");
            }
        }
        assert_eq!(fit_cached(0, 8), None);
    }
}
