//! TSC frequency, calibrated once against PIT channel 2 (1.193182 MHz, driven
//! by QEMU's virtual clock, which follows host time under TCG).

use super::cpu::rdtsc;
use super::port::{inb, outb};
use core::sync::atomic::{AtomicU64, Ordering};

const PIT_HZ: u64 = 1_193_182;
const CALIBRATE_MS: u64 = 50;
/// The rate assumed until (or if) calibration succeeds.
const ASSUMED_HZ: u64 = 2_000_000_000;

static TSC_HZ: AtomicU64 = AtomicU64::new(ASSUMED_HZ);

/// How the TSC rate was obtained.
#[derive(Clone, Copy, Debug)]
pub enum Source {
    /// Measured against PIT channel 2.
    Pit,
    /// The PIT gate never fired; [`ASSUMED_HZ`] is used.
    Assumed,
}

/// Measures TSC ticks over a 50 ms PIT channel-2 one-shot. Run on the BSP
/// before any other CPU starts (port 0x61 is shared).
pub fn calibrate() -> Source {
    let latch = PIT_HZ * CALIBRATE_MS / 1000;
    // SAFETY: ports 0x61 (gate/speaker), 0x43 (PIT mode) and 0x42 (channel 2)
    // belong to the PIT, which nothing else in the demo uses.
    let (t0, t1, fired) = unsafe {
        // Gate channel 2 on (bit 0), speaker off (bit 1).
        outb(0x61, (inb(0x61) & !0x02) | 0x01);
        // Channel 2, lobyte/hibyte, mode 0 (interrupt on terminal count).
        outb(0x43, 0b1011_0000);
        outb(0x42, latch as u8);
        outb(0x42, (latch >> 8) as u8);
        let t0 = rdtsc();
        let mut fired = false;
        for _ in 0..200_000_000u64 {
            // Bit 5 of port 0x61 is channel 2's OUT: high at terminal count.
            if inb(0x61) & 0x20 != 0 {
                fired = true;
                break;
            }
        }
        (t0, rdtsc(), fired)
    };
    if !fired || t1 <= t0 {
        return Source::Assumed;
    }
    TSC_HZ.store((t1 - t0) * 1000 / CALIBRATE_MS, Ordering::Relaxed);
    Source::Pit
}

/// TSC ticks per second.
pub fn hz() -> u64 {
    // Relaxed: written once by the BSP before the APs start (the SIPI
    // handshake orders it).
    TSC_HZ.load(Ordering::Relaxed)
}

/// Converts milliseconds to TSC ticks.
pub fn ms_to_ticks(ms: u64) -> u64 {
    hz() / 1000 * ms
}

/// Converts TSC ticks to nanoseconds.
pub fn ticks_to_ns(ticks: u64) -> u64 {
    (ticks as u128 * 1_000_000_000 / hz() as u128) as u64
}

/// Busy-waits `us` microseconds.
pub fn delay_us(us: u64) {
    let end = rdtsc() + hz() / 1_000_000 * us;
    while rdtsc() < end {
        core::hint::spin_loop();
    }
}
