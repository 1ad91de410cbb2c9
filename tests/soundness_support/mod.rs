//! Support for `tests/soundness.rs` and `tests/soundness_checked.rs`: lazily
//! reserved mappings, a tracker of live blocks, twin heaps (to know which
//! blocks a magazine holds), and the real-thread harness that races two
//! frees of one block.
#![allow(dead_code)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use magbuddy::{FreeError, Heap};

pub const KIB: usize = 1 << 10;
pub const MIB: usize = 1 << 20;
pub const GIB: usize = 1 << 30;
pub const TIB: usize = 1 << 40;
pub const PAGE: usize = 4096;
/// Bytes of a slab (16 KiB, aligned to its size in the address space).
pub const SLAB: usize = 16 * KIB;

/// An anonymous private mapping reserved with `MAP_NORESERVE`: it reads as
/// zeros and costs nothing until touched, so a heap over it can use
/// `HeapConfig { zeroed: true, .. }`. Unmapped on drop.
pub struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    /// Reserves `len` bytes; panics (with the reason) if the system refuses.
    pub fn reserve(len: usize) -> Self {
        // SAFETY: a fresh anonymous mapping; no existing memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert!(
            ptr != libc::MAP_FAILED,
            "mmap(MAP_NORESERVE) of {len:#x} bytes failed: {} \
             (vm.overcommit_memory = 2, or an address-space limit?)",
            std::io::Error::last_os_error()
        );
        Self {
            ptr: ptr.cast(),
            len,
        }
    }

    pub fn ptr(&self) -> *mut u8 {
        self.ptr
    }

    pub fn addr(&self) -> usize {
        self.ptr as usize
    }

    pub fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: mapped in `reserve` with this length; whoever borrowed a
        // heap from it dropped its references first (the tests' scoping).
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

// SAFETY: the mapping is plain memory owned by this value.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

/// Start address of the slab holding object `p`.
pub fn slab_base(p: usize) -> usize {
    p & !(SLAB - 1)
}

/// Live blocks handed out by the heap: every new pointer must be unique
/// among those not freed yet.
#[derive(Default)]
pub struct Live {
    set: HashSet<usize>,
    order: Vec<usize>,
}

impl Live {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a block just handed out; panics if it is already live (two
    /// owners of one block).
    #[track_caller]
    pub fn add(&mut self, p: usize, what: &str) {
        assert!(
            self.set.insert(p),
            "{what}: {p:#x} handed out while it is still live (two owners of one block)"
        );
        self.order.push(p);
    }

    pub fn contains(&self, p: usize) -> bool {
        self.set.contains(&p)
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Forgets `p` (it was freed by the test).
    pub fn remove(&mut self, p: usize) {
        assert!(self.set.remove(&p), "{p:#x} was not live");
        self.order.retain(|&q| q != p);
    }

    /// All live blocks, oldest first, forgetting them.
    pub fn drain(&mut self) -> Vec<usize> {
        self.set.clear();
        std::mem::take(&mut self.order)
    }
}

/// Asserts that `r`, the result of a free (or size query) of `p`, refuses
/// `p` as memory that is not allocated: `NotAllocated(p)` or `DoubleFree(p)`
/// (a block that sits free in a cache may be reported as either).
#[track_caller]
pub fn refused_as_free<T: std::fmt::Debug>(r: Result<T, FreeError>, p: usize, what: &str) {
    match r {
        Err(e @ (FreeError::NotAllocated(_) | FreeError::DoubleFree(_))) => {
            assert_eq!(e.ptr(), p, "{what}: error names the pointer");
            assert!(
                e.to_string().contains(&format!("{p:#x}")),
                "{what}: message names the pointer: {e}"
            );
        }
        other => panic!(
            "{what}: {p:#x} is not an allocated block, expected Err(NotAllocated) or \
             Err(DoubleFree), got {other:?}"
        ),
    }
}

/// Which path frees in a race.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// `heap.try_free` (no handle).
    Shared,
    /// `handle.try_free` on a handle for this CPU slot.
    Handle(usize),
}

/// What [`race_frees`] saw.
#[derive(Debug, Default)]
pub struct RaceReport {
    /// Rounds run.
    pub rounds: usize,
    /// Blocks freed by all racers at once.
    pub raced: usize,
    /// Blocks for which more than one free returned `Ok` (freed twice).
    pub both_ok: usize,
    /// Blocks for which every free returned `Err` (a leaked block).
    pub none_ok: usize,
    /// The first block freed twice, with the round.
    pub first_both_ok: Option<(usize, usize)>,
}

/// Sets `flag` if the thread unwinds, so the other racers stop waiting.
struct AbortOnPanic<'a>(&'a AtomicBool);

