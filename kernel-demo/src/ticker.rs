//! The APIC timer's work: on every tick, allocate one block through the
//! allocator's handle-less shared path, fill and check it, and free it. It
//! runs while the workloads run on the same CPU, so it exercises the kernel
//! contract (interrupt handlers never touch the CPU's handle).
//!
//! During the `alloc` phase (`global.rs`) a tick also allocates and frees a
//! `Box` through the demo's global allocator, on purpose inside whatever
//! allocation the interrupted code is making (`GlobalHeap` then takes the
//! shared path).
//!
//! A tick's work is budgeted: after a tick spent `t` in it, the CPU's ticks
//! skip it for the next `(BUDGET_DIV - 1) * t`. A failing allocation can cost
//! more than a tick period (magbuddy's no-false-OOM search scans every area
//! word of every region several times: 10-80 ms under TCG with 6 GiB of
//! heap, against 4 ms between ticks); without the budget, the exhaust round,
//! which keeps the heap full, left the interrupted code almost no CPU time
//! and `MEM=6G` boots hung.
//!
//! Each CPU sets and clears only its own hook. A tick runs to completion
//! before the interrupted code continues, so once a CPU has cleared its hook
//! no tick on it uses the old allocator; a barrier after every CPU cleared
//! its hook makes the allocator free for teardown.

use crate::arch::{cpu, percpu};
use crate::check::Check;
use crate::kalloc::SharedAlloc;
use core::sync::atomic::Ordering;

/// Sizes the ticks cycle through: small objects, a page, a 16 KiB block.
const SIZES: [usize; 5] = [24, 100, 700, 4096, 16384];
/// Ticks spend at most `1 / BUDGET_DIV` of their CPU's time allocating, so
/// a slow allocation in the handler cannot starve the interrupted code.
const BUDGET_DIV: u64 = 4;

/// What a tick allocates through.
pub struct Hook<'a> {
    /// The allocator (shared path).
    pub alloc: &'a dyn SharedAlloc,
    /// The checker of the current phase.
    pub check: &'a dyn Check,
}

/// Points this CPU's ticks at `hook`.
///
/// # Safety
/// `hook` must stay valid until this CPU calls [`clear`].
pub unsafe fn set(hook: &Hook<'_>) {
    // Relaxed: only this CPU's interrupt handler reads it, and an interrupt
    // sees the program order of the CPU it interrupts.
    percpu::get()
        .timer_hook
        .store(hook as *const Hook<'_> as *mut (), Ordering::Relaxed);
}

/// Stops this CPU's ticks from allocating.
pub fn clear() {
    // Relaxed: as in `set`.
    percpu::get()
        .timer_hook
        .store(core::ptr::null_mut(), Ordering::Relaxed);
}

/// Called from the timer interrupt (interrupts off).
pub fn on_tick() {
    let me = percpu::get();
    crate::global::on_tick(me.index.load(Ordering::Relaxed));
    let hook = me.timer_hook.load(Ordering::Relaxed) as *const Hook<'_>;
    if hook.is_null() {
        return;
    }
    // SAFETY: `set`'s caller keeps the hook alive until `clear` on this CPU,
    // which cannot run in the middle of this handler.
    let hook = unsafe { &*hook };
    let start = cpu::rdtsc();
    // Relaxed: only this CPU's handler reads and writes it.
    if start < me.tick_resume.load(Ordering::Relaxed) {
        me.timer_skips.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let size = SIZES[me.ticks.load(Ordering::Relaxed) as usize % SIZES.len()];
    match hook.alloc.alloc_shared(size) {
        Some(p) => {
            hook.check.on_alloc(p.as_ptr(), size);
            hook.check.on_free(p.as_ptr(), size);
            // SAFETY: a block we just allocated, freed once.
            unsafe { hook.alloc.free_shared(p.as_ptr()) };
            me.timer_allocs.fetch_add(1, Ordering::Relaxed);
        }
        None => {
            me.timer_fails.fetch_add(1, Ordering::Relaxed);
        }
    }
    let end = cpu::rdtsc();
    let spent = end.saturating_sub(start);
    // Relaxed: as above.
    me.tick_resume
        .store(end + spent * (BUDGET_DIV - 1), Ordering::Relaxed);
}
