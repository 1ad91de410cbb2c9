//! Per-CPU and shared-path counters, and their snapshot [`CpuStats`].

use super::Ctx;
use crate::sync::{AtomicU64, Ordering};

/// Counters of one CPU slot (or of the shared path), readable at any time.
/// Magazine hits are counted without atomics and published on the CPU's next
/// slow path (and when its handle is released), so `allocs` and `frees` may lag
/// by up to a magazine's worth of operations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuStats {
    /// Successful allocations.
    pub allocs: u64,
    /// Successful frees.
    pub frees: u64,
    /// Allocations that returned `None`.
    pub failed_allocs: u64,
    /// CAS attempts that lost a race and were retried.
    pub cas_retries: u64,
    /// Times the home area changed.
    pub area_switches: u64,
    /// Allocations the loaded magazine could not serve (hits are
    /// `allocs - magazine_misses` for cached sizes).
    pub magazine_misses: u64,
    /// Full magazines taken from or given to the depot.
    pub depot_exchanges: u64,
    /// Objects returned to a slab owned by someone else.
    pub remote_frees: u64,
    /// Drain requests honoured.
    pub drains: u64,
    /// Slabs this CPU gave up while they held objects.
    pub abandoned_slabs: u64,
    /// Abandoned slabs this CPU adopted.
    pub adopted_slabs: u64,
    /// Bytes in this CPU's magazines as of its last slow path (a gauge).
    pub cached_bytes: u64,
}

/// Counters written only by their owner (a handle) or with `fetch_add` (the
/// shared path). Relaxed everywhere: they order nothing, and a reader only
/// needs each value to be one that was written.
#[derive(Default)]
pub(crate) struct Counters {
    allocs: AtomicU64,
    frees: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
    switches: AtomicU64,
    misses: AtomicU64,
    exchanges: AtomicU64,
    remote: AtomicU64,
    drains: AtomicU64,
    abandoned: AtomicU64,
    adopted: AtomicU64,
    cached: AtomicU64,
}

/// Which counter an event bumps.
#[derive(Clone, Copy)]
pub(crate) enum Event {
    Alloc,
    Free,
    Failed,
    Retries,
    Switch,
    Miss,
    Exchange,
    Remote,
    Drain,
    Abandon,
    Adopt,
}

impl Counters {
    fn cell(&self, e: Event) -> &AtomicU64 {
        match e {
            Event::Alloc => &self.allocs,
            Event::Free => &self.frees,
            Event::Failed => &self.failed,
            Event::Retries => &self.retries,
            Event::Switch => &self.switches,
            Event::Miss => &self.misses,
            Event::Exchange => &self.exchanges,
            Event::Remote => &self.remote,
            Event::Drain => &self.drains,
            Event::Abandon => &self.abandoned,
            Event::Adopt => &self.adopted,
        }
    }

    /// Adds `n` when the caller is the only writer: a load and a store, no RMW.
    #[inline]
    pub(crate) fn bump_owned(&self, e: Event, n: u64) {
        if n == 0 {
            return;
        }
        let c = self.cell(e);
        c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }

    /// Sets the cached-bytes gauge (owner only).
    pub(crate) fn set_cached(&self, bytes: u64) {
        // Relaxed: a gauge read by reports.
        self.cached.store(bytes, Ordering::Relaxed);
    }

    /// Adds `n` from any thread.
    #[inline]
    pub(crate) fn bump_shared(&self, e: Event, n: u64) {
        if n != 0 {
            self.cell(e).fetch_add(n, Ordering::Relaxed);
        }
    }

    pub(crate) fn snapshot(&self) -> CpuStats {
        let get = |e| self.cell(e).load(Ordering::Relaxed);
        CpuStats {
            allocs: get(Event::Alloc),
            frees: get(Event::Free),
            failed_allocs: get(Event::Failed),
            cas_retries: get(Event::Retries),
            area_switches: get(Event::Switch),
            magazine_misses: get(Event::Miss),
            depot_exchanges: get(Event::Exchange),
            remote_frees: get(Event::Remote),
            drains: get(Event::Drain),
            abandoned_slabs: get(Event::Abandon),
            adopted_slabs: get(Event::Adopt),
            // Relaxed: a gauge, as the counters.
            cached_bytes: self.cached.load(Ordering::Relaxed),
        }
    }

    /// Adds what one operation's context recorded.
    pub(crate) fn record(&self, ctx: &Ctx, owned: bool) {
        let bump = |e, n: u32| {
            if owned {
                self.bump_owned(e, n as u64)
            } else {
                self.bump_shared(e, n as u64)
            }
        };
        bump(Event::Retries, ctx.retries);
        bump(Event::Switch, ctx.switches);
        bump(Event::Miss, ctx.misses);
        bump(Event::Exchange, ctx.exchanges);
        bump(Event::Remote, ctx.remote);
        bump(Event::Drain, ctx.drains);
        bump(Event::Abandon, ctx.abandoned);
        bump(Event::Adopt, ctx.adopted);
    }
}
