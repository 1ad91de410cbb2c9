//! Adapters from the allocators under test to the demo's `KernelAlloc`:
//! magbuddy's lock-free `Heap` and the spinlock baseline `SpinHeap`. Handle
//! operations run with interrupts off (the kernel contract); the shared
//! path is what the timer interrupt uses.

use crate::arch::boot::Range;
use crate::arch::{cpu, percpu};
use crate::kalloc::{largest_first, CpuAlloc, Failure, InitFailure, KernelAlloc, SharedAlloc};
use core::ptr::NonNull;
use magbuddy::baseline::{LockMode, SpinHandle, SpinHeap};
use magbuddy::{Handle, Heap, InitError};

/// Runs `f` with interrupts off on this CPU: how every handle call is
/// wrapped (and what `irqcost.rs` times against a bare handle call).
#[inline]
pub fn irq_off<R>(f: impl FnOnce() -> R) -> R {
    let was = cpu::irq_save();
    let r = f();
    cpu::irq_restore(was);
    r
}

/// Builds an allocator over `ranges`: `init` with the largest, `add` for the rest.
///
/// # Safety
/// The ranges are RAM owned by the new allocator from now on.
unsafe fn build<H>(
    ranges: &[Range],
    init: impl FnOnce(*mut u8, usize) -> Result<H, InitError>,
    add: impl Fn(&H, *mut u8, usize) -> Result<(), InitError>,
) -> Result<H, InitFailure> {
    let (sorted, n) = largest_first(ranges);
    let fail = |range: Range, e: InitError| InitFailure {
        range,
        why: Failure::new(format_args!("{e}")),
    };
    let first = sorted[0];
    let heap = init(first.start as *mut u8, first.len() as usize).map_err(|e| fail(first, e))?;
    for &r in &sorted[1..n] {
        add(&heap, r.start as *mut u8, r.len() as usize).map_err(|e| fail(r, e))?;
    }
    Ok(heap)
}

/// magbuddy's lock-free heap.
pub struct Mag(&'static Heap);

/// A claimed magbuddy handle (slot = this CPU's index).
pub struct MagCpu<'a>(Handle<'a>);

impl SharedAlloc for Mag {
    fn alloc_shared(&self, size: usize) -> Option<NonNull<u8>> {
        self.0.alloc(size)
    }
    unsafe fn free_shared(&self, ptr: *mut u8) {
        // SAFETY: forwarded to the caller.
        unsafe { self.0.free(ptr) }
    }
}

impl CpuAlloc for MagCpu<'_> {
    fn alloc(&mut self, size: usize) -> Option<NonNull<u8>> {
        irq_off(|| self.0.alloc(size))
    }
    unsafe fn free(&mut self, ptr: *mut u8) {
        // SAFETY: forwarded to the caller.
        irq_off(|| unsafe { self.0.free(ptr) })
    }
}

impl KernelAlloc for Mag {
    type Cpu<'a> = MagCpu<'a>;
    const NAME: &'static str = "magbuddy";

    unsafe fn create(ranges: &[Range], cpus: usize) -> Result<Self, InitFailure> {
        // SAFETY: the caller hands the ranges over for the heap's lifetime.
        let heap = unsafe {
            build(
                ranges,
                |s, l| Heap::init(s, l, cpus),
                |h: &&Heap, s, l| h.add_region(s, l),
            )
        }?;
        Ok(Mag(heap))
    }

    fn cpu(&self) -> Option<MagCpu<'_>> {
        self.0.handle_for(percpu::index()).map(MagCpu)
    }

    fn validate(&self) -> Result<(), Failure> {
        self.0
            .validate()
            .map_err(|e| Failure::new(format_args!("{e}")))
    }
}

/// The spinlock baseline (pure spin: a kernel with interrupts off).
pub struct Spin(&'static SpinHeap);

/// A claimed baseline handle.
pub struct SpinCpu<'a>(SpinHandle<'a>);

impl SharedAlloc for Spin {
    fn alloc_shared(&self, size: usize) -> Option<NonNull<u8>> {
        // Interrupts off: a tick on this CPU must not wait for the lock
        // that the interrupted code holds.
        irq_off(|| self.0.alloc(size))
    }
    unsafe fn free_shared(&self, ptr: *mut u8) {
        // SAFETY: forwarded to the caller.
        irq_off(|| unsafe { self.0.free(ptr) })
    }
}

impl CpuAlloc for SpinCpu<'_> {
    fn alloc(&mut self, size: usize) -> Option<NonNull<u8>> {
        irq_off(|| self.0.alloc(size))
    }
    unsafe fn free(&mut self, ptr: *mut u8) {
        // SAFETY: forwarded to the caller.
        irq_off(|| unsafe { self.0.free(ptr) })
    }
}

impl KernelAlloc for Spin {
    type Cpu<'a> = SpinCpu<'a>;
    const NAME: &'static str = "SpinHeap";

    unsafe fn create(ranges: &[Range], cpus: usize) -> Result<Self, InitFailure> {
        // SAFETY: the caller hands the ranges over for the heap's lifetime.
        let heap = unsafe {
            build(
                ranges,
                |s, l| SpinHeap::init(s, l, cpus, LockMode::Spin),
                |h: &&SpinHeap, s, l| h.add_region(s, l),
            )
        }?;
        Ok(Spin(heap))
    }

    fn cpu(&self) -> Option<SpinCpu<'_>> {
        self.0.handle().map(SpinCpu)
    }

    fn validate(&self) -> Result<(), Failure> {
        self.0
            .validate()
            .map_err(|e| Failure::new(format_args!("{e}")))
    }
}
