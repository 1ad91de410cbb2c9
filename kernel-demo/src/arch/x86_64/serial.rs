//! COM1 console. Each `print!` holds one lock (with interrupts off) while it
//! formats into a line buffer and writes it out, so lines from different CPUs
//! never interleave. (The demo may spin here; the no-spinlock rule is for the
//! allocator crate.)

use super::port::{inb, outb};
use crate::sync::SpinLock;
use core::fmt::{self, Write};

const COM1: u16 = 0x3f8;
/// Line status register bit 5: the transmit holding register is empty.
const LSR_THR_EMPTY: u8 = 1 << 5;

static LOCK: SpinLock<()> = SpinLock::new(());

fn put_byte(b: u8) {
    // SAFETY: COM1 is the demo's console; QEMU's UART needs no set-up, and
    // polling LSR before each byte is the whole protocol.
    unsafe {
        while inb(COM1 + 5) & LSR_THR_EMPTY == 0 {
            core::hint::spin_loop();
        }
        outb(COM1, b);
    }
}

fn put_bytes(bytes: &[u8]) {
    for &b in bytes {
        if b == b'\n' {
            put_byte(b'\r');
        }
        put_byte(b);
    }
}

/// A fixed buffer that flushes to the port (under the lock) when it fills.
struct LineBuf {
    buf: [u8; 512],
    len: usize,
}

impl LineBuf {
    fn flush(&mut self) {
        put_bytes(&self.buf[..self.len]);
        self.len = 0;
    }
}

impl Write for LineBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len == self.buf.len() {
                self.flush();
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}

/// Prints `args` as one unit. Used by `print!`/`println!`.
pub fn print(args: fmt::Arguments<'_>) {
    let _guard = LOCK.lock_irqsave();
    let mut line = LineBuf {
        buf: [0; 512],
        len: 0,
    };
    let _ = line.write_fmt(args);
    line.flush();
}

/// Prints from the panic handler: waits for the lock only a bounded number of
/// tries (its holder may be the panicking CPU itself), then prints anyway.
pub fn print_panic(args: fmt::Arguments<'_>) {
    let guard = LOCK.try_lock_for(10_000_000);
    let mut line = LineBuf {
        buf: [0; 512],
        len: 0,
    };
    let _ = line.write_fmt(args);
    line.flush();
    drop(guard);
}

/// `print!` to COM1.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::arch::serial::print(format_args!($($arg)*)) };
}

/// `println!` to COM1; the whole line is written without interleaving.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::arch::serial::print(format_args!("{}\n", format_args!($($arg)*))) };
}
