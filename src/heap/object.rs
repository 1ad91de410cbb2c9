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

use super::Heap;
use crate::region::{PageDesc, Region};
use crate::slab::{self, slab_at, tag_word, SlabDesc, FREE_TAG, MARK_AT_USER};
use crate::sync::{AtomicU32, Ordering};
use crate::FreeError;

/// Whether the page whose descriptor is `cell` still is in a slab of class
/// `c`: a free that read the class earlier and then found the object's mark
/// in use is stale if not (the slab was released, its pages reused).
#[inline(always)]
pub(crate) fn still_slab(cell: &AtomicU32, c: usize) -> bool {
    // Relaxed: ordered after the caller's Acquire access to the object's
    // tag or bit; a new owner's write there implies the release before it.
    cell.load(Ordering::Relaxed) == PageDesc::slab(c).0
        || crate::mutant::on(crate::mutant::Mutant::ClaimSkipsRecheck)
}

impl Heap {
    /// Takes object `p` (class `c`, in the slab holding `page`) back from a
    /// user who frees it into a magazine: refuses it if it is free already,
    /// else marks it (tag, or bit in `checked` builds).
    ///
    /// The class came from the page descriptor, read before: a stale free
    /// (of an object whose slab went back to the tree) may get here after
    /// the pages became a slab of another class, where `c` names other
    /// objects and bits. So the descriptor is read again once the mark is
    /// decided ([`still_slab`]): the slab can no longer change under a
    /// claim that passes (it counts `p` as handed out), and one that fails
    /// changed nothing but a tag or bit it puts back. (While a `checked`
    /// build's bit is set and not yet put back, a legitimate free of the
    /// new slab's object under it is refused: the price of a double free
    /// racing the reuse, which is bad input.)
    #[inline(always)]
    pub(crate) fn claim_object(
        &self,
        reg: &Region,
        page: usize,
        c: usize,
        p: usize,
    ) -> Result<(), FreeError> {
        crate::sync::model_yield();
        if MARK_AT_USER {
            let (s, base) = slab_at(reg, page);
            // SAFETY: `p` is an object of this live slab (`block_at`).
            if !unsafe { s.mark_free(base, c, p) } {
                return Err(self.free_object_error(s, base, c, p));
            }
            if !still_slab(reg.desc(page), c) {
                // SAFETY: as above; we set the bit just now.
                unsafe { s.mark_taken(base, c, p) };
                return Err(FreeError::DoubleFree(p));
            }
            return Ok(());
        }
        // SAFETY: as above.
        let tag = unsafe { tag_word(p) };
        // Acquire: orders the descriptor's re-read in `still_slab` after it.
        // The tag was written by whoever freed `p` before; a user who frees
        // it again is ordered after that free (same thread, or the
        // synchronisation that passed the pointer on).
        if tag.load(Ordering::Acquire) == FREE_TAG {
            self.confirm_not_free(reg, page, c, p)?;
        }
        if !still_slab(reg.desc(page), c) {
            return Err(FreeError::DoubleFree(p));
        }
        // Relaxed: published with the magazine push or the slab push.
        tag.store(FREE_TAG, Ordering::Relaxed);
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
        let (s, base) = slab_at(reg, page);
        if self.confirm_free(s, base, c, p) {
            return Err(self.free_object_error(s, base, c, p));
        }
        Ok(())
    }

    /// Whether free object `p` is free: its bit is set (on the slab's lists
    /// or never carved) or a magazine holds it. An object always is in one
    /// of the two while free (a refill publishes the magazine before it
    /// clears the bits; a flush sets a round's bit before the round leaves
    /// its magazine), so only a move from the slab into a magazine already
    /// scanned could hide it; such a move is a take, counted in the slab's
    /// `progress`, and the check repeats. And a live object is never listed
    /// in a magazine: a flushed round leaves its magazine before it goes on
    /// its slab's lists, from which it can be handed out again
    /// (`Magazine::drain`). Lock-free: each repeat means the slab's owner
    /// took objects meanwhile.
    pub(crate) fn confirm_free(&self, s: &SlabDesc, base: usize, c: usize, p: usize) -> bool {
        loop {
            let before = s.progress();
            // SAFETY: `p` is an object of this live slab (caller).
            let in_slab = || unsafe { s.is_free(base, c, p) };
            if in_slab() || self.mags.depot().holds(p) || in_slab() {
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
        let (s, base) = slab_at(reg, page);
        let free = if MARK_AT_USER {
            // SAFETY: `p` is an object of this live slab (`block_at`).
            unsafe { s.is_free(base, c, p) }
        } else {
            // SAFETY: as above.
            (unsafe { tag_word(p) }.load(Ordering::Relaxed) == FREE_TAG)
                && self.confirm_free(s, base, c, p)
        };
        if free {
            return Err(self.free_object_error(s, base, c, p));
        }
        Ok(())
    }

    /// Object `p` (class `c`) goes to a user: clears its tag (unless
    /// `!CLEAR_TAG`, see `slab::hand_out_object`), and in `checked` builds
    /// its bit.
    #[inline(always)]
    pub(crate) fn hand_out_object<const CLEAR_TAG: bool>(&self, c: usize, p: usize) {
        slab::hand_out_object::<CLEAR_TAG>(&self.table, c, p);
    }
}
