//! The one global lock of the baseline: a test-and-test-and-set spinlock.
//!
//! A waiter first *reads* the lock word until it looks free (the "test"), and
//! only then tries the read-modify-write (the "test-and-set"). While the holder
//! works, waiters therefore spin on a shared, read-only copy of the cache line
//! instead of stealing it from each other with failed CAS operations.
//!
//! The lock word sits alone in a [`CachePadded`] line and the protected data
//! starts in the next one, so the holder's stores to allocator state do not
//! invalidate the line the waiters spin on (and vice versa).
//!
//! [`LockMode::SpinThenYield`] is for oversubscribed runs (more threads than
//! cores): after [`SPIN_LIMIT`] failed looks it calls a caller-supplied function,
//! e.g. `std::thread::yield_now`, so a preempted holder can run again. In a
//! kernel with interrupts off, plain [`LockMode::Spin`] is the right choice.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};

use crossbeam_utils::CachePadded;

use crate::sync::{spin_loop, AtomicBool, Ordering};

/// Spins (reads of a busy lock word) before [`LockMode::SpinThenYield`] calls
/// its yield function; the count restarts after each yield.
pub const SPIN_LIMIT: u32 = 128;

/// How a waiter behaves while the lock is taken.
///
/// See the example on [`SpinHeap`](super::SpinHeap).
#[derive(Clone, Copy, Debug)]
pub enum LockMode {
    /// Spin with the CPU's spin-loop hint until the lock is free.
    Spin,
    /// Spin [`SPIN_LIMIT`] times, then call the function (e.g.
    /// `std::thread::yield_now`), and repeat.
    SpinThenYield(fn()),
}

/// The lock word and the (read-only) waiting policy, which share one line:
/// waiters read both, nobody writes `mode` after construction.
struct LockWord {
    locked: AtomicBool,
    mode: LockMode,
}

/// A TTAS spinlock owning a `T`, reachable only through [`Guard`].
pub(super) struct SpinLock<T> {
    word: CachePadded<LockWord>,
    data: CachePadded<UnsafeCell<T>>,
}

// SAFETY: `data` is only reached through a `Guard`, and the lock makes guards
// mutually exclusive, so sharing the lock shares `T` only by moving access
// between threads one at a time (hence `T: Send`, not `T: Sync`).
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// An unlocked lock around `data`.
    pub(super) fn new(data: T, mode: LockMode) -> Self {
        Self {
            word: CachePadded::new(LockWord {
                locked: AtomicBool::new(false),
                mode,
            }),
            data: CachePadded::new(UnsafeCell::new(data)),
        }
    }

    /// Takes the lock, spinning (and yielding, by mode) until it is free.
    #[inline]
    pub(super) fn lock(&self) -> Guard<'_, T> {
        // Acquire on success: everything the previous holder wrote before its
        // Release store in `Guard::drop` is visible to us. Relaxed on failure:
        // we learned only that the lock is taken and touch no data.
        if self
            .word
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_slow();
        }
        Guard { lock: self }
    }

    #[cold]
    #[inline(never)]
    fn lock_slow(&self) {
        let mut spins = 0u32;
        loop {
            // Relaxed: the "test" half only decides when to retry the CAS;
            // the CAS below provides the Acquire that orders the data.
            while self.word.locked.load(Ordering::Relaxed) {
                spin_loop();
                spins += 1;
                if let LockMode::SpinThenYield(yield_now) = self.word.mode {
                    if spins >= SPIN_LIMIT {
                        yield_now();
                        spins = 0;
                    }
                }
            }
            // Acquire on success pairs with the Release in `Guard::drop`
            // (see `lock`); a failure means someone else won the race.
            if self
                .word
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }

    /// The protected data without locking, for the single owner during
    /// construction.
    pub(super) fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }
}

/// Exclusive access to the data of a [`SpinLock`]; dropping it unlocks.
pub(super) struct Guard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> Deref for Guard<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while this thread holds the lock, so
        // no other reference to the data exists.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for Guard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` rules out a second reference
        // derived from this same guard.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for Guard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // Release: publishes every write made under the lock to the next
        // holder, whose Acquire CAS in `lock`/`lock_slow` pairs with it.
        self.lock.word.locked.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;

    /// Increments per thread (few under miri, which is slow).
    const ROUNDS: u64 = if cfg!(miri) { 200 } else { 10_000 };

    fn count_with(mode: LockMode) {
        let lock = Arc::new(SpinLock::new(0u64, mode));
        thread::scope(|s| {
            for _ in 0..4 {
                let lock = &lock;
                s.spawn(move || {
                    for _ in 0..ROUNDS {
                        // A non-atomic read-modify-write: lost updates would
                        // show in the total if the lock did not exclude.
                        let mut g = lock.lock();
                        let v = *g;
                        *g = v + 1;
                    }
                });
            }
        });
        assert_eq!(*lock.lock(), 4 * ROUNDS);
    }

    #[test]
    fn excludes_spin() {
        count_with(LockMode::Spin);
    }

    #[test]
    fn excludes_spin_then_yield() {
        count_with(LockMode::SpinThenYield(std::thread::yield_now));
    }
}
