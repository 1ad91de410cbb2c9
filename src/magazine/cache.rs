//! A CPU's cache: per cache class a loaded and a previous magazine, and per
//! small class the current slab, touched only by the holder of the CPU slot
//! (so without atomic read-modify-writes). Its fast operations are here;
//! the slow paths that refill and flush it (they need the slab pool and the
//! buddy tree's placement) are the heap's (`heap/refill.rs`).

use super::{round_size, MagId, Magazine, MagazinePool, CACHE_CLASSES};
use crate::slab::{SlabId, SMALL_CLASSES};

const _: () = assert!(CACHE_CLASSES <= 64, "`touched` has a bit per class");

/// What [`CpuCache::take_counts`] reports.
pub(crate) struct Counts {
    pub(crate) allocs: u64,
    pub(crate) frees: u64,
    pub(crate) cached_bytes: usize,
}

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
    /// Frees into the loaded magazines since the counts were last taken,
    /// counted without atomics (added to the slot's counters on slow paths
    /// and at release).
    frees: u64,
    /// Rounds that entered the loaded magazines other than by a counted
    /// push, minus those that left other than by a counted pop (wrapping),
    /// since the counts were last taken: with the frees and the rounds
    /// loaded now this gives the allocations, so a pop counts nothing.
    moved_in: u64,
    /// The allocations counted directly, to check the derived count.
    #[cfg(debug_assertions)]
    allocs_seen: u64,
    /// The loaded and the previous magazine per class.
    pub(crate) loaded: [Option<MagId>; CACHE_CLASSES],
    pub(crate) previous: [Option<MagId>; CACHE_CLASSES],
    /// The current slab per small class.
    pub(crate) current: [Option<SlabId>; SMALL_CLASSES],
    /// Bit `cc` set once class `cc` had a loaded magazine (only then can it
    /// have a previous one): what `cached_bytes` visits, so slow paths cost
    /// the classes a CPU uses, not all 31.
    touched: u64,
}

impl CpuCache {
    /// An empty cache; `sentinel` is the pool's always-empty magazine.
    pub(crate) fn new(sentinel: *const Magazine) -> Self {
        Self {
            mag: [sentinel; CACHE_CLASSES],
            limit: [0; CACHE_CLASSES],
            frees: 0,
            moved_in: 0,
            #[cfg(debug_assertions)]
            allocs_seen: 0,
            loaded: [None; CACHE_CLASSES],
            previous: [None; CACHE_CLASSES],
            current: [None; SMALL_CLASSES],
            touched: 0,
        }
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
        #[cfg(debug_assertions)]
        {
            self.allocs_seen += 1;
        }
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
        let before = self.loaded_len(cc);
        self.loaded[cc] = m;
        (self.limit[cc], self.mag[cc]) = match m {
            None => (0, pool.sentinel()),
            Some(m) => {
                self.touched |= 1 << cc;
                (pool.cap(cc), pool.mag(m))
            }
        };
        self.moved(before, self.loaded_len(cc));
        old
    }

    /// A round from the loaded magazine without the drain check (slow paths).
    pub(crate) fn take_round(&mut self, cc: usize) -> Option<usize> {
        // SAFETY: as in `pop`.
        let p = unsafe { &*self.mag[cc] }.pop()?;
        self.moved(1, 0);
        Some(p)
    }

    /// Fills the loaded magazine of class `cc`, held by this CPU and empty,
    /// with `rounds`.
    pub(crate) fn fill_loaded(&mut self, cc: usize, rounds: &[usize]) {
        // SAFETY: as in `pop`.
        unsafe { &*self.mag[cc] }.fill(rounds);
        self.moved(0, rounds.len() as u64);
    }

    /// Rounds in the loaded magazine of class `cc` (0 for the sentinel).
    fn loaded_len(&self, cc: usize) -> u64 {
        // SAFETY: as in `pop`.
        u64::from(unsafe { &*self.mag[cc] }.len())
    }

    /// Records that the loaded magazines went from `before` to `after`
    /// rounds other than by a counted pop or push.
    fn moved(&mut self, before: u64, after: u64) {
        self.moved_in = self.moved_in.wrapping_add(after).wrapping_sub(before);
    }

    /// The allocations and frees of the fast paths since the last call, and
    /// the bytes in the loaded and previous magazines (one pass over the
    /// classes this CPU used). Every change of the loaded magazines' rounds
    /// is a pop, a push or `moved_in`, so the pops are the frees plus
    /// `moved_in` minus the rounds loaded now. Restarts both counts here.
    pub(crate) fn take_counts(&mut self, pool: &MagazinePool) -> Counts {
        let (mut loaded, mut bytes) = (0u64, 0usize);
        let mut left = self.touched;
        while left != 0 {
            let cc = left.trailing_zeros() as usize;
            left &= left - 1;
            let here = self.loaded_len(cc);
            let prev = self.previous[cc].map_or(0, |m| pool.mag(m).len());
            loaded += here;
            bytes += (here as usize + prev as usize) * round_size(cc);
        }
        let frees = core::mem::take(&mut self.frees);
        let allocs = frees.wrapping_add(self.moved_in).wrapping_sub(loaded);
        self.moved_in = loaded;
        #[cfg(debug_assertions)]
        debug_assert_eq!(allocs, core::mem::take(&mut self.allocs_seen));
        Counts {
            allocs,
            frees,
            cached_bytes: bytes,
        }
    }
}
