//! A CPU's cache: per cache class a loaded and a previous magazine, and per
//! small class the current slab, touched only by the holder of the CPU slot
//! (so without atomic read-modify-writes). Its fast operations are here;
//! the slow paths that refill and flush it (they need the slab pool and the
//! buddy tree's placement) are the heap's (`heap/refill.rs`).

use super::{round_size, MagId, Magazine, MagazinePool, CACHE_CLASSES};
use crate::slab::{SlabId, SMALL_CLASSES};

const _: () = assert!(CACHE_CLASSES <= 64, "`touched` has a bit per class");

/// A CPU's cache, touched only by the holder of its slot.
#[derive(Clone, Copy)]
pub(crate) struct CpuCache {
    /// The loaded magazine per class, or the pool's sentinel (always empty,
    /// pushed to with a limit of 0) when none is loaded, so the fast paths
    /// test no pointer.
    mag: [*const Magazine; CACHE_CLASSES],
    /// Rounds a push may fill the loaded magazine to: its capacity, or 0
    /// when none is loaded, so a push needs one compare.
    limit: [u32; CACHE_CLASSES],
    /// Operations counted here without atomics and added to the slot's
    /// counters on slow paths and at release.
    pub(crate) allocs: u64,
    pub(crate) frees: u64,
    /// The loaded and the previous magazine per class.
    pub(crate) loaded: [Option<MagId>; CACHE_CLASSES],
    pub(crate) previous: [Option<MagId>; CACHE_CLASSES],
    /// The current slab per small class.
    pub(crate) current: [Option<SlabId>; SMALL_CLASSES],
    /// Bit `cc` set once class `cc` had a loaded magazine (only then can it
    /// have a previous one): what [`Self::recount_all`] visits.
    touched: u64,
    /// Bit `cc` set when class `cc`'s loaded magazine changed since its
    /// bytes were last counted: what [`Self::recount_changed`] visits, so a
    /// slow path costs the classes it changed, not every class the CPU
    /// used (that pass was 8-10 instructions per pair of the shim's `churn`
    /// and `remote` under callgrind).
    changed: u64,
    /// Per class, the bytes in its loaded and previous magazines when last
    /// counted (at most 2 magazines of 32 rounds of 16 KiB).
    class_bytes: [u32; CACHE_CLASSES],
    /// The sum of `class_bytes`.
    counted: usize,
}

impl CpuCache {
    /// An empty cache; `sentinel` is the pool's always-empty magazine.
    pub(crate) fn new(sentinel: *const Magazine) -> Self {
        Self {
            mag: [sentinel; CACHE_CLASSES],
            limit: [0; CACHE_CLASSES],
            allocs: 0,
            frees: 0,
            loaded: [None; CACHE_CLASSES],
            previous: [None; CACHE_CLASSES],
            current: [None; SMALL_CLASSES],
            touched: 0,
            changed: 0,
            class_bytes: [0; CACHE_CLASSES],
            counted: 0,
        }
    }

    /// Whether these bytes are all zeros, as in a slot init left blank: a
    /// constructed cache points at the sentinel, never at null.
    pub(crate) fn is_blank(&self) -> bool {
        self.mag[0].is_null()
    }

    /// Pops a round of class `cc` from the loaded magazine (the fast path):
    /// `None` if it is empty or missing.
    #[inline(always)]
    pub(crate) fn pop(&mut self, cc: usize) -> Option<usize> {
        debug_assert!(cc < CACHE_CLASSES);
        // SAFETY: `cc` is a cache class (callers derive it from a size or
        // a descriptor we wrote); the loaded magazine (held by this CPU)
        // or the sentinel lives in the heap's pool for its lifetime.
        let p = unsafe { &**self.mag.get_unchecked(cc) }.pop()?;
        self.allocs += 1;
        Some(p)
    }

    /// Pushes a round of class `cc` onto the loaded magazine (the fast path):
    /// false if it is full or missing.
    #[inline(always)]
    pub(crate) fn push(&mut self, cc: usize, p: usize) -> bool {
        debug_assert!(cc < CACHE_CLASSES);
        // SAFETY: as in `pop`; the sentinel's limit is 0.
        let (m, limit) = unsafe { (&**self.mag.get_unchecked(cc), *self.limit.get_unchecked(cc)) };
        if !m.push(p, limit) {
            return false;
        }
        self.frees += 1;
        true
    }

    /// Makes magazine `m` of `pool` (or none) the loaded one of class `cc`;
    /// returns the one that was loaded.
    pub(crate) fn swap_loaded(
        &mut self,
        pool: &MagazinePool,
        cc: usize,
        m: Option<MagId>,
    ) -> Option<MagId> {
        let old = self.loaded[cc];
        self.loaded[cc] = m;
        (self.limit[cc], self.mag[cc]) = match m {
            None => (0, pool.sentinel()),
            Some(m) => {
                self.touched |= 1 << cc;
                (pool.cap(cc), pool.mag(m))
            }
        };
        self.changed |= 1 << cc;
        old
    }

    /// A round from the loaded magazine without the drain check (slow paths).
    pub(crate) fn take_round(&mut self, cc: usize) -> Option<usize> {
        self.changed |= 1 << cc;
        // SAFETY: as in `pop`.
        unsafe { &*self.mag[cc] }.pop()
    }

    /// Fills the loaded magazine of class `cc`, held by this CPU and empty,
    /// with `rounds`.
    pub(crate) fn fill_loaded(&mut self, cc: usize, rounds: &[usize]) {
        self.changed |= 1 << cc;
        // SAFETY: as in `pop`.
        unsafe { &*self.mag[cc] }.fill(rounds);
    }

    /// Bytes in the loaded and previous magazines, recounting the classes
    /// whose loaded magazine changed since they were last counted (every
    /// slow path changes its own class's): the others are as of their
    /// last count, off by at most what their fast paths moved since.
    #[inline]
    pub(crate) fn recount_changed(&mut self, pool: &MagazinePool) -> usize {
        let changed = core::mem::take(&mut self.changed);
        self.recount(pool, changed)
    }

    /// Bytes in the loaded and previous magazines of every class, exact.
    pub(crate) fn recount_all(&mut self, pool: &MagazinePool) -> usize {
        self.changed = 0;
        self.recount(pool, self.touched)
    }

    fn recount(&mut self, pool: &MagazinePool, classes: u64) -> usize {
        let mut left = classes;
        while left != 0 {
            let cc = left.trailing_zeros() as usize;
            left &= left - 1;
            let prev = self.previous[cc].map_or(0, |m| pool.mag(m).len());
            // SAFETY: as in `pop`.
            let rounds = unsafe { &*self.mag[cc] }.len() + prev;
            // At most 2 * 32 rounds of at most 16 KiB: fits.
            let bytes = rounds * round_size(cc) as u32;
            self.counted = self.counted - self.class_bytes[cc] as usize + bytes as usize;
            self.class_bytes[cc] = bytes;
        }
        self.counted
    }
}
