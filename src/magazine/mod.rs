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
use crate::PAGE_SIZE;

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

/// Bytes of one round of cache class `cc`.
#[inline]
pub(crate) const fn round_size(cc: usize) -> usize {
    if cc < SMALL_CLASSES {
        slab::class_size(cc)
    } else {
        PAGE_SIZE << (cc - SMALL_CLASSES)
    }
}
