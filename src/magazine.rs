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
use crate::sync::{AtomicU32, Ordering, UnsafeCell};

/// Most rounds a magazine can hold; each class uses a capacity ≤ this.
pub const MAG_ROUNDS: usize = 32;

/// The rounds of one magazine, owned by whoever holds the magazine.
pub(crate) struct Rounds {
    pub(crate) count: u32,
    pub(crate) slots: [usize; MAG_ROUNDS],
}

/// One magazine in the pool.
pub(crate) struct Magazine {
    pub(crate) link: AtomicU32,
    rounds: UnsafeCell<Rounds>,
}

impl Magazine {
    pub(crate) fn new() -> Self {
        Self {
            link: AtomicU32::new(0),
            rounds: UnsafeCell::new(Rounds {
                count: 0,
                slots: [0; MAG_ROUNDS],
            }),
        }
    }

    /// Runs `f` on the rounds.
    ///
    /// # Safety
    /// The caller holds the magazine (in its CPU cache, or popped from the
    /// depot), so nobody else touches it.
    #[inline(always)]
    pub(crate) unsafe fn with<R>(&self, f: impl FnOnce(&mut Rounds) -> R) -> R {
        // SAFETY: exclusive by the caller's holding of the magazine.
        self.rounds.with_mut(|r| f(unsafe { &mut *r }))
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
