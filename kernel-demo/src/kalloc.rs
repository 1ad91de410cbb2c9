//! The boundary the workloads program against: one small trait, one adapter
//! per allocator, so the same harness runs magbuddy, the spinlock baseline
//! and (for bring-up only) the demo's own `bringup` heap.
//!
//! Kernel contract (DESIGN §3): a CPU's handle is never re-entered. The
//! harness runs handle operations with interrupts off (`irq_save`), and the
//! timer interrupt uses only the shared path (`alloc_shared`/`free_shared`).

use crate::arch::boot::Range;
use core::fmt;
use core::ptr::NonNull;

/// One CPU's private way into an allocator (magbuddy: a claimed `Handle`).
pub trait CpuAlloc {
    /// Allocates `size` bytes aligned to `size.next_power_of_two()`.
    fn alloc(&mut self, size: usize) -> Option<NonNull<u8>>;
    /// Frees a block from any CPU's `alloc` or `alloc_shared`.
    ///
    /// # Safety
    /// `ptr` is a live block of this allocator, freed once.
    unsafe fn free(&mut self, ptr: *mut u8);
}

/// The allocator as interrupt handlers see it: no handle, never re-entered
/// into a handle, safe to call with the interrupted code mid-operation.
pub trait SharedAlloc: Sync {
    /// The handle-less allocation path.
    fn alloc_shared(&self, size: usize) -> Option<NonNull<u8>>;
    /// The handle-less free path.
    ///
    /// # Safety
    /// As [`CpuAlloc::free`].
    unsafe fn free_shared(&self, ptr: *mut u8);
}

/// An allocator under test.
pub trait KernelAlloc: SharedAlloc + Sized + 'static {
    /// Per-CPU access.
    type Cpu<'a>: CpuAlloc
    where
        Self: 'a;
    /// Name in tables.
    const NAME: &'static str;
    /// Builds the allocator over `ranges` (the largest at init, the others
    /// added) for `cpus` CPUs.
    ///
    /// # Safety
    /// The ranges are identity-mapped RAM owned by nobody else, and stay so
    /// until the value is dropped (never used again).
    unsafe fn create(ranges: &[Range], cpus: usize) -> Result<Self, InitFailure>;
    /// Claims this CPU's access; `None` if the allocator has no free handle.
    fn cpu(&self) -> Option<Self::Cpu<'_>>;
    /// Checks the allocator's metadata at a quiet point.
    fn validate(&self) -> Result<(), Failure>;
}

/// A range the allocator refused.
#[derive(Debug)]
pub struct InitFailure {
    /// The range.
    pub range: Range,
    /// Why, as text.
    pub why: Failure,
}

/// An error message without an allocator (fixed buffer).
pub struct Failure {
    buf: [u8; 160],
    len: usize,
}

impl Failure {
    /// Formats `args` into a failure.
    pub fn new(args: fmt::Arguments<'_>) -> Failure {
        let mut f = Failure {
            buf: [0; 160],
            len: 0,
        };
        let _ = fmt::write(&mut f, args);
        f
    }
}

impl fmt::Write for Failure {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(core::str::from_utf8(&self.buf[..self.len]).unwrap_or("?"))
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The ranges sorted with the largest first (init gets it; the rest are added).
pub fn largest_first(ranges: &[Range]) -> ([Range; 16], usize) {
    let mut out = [Range::default(); 16];
    let n = ranges.len().min(16);
    out[..n].copy_from_slice(&ranges[..n]);
    out[..n].sort_unstable_by_key(|r| core::cmp::Reverse(r.len()));
    (out, n)
}
