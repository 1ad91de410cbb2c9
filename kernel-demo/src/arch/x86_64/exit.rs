//! Leaving QEMU through `-device isa-debug-exit,iobase=0xf4,iosize=0x04`:
//! writing `v` makes QEMU exit with status `(v << 1) | 1`.

use super::port::outl;

/// Exit status 33: the run passed.
pub const SUCCESS: u32 = 0x10;
/// Exit status 35: a panic or failed check.
pub const FAILURE: u32 = 0x11;

/// Ends the QEMU process with status `(code << 1) | 1`; halts if the device
/// is missing (then the harness's `timeout` ends the run, as a failure).
pub fn exit_qemu(code: u32) -> ! {
    // SAFETY: port 0xf4 is the isa-debug-exit device the Makefile adds.
    unsafe { outl(0xf4, code) }
    super::cpu::halt_forever()
}
