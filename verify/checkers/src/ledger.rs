//! "Everything came back": counts of allocated and freed blocks and bytes,
//! and a check that the allocator's free bytes return to where they began.
//!
//! # Ledger
//!
//! A [`Ledger`] has `N` shards of four counters each; a thread records into
//! its own shard (`shard(thread_index)`), so recording is one uncontended
//! `fetch_add` per counter. Shards are padded to 128 bytes, because on
//! x86_64 the adjacent-line prefetcher pulls cache lines in pairs and
//! 64-byte padding would still let two threads' counters share a pair.
//! Any thread may use any shard; sharding only reduces contention.
//!
//! At a quiet point (threads joined) the totals satisfy, for a correct run
//! in which every block was freed:
//!
//! ```text
//!   allocs == frees   and   alloc_bytes == free_bytes
//! ```
//!
//! # Balance
//!
//! [`BalanceCheck`] remembers the allocator's free bytes before a run and
//! compares them afterwards. It catches leaks inside the allocator that the
//! client-side ledger cannot see (a freed block that never rejoins the free
//! pool) and frees that add memory twice. Allocators with caches (magazines,
//! slabs) must drain them before `free_after` is read, or the cached bytes
//! show up as a leak.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Totals of a [`Ledger`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LedgerTotals {
    /// Blocks allocated.
    pub allocs: u64,
    /// Blocks freed.
    pub frees: u64,
    /// Bytes allocated.
    pub alloc_bytes: u64,
    /// Bytes freed.
    pub free_bytes: u64,
}

impl LedgerTotals {
    /// Blocks still live (negative: more frees than allocations).
    pub fn live_blocks(&self) -> i128 {
        i128::from(self.allocs) - i128::from(self.frees)
    }

    /// Bytes still live (negative: more bytes freed than allocated).
    pub fn live_bytes(&self) -> i128 {
        i128::from(self.alloc_bytes) - i128::from(self.free_bytes)
    }
}

impl fmt::Display for LedgerTotals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} allocs ({} B), {} frees ({} B)",
            self.allocs, self.alloc_bytes, self.frees, self.free_bytes
        )
    }
}

/// One thread's counters, alone in a 128-byte slot (see the module docs).
#[derive(Debug, Default)]
#[repr(C, align(128))]
pub struct LedgerShard {
    allocs: AtomicU64,
    frees: AtomicU64,
    alloc_bytes: AtomicU64,
    free_bytes: AtomicU64,
}

impl LedgerShard {
    /// A shard with all counters zero.
    pub const fn new() -> Self {
        Self {
            allocs: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            alloc_bytes: AtomicU64::new(0),
            free_bytes: AtomicU64::new(0),
        }
    }

    /// Records an allocation of `size` bytes.
    #[inline]
    pub fn on_alloc(&self, size: usize) {
        // Relaxed (both): pure counters, read only after the caller
        // synchronizes (joins); they must not order the allocator's memory.
        self.allocs.fetch_add(1, Relaxed);
        self.alloc_bytes.fetch_add(size as u64, Relaxed);
    }

    /// Records a free of `size` bytes.
    #[inline]
    pub fn on_free(&self, size: usize) {
        // Relaxed (both): as in `on_alloc`.
        self.frees.fetch_add(1, Relaxed);
        self.free_bytes.fetch_add(size as u64, Relaxed);
    }

    /// This shard's counters.
    pub fn totals(&self) -> LedgerTotals {
        // Relaxed (all): exact once the recording threads are joined.
        LedgerTotals {
            allocs: self.allocs.load(Relaxed),
            frees: self.frees.load(Relaxed),
            alloc_bytes: self.alloc_bytes.load(Relaxed),
            free_bytes: self.free_bytes.load(Relaxed),
        }
    }
}

/// `N` padded shards of allocation counters. `const`-constructible, so it
/// can be a `static` on bare metal.
#[derive(Debug)]
pub struct Ledger<const N: usize> {
    shards: [LedgerShard; N],
}

impl<const N: usize> Default for Ledger<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Ledger<N> {
    /// A ledger with all counters zero.
    pub const fn new() -> Self {
        Self {
            shards: [const { LedgerShard::new() }; N],
        }
    }

    /// The shard for thread (or CPU) `index`, wrapping modulo `N`.
    ///
    /// # Panics
    ///
    /// If `N == 0`.
    #[inline]
    pub fn shard(&self, index: usize) -> &LedgerShard {
        &self.shards[index % N]
    }

    /// Sums over all shards; exact once the recording threads are joined.
    pub fn totals(&self) -> LedgerTotals {
        self.shards
            .iter()
            .map(LedgerShard::totals)
            .fold(LedgerTotals::default(), |a, t| LedgerTotals {
                allocs: a.allocs + t.allocs,
                frees: a.frees + t.frees,
                alloc_bytes: a.alloc_bytes + t.alloc_bytes,
                free_bytes: a.free_bytes + t.free_bytes,
            })
    }

