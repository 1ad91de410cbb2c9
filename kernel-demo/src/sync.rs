//! The demo's own synchronisation: a spinlock (for the console and the
//! bring-up allocator) and a sense-reversing barrier whose waits are bounded.
//! None of this is used by the allocators under test.

use crate::arch::{apic, cpu, tsc};
use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// A test-and-test-and-set spinlock.
pub struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the lock serialises all access to `value`.
unsafe impl<T: Send> Sync for SpinLock<T> {}

/// Holds a [`SpinLock`]; restores the interrupt flag on drop.
pub struct Guard<'a, T> {
    lock: &'a SpinLock<T>,
    irq_was_on: bool,
}

impl<T> SpinLock<T> {
    /// An unlocked lock around `value`.
    pub const fn new(value: T) -> Self {
        Self {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    fn try_acquire(&self) -> bool {
        // Acquire: pairs with the Release store in Guard::drop, so the last
        // holder's writes to `value` are visible.
        !self.locked.load(Ordering::Relaxed)
            && self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }

    /// Locks with interrupts disabled on this CPU, so an interrupt handler
    /// on the same CPU can never wait for a lock its own CPU holds.
    pub fn lock_irqsave(&self) -> Guard<'_, T> {
        let irq_was_on = cpu::irq_save();
        while !self.try_acquire() {
            core::hint::spin_loop();
        }
        Guard {
            lock: self,
            irq_was_on,
        }
    }

    /// Tries `tries` times; `None` if the lock stayed busy.
    pub fn try_lock_for(&self, tries: usize) -> Option<Guard<'_, T>> {
        let irq_was_on = cpu::irq_save();
        for _ in 0..tries {
            if self.try_acquire() {
                return Some(Guard {
                    lock: self,
                    irq_was_on,
                });
            }
            core::hint::spin_loop();
        }
        cpu::irq_restore(irq_was_on);
        None
    }
}

impl<T> Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves we hold the lock.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves we hold the lock, and `&mut self` is unique.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        // Release: publishes our writes to `value`; pairs with try_acquire.
        self.lock.locked.store(false, Ordering::Release);
        cpu::irq_restore(self.irq_was_on);
    }
}

/// A reusable barrier for `n` CPUs (sense-reversing). Waiters spin for a short
/// while, then halt between timer ticks; a wait longer than the timeout panics
/// naming the barrier, so a lost CPU fails the run instead of hanging it.
pub struct Barrier {
    count: AtomicUsize,
    generation: AtomicUsize,
}

impl Barrier {
    /// A barrier with no waiters.
    pub const fn new() -> Self {
        Self {
            count: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
        }
    }

    /// Waits until `n` CPUs have called `wait` in this generation.
    pub fn wait(&self, n: usize, what: &str) {
        // Acquire on the generation load pairs with the Release increment by
        // the last arriver, so everything written before the barrier by any
        // CPU is visible after it.
        let gen = self.generation.load(Ordering::Acquire);
        // AcqRel: our arrival publishes our writes (Release) and, for the last
        // arriver, sees everyone else's (Acquire).
        if self.count.fetch_add(1, Ordering::AcqRel) + 1 == n {
            self.count.store(0, Ordering::Relaxed); // ordered by the Release below
            self.generation.fetch_add(1, Ordering::Release);
            return;
        }
        wait_until(what, 600_000, || {
            self.generation.load(Ordering::Acquire) != gen
        });
    }
}

/// Waits until `done()` holds, spinning for the first millisecond and halting
/// between timer ticks afterwards. Panics after `timeout_ms`.
pub fn wait_until(what: &str, timeout_ms: u64, mut done: impl FnMut() -> bool) {
    let start = cpu::rdtsc();
    let spin_until = start + tsc::ms_to_ticks(1);
    let deadline = start + tsc::ms_to_ticks(timeout_ms);
    while !done() {
        let now = cpu::rdtsc();
        if now > deadline {
            panic!("timed out after {timeout_ms} ms waiting for {what}");
        }
        if now < spin_until {
            core::hint::spin_loop();
        } else {
            apic::relax();
        }
    }
}
