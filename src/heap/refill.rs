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
//! A hit on the loaded magazine reads one shared word (the drain epoch,
//! Relaxed) and performs no atomic read-modify-write.
//!
//! # No false out-of-memory
//!
//! What a CPU keeps is capped: two magazines per class, each of at most
//! [`crate::Heap::magazine_capacity`] rounds, and one current slab per small
//! class; the sum is [`crate::Heap::cpu_cache_cap`], scaled from the heap size
//! and CPU count at init. Everything else is reclaimable by anyone: full
//! magazines in the depot, abandoned slabs, released handles' caches (flushed
//! at release). When the buddy tree cannot serve, the allocating thread
//! flushes its own caches, raises the drain epoch (active CPUs flush on their
//! next call), empties the depot and sweeps abandoned slabs, then searches
//! again. So an allocation fails only when free memory plus what that
//! reclaims is smaller than the request plus the caps of CPUs that do not
//! call in.

use super::place::Hint;
use super::stats::{Event, Tally};
use super::Handle;
use crate::magazine::{MagId, CACHE_CLASSES, MAG_ROUNDS};
use crate::slab::{self, SMALL_CLASSES};
use crate::sync::Ordering;

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
    /// refreshes the cached-bytes gauge.
    pub(crate) fn publish_counts(&mut self) {
        let pool = &self.heap.mags;
        let (a, f, cached) = self.cache(|c| {
            let cached = c.cached_bytes(pool);
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

    /// Flushes this CPU's magazines if the drain epoch moved.
    fn honour_drain(&mut self, tally: &mut Tally) {
        // Relaxed: see `pop_loaded`.
        let epoch = self.heap.drain_epoch.load(Ordering::Relaxed);
        if self.cache(|c| c.epoch) != epoch {
            if !(crate::mutant::on(crate::mutant::Mutant::DrainSkipsCpu) && self.cpu.index() == 0) {
                self.flush_magazines(tally, false);
                tally.add(Event::Drain, 1);
            }
            self.cache(|c| c.epoch = epoch);
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

    /// The allocation slow path for cache class `cc`.
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
        let heap = self.heap;
        let depot = heap.mags.depot();
        // 1. The previous magazine, if it has rounds, becomes the loaded one.
        let previous = self.cache(|c| c.previous[cc]);
        if previous.is_some_and(|m| heap.mags.mag(m).len() > 0) {
            let old = self.swap_loaded(cc, previous);
            self.cache(|c| c.previous[cc] = old);
            return self.take_round(cc);
        }
        // 2. A full magazine from the depot, in exchange for the empty one.
        if let Some(full) = depot.get_full(cc) {
            if let Some(empty) = self.swap_loaded(cc, Some(full)) {
                depot.put_empty(empty);
            }
            tally.add(Event::Exchange, 1);
            return self.take_round(cc);
        }
        // 3. Refill from slabs or the buddy tree: half a magazine, one round
        // of which is returned.
        let want = (heap.mags.cap(cc) as usize).div_ceil(2);
        let mut buf = [0usize; MAG_ROUNDS];
        let n = self.refill(cc, &mut buf[..want], hint, tally);
        if n == 0 {
            // Out of memory here: flush our own caches, reclaim what anyone
            // may, and try once more: the no-false-OOM contract.
            self.flush_magazines(tally, false);
            heap.reclaim();
            self.cache(|c| c.epoch = heap.drain_epoch.load(Ordering::Relaxed));
            return self.refill_one(cc, hint, tally);
        }
        if self.cache(|c| c.loaded[cc]).is_none() {
            match depot.get_empty() {
                Some(m) => {
                    self.swap_loaded(cc, Some(m));
                }
                None => {
                    // No magazine left: hand out one round, return the rest.
                    slab::leave_slab(&heap.table, cc, &buf[..n]);
                    for &p in &buf[1..n] {
                        heap.flush_round(Some(self.owner()), cc, p, tally);
                    }
                    return Some(buf[0]);
                }
            }
        }
        // The loaded magazine is held by this CPU and empty (we only get here
        // after steps 1 and 2 found no rounds). It lists the rounds before
        // they leave their slab, so a double-free check always finds them.
        self.cache(|c| c.fill_loaded(cc, &buf[..n - 1]));
        slab::leave_slab(&heap.table, cc, &buf[..n]);
        Some(buf[n - 1])
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
            let k = (cc - SMALL_CLASSES) as u32;
            let mut n = 0;
            while n < out.len() {
                match self.heap.alloc_order(k, hint, tally) {
                    Some(p) => out[n] = p.as_ptr() as usize,
                    None => break,
                }
                if !crate::mutant::on(crate::mutant::Mutant::RefillSkipsMark) {
                    self.heap.cache_block(out[n], k);
                }
                n += 1;
            }
            return n;
        }
        let owner = self.owner();
        loop {
            let id = match self.cache(|c| c.current[cc]) {
                Some(id) => id,
                None => {
                    let Some(id) = self.heap.adopt_or_new(cc, owner, hint, tally) else {
                        return 0;
                    };
                    self.cache(|c| c.current[cc] = Some(id));
                    id
                }
            };
            let (reg, s, base) = slab::slab_by_id(&self.heap.table, id);
            // SAFETY: the current slab is owned by our CPU.
            unsafe {
                let n = s.take(base, out);
                if n > 0 {
                    return n;
                }
                if s.collect(base) > 0 {
                    continue;
                }
                // Exhausted: let it go (anyone adopts it once objects return).
                self.cache(|c| c.current[cc] = None);
                self.heap.slabs.give_up(reg, s, id, owner);
                tally.add(Event::Abandon, 1);
            }
        }
    }

    /// The free slow path for cache class `cc`: the loaded magazine is full
    /// or missing.
    #[cold]
    #[inline(never)]
    pub(crate) fn free_cached_slow(&mut self, cc: usize, p: usize, tally: &mut Tally) {
        self.honour_drain(tally);
        let heap = self.heap;
        let depot = heap.mags.depot();
        let owner = Some(self.owner());
        if self.push_loaded(cc, p) {
            return; // the drain emptied the magazines
        }
        let previous = self.cache(|c| c.previous[cc].take());
        let prev_empty = previous.is_some_and(|m| heap.mags.mag(m).len() == 0);
        // An empty magazine to load: the previous one if empty, else one from
        // the pool after the full previous one went to the depot (or home).
        let empty = if prev_empty {
            previous
        } else {
            if let Some(m) = previous {
                if depot.put_full(cc, m) {
                    tally.add(Event::Exchange, 1);
                } else {
                    heap.flush_rounds(owner, cc, heap.mags.mag(m), tally);
                    depot.put_empty(m);
                }
            }
            depot.get_empty()
        };
        match empty {
            Some(e) => {
                // The full loaded magazine becomes the previous one.
                let full = self.swap_loaded(cc, Some(e));
                self.cache(|c| c.previous[cc] = full);
            }
            None => {
                // No magazine to spare: send the loaded rounds home.
                let Some(loaded) = self.swap_loaded(cc, None) else {
                    heap.flush_round(owner, cc, p, tally);
                    return;
                };
                heap.flush_rounds(owner, cc, heap.mags.mag(loaded), tally);
                self.swap_loaded(cc, Some(loaded));
            }
        }
        let pushed = self.push_loaded(cc, p);
        debug_assert!(pushed, "an empty magazine is loaded");
    }
}
