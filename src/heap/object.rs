//! Whether a small object is free, decided before any state changes: the
//! free bitmap, the free tag and the exact check behind the tag (see
//! `crate::slab` for both marks).
//!
//! | build     | a free of object `p` is refused when                          | racing frees of `p`                         |
//! |-----------|---------------------------------------------------------------|---------------------------------------------|
//! | default   | its tag is present *and* `confirm_free` finds it free         | exactly one succeeds on the shared path; on a handle both may succeed |
//! | `checked` | its bit is set (one `fetch_or` decides)                       | exactly one succeeds on every path pair     |
//!
//! In the default build the handle's free path costs one load, one compare
//! and one store (the tag) instead of a read-modify-write, which would cost
//! more than the rest of the magazine fast path together.

use super::region::Region;
use super::Heap;
use crate::slab::{tag_of, tag_word, SlabDesc, SLAB_ORDER, SMALL_CLASSES};
use crate::sync::Ordering;
use crate::FreeError;

/// `checked` builds mark objects free or taken where users hand them over
/// (every free sets the bit, every allocation clears it); the default build
/// marks them where they enter and leave the slab layer.
pub(crate) const MARK_AT_USER: bool = cfg!(feature = "checked");

impl Heap {
    /// The slab that holds grid page `page` of `reg`, and its base address.
    #[inline(always)]
    pub(crate) fn slab_at(reg: &Region, page: usize) -> (&SlabDesc, usize) {
        let head = page & !((1 << SLAB_ORDER) - 1);
        (reg.slab(head), reg.addr_of(head))
    }

    /// Takes object `p` (class `c`, in the slab holding `page`) back from a
    /// user who frees it into a magazine: refuses it if it is free already,
    /// else marks it (tag, or bit in `checked` builds).
    #[inline(always)]
    pub(crate) fn claim_object(
        &self,
        reg: &Region,
        page: usize,
        c: usize,
        p: usize,
    ) -> Result<(), FreeError> {
        if MARK_AT_USER {
            let (s, base) = Self::slab_at(reg, page);
            // SAFETY: `p` is an object of this live slab (`block_at`).
            return if unsafe { s.mark_free(base, c, p) } {
                Ok(())
            } else {
                Err(self.free_object_error(s, base, c, p))
            };
        }
        // SAFETY: as above.
        let tag = unsafe { tag_word(p) };
        // Relaxed: the tag was written by whoever freed `p` before; a user
        // who frees it again is ordered after that free (same thread, or the
        // synchronisation that passed the pointer on).
        if tag.load(Ordering::Relaxed) == tag_of(p) {
            self.confirm_not_free(reg, page, c, p)?;
        }
        // Relaxed: published with the magazine push or the slab push.
        tag.store(tag_of(p), Ordering::Relaxed);
        Ok(())
    }

    /// Default build: object `p` carries its free tag. Refuses the free if
    /// an exact check finds the object free; `Ok` if the user merely stored
    /// the tag's value in a live object.
    #[cold]
    #[inline(never)]
    pub(crate) fn confirm_not_free(
        &self,
        reg: &Region,
        page: usize,
        c: usize,
        p: usize,
    ) -> Result<(), FreeError> {
        let (s, base) = Self::slab_at(reg, page);
        if self.confirm_free(s, base, c, p) {
            return Err(self.free_object_error(s, base, c, p));
        }
        Ok(())
    }

    /// Whether free object `p` is free: its bit is set (on the slab's lists
    /// or never carved) or a magazine holds it. An object always is in one
    /// of the two while free (a refill publishes the magazine before it
    /// clears the bits; a flush sets the bits before it empties the
    /// magazine), so only a move from the slab into a magazine already
    /// scanned could hide it; such a move is a take, counted in the slab's
    /// `progress`, and the check repeats. Lock-free: each repeat means the
    /// slab's owner took objects meanwhile.
    pub(crate) fn confirm_free(&self, s: &SlabDesc, base: usize, c: usize, p: usize) -> bool {
        loop {
            let before = s.progress();
            // SAFETY: `p` is an object of this live slab (caller).
            let in_slab = || unsafe { s.is_free(base, c, p) };
            if in_slab() || self.depot().holds(p) || in_slab() {
                return true;
            }
            if s.progress() == before {
                return false;
            }
        }
    }

    /// The error for a free of object `p` found free: never carved is
    /// `NotAllocated`, anything else a `DoubleFree`.
    fn free_object_error(&self, s: &SlabDesc, base: usize, c: usize, p: usize) -> FreeError {
        if SlabDesc::index_of(base, c, p) >= s.progress().carved() {
            FreeError::NotAllocated(p)
        } else {
            FreeError::DoubleFree(p)
        }
    }

    /// `Err` if object `p` is free (what `usable_size` refuses).
    pub(crate) fn check_object_live(
        &self,
        reg: &Region,
        page: usize,
        c: usize,
        p: usize,
    ) -> Result<(), FreeError> {
        let (s, base) = Self::slab_at(reg, page);
        let free = if MARK_AT_USER {
            // SAFETY: `p` is an object of this live slab (`block_at`).
            unsafe { s.is_free(base, c, p) }
        } else {
            // SAFETY: as above.
            (unsafe { tag_word(p) }.load(Ordering::Relaxed) == tag_of(p))
                && self.confirm_free(s, base, c, p)
        };
        if free {
            return Err(self.free_object_error(s, base, c, p));
        }
        Ok(())
    }

    /// Object `p` (class `c`) goes to a user: clears its tag, and in
    /// `checked` builds its bit.
    #[inline(always)]
    pub(crate) fn hand_out_object(&self, c: usize, p: usize) {
        if MARK_AT_USER {
            let reg = self.region_of(p).expect("object inside the heap");
            let (s, base) = Self::slab_at(reg, reg.page_of(p));
            // SAFETY: we hold `p`, an object of that live slab.
            unsafe { s.mark_taken(base, c, p) };
        } else {
            // SAFETY: we hold `p`, an object of a live slab.
            // Relaxed: only the holder of `p` writes it now.
            unsafe { tag_word(p) }.store(0, Ordering::Relaxed);
        }
    }

    /// Default build: objects taken from their slab into a cache leave the
    /// slab layer (their bits are cleared once the cache holds them).
    /// Nothing for page blocks (`c >= SMALL_CLASSES`).
    pub(crate) fn leave_slab(&self, c: usize, objects: &[usize]) {
        if MARK_AT_USER || c >= SMALL_CLASSES {
            return;
        }
        for &p in objects {
            let reg = self.region_of(p).expect("object inside the heap");
            let (s, base) = Self::slab_at(reg, reg.page_of(p));
            // SAFETY: we hold `p`, just taken from that live slab.
            unsafe { s.mark_taken(base, c, p) };
        }
    }
}
