//! Giving memory back: [`Heap::trim`] hands every wholly free area to the
//! caller while the heap holds it, so the caller can discard its pages
//! (`MADV_DONTNEED`) without racing an allocation of them; with
//! [`Heap::set_auto_trim`] the heap does so by itself once enough freed
//! memory has come home, so a program that never calls `malloc_trim` still
//! gives a freed working set back.

use super::Heap;
use crate::region::Region;
use crate::sync::{AtomicBool, AtomicUsize, Ordering};

/// Most areas [`Heap::trim`] holds at once, as one run passed to `release`:
/// a 4 GiB heap's free areas then cost 256 calls instead of 4096 (the
/// `madvise` calls of a trim, most of them on untouched pages), while what
/// a concurrent allocation may find held stays small beside any heap that
/// is not nearly full (64 held areas made a 64 MiB heap's allocations fail
/// in `tests/trim.rs`).
const TRIM_RUN: usize = 16;

/// What the heap needs to trim by itself (see [`Heap::set_auto_trim`]).
pub(crate) struct AutoTrim {
    /// Trim once this many bytes came home since the last trim (0: never).
    every: AtomicUsize,
    /// The caller's discard function, a `fn(*mut u8, usize)` as an address
    /// (0 before [`Heap::set_auto_trim`]).
    release: AtomicUsize,
    /// Bytes that came home since the last trim: rounds of magazines sent
    /// to slabs and the tree, and page blocks freed straight to the tree.
    home: AtomicUsize,
    /// Set while a thread trims: one at a time, the others carry on.
    busy: AtomicBool,
}

impl AutoTrim {
    /// Off.
    pub(crate) fn new() -> Self {
        Self {
            every: AtomicUsize::new(0),
            release: AtomicUsize::new(0),
            home: AtomicUsize::new(0),
            busy: AtomicBool::new(false),
        }
    }
}

impl Heap {
    /// Calls `release(start, len)` for every run of wholly free areas (up to
    /// 16 adjacent ones), after claiming them in the buddy tree (so no
    /// allocation can take their pages while `release` runs), then frees
    /// them again; returns the bytes passed. Run [`Heap::reclaim`] first to
    /// send cached memory home. An area allocated or freed concurrently is
    /// simply skipped or not. While `release` runs, its areas count as
    /// memory an operation in flight holds: a concurrent allocation may
    /// return `None` as if they were allocated (the no-false-OOM contract's
    /// allowance, like a run allocation's claimed areas), so keep `release`
    /// short.
    ///
    /// # Example
    ///
    /// ```
    /// # use magbuddy::{Heap, HeapConfig};
    /// # let len = Heap::min_region_len(HeapConfig::new(1));
    /// # let mut ram = vec![0u8; len];
    /// # // SAFETY: `ram` is ours and outlives the heap's use.
    /// # let heap = unsafe { Heap::init(ram.as_mut_ptr(), len, 1) }.unwrap();
    /// heap.reclaim();
    /// let mut passed = 0;
    /// let bytes = heap.trim(|_start, len| {
    ///     // An OS kernel would discard the pages here (`madvise(MADV_DONTNEED)`).
    ///     passed += len;
    /// });
    /// assert_eq!(bytes, passed);
    /// assert_eq!(bytes % (1 << 20), 0); // whole 1 MiB areas
    /// ```
    pub fn trim(&self, release: impl FnMut(*mut u8, usize)) -> usize {
        self.trim_areas(release, Areas::All)
    }

    /// [`Heap::trim`] over the areas `which` names.
    fn trim_areas(&self, mut release: impl FnMut(*mut u8, usize), which: Areas) -> usize {
        let h = self.g.area_order();
        let len = (self.g.area_pages() as usize) << crate::PAGE_SHIFT;
        let mut trimmed = 0;
        for reg in self.regions() {
            let mut a = 0;
            while a < reg.areas {
                let mut n = 0;
                while n < TRIM_RUN && a + n < reg.areas && claim_if_free(reg, a + n, which) {
                    n += 1;
                }
                if n > 0 {
                    release(reg.addr_of(a << h) as *mut u8, n * len);
                    trimmed += n * len;
                    for i in a..a + n {
                        reg.area(i)
                            .free(0, h)
                            .map_err(drop)
                            .expect("release of an area trim claimed");
                    }
                }
                // Past the area that ended the run (in use), unless the cap did.
                a += if n == TRIM_RUN { n } else { n + 1 };
            }
        }
        trimmed
    }

