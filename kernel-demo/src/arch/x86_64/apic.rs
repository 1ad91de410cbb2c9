//! The local APIC (xAPIC MMIO at 0xFEE0_0000, identity-mapped): IDs, EOI,
//! INIT/STARTUP IPIs and the periodic timer. Also masks the legacy 8259 PIC
//! so only the APIC delivers interrupts.

use super::port::outb;
use super::{cpu, tsc};
use core::sync::atomic::{AtomicU32, Ordering};

const LAPIC: usize = 0xfee0_0000;
const ID: usize = 0x20;
const EOI: usize = 0xb0;
const SVR: usize = 0xf0;
const ICR_LOW: usize = 0x300;
const ICR_HIGH: usize = 0x310;
const LVT_TIMER: usize = 0x320;
const TIMER_INIT: usize = 0x380;
const TIMER_CURRENT: usize = 0x390;
const TIMER_DIV: usize = 0x3e0;
/// ICR bit 12: the previous IPI is still being delivered.
const ICR_PENDING: u32 = 1 << 12;

/// Vector of the APIC timer interrupt.
pub const TIMER_VECTOR: u8 = 0x40;
/// Vector of spurious APIC interrupts.
pub const SPURIOUS_VECTOR: u8 = 0xff;

/// Timer counts per tick, measured once by the BSP.
static TIMER_COUNT: AtomicU32 = AtomicU32::new(0);

fn read(reg: usize) -> u32 {
    // SAFETY: LAPIC registers are 32-bit MMIO in the identity-mapped page at
    // 0xFEE0_0000; reads have no side effects for the registers we use.
    unsafe { ((LAPIC + reg) as *const u32).read_volatile() }
}

fn write(reg: usize, v: u32) {
    // SAFETY: as in `read`; each write is a documented APIC register update.
    unsafe { ((LAPIC + reg) as *mut u32).write_volatile(v) }
}

/// This CPU's local APIC ID.
pub fn id() -> u32 {
    read(ID) >> 24
}

/// Software-enables this CPU's APIC with the spurious vector.
pub fn enable() {
    write(SVR, read(SVR) | 0x100 | SPURIOUS_VECTOR as u32);
}

/// Signals end of interrupt.
pub fn eoi() {
    write(EOI, 0);
}

fn send_ipi(apic_id: u32, low: u32) {
    write(ICR_HIGH, apic_id << 24);
    write(ICR_LOW, low);
    let deadline = cpu::rdtsc() + tsc::ms_to_ticks(100);
    while read(ICR_LOW) & ICR_PENDING != 0 {
        assert!(
            cpu::rdtsc() < deadline,
            "IPI {low:#x} to APIC {apic_id} stuck pending"
        );
        core::hint::spin_loop();
    }
}

/// Sends INIT (assert, then de-assert) to `apic_id`.
pub fn send_init(apic_id: u32) {
    send_ipi(apic_id, 0x4500); // INIT, level assert
    send_ipi(apic_id, 0x8500); // INIT, level de-assert (trigger = level)
}

/// Sends STARTUP with the trampoline page `page` (physical address >> 12).
pub fn send_startup(apic_id: u32, page: u8) {
    send_ipi(apic_id, 0x4600 | page as u32);
}

/// Measures how many timer counts (divide by 16) pass per `1000 / hz` ms.
/// BSP only, before the APs start.
pub fn calibrate_timer(hz: u32) {
    write(TIMER_DIV, 0b0011); // divide by 16
    write(LVT_TIMER, 1 << 16); // masked, one-shot
    write(TIMER_INIT, u32::MAX);
    tsc::delay_us(10_000);
    let per_10ms = u32::MAX - read(TIMER_CURRENT);
    write(TIMER_INIT, 0);
    let count = (per_10ms as u64 * 100 / hz as u64).max(1000) as u32;
    TIMER_COUNT.store(count, Ordering::Relaxed);
}

/// Starts this CPU's periodic timer at the calibrated rate.
pub fn start_timer() {
    let count = TIMER_COUNT.load(Ordering::Relaxed);
    assert!(count != 0, "APIC timer not calibrated");
    write(TIMER_DIV, 0b0011);
    write(LVT_TIMER, 1 << 17 | TIMER_VECTOR as u32); // periodic
    write(TIMER_INIT, count);
}

/// Whether this CPU's periodic timer is armed (so `hlt` will wake).
pub fn timer_running() -> bool {
    read(LVT_TIMER) & 1 << 16 == 0 && read(TIMER_INIT) != 0
}

/// Waits for the next interrupt if interrupts are enabled and this CPU's
/// APIC timer runs, else spins once. Idle vCPUs that halt give their host
/// thread back to busy ones under TCG.
#[inline]
pub fn relax() {
    if cpu::irq_enabled() && timer_running() {
        // hlt  ==  sleep until the next interrupt (the APIC timer ticks)
        // SAFETY: IF = 1 and the timer is armed, so a tick wakes us.
        unsafe { core::arch::asm!("hlt", options(nomem, nostack)) }
    } else {
        core::hint::spin_loop();
    }
}

/// Stops this CPU's timer.
pub fn stop_timer() {
    write(LVT_TIMER, 1 << 16);
    write(TIMER_INIT, 0);
}

/// Remaps the 8259 PICs to vectors 0x20..0x30 (away from exceptions) and
/// masks every line: the firmware may have left the PIT unmasked.
pub fn disable_pic() {
    // SAFETY: 0x20/0x21 and 0xA0/0xA1 are the PICs' command/data ports; this
    // is the standard ICW1..ICW4 sequence followed by a full mask.
    unsafe {
        for (cmd, data, base, cascade) in [(0x20, 0x21, 0x20, 4), (0xa0, 0xa1, 0x28, 2)] {
            outb(cmd, 0x11); // ICW1: init, ICW4 follows
            outb(data, base); // ICW2: vector base
            outb(data, cascade); // ICW3: cascade wiring
            outb(data, 0x01); // ICW4: 8086 mode
            outb(data, 0xff); // mask all lines
        }
    }
}