impl Drop for AbortOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

/// Spins until `ready()` or `abort`; false on abort.
fn spin_until(abort: &AtomicBool, ready: impl Fn() -> bool) -> bool {
    let mut n = 0u32;
    while !ready() {
        if abort.load(Ordering::Relaxed) {
            return false;
        }
        n = n.wrapping_add(1);
        // No `spin_loop()` (PAUSE): under a hypervisor with pause-loop
        // exiting, a PAUSE loop gives the vCPU away and the racers stop
        // running at the same time. Yield now and then instead, so a
        // descheduled racer (two cores, noisy machine) gets to run.
        if n % (1 << 16) == 0 {
            std::thread::yield_now();
        }
    }
    true
}

/// A small xorshift generator for the racers' jitter.
struct Jitter(u64);

impl Jitter {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Loops a random number of iterations below [`JITTER`], so that over
    /// many blocks the racers start at every offset within the skew of
    /// their barrier exits.
    fn delay(&mut self) {
        let n = self.next() % JITTER;
        for i in 0..n {
            // Not `spin_loop()`: see `spin_until`.
            std::hint::black_box(i);
        }
    }
}

/// Bound of the jitter (loop iterations; up to a few hundred ns).
const JITTER: u64 = 64;

/// Pins the calling thread to CPU `i` (modulo the CPUs available), so two
/// racers are never stacked on one CPU by the scheduler. Linux only; a
/// no-op with fewer than two CPUs.
pub fn pin_to_cpu(i: usize) {
    #[cfg(target_os = "linux")]
    {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        if n < 2 {
            return;
        }
        // SAFETY: a zeroed cpu_set_t is an empty set; the calls only read
        // and write it and change this thread's affinity.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(i % n, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = i;
}

fn free_via(
    heap: &Heap,
    handle: &mut Option<magbuddy::Handle<'_>>,
    p: usize,
) -> Result<(), FreeError> {
    // SAFETY: `p` is a block of `heap` that the test no longer uses; the
    // race is about which of the frees of it wins.
    unsafe {
        match handle {
            Some(h) => h.try_free(p as *mut u8),
            None => heap.try_free(p as *mut u8),
        }
    }
}

/// Real threads, one per entry of `sides`, free the same blocks at the same
/// time, round after round; each block must be freed exactly once.
///
/// Each round the calling thread allocates `per_round` blocks of `size`
/// bytes on the shared path, then spawns the racers, which free every
/// block in the same order, meeting at a spin barrier before each block
/// and starting it after a random delay of up to a few hundred ns. What
/// makes the races likely on a loaded two-core VM (there, on 5d3224e, the
/// first or second round of a run frees blocks twice; without pinning, half
/// the 3 s runs saw no double free, and with a racer allocating too, hits
/// came only in a run's first round or two):
/// * the racers are pinned to different CPUs, so the scheduler cannot
///   stack them on one CPU, where they take turns instead of racing;
/// * a third thread allocates, so no racer holds the blocks' cache lines:
///   both miss on their first read, and a read-then-write window (bug 2)
///   spans a cache miss instead of a few instructions;
/// * the per-block barrier restarts the race at every block, so a racer
///   that was descheduled does not run its whole pass alone;
/// * no `spin_loop()` hint in the waits (see `spin_until`).
///
/// Counts, per block, how many frees returned `Ok`; stops after the first
/// round with a block freed twice (or not at all), after `max_rounds`
/// rounds or after `budget`.
pub fn race_frees(
    heap: &Heap,
    sides: &[Side],
    size: usize,
    per_round: usize,
    max_rounds: usize,
    budget: Duration,
) -> RaceReport {
    let n = sides.len();
    assert!(n >= 2);
    let mut report = RaceReport::default();
    let start = Instant::now();
    while report.rounds < max_rounds && start.elapsed() < budget {
        let blocks: Vec<usize> = (0..per_round)
            .map(|i| {
                let p = heap.alloc(size).unwrap_or_else(|| {
                    panic!("round {}: alloc({size}) #{i} failed", report.rounds)
                });
                p.as_ptr() as usize
            })
            .collect();
        report.rounds += 1;
        let oks: Vec<AtomicU8> = (0..per_round).map(|_| AtomicU8::new(0)).collect();
        let step = AtomicUsize::new(0);
        let abort = AtomicBool::new(false);
        std::thread::scope(|s| {
            for (t, &side) in sides.iter().enumerate() {
                let (blocks, oks, step, abort) = (&blocks, &oks, &step, &abort);
                let seed = (report.rounds as u64) << 8 | t as u64;
                s.spawn(move || {
                    let _guard = AbortOnPanic(abort);
                    pin_to_cpu(t);
                    let mut handle = match side {
                        Side::Shared => None,
                        Side::Handle(cpu) => Some(heap.handle_for(cpu).expect("free CPU slot")),
                    };
                    let mut jitter = Jitter(0x9e37_79b9_7f4a_7c15 ^ seed.wrapping_mul(0x2545_f491));
                    for (i, (&p, ok)) in blocks.iter().zip(oks).enumerate() {
                        step.fetch_add(1, Ordering::AcqRel);
                        let all = n * (i + 1);
                        if !spin_until(abort, || step.load(Ordering::Acquire) >= all) {
                            return;
                        }
                        jitter.delay();
                        if free_via(heap, &mut handle, p).is_ok() {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        for (&p, ok) in blocks.iter().zip(&oks) {
            report.raced += 1;
            match ok.load(Ordering::Relaxed) {
                1 => {}
                0 => report.none_ok += 1,
                _ => {
                    report.both_ok += 1;
                    report.first_both_ok.get_or_insert((p, report.rounds));
                }
            }
        }
        if report.both_ok + report.none_ok > 0 {
            break;
        }
    }
    report
}

/// Two heaps of `len` bytes built with the same `config` at the same
/// alignment (64 MiB apart in one zeroed mapping), so the same calls place
/// blocks at the same offsets in both: what one heap's handle does shows
/// where the other heap's caches hold blocks that were never handed out.
pub struct Twins {
    a: *const Heap,
    b: *const Heap,
    // Dropped last: the heaps live inside it.
    _map: Mapping,
}

impl Twins {
    pub const SPACING: usize = 64 * MIB;

    pub fn new(len: usize, config: magbuddy::HeapConfig) -> Self {
        assert!(len <= Self::SPACING);
        let map = Mapping::reserve(3 * Self::SPACING);
        let start = map.addr().next_multiple_of(Self::SPACING);
        let config = magbuddy::HeapConfig {
            zeroed: true,
            ..config
        };
        // SAFETY: disjoint ranges inside our zero-filled mapping, which
        // outlives the heaps (they are only reachable through `self`).
        let (a, b): (&Heap, &Heap) = unsafe {
            (
                Heap::init_with(start as *mut u8, len, config).unwrap(),
                Heap::init_with((start + Self::SPACING) as *mut u8, len, config).unwrap(),
            )
        };
        Self { a, b, _map: map }
    }

    /// The heap whose calls are observed.
    pub fn a(&self) -> &Heap {
        // SAFETY: built in `new`, inside the mapping we own.
        unsafe { &*self.a }
    }

    /// The heap under test.
    pub fn b(&self) -> &Heap {
        // SAFETY: as in `a`.
        unsafe { &*self.b }
    }

    /// The address in heap `b` that corresponds to address `p` of heap `a`.
    pub fn in_b(&self, p: usize) -> usize {
        p + Self::SPACING
    }
}

/// Asserts that a race saw exactly one successful free per block.
#[track_caller]
pub fn exactly_one_ok(r: &RaceReport, what: &str) {
    println!("{what}: {r:?}");
    assert!(r.rounds > 0, "{what}: no round ran");
    if let Some((p, round)) = r.first_both_ok {
        panic!(
            "{what}: two racing frees of {p:#x} both returned Ok (round {round}; {} of {} \
             contested blocks freed twice)",
            r.both_ok, r.raced
        );
    }
    assert_eq!(
        r.none_ok, 0,
        "{what}: both racing frees of a live block failed (a leak)"
    );
}
