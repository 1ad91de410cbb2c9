//! x86 port I/O (`in`/`out`), used by the UART, the PIT, the PIC, fw_cfg and
//! isa-debug-exit.

use core::arch::asm;

/// Writes byte `v` to port `port`.
///
/// # Safety
/// Port writes have device side effects; the caller picks a port it owns.
#[inline]
pub unsafe fn outb(port: u16, v: u8) {
    // out dx, al  ==  port[port] = v
    // SAFETY: forwarded to the caller.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack, preserves_flags))
    }
}

/// Writes word `v` to port `port`.
///
/// # Safety
/// As [`outb`].
#[inline]
pub unsafe fn outw(port: u16, v: u16) {
    // out dx, ax  ==  port[port] = v (16 bits)
    // SAFETY: forwarded to the caller.
    unsafe {
        asm!("out dx, ax", in("dx") port, in("ax") v, options(nomem, nostack, preserves_flags))
    }
}

/// Writes dword `v` to port `port`.
///
/// # Safety
/// As [`outb`].
#[inline]
pub unsafe fn outl(port: u16, v: u32) {
    // out dx, eax  ==  port[port] = v (32 bits)
    // SAFETY: forwarded to the caller.
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") v, options(nomem, nostack, preserves_flags))
    }
}

/// Reads a byte from port `port`.
///
/// # Safety
/// Port reads can have device side effects (e.g. clearing a latch).
#[inline]
pub unsafe fn inb(port: u16) -> u8 {
    let v: u8;
    // in al, dx  ==  v = port[port]
    // SAFETY: forwarded to the caller.
    unsafe {
        asm!("in al, dx", out("al") v, in("dx") port, options(nomem, nostack, preserves_flags))
    }
    v
}
