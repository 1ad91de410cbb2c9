//! The per-CPU slow paths: refilling and flushing magazines over slabs (objects of 8 B – 2 KiB) and
//! over the buddy tree (blocks of 4, 8 and 16 KiB), and the drain protocol
//! that bounds what a CPU can keep from others.
//!
//! Flows (Bonwick's, with mimalloc's remote frees):
//!
//! ```text
//! alloc: loaded magazine ─empty→ previous ─empty→ depot full stack
//!        ─none→ refill from the CPU's current slab (local list, then its
//!        return list), an adopted abandoned slab, or a new slab / pages
//! free:  loaded magazine ─full→ previous ─full→ depot (below its limit)
//!        ─else→ rounds go home: own slab (plain list), other slab (return
//!        list CAS), pages (buddy tree)
//! ```
//!
//! A hit on the loaded magazine reads one word others write (its slot's
//! drain flag, Relaxed) and performs no atomic read-modify-write.
//!
//! # No false out-of-memory
//!
//! What a CPU keeps is capped: two magazines per class, each of at most
//! [`crate::Heap::magazine_capacity`] rounds, and one current slab per small
//! class; the sum is [`crate::Heap::cpu_cache_cap`], scaled from the heap size
//! and CPU count at init. Everything else is reclaimable by anyone: full
//! magazines in the depot, abandoned slabs, released handles' caches (flushed
//! at release). When the buddy tree cannot serve, the allocating thread
//! flushes its own caches, raises every slot's drain flag (active CPUs flush
//! on their next call), empties the depot and sweeps abandoned slabs, then searches
//! again. So an allocation fails only when free memory plus what that
//! reclaims is smaller than the request plus the caps of CPUs that do not
//! call in.

use super::place::Hint;
use super::stats::{Event, Tally};
use super::Handle;
use crate::magazine::{MagId, CACHE_CLASSES, MAG_ROUNDS};
use crate::slab::{self, SlabId, SMALL_CLASSES};

