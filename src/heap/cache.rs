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

use super::{Ctx, Handle, Heap};
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
#[derive(Clone, Copy, Default)]
pub(crate) struct CpuCache {
    /// Magazine index + 1 (0 = none).
    loaded: [u32; CACHE_CLASSES],
    previous: [u32; CACHE_CLASSES],
    /// Current slab id + 1 per small class (0 = none).
    current: [u32; SMALL_CLASSES],
    /// The drain epoch this cache last honoured.
    epoch: u64,
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
    /// `None` if it is empty, missing, or a drain is due.
    #[inline(always)]
    pub(crate) fn pop_loaded(&mut self, cc: usize) -> Option<usize> {
        self.epoch_current().then(|| self.take_round(cc)).flatten()
    }

    /// Pushes a round of class `cc` onto the loaded magazine (the fast path):
    /// false if it is full, missing, or a drain is due.
    #[inline(always)]
    pub(crate) fn push_loaded(&mut self, cc: usize, p: usize) -> bool {
        self.epoch_current() && self.put_round(cc, p)
    }

    /// Whether this CPU has honoured the latest drain request.
    #[inline(always)]
    fn epoch_current(&mut self) -> bool {
        // Relaxed: the epoch is a request flag; a late view only delays the
        // flush by one call.
        let epoch = self.heap.drain_epoch.load(Ordering::Relaxed);
        self.cache(|c| c.epoch == epoch)
    }

    #[inline(always)]
    fn take_round(&mut self, cc: usize) -> Option<usize> {
        let heap = self.heap;
        self.cache(|c| {
            let m = c.loaded[cc].checked_sub(1)?;
            // SAFETY: the loaded magazine is held by this CPU.
            unsafe {
                heap.mag(m).with(|r| {
                    r.count.checked_sub(1).map(|n| {
                        r.count = n;
                        r.slots[n as usize]
                    })
                })
            }
        })
    }

    #[inline(always)]
    fn put_round(&mut self, cc: usize, p: usize) -> bool {
        let heap = self.heap;
        let cap = heap.mag_cap[cc];
        self.cache(|c| {
            let Some(m) = c.loaded[cc].checked_sub(1) else {
                return false;
            };
            // SAFETY: as in `take_round`.
            unsafe {
                heap.mag(m).with(|r| {
                    let room = r.count < cap;
                    if room {
                        r.slots[r.count as usize] = p;
                        r.count += 1;
                    }
                    room
                })
            }
        })
    }

    /// Flushes this CPU's magazines if the drain epoch moved.
    fn honour_drain(&mut self, ctx: &mut Ctx) {
        // Relaxed: see `pop_loaded`.
        let epoch = self.heap.drain_epoch.load(Ordering::Relaxed);
        if self.cache(|c| c.epoch) != epoch {
            self.flush_magazines(ctx, false);
            self.cache(|c| c.epoch = epoch);
            ctx.drains += 1;
        }
    }

