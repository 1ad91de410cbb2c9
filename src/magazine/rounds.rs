//! One magazine: a holder-only array of rounds that anyone may search.

use super::MAG_ROUNDS;
use crate::mutant::{self, Mutant};
use crate::sync::{AtomicU32, AtomicUsize, Ordering};

/// One magazine in the pool. Only its holder (a CPU, or whoever popped it
/// from the depot) pushes and pops; anyone may look for a round in it
/// ([`Magazine::holds`]), which is why `count` and `slots` are atomics: the
/// holder's accesses are plain loads and stores (Relaxed, and Release for the
/// count after a push), never read-modify-writes.
pub(crate) struct Magazine {
    pub(crate) link: AtomicU32,
    count: AtomicU32,
    slots: [AtomicUsize; MAG_ROUNDS],
}

impl Magazine {
    pub(crate) fn new() -> Self {
        Self {
            link: AtomicU32::new(0),
            count: AtomicU32::new(0),
            slots: core::array::from_fn(|_| AtomicUsize::new(0)),
        }
    }

    /// Rounds held (holder's view).
    #[inline(always)]
    pub(crate) fn len(&self) -> u32 {
        // Relaxed: only the holder writes the count.
        self.count.load(Ordering::Relaxed)
    }

    /// Holder: takes the top round, if any.
    #[inline(always)]
    pub(crate) fn pop(&self) -> Option<usize> {
        self.pop_above(0)
    }

    /// Holder: takes the top round if the magazine holds more than `floor`
    /// rounds: `floor` is 0, or `u32::MAX` to refuse (a drain request,
    /// tested with the emptiness in one compare).
    #[inline(always)]
    pub(crate) fn pop_above(&self, floor: u32) -> Option<usize> {
        let len = self.len();
        if len <= floor {
            return None;
        }
        let n = len - 1;
        // Relaxed: a checker that reads the old count may still find the
        // round, which was free when it read the count.
        self.count.store(n, Ordering::Relaxed);
        // SAFETY: `n < count <= MAG_ROUNDS` (the holder never pushes past
        // its limit, which is at most MAG_ROUNDS).
        Some(unsafe { self.slots.get_unchecked(n as usize) }.load(Ordering::Relaxed))
    }

    /// Holder: adds round `p` unless the magazine holds `limit` rounds.
    #[inline(always)]
    pub(crate) fn push(&self, p: usize, limit: u32) -> bool {
        let n = self.len();
        if n >= limit {
            return false;
        }
        debug_assert!((n as usize) < MAG_ROUNDS);
        // SAFETY: `n < limit <= MAG_ROUNDS`.
        unsafe { self.slots.get_unchecked(n as usize) }.store(p, Ordering::Relaxed);
        // Release: a checker that reads the new count also reads the slot.
        self.count.store(n + 1, Ordering::Release);
        true
    }

    /// Holder: fills an empty magazine with `rounds` at once.
    pub(crate) fn fill(&self, rounds: &[usize]) {
        debug_assert_eq!(self.len(), 0);
        for (slot, &p) in self.slots.iter().zip(rounds) {
            // Relaxed: published by the count's Release below.
            slot.store(p, Ordering::Relaxed);
        }
        // Release: as in `push`.
        self.count.store(rounds.len() as u32, Ordering::Release);
    }

    /// Holder: empties the magazine from the top, one round at a time:
    /// `mark` runs on a round while it is still listed here, then the round
    /// leaves the listing, then `release` runs on it with what `mark`
    /// returned, if anything. A checker (`holds`) must never find a round neither listed nor
    /// marked (it would take a free object for a live one), nor listed after
    /// it could be handed out again (it would take a live object for a free
    /// one): so a round is marked where it goes, unlisted, and only then
    /// made available.
    pub(crate) fn drain<T>(
        &self,
        mut mark: impl FnMut(usize) -> Option<T>,
        mut release: impl FnMut(usize, T),
    ) {
        for i in (0..self.len() as usize).rev() {
            // Relaxed: the holder's own write.
            let p = self.slots[i].load(Ordering::Relaxed);
            let marked = mark(p);
            if !mutant::on(Mutant::DrainReleasesListed) {
                // Release: the mark happens before the round leaves the
                // listing (pairs with the Acquire in `holds`).
                self.count.store(i as u32, Ordering::Release);
            }
            if let Some(marked) = marked {
                release(p, marked);
            }
        }
        if mutant::on(Mutant::DrainReleasesListed) {
            // Release: as above, for every round at once.
            self.count.store(0, Ordering::Release);
        }
    }

    /// Anyone: runs `f` on every round the magazine holds now.
    pub(crate) fn for_each_round(&self, mut f: impl FnMut(usize)) {
        // Acquire: pairs with the count's Release in `push`/`fill`.
        let n = (self.count.load(Ordering::Acquire) as usize).min(MAG_ROUNDS);
        for slot in &self.slots[..n] {
            // Relaxed: ordered after the count by the Acquire above.
            f(slot.load(Ordering::Relaxed));
        }
    }

    /// Anyone: whether round `p` is in this magazine now (exact for a round
    /// that stays put during the call).
    pub(crate) fn holds(&self, p: usize) -> bool {
        // Acquire: pairs with the count's Release in `push`/`fill`.
        let n = (self.count.load(Ordering::Acquire) as usize).min(MAG_ROUNDS);
        // Relaxed: ordered after the count by the Acquire above.
        self.slots[..n]
            .iter()
            .any(|s| s.load(Ordering::Relaxed) == p)
    }
}
