//! The event table: one list of events ([`Event`]) from which the public
//! snapshot ([`CpuStats`]), the atomic counters of a CPU slot or of the
//! shared path ([`Counters`]) and the plain per-operation [`Tally`] are all
//! made. Adding a counter is one line in `events!` below plus the place that
//! counts it.

use crate::sync::{AtomicU64, Ordering};

/// Declares [`Event`] and [`CpuStats`] (one field per event, in the same
/// order, plus the cached-bytes gauge) from one list.
macro_rules! events {
    ($($(#[doc = $doc:literal])* $event:ident => $field:ident,)*) => {
        /// Which counter an event bumps (also its index in [`Counters`] and
        /// [`Tally`]). [`Counters::record`] adds a tally in this order.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(usize)]
        pub(crate) enum Event {
            $($event,)*
            /// Bytes in a CPU's magazines (a gauge, set, never added).
            Cached,
        }

        impl Event {
            /// Number of events (the gauge included).
            pub(crate) const COUNT: usize = [$(Event::$event,)* Event::Cached].len();
        }

        /// Counters of one CPU slot (or of the shared path), readable at any
        /// time. Magazine hits are counted without atomics and published on
        /// the CPU's next slow path (and when its handle is released), so
        /// `allocs` and `frees` may lag by up to a magazine's worth of
        /// operations.
        ///
        /// See the example on [`Heap::cpu_stats`](crate::Heap::cpu_stats).
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct CpuStats {
            $($(#[doc = $doc])* pub $field: u64,)*
            /// Bytes in this CPU's magazines (a gauge): each class as of its
            /// last slow path or magazine change, exact after a release.
            pub cached_bytes: u64,
        }

        impl Counters {
            pub(crate) fn snapshot(&self) -> CpuStats {
                CpuStats {
                    $($field: self.get(Event::$event),)*
                    cached_bytes: self.get(Event::Cached),
                }
            }
        }
    };
}

events! {
    /// Successful allocations.
    Alloc => allocs,
    /// Successful frees.
    Free => frees,
    /// Allocations that returned `None`.
    Failed => failed_allocs,
    /// CAS attempts that lost a race and were retried.
    Retries => cas_retries,
    /// Times the home area changed.
    Switch => area_switches,
    /// Allocations the loaded magazine could not serve (hits are
    /// `allocs - magazine_misses` for cached sizes).
    Miss => magazine_misses,
    /// Full magazines taken from or given to the depot.
    Exchange => depot_exchanges,
    /// Objects returned to a slab owned by someone else.
    Remote => remote_frees,
    /// Drain requests honoured.
    Drain => drains,
    /// Slabs this CPU gave up while they held objects.
    Abandon => abandoned_slabs,
    /// Abandoned slabs this CPU adopted.
    Adopt => adopted_slabs,
}

/// What one operation counted, without atomics; added to [`Counters`] at
/// its end ([`Counters::record`]).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Tally([u32; Event::COUNT]);

impl Tally {
    /// Counts `n` events `e`.
    #[inline]
    pub(crate) fn add(&mut self, e: Event, n: u32) {
        self.0[e as usize] += n;
    }
}

/// The counters of a CPU slot or of the shared path, one per [`Event`],
/// written only by their owner (a handle) or with `fetch_add` (the shared
/// path). Relaxed everywhere: they order nothing, and a reader only needs
/// each value to be one that was written.
#[derive(Default)]
pub(crate) struct Counters([AtomicU64; Event::COUNT]);

impl Counters {
    fn get(&self, e: Event) -> u64 {
        self.0[e as usize].load(Ordering::Relaxed)
    }

    /// Adds `n` to counter `i`: as its only writer (a load and a store, no
    /// RMW) or from any thread (`fetch_add`).
    #[inline]
    fn add(&self, i: usize, n: u64, owned: bool) {
        if n == 0 {
            return;
        }
        let c = &self.0[i];
        if owned {
            c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
        } else {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Adds `n` when the caller is the only writer.
    #[inline]
    pub(crate) fn bump_owned(&self, e: Event, n: u64) {
        self.add(e as usize, n, true);
    }

    /// Adds `n` from any thread.
    #[inline]
    pub(crate) fn bump_shared(&self, e: Event, n: u64) {
        self.add(e as usize, n, false);
    }

    /// Sets the cached-bytes gauge (owner only).
    pub(crate) fn set_cached(&self, bytes: u64) {
        // Relaxed: a gauge read by reports.
        self.0[Event::Cached as usize].store(bytes, Ordering::Relaxed);
    }

    /// Adds what one operation tallied, event by event in [`Event`] order
    /// (events it did not count cost nothing).
    #[inline]
    pub(crate) fn record(&self, t: &Tally, owned: bool) {
        for (i, &n) in t.0.iter().enumerate() {
            self.add(i, n as u64, owned);
        }
    }
}