    /// Empties both magazines of every class: into the depot when `to_depot`
    /// and it has room, else home to slabs and the tree.
    pub(crate) fn flush_magazines(&mut self, ctx: &mut Ctx, to_depot: bool) {
        let heap = self.heap;
        let depot = heap.depot();
        let token = self.token();
        for cc in 0..CACHE_CLASSES {
            let mags = self.cache(|c| {
                [
                    core::mem::take(&mut c.loaded[cc]),
                    core::mem::take(&mut c.previous[cc]),
                ]
            });
            for m in mags.into_iter().filter(|&m| m != 0).map(|m| m - 1) {
                // SAFETY: held by this CPU until given away here.
                let n = unsafe { heap.mag(m).with(|r| r.count) };
                if n > 0 && to_depot && depot.put_full(cc, m) {
                    continue;
                }
                // SAFETY: as above.
                unsafe { heap.mag(m).with(|r| heap.flush_rounds(token, cc, r, ctx)) };
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
        // 1. The previous magazine, if it has rounds.
        let swapped = self.cache(|c| {
            // SAFETY: held by this CPU.
            let prev_full = c.previous[cc] != 0
                && unsafe { heap.mag(c.previous[cc] - 1).with(|r| r.count > 0) };
            if prev_full {
                core::mem::swap(&mut c.loaded[cc], &mut c.previous[cc]);
            }
            prev_full
        });
        if swapped {
            return self.take_round(cc);
        }
        // 2. A full magazine from the depot, in exchange for the empty one.
        if let Some(full) = depot.get_full(cc) {
            let empty = self.cache(|c| core::mem::replace(&mut c.loaded[cc], full + 1));
            if empty != 0 {
                depot.put_empty(empty - 1);
            }
            ctx.exchanges += 1;
            return self.take_round(cc);
        }
        // 3. Refill the loaded magazine from slabs or the buddy tree.
        if self.cache(|c| c.loaded[cc]) == 0 {
            match depot.get_empty() {
                Some(m) => self.cache(|c| c.loaded[cc] = m + 1),
                None => return self.refill_one(cc, ctx),
            }
        }
        let m = self.cache(|c| c.loaded[cc]) - 1;
        let want = (heap.mag_cap[cc] as usize).div_ceil(2);
        let mut buf = [0usize; crate::magazine::MAG_ROUNDS];
        let n = self.refill(cc, &mut buf[..want], ctx);
        if n == 0 {
            // Out of memory here: flush our own caches (which returns `m` to
            // the pool), reclaim what anyone may, and try once more: the
            // no-false-OOM contract.
            self.flush_magazines(ctx, false);
            heap.reclaim();
            self.cache(|c| c.epoch = heap.drain_epoch.load(Ordering::Relaxed));
            return self.refill_one(cc, ctx);
        }
        // SAFETY: the loaded magazine is ours and empty.
        unsafe {
            heap.mag(m).with(|r| {
                r.slots[..n].copy_from_slice(&buf[..n]);
                r.count = n as u32 - 1;
                Some(r.slots[n - 1])
            })
        }
    }

    fn refill_one(&mut self, cc: usize, ctx: &mut Ctx) -> Option<usize> {
        let mut one = [0usize];
        (self.refill(cc, &mut one, ctx) == 1).then_some(one[0])
    }

    /// Fills `out` with fresh rounds of class `cc`; returns how many.
    fn refill(&mut self, cc: usize, out: &mut [usize], ctx: &mut Ctx) -> usize {
        if cc >= SMALL_CLASSES {
            let k = (cc - SMALL_CLASSES) as u32;
            let mut n = 0;
            while n < out.len() {
                match self.heap.alloc_order(k, ctx) {
                    Some(p) => out[n] = p.as_ptr() as usize,
                    None => break,
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
                    if !cfg!(feature = "checked") {
                        out[..n].iter().for_each(|&p| Heap::unmark(p, cc));
                    }
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
    /// (or missing, or a drain is due).
    #[cold]
    #[inline(never)]
    pub(crate) fn free_cached_slow(&mut self, cc: usize, p: usize, ctx: &mut Ctx) {
        self.honour_drain(ctx);
        let heap = self.heap;
        let depot = heap.depot();
        let token = self.token();
        let get = |h: &mut Self| h.cache(|c| (c.loaded[cc], c.previous[cc]));
        let (loaded, previous) = get(self);
        if loaded == 0 {
            match depot.get_empty() {
                Some(m) => self.cache(|c| c.loaded[cc] = m + 1),
                None => {
                    heap.flush_round(token, cc, p, ctx);
                    return;
                }
            }
        } else {
            // SAFETY: held by this CPU.
            let prev_empty =
                previous != 0 && unsafe { heap.mag(previous - 1).with(|r| r.count == 0) };
            if prev_empty || previous == 0 {
                // Loaded is full: it becomes previous; an empty one is loaded.
                let empty = if prev_empty {
                    Some(previous - 1)
                } else {
                    depot.get_empty()
                };
                match empty {
                    Some(e) => self.cache(|c| {
                        c.previous[cc] = loaded;
                        c.loaded[cc] = e + 1;
                    }),
                    None => {
                        // SAFETY: held by this CPU.
                        unsafe {
                            heap.mag(loaded - 1)
                                .with(|r| heap.flush_rounds(token, cc, r, ctx))
                        };
                    }
                }
            } else {
                // Both full: the previous goes to the depot (or home), and
                // loaded becomes previous.
                if depot.put_full(cc, previous - 1) {
                    ctx.exchanges += 1;
                } else {
                    // SAFETY: held by this CPU.
                    unsafe {
                        heap.mag(previous - 1)
                            .with(|r| heap.flush_rounds(token, cc, r, ctx))
                    };
                    depot.put_empty(previous - 1);
                }
                match depot.get_empty() {
                    Some(e) => self.cache(|c| {
                        c.previous[cc] = loaded;
                        c.loaded[cc] = e + 1;
                    }),
                    None => {
                        self.cache(|c| c.previous[cc] = 0);
                        // SAFETY: held by this CPU.
                        unsafe {
                            heap.mag(loaded - 1)
                                .with(|r| heap.flush_rounds(token, cc, r, ctx))
                        };
                    }
                }
            }
        }
        let pushed = self.put_round(cc, p);
        debug_assert!(pushed, "an empty magazine is loaded");
    }
}
