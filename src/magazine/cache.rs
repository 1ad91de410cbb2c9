//! A CPU's cache: per cache class a loaded and a previous magazine, and per
//! small class the current slab, touched only by the holder of the CPU slot
//! (so without atomic read-modify-writes). Its fast operations are here;
//! the slow paths that refill and flush it (they need the slab pool and the
//! buddy tree's placement) are the heap's (`heap/refill.rs`).

use super::{round_size, MagId, Magazine, MagazinePool, CACHE_CLASSES};
use crate::slab::{self, SlabId, FIT_INDICES, SMALL_CLASSES};

const _: () = assert!(CACHE_CLASSES <= 64, "`touched` has a bit per class");

/// A CPU's cache, touched only by the holder of its slot.
#[derive(Clone, Copy)]
pub(crate) struct CpuCache {
    /// The loaded magazine per class, or the pool's sentinel (always empty,
    /// pushed to with a limit of 0) when none is loaded, so the fast paths
    /// test no pointer.
    mag: [*const Magazine; CACHE_CLASSES],
    /// `mag[slab::fitted_class(8 * i + 7)]` for every entry `i`, kept so by
    /// [`Self::swap_loaded`] (the only writer of `mag` after `new`): the
    /// fitted fast path (`malloc`, `GlobalAlloc`) goes from the size to the
    /// magazine with one load instead of a class lookup and a load, 2
    /// instructions fewer per allocation, for 2 KiB per CPU. An entry
    /// that missed a swap would pop another CPU's magazine: the unit test
    /// `by_fit_follows_every_swap` checks the invariant.
    by_fit: [*const Magazine; FIT_INDICES],
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
            by_fit: [sentinel; FIT_INDICES],
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
    /// `None` if it is empty or missing, or `floor` is `u32::MAX` (see
    /// [`Magazine::pop_above`]).
    #[inline(always)]
    pub(crate) fn pop(&mut self, cc: usize, floor: u32) -> Option<usize> {
        debug_assert!(cc < CACHE_CLASSES);
        // SAFETY: `cc` is a cache class (callers derive it from a size or
        // a descriptor we wrote); the loaded magazine (held by this CPU)
        // or the sentinel lives in the heap's pool for its lifetime.
        let p = unsafe { &**self.mag.get_unchecked(cc) }.pop_above(floor)?;
        self.allocs += 1;
        Some(p)
    }

    /// [`Self::pop`] by fitted key `k` ([`slab::fit_key`]): the magazine
    /// of class `slab::fitted_class(k)`.
    #[inline(always)]
    pub(crate) fn pop_fitted(&mut self, k: usize, floor: u32) -> Option<usize> {
        debug_assert!(k < 8 * FIT_INDICES && k % 8 == 7);
        // Entry `k / 8` sits at byte `k - 7`, added as two offsets so that
        // the `- 7` folds into the load's displacement: as `k / 8 * 8` it
        // costs an `and` per `malloc`.
        let at = self
            .by_fit
            .as_ptr()
            .wrapping_byte_add(k)
            .wrapping_byte_sub(7);
        // SAFETY: `k` is a fitted key, so `at` is entry `k / 8` of
        // `by_fit`: the class's loaded magazine or the sentinel, as in `pop`.
        let p = unsafe { &**at }.pop_above(floor)?;
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
        let loaded = self.mag[cc];
        for i in slab::fit_indices(cc) {
            self.by_fit[i] = loaded;
        }
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

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use crate::{slab, Heap};

    /// The per-size table is what the fitted fast path pops from: an entry
    /// left behind by a swap would hand out rounds of a magazine this CPU
    /// no longer holds. Every swap a mix of sizes and alignments causes
    /// (loads, unloads at flushes, the depot) keeps `by_fit[i]` equal to
    /// the loaded magazine of entry `i`'s class; allocations pop through
    /// the table first, as `malloc` does.
    #[test]
    fn by_fit_follows_every_swap() {
        let len = 16 << 20;
        let mut ram = std::vec![0u8; len];
        // SAFETY: `ram` is ours and outlives the heap.
        let heap = unsafe { Heap::init(ram.as_mut_ptr(), len, 1) }.unwrap();
        let mut h = heap.handle_for(0).unwrap();
        let check = |heap: &Heap, step: usize| {
            heap.slot(0).cache.with(|c| {
                // SAFETY: a quiet point: the only handle is ours and idle.
                let c = unsafe { &*c };
                for i in 0..slab::FIT_INDICES {
                    let cc = slab::fitted_class(8 * i + 7);
                    assert_eq!(
                        c.by_fit[i], c.mag[cc],
                        "entry {i} (class {cc}), step {step}"
                    );
                }
            });
        };
        check(heap, 0);
        let mut live = std::vec::Vec::new();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        // Miri: fewer steps (each is slow there), still several swaps of
        // every class the mix uses and a reclaim.
        let (steps, reclaim_every) = if cfg!(miri) {
            (1_500, 700)
        } else {
            (20_000, 5_000)
        };
        for step in 1..steps {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if live.len() < 600 && (x % 3 != 0 || live.is_empty()) {
                let size = 1 + (x >> 8) as usize % 2048;
                let align = 8 << ((x >> 24) % 3);
                // As `malloc` does: the per-size table first.
                let p = h.alloc_fit_cached(size, align);
                live.push(p.or_else(|| h.alloc_fit(size, align)).unwrap());
            } else {
                let p = live.swap_remove((x >> 32) as usize % live.len());
                // SAFETY: allocated above, freed once.
                unsafe { h.try_free(p.as_ptr()) }.unwrap();
            }
            if step % 97 == 0 {
                check(heap, step);
            }
            if step % reclaim_every == 0 {
                heap.reclaim();
            }
        }
        for p in live {
            // SAFETY: as above.
            unsafe { h.try_free(p.as_ptr()) }.unwrap();
        }
        drop(h);
        check(heap, usize::MAX);
    }
}
