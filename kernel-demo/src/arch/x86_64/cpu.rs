//! Single-instruction CPU helpers: interrupt flag, halt, TSC, MSRs.

use core::arch::asm;

/// Reads the time-stamp counter.
#[inline]
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // rdtsc  ==  (edx:eax) = TSC
    // SAFETY: rdtsc has no side effects and is allowed at ring 0.
    unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) }
    (hi as u64) << 32 | lo as u64
}

/// Disables interrupts and returns whether they were enabled.
#[inline]
pub fn irq_save() -> bool {
    let flags: u64;
    // pushfq; pop flags; cli  ==  let was = RFLAGS.IF; RFLAGS.IF = 0
    // SAFETY: reads RFLAGS and clears IF; the stack push is balanced.
    unsafe { asm!("pushfq", "pop {}", "cli", out(reg) flags, options(nomem)) }
    flags & (1 << 9) != 0
}

/// Re-enables interrupts if `was_enabled` (the value [`irq_save`] returned).
#[inline]
pub fn irq_restore(was_enabled: bool) {
    if was_enabled {
        // sti  ==  RFLAGS.IF = 1
        // SAFETY: restores the state irq_save found; the IDT is loaded
        // before interrupts are first enabled (kmain/ap_main).
        unsafe { asm!("sti", options(nomem, nostack)) }
    }
}

/// Enables interrupts.
///
/// # Safety
/// The IDT must be loaded and every enabled source must have a handler.
#[inline]
pub unsafe fn irq_enable() {
    // sti  ==  RFLAGS.IF = 1
    // SAFETY: forwarded to the caller.
    unsafe { asm!("sti", options(nomem, nostack)) }
}

/// True if interrupts are enabled on this CPU.
#[inline]
pub fn irq_enabled() -> bool {
    let flags: u64;
    // pushfq; pop flags  ==  flags = RFLAGS
    // SAFETY: reads RFLAGS only; the stack push is balanced.
    unsafe { asm!("pushfq", "pop {}", out(reg) flags, options(nomem, preserves_flags)) }
    flags & (1 << 9) != 0
}

/// Halts this CPU forever with interrupts off.
pub fn halt_forever() -> ! {
    loop {
        // cli; hlt  ==  stop until reset
        // SAFETY: stops this CPU; nothing is left to run on it.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) }
    }
}

/// Writes model-specific register `msr`.
///
/// # Safety
/// The caller must know what writing `msr` does.
#[inline]
pub unsafe fn wrmsr(msr: u32, v: u64) {
    // wrmsr  ==  MSR[ecx] = edx:eax
    // SAFETY: forwarded to the caller.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") v as u32, in("edx") (v >> 32) as u32,
             options(nostack, preserves_flags))
    }
}

/// Resets the machine with a triple fault (for harness tests).
pub fn triple_fault() -> ! {
    let null_idt = [0u16; 5];
    // lidt [null_idt]; int3  ==  no IDT, so int3 -> #GP -> #DF -> shutdown
    // SAFETY: deliberately ends the run; nothing runs afterwards.
    unsafe { asm!("lidt [{}]", "int3", in(reg) &null_idt, options(noreturn)) }
}
