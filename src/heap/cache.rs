//! The per-CPU fast path: magazines over slabs (objects of 8 B – 2 KiB) and
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

use super::{Ctx, Handle};
use crate::magazine::Magazine;
use crate::slab::{self, MAX_SMALL, SMALL_CLASSES};
use crate::sync::Ordering;
use crate::PAGE_SIZE;

/// Block orders 0, 1, 2 (4, 8, 16 KiB) are cached in magazines too.
pub(crate) const PAGE_CLASSES: usize = 3;
/// Small classes plus page classes.
pub(crate) const CACHE_CLASSES: usize = SMALL_CLASSES + PAGE_CLASSES;
/// Largest request served through magazines.
pub(crate) const MAX_CACHED: usize = PAGE_SIZE << (PAGE_CLASSES - 1);

/// Cache class of a request of `1 ..= MAX_CACHED` bytes.
#[inline]
pub(crate) fn cache_class(size: usize) -> usize {
    if size <= MAX_SMALL {
        slab::class_of(size)
    } else {
        SMALL_CLASSES
            + size
                .div_ceil(PAGE_SIZE)
                .next_power_of_two()
                .trailing_zeros() as usize
    }
}

/// Bytes of one round of cache class `cc`.
#[inline]
pub(crate) const fn round_size(cc: usize) -> usize {
    if cc < SMALL_CLASSES {
        slab::class_size(cc)
    } else {
        PAGE_SIZE << (cc - SMALL_CLASSES)
    }
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
    /// Operations counted here without atomics and added to the slot's
    /// counters on slow paths and at release.
    pub(crate) allocs: u64,
    pub(crate) frees: u64,
    /// Magazine index + 1 (0 = none).
    loaded: [u32; CACHE_CLASSES],
    previous: [u32; CACHE_CLASSES],
    /// Current slab id + 1 per small class (0 = none).
    current: [u32; SMALL_CLASSES],
    /// The drain epoch this cache last honoured.
    epoch: u64,
}

impl CpuCache {
    /// An empty cache; `sentinel` is the pool's always-empty magazine.
    pub(crate) fn new(sentinel: *const Magazine) -> Self {
        Self {
            mag: [sentinel; CACHE_CLASSES],
            limit: [0; CACHE_CLASSES],
            allocs: 0,
            frees: 0,
            loaded: [0; CACHE_CLASSES],
            previous: [0; CACHE_CLASSES],
            current: [0; SMALL_CLASSES],
            epoch: 0,
        }
    }
}

