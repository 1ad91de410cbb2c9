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

use crate::stack::IndexStack;
use crate::sync::{AtomicU32, AtomicUsize, Ordering};

/// Most rounds a magazine can hold; each class uses a capacity ≤ this.
pub const MAG_ROUNDS: usize = 32;

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
        let n = self.len().checked_sub(1)?;
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

    /// Holder: runs `f` on every round, then empties the magazine (so each
    /// round is still listed here while `f` moves it elsewhere).
    pub(crate) fn drain(&self, mut f: impl FnMut(usize)) {
        for slot in &self.slots[..self.len() as usize] {
            // Relaxed: the holder's own writes.
            f(slot.load(Ordering::Relaxed));
        }
        // Release: whatever `f` published happens before the rounds vanish.
        self.count.store(0, Ordering::Release);
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

/// The depot: per cache class a stack of full magazines (with a soft count
/// for its limit), and one shared stack of empty magazines.
pub(crate) struct Depot<'a> {
    pub(crate) pool: &'a [Magazine],
    pub(crate) empty: &'a IndexStack,
    pub(crate) full: &'a [IndexStack],
    pub(crate) full_count: &'a [AtomicU32],
    pub(crate) limit: u32,
}

impl<'a> Depot<'a> {
    fn link(&self) -> impl Fn(u32) -> &'a AtomicU32 {
        let pool = self.pool;
        move |i| &pool[i as usize].link
    }

    /// An empty magazine from the pool, if any is left.
    #[inline]
    pub(crate) fn get_empty(&self) -> Option<u32> {
        self.empty.pop(self.link())
    }

    /// Returns an empty magazine to the pool.
    #[inline]
    pub(crate) fn put_empty(&self, m: u32) {
        self.empty.push(m, &self.pool[m as usize].link);
    }

    /// A full magazine of class `c`, if the depot has one.
    #[inline]
    pub(crate) fn get_full(&self, c: usize) -> Option<u32> {
        let m = self.full[c].pop(self.link())?;
        // Relaxed: the count is a soft limit; it orders nothing.
        self.full_count[c].fetch_sub(1, Ordering::Relaxed);
        Some(m)
    }

    /// Whether any magazine of the pool holds round `p` (cold: the exact
    /// double-free check of the default build).
    pub(crate) fn holds(&self, p: usize) -> bool {
        self.pool.iter().any(|m| m.holds(p))
    }

    /// Stores a full magazine of class `c` unless the depot is at its limit
    /// (then the caller returns the rounds to their slabs or pages).
    #[inline]
    pub(crate) fn put_full(&self, c: usize, m: u32) -> bool {
        // Relaxed: as in `get_full`; a race may overshoot the limit by a few.
        if self.full_count[c].load(Ordering::Relaxed) >= self.limit {
            return false;
        }
        self.full_count[c].fetch_add(1, Ordering::Relaxed);
        self.full[c].push(m, &self.pool[m as usize].link);
        true
    }
}
