//! The counting backend (`RUSTFLAGS="--cfg magbuddy_count_atomics"`):
//! the hardware's atomics, each access also counted on the calling thread.
//!
//! What this measures is what bounds scaling on a machine bigger than the
//! one the benchmarks run on: every atomic read-modify-write takes its cache
//! line exclusively (a failed CAS too), and every atomic store writes a line
//! that other CPUs may hold. Counting them per operation is exact and the
//! same on 2 cores as on 200, where timing is neither.
//!
//! Design, and why:
//!
//! * A rustc cfg, not a cargo feature: feature unification would turn
//!   counting on in every build of the workspace that some member asked for
//!   it in, timing builds included. A cfg is set for one build only.
//! * Wrappers over `portable_atomic`'s types (the normal backend), one macro
//!   for all of them, `#[repr(transparent)]` so sizes, alignment and the
//!   overlay of [`raw::AtomicU32`] on heap memory stay the same. Every
//!   ordering is passed through unchanged; each method does exactly the one
//!   hardware operation the unwrapped type would (and `fetch_update` the
//!   load and CAS loop `core` does), so the counted program is the normal
//!   one plus the counting.
//! * The counters are a thread-local of plain `Cell<u64>`s, so counting
//!   writes no shared line and adds no atomic of its own: it perturbs what
//!   it counts only by its cost. A thread-local needs `std` (the crate is
//!   `#![no_std]`; `#[thread_local]` is unstable), so the cfg requires
//!   feature `std` (or a test build) and fails to compile without it rather
//!   than counting nothing. Being per OS thread, the counts of one thread's
//!   calls are those of [`counts`] before and after them, whatever other
//!   threads do meanwhile.
//! * Per call site too (`#[track_caller]` on every counting method, a
//!   fixed table in the same thread-local, no allocation): the totals say
//!   how many, the sites which words, and so whether a line is the CPU's
//!   own or heap-wide. The hidden location argument and the table probe
//!   are more cost, never another shared write.
//! * Only the facade's types are counted: the std adapter's own statics
//!   (`MagbuddyAlloc`, `GlobalHeap`) and test switches use `core` atomics
//!   directly and are not allocator work on the paths measured.
//! * Under `--cfg loom` or `--cfg shuttle` the model checker's atomics win
//!   and nothing is counted.

use core::cell::Cell;

use super::{AtomicCounts, Ordering};

/// What an access was; indexes the counters of [`Tally`] and [`Site`].
#[derive(Clone, Copy)]
enum Kind {
    Rmw = 0,
    CasFailed = 1,
    Store = 2,
    Load = 3,
}

/// Entries of the per-site table: a power of two, well above the crate's
/// atomic call sites (about 160), so probes stay short.
const SITES: usize = 512;

/// One call site's counts: `loc` is the address of its
/// `core::panic::Location` (0: a free entry).
struct Site {
    loc: Cell<usize>,
    n: [Cell<u64>; 4],
}

/// The calling thread's counts (plain cells: see the module docs): totals,
/// and per call site through `#[track_caller]` (the line in `src/` that
/// called the wrapper; for `fetch_update`, the line that called it). A site
/// beyond the table's room is in the totals only.
struct Tally {
    total: [Cell<u64>; 4],
    sites: [Site; SITES],
}

std::thread_local! {
    static TALLY: Tally = const {
        Tally {
            total: [const { Cell::new(0) }; 4],
            sites: [const { Site { loc: Cell::new(0), n: [const { Cell::new(0) }; 4] } }; SITES],
        }
    };
}