    /// Makes the heap trim by itself: once `every` bytes have come home since
    /// the last trim (counted where a free leaves the CPU caches: a
    /// magazine's rounds sent to their slabs or the tree, and every page
    /// block freed straight to the tree: above 16 KiB, or on the shared
    /// path), the free that passes the mark empties the depot,
    /// sweeps empty slabs into the tree and calls [`Heap::trim`] with
    /// `release`. One thread trims at a time; others that pass the mark
    /// meanwhile carry on. `every == 0` turns it off.
    ///
    /// Why there: a free that hits a magazine costs nothing extra (the count
    /// is one `fetch_add` per magazine sent home, not per free), and memory
    /// only becomes wholly free areas once it has left the caches anyway.
    /// Not counted: the shared path's objects (threads
    /// without a handle) and what stays in CPU caches (bounded by
    /// [`Heap::cpu_cache_cap`]); [`Heap::reclaim`] then trim returns those.
    ///
    /// `release` runs on whichever thread frees past the mark, inside that
    /// free, with the same contract as in [`Heap::trim`].
    pub fn set_auto_trim(&self, every: usize, release: fn(*mut u8, usize)) {
        let t = &self.auto_trim;
        // Relaxed: `every` is read before the hook only as a hint; the hook
        // is published by the Release below and read with Acquire.
        t.every.store(every, Ordering::Relaxed);
        t.release.store(release as usize, Ordering::Release);
    }

    /// Counts `bytes` that came home (see [`Heap::set_auto_trim`]) and trims
    /// once they pass the mark. Off: one load.
    #[inline]
    pub(crate) fn came_home(&self, bytes: usize) {
        let t = &self.auto_trim;
        // Relaxed: the mark is a threshold, not a synchronisation.
        let every = t.every.load(Ordering::Relaxed);
        if every == 0 {
            return;
        }
        // Relaxed: a count; the trim decides what is free by itself.
        if t.home.fetch_add(bytes, Ordering::Relaxed) + bytes >= every {
            self.auto_trim();
        }
    }

    #[cold]
    #[inline(never)]
    fn auto_trim(&self) {
        let t = &self.auto_trim;
        // Acquire: pairs with the Release below, so one trim follows another.
        if t.busy.swap(true, Ordering::Acquire) {
            return;
        }
        // Acquire: pairs with the Release in `set_auto_trim`.
        let f = t.release.load(Ordering::Acquire);
        if f != 0 {
            // SAFETY: the only non-zero value ever stored is the address of
            // a `fn(*mut u8, usize)` (`set_auto_trim`).
            let release = unsafe { core::mem::transmute::<usize, fn(*mut u8, usize)>(f) };
            // Not `reclaim`: the CPUs' own caches stay (no drain), so a
            // trim does not make every thread refill.
            self.empty_depot();
            self.slabs.sweep_all(&self.table);
            self.trim_areas(release, Areas::Changed);
        }
        // Relaxed: a count; what came home during the trim goes with it.
        t.home.store(0, Ordering::Relaxed);
        // Release: see the swap above.
        t.busy.store(false, Ordering::Release);
    }
}

/// Which areas a trim looks at.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Areas {
    /// Every area ([`Heap::trim`]).
    All,
    /// Only areas where pages were given back since a trim last looked
    /// ([`Region::trimmed`]): the heap's own trims, which then cost two
    /// loads for areas never used or given back already. Discarding every
    /// free area of a 1 GiB heap on every trim made `examples/vec_growth`'s
    /// 32 MiB vectors 5.83x the system allocator's time, 1.36-1.67x with
    /// this (five runs, 2026-11-30).
    Changed,
}

/// Claims area `a` of `reg` whole if it is wholly free (and, for
/// [`Areas::Changed`], gave pages back since a trim last looked), and
/// records what this trim saw in [`Region::trimmed`].
fn claim_if_free(reg: &Region, a: usize, which: Areas) -> bool {
    let (area, seen) = (reg.area(a), reg.trimmed(a));
    // Relaxed: a hint; the claim decides. A step counted after this load
    // leaves the count above what is stored below, so a later trim looks.
    let count = area.frees.load(Ordering::Relaxed);
    if which == Areas::Changed && seen.load(Ordering::Relaxed) == count {
        return false;
    }
    // Relaxed: a hint; the claim decides.
    let claimed = area.load_top() == 0 && area.alloc(reg.g.area_order()).offset.is_some();
    // In use: it can only become wholly free by a step counted later. Claimed:
    // the trim's own free of the area is the next step (another trim's
    // record may land over this one; the only harm is a later needless
    // look, as every record is at most the count after it).
    // Relaxed: a hint, as above.
    seen.store(count + claimed as u64, Ordering::Relaxed);
    claimed
}