impl Handle<'_> {
    /// Makes magazine `m` (or none) the loaded one of class `cc`; returns
    /// the one that was loaded.
    fn swap_loaded(&mut self, cc: usize, m: Option<MagId>) -> Option<MagId> {
        let pool = &self.heap.mags;
        self.cache(|c| c.swap_loaded(pool, cc, m))
    }

    /// A round from the loaded magazine without the drain check (slow paths).
    fn take_round(&mut self, cc: usize) -> Option<usize> {
        self.cache(|c| c.take_round(cc))
    }

    /// Moves the operations counted in the cache to the slot's counters and
    /// refreshes the cached-bytes gauge: exact when `exact` (a release),
    /// else recounting the classes whose magazines changed.
    pub(crate) fn publish_counts(&mut self, exact: bool) {
        let pool = &self.heap.mags;
        let (a, f, cached) = self.cache(|c| {
            let cached = if exact {
                c.recount_all(pool)
            } else {
                c.recount_changed(pool)
            };
            (
                core::mem::take(&mut c.allocs),
                core::mem::take(&mut c.frees),
                cached,
            )
        });
        let counters = &self.slot.counters;
        counters.bump_owned(Event::Alloc, a);
        counters.bump_owned(Event::Free, f);
        counters.set_cached(cached as u64);
    }

    /// Flushes this CPU's magazines if a drain was requested.
    fn honour_drain(&mut self, tally: &mut Tally) {
        if !self.slot.drain_requested() {
            return;
        }
        self.slot.clear_drain();
        if !(crate::mutant::on(crate::mutant::Mutant::DrainSkipsCpu) && self.cpu.index() == 0) {
            self.flush_magazines(tally, false);
            tally.add(Event::Drain, 1);
        }
    }

    /// Empties both magazines of every class: into the depot when `to_depot`
    /// and it has room, else home to slabs and the tree.
    pub(crate) fn flush_magazines(&mut self, tally: &mut Tally, to_depot: bool) {
        let heap = self.heap;
        let depot = heap.mags.depot();
        let owner = Some(self.owner());
        for cc in 0..CACHE_CLASSES {
            let loaded = self.swap_loaded(cc, None);
            let mags = [loaded, self.cache(|c| c.previous[cc].take())];
            for m in mags.into_iter().flatten() {
                // Held by this CPU until given away here.
                if heap.mags.mag(m).len() > 0 && to_depot && depot.put_full(cc, m) {
                    continue;
                }
                heap.flush_rounds(owner, cc, heap.mags.mag(m), tally);
                depot.put_empty(m);
            }
        }
    }

    /// Gives up every current slab (at release).
    pub(crate) fn give_up_slabs(&mut self) {
        for c in 0..SMALL_CLASSES {
            if let Some(id) = self.cache(|cache| cache.current[c].take()) {
                let (reg, s, _) = slab::slab_by_id(&self.heap.table, id);
                // SAFETY: the current slab is owned by this slot's CPU.
                unsafe { self.heap.slabs.give_up(reg, s, id, self.owner()) };
            }
        }
    }

    /// The allocation slow path for cache class `cc`, in three steps.
    #[cold]
    #[inline(never)]
    pub(crate) fn alloc_cached_slow(
        &mut self,
        cc: usize,
        hint: &mut Hint,
        tally: &mut Tally,
    ) -> Option<usize> {
        self.honour_drain(tally);
        tally.add(Event::Miss, 1);
        // 1. The previous magazine, if it has rounds, becomes the loaded one.
        if self.load_previous(cc) {
            return self.take_round(cc);
        }
        // 2. A full magazine from the depot, in exchange for the empty one.
        if self.load_full_from_depot(cc, tally) {
            return self.take_round(cc);
        }
        // 3. Refill from slabs or the buddy tree.
        self.refill_magazine(cc, hint, tally)
    }

    /// Step 1: swaps the loaded and the previous magazine if the previous one
    /// has rounds; false (nothing changed) otherwise.
    fn load_previous(&mut self, cc: usize) -> bool {
        let previous = self.cache(|c| c.previous[cc]);
        if previous.is_none_or(|m| self.heap.mags.mag(m).len() == 0) {
            return false;
        }
        let old = self.swap_loaded(cc, previous);
        self.cache(|c| c.previous[cc] = old);
        true
    }

    /// Step 2: loads a full magazine from the depot and gives the depot the
    /// empty one; false if the depot has none of class `cc`.
    fn load_full_from_depot(&mut self, cc: usize, tally: &mut Tally) -> bool {
        let depot = self.heap.mags.depot();
        let Some(full) = depot.get_full(cc) else {
            return false;
        };
        if let Some(empty) = self.swap_loaded(cc, Some(full)) {
            depot.put_empty(empty);
        }
        tally.add(Event::Exchange, 1);
        true
    }

    /// Step 3: takes half a magazine of fresh rounds, one of which is
    /// returned and the rest loaded; out of memory, reclaims and tries for
    /// one round more.
    fn refill_magazine(&mut self, cc: usize, hint: &mut Hint, tally: &mut Tally) -> Option<usize> {
        let heap = self.heap;
        let want = (heap.mags.cap(cc) as usize).div_ceil(2);
        let mut buf = [0usize; MAG_ROUNDS];
        let n = self.refill(cc, &mut buf[..want], hint, tally);
        if n == 0 {
            return self.refill_after_reclaim(cc, hint, tally);
        }
        if self.cache(|c| c.loaded[cc]).is_none() && !self.load_empty(cc) {
            return self.hand_out_unloaded(cc, &buf[..n], tally);
        }
        // The loaded magazine is held by this CPU and empty (we only get here
        // after steps 1 and 2 found no rounds). It lists the rounds before
        // they leave their slab, so a double-free check always finds them.
        self.cache(|c| c.fill_loaded(cc, &buf[..n - 1]));
        slab::leave_slab(&heap.table, cc, &buf[..n]);
        Some(buf[n - 1])
    }

    /// Out of memory here: flush our own caches, reclaim what anyone may,
    /// and try once more: the no-false-OOM contract.
    fn refill_after_reclaim(
        &mut self,
        cc: usize,
        hint: &mut Hint,
        tally: &mut Tally,
    ) -> Option<usize> {
        let heap = self.heap;
        self.flush_magazines(tally, false);
        heap.reclaim();
        // Our own flush above honoured the request `reclaim` just made.
        self.slot.clear_drain();
        self.refill_one(cc, hint, tally)
    }

    /// Loads an empty magazine from the pool; false if none is left.
    fn load_empty(&mut self, cc: usize) -> bool {
        let Some(m) = self.heap.mags.depot().get_empty() else {
            return false;
        };
        self.swap_loaded(cc, Some(m));
        true
    }

    /// No magazine left: hands out the first of the fresh `rounds`, returns
    /// the rest home.
    fn hand_out_unloaded(
        &mut self,
        cc: usize,
        rounds: &[usize],
        tally: &mut Tally,
    ) -> Option<usize> {
        let heap = self.heap;
        slab::leave_slab(&heap.table, cc, rounds);
        for &p in &rounds[1..] {
            heap.flush_round(Some(self.owner()), cc, p, tally);
        }
        Some(rounds[0])
    }

    fn refill_one(&mut self, cc: usize, hint: &mut Hint, tally: &mut Tally) -> Option<usize> {
        let mut one = [0usize];
        if self.refill(cc, &mut one, hint, tally) == 0 {
            return None;
        }
        slab::leave_slab(&self.heap.table, cc, &one);
        Some(one[0])
    }

    /// Fills `out` with fresh rounds of class `cc`; returns how many. Page
    /// blocks come marked as cached; objects still count as free in their
    /// slab (the caller calls `leave_slab` once a cache lists them).
    fn refill(
        &mut self,
        cc: usize,
        out: &mut [usize],
        hint: &mut Hint,
        tally: &mut Tally,
    ) -> usize {
        if cc >= SMALL_CLASSES {
            return self.refill_pages((cc - SMALL_CLASSES) as u32, out, hint, tally);
        }
        self.refill_objects(cc, out, hint, tally)
    }

    /// Fills `out` with blocks of order `k` from the tree, marked as cached
    /// (several per tree search where the home area has them).
    fn refill_pages(
        &mut self,
        k: u32,
        out: &mut [usize],
        hint: &mut Hint,
        tally: &mut Tally,
    ) -> usize {
        let mut n = 0;
        while n < out.len() {
            match self.heap.alloc_rounds(k, &mut out[n..], hint, tally) {
                0 => break,
                got => n += got,
            }
        }
        n
    }

    /// Fills `out` with objects of small class `c` from the current slab,
    /// giving up exhausted slabs and taking the next (adopted or new).
    fn refill_objects(
        &mut self,
        c: usize,
        out: &mut [usize],
        hint: &mut Hint,
        tally: &mut Tally,
    ) -> usize {
        let owner = self.owner();
        loop {
            let Some(id) = self.current_slab(c, hint, tally) else {
                return 0;
            };
            let (reg, s, base) = slab::slab_by_id(&self.heap.table, id);
            // SAFETY: the current slab is owned by our CPU.
            unsafe {
                let n = s.take(reg, base, out);
                if n > 0 {
                    return n;
                }
                if s.collect(base) > 0 {
                    continue;
                }
                // Exhausted: let it go (anyone adopts it once objects return).
                self.cache(|cache| cache.current[c] = None);
                self.heap.slabs.give_up(reg, s, id, owner);
                tally.add(Event::Abandon, 1);
            }
        }
    }

    /// The current slab of class `c`: the one this CPU holds, else an
    /// adopted or a new one, which becomes current; `None` out of memory.
    fn current_slab(&mut self, c: usize, hint: &mut Hint, tally: &mut Tally) -> Option<SlabId> {
        if let Some(id) = self.cache(|cache| cache.current[c]) {
            return Some(id);
        }
        let id = self.heap.adopt_or_new(c, self.owner(), hint, tally)?;
        self.cache(|cache| cache.current[c] = Some(id));
        Some(id)
    }

    /// The free slow path for cache class `cc`: the loaded magazine is full
    /// or missing. The full loaded magazine becomes the previous one and an
    /// empty one is loaded; with no empty magazine to spare, the loaded
    /// rounds go home.
    #[cold]
    #[inline(never)]
    pub(crate) fn free_cached_slow(&mut self, cc: usize, p: usize, tally: &mut Tally) {
        self.honour_drain(tally);
        if self.push_loaded(cc, p) {
            return; // the drain emptied the magazines
        }
        match self.empty_for_free(cc, tally) {
            Some(e) => {
                let full = self.swap_loaded(cc, Some(e));
                self.cache(|c| c.previous[cc] = full);
            }
            None => {
                if !self.send_loaded_home(cc, tally) {
                    let heap = self.heap;
                    heap.flush_round(Some(self.owner()), cc, p, tally);
                    // A magazine push counts its free; this one is counted here.
                    tally.add(Event::Free, 1);
                    return;
                }
            }
        }
        let pushed = self.push_loaded(cc, p);
        debug_assert!(pushed, "an empty magazine is loaded");
    }

    /// An empty magazine to load for a free: the previous one if empty, else
    /// one from the pool after the full previous one went to the depot (or
    /// home). The previous slot is left empty.
    fn empty_for_free(&mut self, cc: usize, tally: &mut Tally) -> Option<MagId> {
        let heap = self.heap;
        let depot = heap.mags.depot();
        let previous = self.cache(|c| c.previous[cc].take());
        if previous.is_some_and(|m| heap.mags.mag(m).len() == 0) {
            return previous;
        }
        if let Some(m) = previous {
            if depot.put_full(cc, m) || (self.evict_for(cc, tally) && depot.put_full(cc, m)) {
                tally.add(Event::Exchange, 1);
            } else {
                heap.flush_rounds(Some(self.owner()), cc, heap.mags.mag(m), tally);
                depot.put_empty(m);
            }
        }
        depot.get_empty()
    }

    /// The depot is at its limit: sends home a full magazine of a class
    /// that holds more there than class `cc` ([`Depot::evict_for`]); false
    /// if none does.
    fn evict_for(&mut self, cc: usize, tally: &mut Tally) -> bool {
        let heap = self.heap;
        let depot = heap.mags.depot();
        let Some((victim, m)) = depot.evict_for(cc) else {
            return false;
        };
        // Taken from the depot: ours until given back.
        heap.flush_rounds(Some(self.owner()), victim, heap.mags.mag(m), tally);
        depot.put_empty(m);
        true
    }

    /// No magazine to spare: sends the loaded magazine's rounds home and
    /// keeps it loaded, now empty; false if none is loaded.
    fn send_loaded_home(&mut self, cc: usize, tally: &mut Tally) -> bool {
        let heap = self.heap;
        let Some(loaded) = self.swap_loaded(cc, None) else {
            return false;
        };
        heap.flush_rounds(Some(self.owner()), cc, heap.mags.mag(loaded), tally);
        self.swap_loaded(cc, Some(loaded));
        true
    }
}
