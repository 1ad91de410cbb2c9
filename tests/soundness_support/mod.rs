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

    /// Makes the whole mapping read as zeros again (`MADV_DONTNEED`), so a
    /// new heap with `zeroed` may be built where one was.
    pub fn reset(&self) {
        // SAFETY: our own private anonymous mapping; nothing in it is in use.
        let r = unsafe { libc::madvise(self.ptr.cast(), self.len, libc::MADV_DONTNEED) };
        assert_eq!(r, 0, "madvise: {}", std::io::Error::last_os_error());
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

/// Races two frees of each of many blocks of `size` bytes on `sides` (see
/// [`race_frees`], for up to `budget`) on a fresh 16 MiB heap of two CPU
/// slots with magazines of 8 rounds, asserts exactly one `Ok` per block,
/// then checks that no block is handed out twice afterwards: up to 2048
/// blocks of `size` through handle 0 and the shared path in turn, all held
/// at once, no corruption counted, everything freed, `validate()` and every
/// byte back.
pub fn race_and_reallocate(sides: [Side; 2], size: usize, budget: Duration, what: &str) {
    let map = Mapping::reserve(16 * MIB);
    let config = magbuddy::HeapConfig {
        magazine_rounds: Some(8),
        zeroed: true,
        ..magbuddy::HeapConfig::new(2)
    };
    // SAFETY: our fresh zero-filled mapping, alive until the end.
    let heap = unsafe { Heap::init_with(map.ptr(), map.len(), config) }.unwrap();
    let free_at_start = heap.stats().free_bytes;
    let block = heap.block_size(size);
    // About 4 MiB of blocks per round, between 4 and 512 of them.
    let per_round = (4 * MIB / block).clamp(4, 512);
    let r = race_frees(heap, &sides, size, per_round, 100_000, budget);
    exactly_one_ok(&r, what);
    let mut live = Live::new();
    let mut h = heap.handle_for(0).unwrap();
    // One refill from the tree (the depot emptied first), checked while
    // its rounds sit in the magazine: cached blocks must be marked free
    // whatever the heap's layout, which decides whether the exhaustion
    // below leaves rounds in a magazine for a flush to find.
    heap.reclaim();
    if let Some(p) = h.alloc(size) {
        live.add(p.as_ptr() as usize, "handle alloc after the race");
    }
    if let Err(e) = heap.validate() {
        panic!("{what}: caches after a refill: {e}");
    }
    let (mut by_handle, mut shared) = (true, true);
    for _ in 0..2048 {
        if by_handle {
            match h.alloc(size) {
                Some(p) => live.add(p.as_ptr() as usize, "handle alloc after the race"),
                None => by_handle = false,
            }
        }
        if shared {
            match heap.alloc(size) {
                Some(p) => live.add(p.as_ptr() as usize, "shared alloc after the race"),
                None => shared = false,
            }
        }
    }
    drop(h);
    assert_eq!(
        heap.corruptions().0,
        0,
        "{what}: corruptions after the race"
    );
    free_all_and_validate(heap, &mut live);
    assert_eq!(
        heap.stats().free_bytes,
        free_at_start,
        "{what}: every byte back"
    );
}

/// Time per real-thread race: `MAGBUDDY_RACE_MS` ms (default 500).
pub fn race_budget() -> Duration {
    let ms = std::env::var("MAGBUDDY_RACE_MS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    Duration::from_millis(ms)
}

/// The text of a panic payload.
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// Allocates through `alloc` until `None`, recording each block in `live`.
pub fn alloc_until_none(
    live: &mut Live,
    what: &str,
    mut alloc: impl FnMut() -> Option<std::ptr::NonNull<u8>>,
) {
    while let Some(p) = alloc() {
        live.add(p.as_ptr() as usize, what);
        assert!(live.len() < 1 << 21, "{what}: never runs out");
    }
}

/// Frees every block of `live` on the shared path, then reclaims and
/// validates.
pub fn free_all_and_validate(heap: &Heap, live: &mut Live) {
    for p in live.drain() {
        // SAFETY: blocks of `heap` the caller recorded and no longer uses.
        unsafe { heap.try_free(p as *mut u8) }.unwrap();
    }
    heap.reclaim();
    heap.validate().unwrap();
}

/// A heap of `config` over a region of `len` bytes (1 MiB-aligned) either
/// is refused at init, which only geometries with areas smaller than a slab
/// may be, or serves every size through both paths: objects, pages, area
/// blocks and runs of areas are each allocated until `None` (the shared
/// path, then handle 0) and freed, with `validate()` and every byte back
/// after each. Returns the blocks each size got (empty if refused).
pub fn exercise_geometry(config: magbuddy::HeapConfig, len: usize) -> Vec<(usize, usize)> {
    let g = config.geometry;
    let area = (g.area_pages() as usize) * PAGE;
    let map = Mapping::reserve(len + MIB);
    let start = map.addr().next_multiple_of(MIB);
    // SAFETY: a fresh range of our mapping, alive until the end.
    let heap = match unsafe { Heap::init_with(start as *mut u8, len, config) } {
        Ok(h) => h,
        Err(e) => {
            assert!(
                g.area_pages() < 4,
                "{g:?} has slab-sized areas and must be served, init said {e:?}"
            );
            return Vec::new();
        }
    };
    let free_at_start = heap.stats().free_bytes;
    let mut counts = Vec::new();
    let mut live = Live::new();
    for size in [64, 2048, PAGE, 4 * PAGE, area, 2 * area] {
        alloc_until_none(&mut live, &format!("shared alloc({size})"), || {
            heap.alloc(size)
        });
        counts.push((size, live.len()));
        free_all_and_validate(heap, &mut live);
        assert_eq!(heap.stats().free_bytes, free_at_start, "shared, {size} B");
    }
    let mut h = heap.handle_for(0).unwrap();
    for size in [64, 2048, PAGE, 4 * PAGE, 2 * area] {
        alloc_until_none(&mut live, &format!("handle alloc({size})"), || {
            h.alloc(size)
        });
        counts.push((size, live.len()));
        for p in live.drain() {
            // SAFETY: allocated above, unused.
            unsafe { h.try_free(p as *mut u8) }.unwrap();
        }
    }
    drop(h);
    heap.reclaim();
    heap.validate().unwrap();
    assert_eq!(heap.stats().free_bytes, free_at_start, "after the handle");
    assert_eq!(heap.corruptions().0, 0);
    assert!(counts.iter().take(4).all(|&(_, n)| n > 0), "{counts:?}");
    counts
}

/// A heap over a region of `len` bytes starting `offset` bytes above a
/// 1 MiB (area) boundary, in a zero-filled reservation (`zeroed`, so a
/// multi-TiB region costs nothing), filled: the largest blocks first
/// (successive halving down to 1 MiB), then 16 KiB blocks; every block but
/// the highest 16 KiB one (of the region, or of the heap) is held.
pub struct TopSlab {
    heap: *const Heap,
    /// The only free 16 KiB block: the highest of the region (`top_in_first`)
    /// or of the heap.
    pub top: usize,
    /// 16 KiB blocks the test holds (all but `top`).
    pub held: Vec<usize>,
    /// Blocks of 1 MiB and more, with their sizes.
    pub big: Vec<(usize, usize)>,
    /// Where the grid of the region starts (area-aligned, at or below
    /// `start`), and where the region ends.
    pub base: usize,
    pub end: usize,
    // Last: the heap lives inside it.
    _map: Mapping,
}

impl TopSlab {
    /// Reserves and fills (see the type); `extra` bytes after the region
    /// are reserved for the caller, and `before_slabs` runs just before the
    /// 16 KiB fill (it may add regions there). `Err` if init refuses.
    pub fn build(
        offset: usize,
        len: usize,
        extra: usize,
        top_in_first: bool,
        before_slabs: impl FnOnce(&Heap, usize) -> Vec<(usize, usize)>,
    ) -> Result<Self, magbuddy::InitError> {
        let map = Mapping::reserve(len + offset + MIB + extra);
        let start = map.addr().next_multiple_of(MIB) + offset;
        let base = start & !(MIB - 1);
        let end = start + len;
        let config = magbuddy::HeapConfig {
            zeroed: true,
            ..magbuddy::HeapConfig::new(1)
        };
        // SAFETY: our fresh zero-filled mapping, which outlives the heap
        // (only reachable through `self`).
        let heap = unsafe { Heap::init_with(start as *mut u8, len, config) }?;
        let mut big = fill_by_halving(heap, MIB);
        big.extend(before_slabs(heap, end));
        assert!(big.iter().all(|&(p, s)| p % s == 0), "aligned blocks");
        let mut held: Vec<usize> = std::iter::from_fn(|| heap.alloc(SLAB))
            .map(|p| p.as_ptr() as usize)
            .collect();
        if held.is_empty() {
            // Whole areas only: the smallest large block becomes slabs.
            let (p, _) = big.pop().expect("a block");
            // SAFETY: allocated above, unused.
            unsafe { heap.try_free(p as *mut u8) }.unwrap();
            held.extend(std::iter::from_fn(|| heap.alloc(SLAB)).map(|p| p.as_ptr() as usize));
        }
        let top = held
            .iter()
            .copied()
            .filter(|&p| !top_in_first || p < end)
            .max()
            .expect("16 KiB blocks were left");
        held.retain(|&p| p != top);
        // SAFETY: allocated above, unused.
        unsafe { heap.try_free(top as *mut u8) }.unwrap();
        Ok(Self {
            heap,
            top,
            held,
            big,
            base,
            end,
            _map: map,
        })
    }

    pub fn heap(&self) -> &Heap {
        // SAFETY: built in `build`, inside `self._map`.
        unsafe { &*self.heap }
    }

    /// The top slab must serve small objects on both paths and go back to
    /// the tree whole (it is free again afterwards). (No `validate()`: on a
    /// 4 TiB heap it walks 2^30 page descriptors; the API checks below
    /// cover the slab.)
    pub fn check_top_slab(&self) {
        let heap = self.heap();
        let in_top = |p: usize| (self.top..self.top + SLAB).contains(&p);
        let p = heap
            .alloc(64)
            .expect("the top 16 KiB block is free")
            .as_ptr() as usize;
        assert!(
            in_top(p),
            "alloc(64) returned {p:#x}, outside the only free slab-sized block \
             {:#x} (grid page {:#x}); held block containing it: {:?}",
            self.top,
            (self.top - self.base) / PAGE,
            self.held
                .iter()
                .find(|&&b| (b..b + SLAB).contains(&p))
                .map(|b| format!("{b:#x}"))
        );
        assert_eq!(heap.usable_size(p as *const u8), Ok(64));
        let mut h = heap.handle_for(0).unwrap();
        let q = h.alloc(64).unwrap().as_ptr() as usize;
        assert!(in_top(q) && q != p, "handle alloc(64) {q:#x}");
        // SAFETY: allocated above, unused.
        unsafe {
            h.try_free(q as *mut u8).unwrap();
            heap.try_free(p as *mut u8).unwrap();
        }
        refused_as_free(
            // SAFETY: a double free, which the heap must refuse.
            unsafe { heap.try_free(p as *mut u8) },
            p,
            "second free in the top slab",
        );
        drop(h);
        heap.reclaim();
        assert_eq!(heap.corruptions().0, 0);
        // The slab went back to the tree whole.
        let again = heap.alloc(SLAB).expect("top block free again").as_ptr() as usize;
        assert_eq!(again, self.top);
        assert!(self.top >= self.end || self.top + SLAB <= self.end);
        // SAFETY: allocated just above.
        unsafe { heap.try_free(again as *mut u8) }.unwrap();
    }

    /// Exhaustion and recovery: every held block goes back, and the same
    /// fill gets the same blocks again (the heap is whole).
    pub fn free_all_and_refill(&mut self) {
        // SAFETY: as in `heap` (not borrowed from `self`: `held` changes).
        let heap: &Heap = unsafe { &*self.heap };
        assert!(heap.alloc(SLAB + 1).is_none() && heap.alloc(2 * SLAB).is_none());
        for &(p, _) in &self.big {
            // SAFETY: held blocks of this heap, unused.
            unsafe { heap.try_free(p as *mut u8) }.unwrap();
        }
        for &p in &self.held {
            // SAFETY: as above.
            unsafe { heap.try_free(p as *mut u8) }.unwrap();
        }
        heap.reclaim();
        assert_eq!(heap.corruptions().0, 0);
        let mut big = fill_by_halving(heap, MIB);
        let mut held: Vec<usize> = std::iter::from_fn(|| heap.alloc(SLAB))
            .map(|p| p.as_ptr() as usize)
            .collect();
        big.sort_unstable();
        held.sort_unstable();
        let mut want_big = self.big.clone();
        let mut want_held = self.held.clone();
        want_big.sort_unstable();
        want_held.push(self.top);
        want_held.sort_unstable();
        assert_eq!(big, want_big, "the refill gets the same large blocks");
        assert_eq!(held, want_held, "the refill gets the same 16 KiB blocks");
        self.held = held;
        self.held.retain(|&p| p != self.top);
        // SAFETY: allocated just above.
        unsafe { heap.try_free(self.top as *mut u8) }.unwrap();
    }
}

/// Allocates the largest blocks first: from 4 TiB down to `smallest`, each
/// size until `None`. Returns the blocks with their sizes.
pub fn fill_by_halving(heap: &Heap, smallest: usize) -> Vec<(usize, usize)> {
    let mut blocks = Vec::new();
    let mut size = 1usize << 42;
    while size >= smallest {
        while let Some(p) = heap.alloc(size) {
            blocks.push((p.as_ptr() as usize, size));
        }
        size /= 2;
    }
    blocks
}