/// Adds one access of `kind` at the caller's site to this thread's counts.
/// `try_with`: an access during the thread's teardown (after its
/// thread-locals are gone) goes uncounted rather than panicking inside an
/// allocator.
#[inline(always)]
#[track_caller]
fn bump(kind: Kind) {
    let loc = core::panic::Location::caller() as *const _ as usize;
    let _ = TALLY.try_with(|t| {
        let inc = |c: &Cell<u64>| c.set(c.get() + 1);
        inc(&t.total[kind as usize]);
        // Open addressing on the Location's address, linear probing.
        let mut i = (loc >> 3).wrapping_mul(0x9e37_79b9_7f4a_7c15) % SITES;
        for _ in 0..SITES {
            let s = &t.sites[i];
            if s.loc.get() == 0 {
                s.loc.set(loc);
            }
            if s.loc.get() == loc {
                inc(&s.n[kind as usize]);
                return;
            }
            i = (i + 1) % SITES;
        }
    });
}

/// Counts of one counter array.
fn counts_of(n: &[Cell<u64>; 4]) -> AtomicCounts {
    AtomicCounts {
        rmw: n[Kind::Rmw as usize].get(),
        cas_failed: n[Kind::CasFailed as usize].get(),
        stores: n[Kind::Store as usize].get(),
        loads: n[Kind::Load as usize].get(),
    }
}

/// The calling thread's counts since it started. Counts only grow; take
/// [`AtomicCounts::since`] of two readings.
pub fn counts() -> AtomicCounts {
    TALLY.try_with(|t| counts_of(&t.total)).unwrap_or_default()
}