    /// Checks that every allocated block and byte was freed.
    pub fn verify_balanced(&self) -> Result<LedgerTotals, Imbalance> {
        let t = self.totals();
        if t.allocs == t.frees && t.alloc_bytes == t.free_bytes {
            Ok(t)
        } else {
            Err(Imbalance::Ledger(t))
        }
    }
}

/// What did not come back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Imbalance {
    /// The allocator's free bytes differ from before the run.
    FreeBytes {
        /// Free bytes before the run.
        before: usize,
        /// Free bytes after the run.
        after: usize,
    },
    /// The ledger's allocations and frees do not match.
    Ledger(LedgerTotals),
}

impl fmt::Display for Imbalance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::FreeBytes { before, after } if after < before => write!(
                f,
                "allocator lost {} B: {before} B free before the run, {after} B after \
                 (leak, or caches not drained)",
                before - after
            ),
            Self::FreeBytes { before, after } => write!(
                f,
                "allocator gained {} B: {before} B free before the run, {after} B after \
                 (double free or a block freed into the wrong place)",
                after - before
            ),
            Self::Ledger(t) => write!(
                f,
                "ledger does not balance: {t}; {} blocks and {} B still live",
                t.live_blocks(),
                t.live_bytes()
            ),
        }
    }
}

/// Compares an allocator's free bytes before and after a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BalanceCheck {
    free_before: usize,
}

impl BalanceCheck {
    /// Remembers the free bytes at the start of a run.
    pub const fn new(free_before: usize) -> Self {
        Self { free_before }
    }

    /// The free bytes given to [`new`](Self::new).
    pub const fn free_before(&self) -> usize {
        self.free_before
    }

    /// Checks that the allocator is back to `free_before` free bytes.
    pub fn verify(&self, free_after: usize) -> Result<(), Imbalance> {
        if free_after == self.free_before {
            Ok(())
        } else {
            Err(Imbalance::FreeBytes {
                before: self.free_before,
                after: free_after,
            })
        }
    }

    /// [`verify`](Self::verify), then [`Ledger::verify_balanced`].
    pub fn verify_with<const N: usize>(
        &self,
        free_after: usize,
        ledger: &Ledger<N>,
    ) -> Result<LedgerTotals, Imbalance> {
        self.verify(free_after)?;
        ledger.verify_balanced()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::format;
    use std::thread;

    #[test]
    fn shards_are_padded() {
        assert_eq!(core::mem::size_of::<LedgerShard>(), 128);
        assert_eq!(core::mem::size_of::<Ledger<4>>(), 512);
    }

    #[test]
    fn balanced_run_passes() {
        static LEDGER: Ledger<2> = Ledger::new();
        let check = BalanceCheck::new(1 << 20);
        LEDGER.shard(0).on_alloc(4096);
        LEDGER.shard(3).on_alloc(64);
        LEDGER.shard(1).on_free(64);
        LEDGER.shard(0).on_free(4096);
        let t = check.verify_with(1 << 20, &LEDGER).unwrap();
        assert_eq!(
            t,
            LedgerTotals {
                allocs: 2,
                frees: 2,
                alloc_bytes: 4160,
                free_bytes: 4160
            }
        );
    }

    #[test]
    fn catches_leaks_and_gains() {
        let check = BalanceCheck::new(10_000);
        let e = check.verify(9_000).unwrap_err();
        assert_eq!(
            e,
            Imbalance::FreeBytes {
                before: 10_000,
                after: 9_000
            }
        );
        assert!(format!("{e}").contains("lost 1000 B"));
        assert!(format!("{}", check.verify(10_064).unwrap_err()).contains("gained 64 B"));

        let ledger = Ledger::<4>::new();
        ledger.shard(0).on_alloc(128);
        ledger.shard(1).on_alloc(256);
        ledger.shard(1).on_free(256);
        let e = check.verify_with(10_000, &ledger).unwrap_err();
        assert!(matches!(e, Imbalance::Ledger(t) if t.live_blocks() == 1 && t.live_bytes() == 128));
        assert!(format!("{e}").contains("1 blocks and 128 B still live"));
        // A double free shows as negative live counts.
        ledger.shard(2).on_free(128);
        ledger.shard(2).on_free(128);
        assert_eq!(
            ledger.verify_balanced().unwrap_err(),
            Imbalance::Ledger(ledger.totals())
        );
        assert_eq!(ledger.totals().live_blocks(), -1);
    }

    #[test]
    fn concurrent_recording_is_exact() {
        const N: usize = if cfg!(miri) { 100 } else { 10_000 };
        let ledger = Ledger::<4>::new();
        thread::scope(|s| {
            for t in 0..8 {
                let ledger = &ledger;
                s.spawn(move || {
                    for i in 0..N {
                        ledger.shard(t).on_alloc(i);
                        // Free into another shard, as a remote free would.
                        ledger.shard(t + 1).on_free(i);
                    }
                });
            }
        });
        let t = ledger.verify_balanced().unwrap();
        assert_eq!(t.allocs, 8 * N as u64);
        assert_eq!(t.alloc_bytes, 8 * (0..N as u64).sum::<u64>());
    }
}