impl Handle<'_> {
    #[inline(always)]
    fn token(&self) -> u32 {
        self.cpu as u32 + 1
    }

    #[inline(always)]
    fn cache<R>(&mut self, f: impl FnOnce(&mut CpuCache) -> R) -> R {
        // SAFETY: the handle holds the slot exclusively.
        self.slot.cache.with_mut(|c| f(unsafe { &mut *c }))
    }

    /// Pops a round of class `cc` from the loaded magazine (the fast path):
    /// `None` if it is empty or missing, or a drain is due (checked here
    /// only: a CPU that allocates honours drains on its next allocation).
    #[inline(always)]
    pub(crate) fn pop_loaded(&mut self, cc: usize) -> Option<usize> {
        // Relaxed: the epoch is a request flag; a late view only delays the
        // flush by one call.
        let epoch = self.heap.drain_epoch.load(Ordering::Relaxed);
        self.cache(|c| {
            if c.epoch != epoch {
                return None;
            }
            debug_assert!(cc < CACHE_CLASSES);
            // SAFETY: `cc` is a cache class (callers derive it from a size or
            // a descriptor we wrote); the loaded magazine (held by this CPU)
            // or the sentinel lives in the heap's pool for its lifetime.
            let p = unsafe { &**c.mag.get_unchecked(cc) }.pop()?;
            c.allocs += 1;
            Some(p)
        })
    }

    /// Pushes a round of class `cc` onto the loaded magazine (the fast path):
    /// false if it is full or missing.
    #[inline(always)]
    pub(crate) fn push_loaded(&mut self, cc: usize, p: usize) -> bool {
        self.cache(|c| {
            debug_assert!(cc < CACHE_CLASSES);
            // SAFETY: as in `pop_loaded`; the sentinel's limit is 0.
            let (m, limit) = unsafe { (&**c.mag.get_unchecked(cc), *c.limit.get_unchecked(cc)) };
            if !m.push(p, limit) {
                return false;
            }
            c.frees += 1;
            true
        })
    }

    /// Makes magazine `m` (index + 1, or 0 for none) the loaded one of class
    /// `cc`; returns the one that was loaded.
    fn swap_loaded(&mut self, cc: usize, m: u32) -> u32 {
        let heap = self.heap;
        self.cache(|c| {
            let old = c.loaded[cc];
            c.loaded[cc] = m;
            c.limit[cc] = if m == 0 { 0 } else { heap.mag_cap[cc] };
            c.mag[cc] = match m {
                0 => heap.sentinel(),
                m => heap.mag(m - 1),
            };
            old
        })
    }

    /// A round from the loaded magazine without the drain check (slow paths).
    fn take_round(&mut self, cc: usize) -> Option<usize> {
        // SAFETY: as in `pop_loaded`.
        self.cache(|c| unsafe { &*c.mag[cc] }.pop())
    }

    /// Moves the operations counted in the cache to the slot's counters and
    /// refreshes the cached-bytes gauge.
    pub(crate) fn publish_counts(&mut self) {
        let heap = self.heap;
        let (a, f, cached) = self.cache(|c| {
            let cached: usize = (0..CACHE_CLASSES)
                .map(|cc| {
                    let prev = match c.previous[cc] {
                        0 => 0,
                        m => heap.mag(m - 1).len(),
                    };
                    // SAFETY: as in `pop_loaded`.
                    (unsafe { &*c.mag[cc] }.len() + prev) as usize * round_size(cc)
                })
                .sum();
            (
                core::mem::take(&mut c.allocs),
                core::mem::take(&mut c.frees),
                cached,
            )
        });
        let counters = &self.slot.counters;
        counters.bump_owned(super::handle::Event::Alloc, a);
        counters.bump_owned(super::handle::Event::Free, f);
        counters.set_cached(cached as u64);
    }

    /// Flushes this CPU's magazines if the drain epoch moved.
    fn honour_drain(&mut self, ctx: &mut Ctx) {
        // Relaxed: see `pop_loaded`.
        let epoch = self.heap.drain_epoch.load(Ordering::Relaxed);
        if self.cache(|c| c.epoch) != epoch {
            if !(crate::mutant::on(crate::mutant::Mutant::DrainSkipsCpu) && self.cpu == 0) {
                self.flush_magazines(ctx, false);
                ctx.drains += 1;
            }
            self.cache(|c| c.epoch = epoch);
        }
    }

    /// Empties both magazines of every class: into the depot when `to_depot`
    /// and it has room, else home to slabs and the tree.
    pub(crate) fn flush_magazines(&mut self, ctx: &mut Ctx, to_depot: bool) {
        let heap = self.heap;
        let depot = heap.depot();
        let token = self.token();
        for cc in 0..CACHE_CLASSES {
            let loaded = self.swap_loaded(cc, 0);
            let mags = [loaded, self.cache(|c| core::mem::take(&mut c.previous[cc]))];
            for m in mags.into_iter().filter(|&m| m != 0).map(|m| m - 1) {
                // Held by this CPU until given away here.
                if heap.mag(m).len() > 0 && to_depot && depot.put_full(cc, m) {
                    continue;
                }
                heap.flush_rounds(token, cc, heap.mag(m), ctx);
                depot.put_empty(m);
            }
        }
    }

    /// Gives up every current slab (at release).
    pub(crate) fn give_up_slabs(&mut self) {
        for c in 0..SMALL_CLASSES {
            let id = self.cache(|cache| core::mem::take(&mut cache.current[c]));
            if id != 0 {
                let (reg, s, _) = self.heap.slab_by_id(id - 1);
                // SAFETY: the current slab is owned by this slot's token.
                unsafe { self.heap.give_up_slab(reg, s, id - 1, self.token()) };
            }
        }
    }

    /// The allocation slow path for cache class `cc`.
    #[cold]
    #[inline(never)]
    pub(crate) fn alloc_cached_slow(&mut self, cc: usize, ctx: &mut Ctx) -> Option<usize> {
        self.honour_drain(ctx);
        ctx.misses += 1;
        let heap = self.heap;
        let depot = heap.depot();
        // 1. The previous magazine, if it has rounds, becomes the loaded one.
        let previous = self.cache(|c| c.previous[cc]);
        if previous != 0 && heap.mag(previous - 1).len() > 0 {
            let old = self.swap_loaded(cc, previous);
            self.cache(|c| c.previous[cc] = old);
            return self.take_round(cc);
        }
        // 2. A full magazine from the depot, in exchange for the empty one.
        if let Some(full) = depot.get_full(cc) {
            let empty = self.swap_loaded(cc, full + 1);
            if empty != 0 {
                depot.put_empty(empty - 1);
            }
            ctx.exchanges += 1;
            return self.take_round(cc);
        }
        // 3. Refill from slabs or the buddy tree: half a magazine, one round
        // of which is returned.
        let want = (heap.mag_cap[cc] as usize).div_ceil(2);
        let mut buf = [0usize; crate::magazine::MAG_ROUNDS];
        let n = self.refill(cc, &mut buf[..want], ctx);
        if n == 0 {
            // Out of memory here: flush our own caches, reclaim what anyone
            // may, and try once more: the no-false-OOM contract.
            self.flush_magazines(ctx, false);
            heap.reclaim();
            self.cache(|c| c.epoch = heap.drain_epoch.load(Ordering::Relaxed));
            return self.refill_one(cc, ctx);
        }
        if self.cache(|c| c.loaded[cc]) == 0 {
            match depot.get_empty() {
                Some(m) => {
                    self.swap_loaded(cc, m + 1);
                }
                None => {
                    // No magazine left: hand out one round, return the rest.
                    heap.leave_slab(cc, &buf[..n]);
                    for &p in &buf[1..n] {
                        heap.flush_round(self.token(), cc, p, ctx);
                    }
                    return Some(buf[0]);
                }
            }
        }
        // The loaded magazine is held by this CPU and empty (we only get here
        // after steps 1 and 2 found no rounds). It lists the rounds before
        // they leave their slab, so a double-free check always finds them.
        // SAFETY: as in `pop_loaded`.
        self.cache(|c| unsafe { &*c.mag[cc] }.fill(&buf[..n - 1]));
        heap.leave_slab(cc, &buf[..n]);
        Some(buf[n - 1])
    }

    fn refill_one(&mut self, cc: usize, ctx: &mut Ctx) -> Option<usize> {
        let mut one = [0usize];
        if self.refill(cc, &mut one, ctx) == 0 {
            return None;
        }
        self.heap.leave_slab(cc, &one);
        Some(one[0])
    }

    /// Fills `out` with fresh rounds of class `cc`; returns how many. Page
    /// blocks come marked as cached; objects still count as free in their
    /// slab (the caller calls `leave_slab` once a cache lists them).
    fn refill(&mut self, cc: usize, out: &mut [usize], ctx: &mut Ctx) -> usize {
        if cc >= SMALL_CLASSES {
            let k = (cc - SMALL_CLASSES) as u32;
            let mut n = 0;
            while n < out.len() {
                match self.heap.alloc_order(k, ctx) {
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
        let token = self.token();
        loop {
            let cur = self.cache(|c| c.current[cc]);
            let id = if cur != 0 {
                cur - 1
            } else {
                let Some(id) = self.heap.adopt_or_new(cc, token, ctx) else {
                    return 0;
                };
                self.cache(|c| c.current[cc] = id + 1);
                id
            };
            let (reg, s, base) = self.heap.slab_by_id(id);
            // SAFETY: the current slab is owned by our token.
            unsafe {
                let n = s.take(base, out);
                if n > 0 {
                    return n;
                }
                if s.collect(base) > 0 {
                    continue;
                }
                // Exhausted: let it go (anyone adopts it once objects return).
                self.cache(|c| c.current[cc] = 0);
                self.heap.give_up_slab(reg, s, id, token);
                ctx.abandoned += 1;
            }
        }
    }

    /// The free slow path for cache class `cc`: the loaded magazine is full
    /// or missing.
    #[cold]
    #[inline(never)]
    pub(crate) fn free_cached_slow(&mut self, cc: usize, p: usize, ctx: &mut Ctx) {
        self.honour_drain(ctx);
        let heap = self.heap;
        let depot = heap.depot();
        let token = self.token();
        if self.push_loaded(cc, p) {
            return; // the drain emptied the magazines
        }
        let previous = self.cache(|c| core::mem::take(&mut c.previous[cc]));
        let prev_empty = previous != 0 && heap.mag(previous - 1).len() == 0;
        // An empty magazine to load: the previous one if empty, else one from
        // the pool after the full previous one went to the depot (or home).
        let empty = if prev_empty {
            Some(previous - 1)
        } else {
            if previous != 0 {
                if depot.put_full(cc, previous - 1) {
                    ctx.exchanges += 1;
                } else {
                    heap.flush_rounds(token, cc, heap.mag(previous - 1), ctx);
                    depot.put_empty(previous - 1);
                }
            }
            depot.get_empty()
        };
        match empty {
            Some(e) => {
                // The full loaded magazine becomes the previous one.
                let full = self.swap_loaded(cc, e + 1);
                self.cache(|c| c.previous[cc] = full);
            }
            None => {
                // No magazine to spare: send the loaded rounds home.
                let loaded = self.swap_loaded(cc, 0);
                if loaded == 0 {
                    heap.flush_round(token, cc, p, ctx);
                    return;
                }
                heap.flush_rounds(token, cc, heap.mag(loaded - 1), ctx);
                self.swap_loaded(cc, loaded);
            }
        }
        let pushed = self.push_loaded(cc, p);
        debug_assert!(pushed, "an empty magazine is loaded");
    }
}
