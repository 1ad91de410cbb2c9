//! The free mark of small objects: the free tag (default build) and where
//! the free bit is set (see the layer doc in `crate::slab`).

use super::{slab_at, SMALL_CLASSES};
use crate::region::RegionTable;
use crate::sync::{raw, Ordering};

/// `checked` builds mark objects free or taken where users hand them over
/// (every free sets the bit, every allocation clears it); the default build
/// marks them where they enter and leave the slab layer.
pub(crate) const MARK_AT_USER: bool = cfg!(feature = "checked");

/// The free tag (see the layer doc in `crate::slab`): never 0 (the cleared
/// value). One constant for every object, not one per address: the free
/// fast path compares it as an immediate (2 instructions fewer than
/// deriving it from the address), and it is a filter either way, since a
/// match only sends the free to the exact check behind it.
pub(crate) const FREE_TAG: u32 = 0x6d62_7501;

/// The word that holds object `p`'s free tag: bytes 4..8, past the 4-byte
/// free-list link, so it fits the smallest class.
///
/// # Safety
/// `p` is an object of a live slab (8-aligned heap memory that stays mapped).
#[inline(always)]
pub(crate) unsafe fn tag_word<'a>(p: usize) -> &'a raw::AtomicU32 {
    // SAFETY: bytes 4..8 of the object, 4-aligned, inside the heap (caller).
    unsafe { &*((p + 4) as *const raw::AtomicU32) }
}

/// Object `p` (class `c`) goes to a user: clears its tag (unless
/// `!CLEAR_TAG`: the caller zeroes bytes 4..8 before the user gets `p`; a
/// tag left there would only send `p`'s next free through the exact check
/// behind it), and in `checked` builds its bit.
#[inline(always)]
pub(crate) fn hand_out_object<const CLEAR_TAG: bool>(table: &RegionTable, c: usize, p: usize) {
    if MARK_AT_USER {
        let reg = table.of(p).expect("object inside the heap");
        let (s, base) = slab_at(reg, reg.page_of(p));
        // SAFETY: we hold `p`, an object of that live slab.
        unsafe { s.mark_taken(base, c, p) };
    } else if CLEAR_TAG {
        // SAFETY: we hold `p`, an object of a live slab.
        // Relaxed: only the holder of `p` writes it now.
        unsafe { tag_word(p) }.store(0, Ordering::Relaxed);
    }
}

/// Default build: objects taken from their slab into a cache leave the slab
/// layer (their bits are cleared once the cache holds them). Nothing for
/// page blocks (`c >= SMALL_CLASSES`).
pub(crate) fn leave_slab(table: &RegionTable, c: usize, objects: &[usize]) {
    if MARK_AT_USER || c >= SMALL_CLASSES {
        return;
    }
    for &p in objects {
        let reg = table.of(p).expect("object inside the heap");
        let (s, base) = slab_at(reg, reg.page_of(p));
        // SAFETY: we hold `p`, just taken from that live slab.
        unsafe { s.mark_taken(base, c, p) };
    }
}