/// Calls `f` with each call site of this thread's counted accesses since
/// its last [`reset_sites`] (or its start) and the site's counts.
pub fn for_each_site(mut f: impl FnMut(&'static core::panic::Location<'static>, AtomicCounts)) {
    let _ = TALLY.try_with(|t| {
        for s in t.sites.iter().filter(|s| s.loc.get() != 0) {
            // SAFETY: `loc` is the address of the `&'static Location` that
            // `bump` got from `Location::caller`.
            let loc = unsafe { &*(s.loc.get() as *const core::panic::Location<'static>) };
            f(loc, counts_of(&s.n));
        }
    });
}

/// Forgets this thread's per-site counts (not its totals).
pub fn reset_sites() {
    let _ = TALLY.try_with(|t| {
        for s in &t.sites {
            s.loc.set(0);
            s.n.iter().for_each(|c| c.set(0));
        }
    });
}

#[inline(always)]
#[track_caller]
fn rmw() {
    bump(Kind::Rmw);
}

/// A CAS: a read-modify-write, and a failed one if it failed.
#[inline(always)]
#[track_caller]
fn cas<T>(r: Result<T, T>) -> Result<T, T> {
    rmw();
    if r.is_err() {
        bump(Kind::CasFailed);
    }
    r
}

/// A counted wrapper of atomic type `$inner` holding `$t`; the integer arm
/// adds the arithmetic `fetch_*` operations `AtomicBool` lacks.
macro_rules! counted {
    (@int yes $name:ident $t:ty) => {
        impl $name {
            /// As the unwrapped type's; counted as a read-modify-write.
            #[inline(always)]
            #[track_caller]
            pub fn fetch_add(&self, v: $t, order: Ordering) -> $t {
                rmw();
                self.0.fetch_add(v, order)
            }
            /// As the unwrapped type's; counted as a read-modify-write.
            #[inline(always)]
            #[track_caller]
            pub fn fetch_sub(&self, v: $t, order: Ordering) -> $t {
                rmw();
                self.0.fetch_sub(v, order)
            }
            /// As the unwrapped type's; counted as a read-modify-write.
            #[inline(always)]
            #[track_caller]
            pub fn fetch_max(&self, v: $t, order: Ordering) -> $t {
                rmw();
                self.0.fetch_max(v, order)
            }
            /// As the unwrapped type's; counted as a read-modify-write.
            #[inline(always)]
            #[track_caller]
            pub fn fetch_min(&self, v: $t, order: Ordering) -> $t {
                rmw();
                self.0.fetch_min(v, order)
            }
        }
    };
    ($(#[$doc:meta])* $name:ident($inner:ty, $t:ty) $(, int: $int:tt)?) => {
        $(#[$doc])*
        #[repr(transparent)]
        #[derive(Debug, Default)]
        pub struct $name($inner);

        impl $name {
            /// As the unwrapped type's.
            pub const fn new(v: $t) -> Self {
                Self(<$inner>::new(v))
            }
            /// As the unwrapped type's (not an atomic access: not counted).
            pub fn get_mut(&mut self) -> &mut $t {
                self.0.get_mut()
            }
            /// As the unwrapped type's (not an atomic access: not counted).
            pub fn into_inner(self) -> $t {
                self.0.into_inner()
            }
            /// As the unwrapped type's; counted as a load.
            #[inline(always)]
            #[track_caller]
            pub fn load(&self, order: Ordering) -> $t {
                bump(Kind::Load);
                self.0.load(order)
            }
            /// As the unwrapped type's; counted as a store.
            #[inline(always)]
            #[track_caller]
            pub fn store(&self, v: $t, order: Ordering) {
                bump(Kind::Store);
                self.0.store(v, order)
            }
            /// As the unwrapped type's; counted as a read-modify-write.
            #[inline(always)]
            #[track_caller]
            pub fn swap(&self, v: $t, order: Ordering) -> $t {
                rmw();
                self.0.swap(v, order)
            }
            /// As the unwrapped type's; a read-modify-write, failed or not.
            #[inline(always)]
            #[track_caller]
            pub fn compare_exchange(
                &self,
                current: $t,
                new: $t,
                success: Ordering,
                failure: Ordering,
            ) -> Result<$t, $t> {
                cas(self.0.compare_exchange(current, new, success, failure))
            }
            /// As the unwrapped type's; a read-modify-write, failed or not.
            #[inline(always)]
            #[track_caller]
            pub fn compare_exchange_weak(
                &self,
                current: $t,
                new: $t,
                success: Ordering,
                failure: Ordering,
            ) -> Result<$t, $t> {
                cas(self.0.compare_exchange_weak(current, new, success, failure))
            }
            /// As the unwrapped type's: one load, then one CAS per attempt
            /// (the loop `core` runs), each counted.
            #[inline(always)]
            #[track_caller]
            pub fn fetch_update(
                &self,
                set_order: Ordering,
                fetch_order: Ordering,
                mut f: impl FnMut($t) -> Option<$t>,
            ) -> Result<$t, $t> {
                let mut prev = self.load(fetch_order);
                while let Some(next) = f(prev) {
                    match self.compare_exchange_weak(prev, next, set_order, fetch_order) {
                        Ok(x) => return Ok(x),
                        Err(x) => prev = x,
                    }
                }
                Err(prev)
            }
            /// As the unwrapped type's; counted as a read-modify-write.
            #[inline(always)]
            #[track_caller]
            pub fn fetch_and(&self, v: $t, order: Ordering) -> $t {
                rmw();
                self.0.fetch_and(v, order)
            }
            /// As the unwrapped type's; counted as a read-modify-write.
            #[inline(always)]
            #[track_caller]
            pub fn fetch_or(&self, v: $t, order: Ordering) -> $t {
                rmw();
                self.0.fetch_or(v, order)
            }
        }

        $(counted!(@int $int $name $t);)?
    };
}

counted!(
    /// `AtomicBool`, counted.
    AtomicBool(portable_atomic::AtomicBool, bool)
);
counted!(
    /// `AtomicU32`, counted.
    AtomicU32(portable_atomic::AtomicU32, u32), int: yes
);
counted!(
    /// `AtomicU64`, counted.
    AtomicU64(portable_atomic::AtomicU64, u64), int: yes
);
counted!(
    /// `AtomicUsize`, counted.
    AtomicUsize(portable_atomic::AtomicUsize, usize), int: yes
);

/// The hardware atomics overlaid on heap memory ([`super::raw`]), counted.
pub mod raw {
    use super::Ordering;
    use super::{bump, cas, rmw, Kind};

    counted!(
        /// `core`'s `AtomicU32` (what `raw` is in the normal build), counted;
        /// `#[repr(transparent)]`, so it overlays the same 4 bytes.
        AtomicU32(core::sync::atomic::AtomicU32, u32), int: yes
    );
}
