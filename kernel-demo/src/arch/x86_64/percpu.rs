//! Per-CPU data. Each CPU's GS base points at its `PerCpu`, whose first field
//! is the dense CPU index (0 = BSP, then MADT order), so `index()` is one
//! `mov` from `gs:0`. On a host build (tests, tooling) the index is 0.

use super::acpi::MAX_CPUS;
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// One CPU's data. `repr(C)` keeps `index` at offset 0 for `index()`.
#[repr(C, align(64))]
pub struct PerCpu {
    /// Dense index 0..n (written before GS base is set, then constant).
    pub index: AtomicUsize,
    /// Local APIC ID.
    pub apic_id: AtomicU32,
    /// Timer interrupts taken.
    pub ticks: AtomicU64,
    /// What the timer interrupt allocates through (null: nothing). Only this
    /// CPU writes it; see `ticker`.
    pub timer_hook: AtomicPtr<()>,
    /// Blocks the timer interrupt allocated and freed.
    pub timer_allocs: AtomicU64,
    /// Timer-interrupt allocations that returned `None`.
    pub timer_fails: AtomicU64,
    /// Ticks that skipped their allocation to stay within their CPU-time
    /// budget (see `ticker`).
    pub timer_skips: AtomicU64,
    /// TSC value before which ticks skip their allocation (see `ticker`).
    pub tick_resume: AtomicU64,
}

const fn zeroed() -> PerCpu {
    PerCpu {
        index: AtomicUsize::new(0),
        apic_id: AtomicU32::new(0),
        ticks: AtomicU64::new(0),
        timer_hook: AtomicPtr::new(core::ptr::null_mut()),
        timer_allocs: AtomicU64::new(0),
        timer_fails: AtomicU64::new(0),
        timer_skips: AtomicU64::new(0),
        tick_resume: AtomicU64::new(0),
    }
}

static CPUS: [PerCpu; MAX_CPUS] = [const { zeroed() }; MAX_CPUS];

/// CPU `i`'s data (any CPU may read another's counters).
pub fn of(i: usize) -> &'static PerCpu {
    &CPUS[i]
}

/// Installs `CPUS[index]` as this CPU's per-CPU block (GS base).
pub fn install(index: usize, apic_id: u32) {
    let me = &CPUS[index];
    // Relaxed: the same CPU reads them back through GS; other CPUs read them
    // only after a barrier.
    me.index.store(index, Ordering::Relaxed);
    me.apic_id.store(apic_id, Ordering::Relaxed);
    // SAFETY: IA32_GS_BASE (0xC000_0101) only changes what `gs:` addresses,
    // and nothing else in the demo uses GS.
    unsafe { super::cpu::wrmsr(0xc000_0101, me as *const PerCpu as u64) }
}

/// This CPU's dense index.
#[inline]
pub fn index() -> usize {
    #[cfg(target_os = "none")]
    {
        let i: usize;
        // mov i, gs:[0]  ==  i = (*GS_BASE).index
        // SAFETY: `install` ran on this CPU before any code that asks.
        unsafe {
            core::arch::asm!("mov {}, gs:[0]", out(reg) i, options(nostack, readonly, preserves_flags))
        }
        i
    }
    #[cfg(not(target_os = "none"))]
    0
}

/// This CPU's data.
#[inline]
pub fn get() -> &'static PerCpu {
    &CPUS[index()]
}
