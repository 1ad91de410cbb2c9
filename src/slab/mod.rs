//! Slabs: 16 KiB buddy blocks cut into equal objects of one size class.
//!
//! # Ownership
//!
//! A slab's descriptor (in the region's type-stable slab table, one per four
//! pages) names its owner: a CPU slot, a shared-path call, or `ABANDONED`.
//! The owner alone touches the `local` state (free list, bump index, count of
//! objects handed out) without atomics. Anyone else frees into the slab by
//! pushing the object onto its *return list* with one CAS (multi-producer);
//! the owner takes the whole list with one `swap` (single consumer, so no
//! ABA), mimalloc's `xthread_free`.
//!
//! Invariant per slab: `|local free| + handed + (capacity - bump) =
//! capacity` and `|returns| <= handed`: every object is never carved, on the
//! local free list, or handed out — to a user, a magazine, or back on the
//! return list but not yet collected by the owner.
//!
//! # Abandonment (no remote free is ever stranded)
//!
//! A CPU owns only its *current* slab per class. One it cannot allocate from
//! any more is abandoned: with free objects left it goes on the class's
//! abandoned stack at once; with none, the owner sets the `ABANDONED_FULL`
//! flag in the return word with a CAS from exactly "empty list" — so the flag
//! and the pushes are ordered by one word. The remote free that finds the
//! flag clears it in its push CAS and puts the slab on the abandoned stack.
//! Either way a slab with free objects and no owner is always findable, and
//! anyone can adopt it (CAS `ABANDONED` → its token), drain it, and release
//! it to the buddy tree when nothing is handed out.
//!
//! Descriptors are metadata and never become user memory, so a stale adopter
//! or stack pop reads a descriptor, never an object.
//!
//! # Which objects are free: the free bitmap and the free tag
//!
//! Each slab has one bit per object, set while the object is *free at the
//! slab layer* (never carved, on the local free list or on the return list)
//! in the default build, and while it is *not held by a user* in `checked`
//! builds (which also set it for objects in magazines). Bits change with one
//! atomic read-modify-write each, so of two racing frees of one object that
//! reach the bitmap exactly one finds the bit clear. Slabs of at most 64
//! objects keep the bitmap in the descriptor; larger classes at the slab's
//! tail, in space that objects would otherwise use (`capacity`).
//!
//! In the default build a free object also carries a *free tag* in bytes
//! 4..8 (past the free-list link): written when the object is freed into a
//! magazine or the slab and at slab init, cleared when it is handed out. The
//! handle's free path reads it (one load and compare) and, only if present,
//! confirms with an exact check ([`crate::Heap`]'s `confirm_free`: this bitmap
//! and the magazines) before refusing, since a user may have stored the same
//! value. The `progress` word (objects carved, takes) lets that check notice
//! an object that moved from the slab into a magazine while it looked.

mod desc;
mod mark;
mod owner;
mod pool;

pub(crate) use desc::{SlabDesc, ABANDONED};
pub(crate) use mark::{hand_out_object, leave_slab, tag_of, tag_word, MARK_AT_USER};
pub(crate) use owner::Owner;
pub(crate) use pool::{desc_at, slab_at, slab_by_id, SlabId, SlabPool};

use crate::PAGE_SIZE;

/// log2 of pages per slab (the region's slab grid, see `crate::region`).
pub(crate) use crate::region::SLAB_ORDER;
/// Bytes per slab.
pub(crate) const SLAB_BYTES: usize = PAGE_SIZE << SLAB_ORDER;
/// Size classes 8, 16, …, 2048 bytes.
pub const SMALL_CLASSES: usize = 9;
/// Largest request served from slabs.
pub const MAX_SMALL: usize = 8 << (SMALL_CLASSES - 1);

/// Size class of a request of `size` bytes (`1 ..= MAX_SMALL`).
#[inline]
pub(crate) fn class_of(size: usize) -> usize {
    // ceil(log2(max(size, 8))) - 3 with one leading-zero count.
    (usize::BITS - ((size - 1) | 7).leading_zeros()) as usize - 3
}

/// Object size of class `c`.
#[inline]
pub(crate) const fn class_size(c: usize) -> usize {
    8 << c
}

/// Objects that fit a slab of class `c` before the free bitmap is placed.
const fn slots(c: usize) -> usize {
    SLAB_BYTES / class_size(c)
}

/// Objects per slab of class `c`: all that fit if the free bitmap fits the
/// descriptor (at most 64 objects), else all but the few whose space at
/// the slab's tail holds the bitmap (32 of 2048 for 8-byte objects, one for
/// 64-128 B).
#[inline]
pub(crate) const fn capacity(c: usize) -> u32 {
    let n = slots(c);
    if n <= 64 {
        n as u32
    } else {
        (n - (n / 8).div_ceil(class_size(c))) as u32
    }
}

/// [`capacity`] from a table: one load on the free path, no division.
#[inline(always)]
pub(crate) fn capacity_of(c: usize) -> usize {
    // 64 entries (0 past the classes), so any 6-bit class from a page
    // descriptor indexes it without a bounds check.
    const CAPACITY: [u32; 64] = {
        let mut t = [0; 64];
        let mut c = 0;
        while c < SMALL_CLASSES {
            t[c] = capacity(c);
            c += 1;
        }
        t
    };
    CAPACITY[c & 63] as usize
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::*;

    #[test]
    fn classes_cover_8_to_2048() {
        assert_eq!(class_of(1), 0);
        assert_eq!(class_of(8), 0);
        assert_eq!(class_of(9), 1);
        assert_eq!(class_of(2048), 8);
        assert_eq!(class_size(8), 2048);
        assert_eq!(capacity(0), 2016, "32 objects hold the free bitmap");
        assert_eq!(capacity(3), 255);
        assert_eq!(capacity(4), 127);
        assert_eq!(capacity(5), 64, "the bitmap fits the descriptor");
        assert_eq!(capacity(8), 8);
    }
}
