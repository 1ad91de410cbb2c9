//! Starting the application processors, one at a time: copy the trampoline
//! (boot.s) to 0x8000, hand over a stack and a dense index, send INIT and
//! STARTUP, and wait (bounded) until the AP reports in from `ap_main`.

use super::acpi::{Cpus, MAX_CPUS};
use super::{apic, cpu, tsc};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Physical address of the trampoline; the SIPI vector is this >> 12.
const TRAMPOLINE: usize = 0x8000;
const STACK_SIZE: usize = 64 * 1024;

#[repr(C, align(4096))]
struct Stacks([[u8; STACK_SIZE]; MAX_CPUS]);
static mut AP_STACKS: Stacks = Stacks([[0; STACK_SIZE]; MAX_CPUS]);

/// Read by `ap_long` in boot.s: the next AP's stack top and index.
#[no_mangle]
static AP_STACK_TOP: AtomicU64 = AtomicU64::new(0);
#[no_mangle]
static AP_INDEX: AtomicU64 = AtomicU64::new(0);
/// APs that reached `ap_main`.
static ONLINE: AtomicUsize = AtomicUsize::new(0);

extern "C" {
    static ap_tramp_start: u8;
    static ap_tramp_end: u8;
}

/// Called by each AP once it runs Rust code on its own stack.
pub fn report_online() {
    // Release: pairs with the Acquire load in `start_aps`.
    ONLINE.fetch_add(1, Ordering::Release);
}

/// Starts every CPU in `cpus` except this one (the BSP). CPU indices are
/// dense: the BSP is 0, the others follow in MADT order. Returns the number
/// of CPUs now running and the TSC ticks bring-up took.
pub fn start_aps(cpus: &Cpus) -> (usize, u64) {
    let t0 = cpu::rdtsc();
    let bsp = apic::id();
    // SAFETY: the trampoline bytes are in kernel text; 0x8000 is low RAM that
    // nothing else uses (the PVH start_info was copied out before this).
    unsafe {
        let (s, e) = (&ap_tramp_start as *const u8, &ap_tramp_end as *const u8);
        let len = e as usize - s as usize;
        assert!(len < 4096, "AP trampoline is {len} bytes, more than a page");
        core::ptr::copy_nonoverlapping(s, TRAMPOLINE as *mut u8, len);
    }
    let mut next = 1;
    for &id in cpus.apic_ids[..cpus.len].iter().filter(|&&id| id != bsp) {
        // SAFETY: each AP gets its own stack slot `next`, used by no one else.
        let top = unsafe { core::ptr::addr_of_mut!(AP_STACKS.0[next]) as u64 + STACK_SIZE as u64 };
        // Relaxed: the SIPI (an MMIO write) is ordered after these stores on
        // x86, and the AP reads them only after it starts.
        AP_STACK_TOP.store(top, Ordering::Relaxed);
        AP_INDEX.store(next as u64, Ordering::Relaxed);
        apic::send_init(id);
        tsc::delay_us(1_000);
        apic::send_startup(id, (TRAMPOLINE >> 12) as u8);
        let deadline = cpu::rdtsc() + tsc::ms_to_ticks(200);
        let mut resent = false;
        while ONLINE.load(Ordering::Acquire) < next {
            let now = cpu::rdtsc();
            if now > deadline && !resent {
                apic::send_startup(id, (TRAMPOLINE >> 12) as u8); // the spec's second SIPI
                resent = true;
            }
            assert!(
                now < deadline + tsc::ms_to_ticks(5_000),
                "AP with APIC ID {id} (CPU {next}) did not come online"
            );
            core::hint::spin_loop();
        }
        next += 1;
    }
    (next, cpu::rdtsc() - t0)
}
