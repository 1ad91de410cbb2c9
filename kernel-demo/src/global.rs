//! The demo's own `#[global_allocator]`: magbuddy's `GlobalHeap` over a
//! range carved from the heap RAM before the allocators under test get
//! theirs, and a phase that uses `alloc` (`Vec`, `Box`, `BTreeMap`,
//! `String`, `format!`) on every CPU at once, with the timer interrupt
//! allocating a `Box` on the interrupted CPU meanwhile.
//!
//! Nothing in the workloads or the checkers allocates through it; only the
//! phase below (and its timer ticks) does.

use crate::arch::acpi::MAX_CPUS;
use crate::arch::boot::Range;
use crate::arch::{cpu, percpu, tsc};
use crate::demo::Config;
use crate::sync::Barrier;
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;
use core::hint::black_box;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use magbuddy::{CurrentCpu, GlobalHeap, HeapConfig};

/// The calling CPU's dense index (`arch::percpu`).
pub struct ThisCpu;

impl CurrentCpu for ThisCpu {
    #[inline(always)]
    fn current() -> Option<usize> {
        // Every CPU installs its per-CPU block (GS base) as the first thing
        // it does (`kmain`, `ap_main`), and the heap is set up after the
        // BSP's install: any call that gets past the heap's null check runs
        // on a CPU whose `gs:0` holds its index.
        Some(percpu::index())
    }
}

// SAFETY: the demo has no scheduler: code never migrates between CPUs, and
// each CPU's GS base names its own index, so the answer stays right for
// the whole call and no two CPUs get the same one. Interrupt handlers that
// allocate (the timer tick below) are allowed in pinned mode.
#[global_allocator]
static HEAP: GlobalHeap<ThisCpu> = unsafe { GlobalHeap::empty().pinned() };

/// Smallest and largest share of the heap RAM the global heap takes.
const MIN_LEN: u64 = 4 << 20;
const MAX_LEN: u64 = 64 << 20;
/// Entries each CPU's `BTreeMap` gets.
const MAP_KEYS: u64 = 4000;
/// Boxes each CPU hands to another CPU per round, and rounds.
const PARCELS: usize = 300;
const ROUNDS: usize = 3;

/// Bytes of one slab (measured at init: the core keeps its slab order private).
static SLAB_BYTES: AtomicUsize = AtomicUsize::new(0);
/// Free bytes at the start of the phase (CPU 0 writes, barriers publish).
static FREE_START: AtomicUsize = AtomicUsize::new(0);
static SHARED_START: AtomicU64 = AtomicU64::new(0);
/// Bytes each CPU's `Vec` grows to.
static VEC_BYTES: AtomicUsize = AtomicUsize::new(0);
static BARRIER: Barrier = Barrier::new();
/// Each CPU's parcels for the next CPU (a boxed `Vec` of boxes).
// The boxes are the point: each parcel is its own allocation, freed remotely.
#[allow(clippy::vec_box)]
static OUTBOX: [AtomicPtr<Vec<Box<Parcel>>>; MAX_CPUS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_CPUS];
/// Per CPU: the timer tick allocates (only that CPU writes it).
static TICK_ON: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// Per CPU: boxes the timer tick allocated and freed.
static TICK_BOXES: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Per CPU: parcels received and checked.
static RECEIVED: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Takes the global heap's own RAM off the top of the largest heap range
/// (1/64 of all heap RAM, 4..64 MiB: 4 MiB at 256M, 64 MiB at 6G) and sets
/// it up for `cpus` CPUs. BSP only, before the APs start.
///
/// Small, so the allocators under test keep nearly all their RAM: at 256M
/// with 8 CPUs, magbuddy's timed large module fails a 1-2 MiB allocation in
/// some boots, and more often the less RAM and the other layout it gets
/// (the unchanged demo given 0x1800000..0xffdf000: 2 of 8 boots; with this
/// heap taking 16 MiB or 4 MiB: 2 to 5 of 9-14); see the README. The phase
/// gets the allocators' ranges added once they are done with them (`grow`).
pub fn init(ranges: &mut [Range], cpus: usize) -> Range {
    let total: u64 = ranges.iter().map(Range::len).sum();
    let len = (total / 64).clamp(MIN_LEN, MAX_LEN) & !4095;
    let big = ranges
        .iter_mut()
        .max_by_key(|r| r.len())
        .expect("no heap range");
    assert!(
        big.len() >= len + (16 << 20),
        "heap range {big:x?} too small to give the global heap {len} B"
    );
    let mine = Range {
        start: big.end - len,
        end: big.end,
    };
    big.end = mine.start;
    // SAFETY: identity-mapped RAM that was just removed from the ranges the
    // allocators under test get; nothing else uses it, for good.
    let heap = unsafe { HEAP.init(mine.start as *mut u8, len as usize, HeapConfig::new(cpus)) }
        .unwrap_or_else(|e| panic!("global heap over {mine:x?}: {e}"));
    // One object on the shared path carves one slab: its cost in free bytes.
    let free0 = heap.stats().free_bytes;
    let p = heap.alloc(8).expect("global heap: first object");
    let slab = free0 - heap.stats().free_bytes;
    assert_eq!(heap.slabs_in_use(), 1, "one object, one slab");
    // SAFETY: just allocated, freed once.
    unsafe { heap.free(p.as_ptr()) };
    heap.reclaim();
    assert_eq!(
        heap.stats().free_bytes,
        free0,
        "global heap: slab not swept"
    );
    SLAB_BYTES.store(slab, Ordering::Relaxed);
    mine
}

/// Gives the global heap the allocators' ranges (`add_region`), once every
/// allocator under test is done with them for good. CPU 0, before the
/// phase; returns the heap's bytes.
fn grow(cfg: &Config) -> usize {
    for r in cfg.ranges() {
        // SAFETY: every CPU passed the last barrier of the last allocator
        // run (its ticks stopped using it before), and CPU 0 dropped it: no
        // one touches this RAM any more, and it stays the heap's for good.
        unsafe { HEAP.add_region(r.start as *mut u8, r.len() as usize) }
            .unwrap_or_else(|e| panic!("global heap: add_region {r:x?}: {e}"));
    }
    HEAP.heap().map_or(0, |h| h.stats().free_bytes)
}

/// One box passed between CPUs: its payload tells who made it.
struct Parcel {
    from: usize,
    seq: usize,
    payload: Vec<u32>,
}

/// What parcel `seq` of CPU `from` carries, word `i`.
fn word(from: usize, seq: usize, i: usize) -> u32 {
    ((from << 28) ^ (seq << 14) ^ i) as u32
}

/// Payload length of parcel `seq` of CPU `from`: 4 B to 1.2 KiB (slab
/// objects of every class), every 25th 4.8 KiB, 9.6 KiB or 20 KiB (page
/// magazines and the buddy tree).
fn payload_len(from: usize, seq: usize) -> usize {
    if seq % 25 == 24 {
        1200 << (seq / 25 % 3)
    } else {
        1 + (seq * 37 + from * 11) % 300
    }
}

fn parcel(from: usize, seq: usize) -> Box<Parcel> {
    let payload = (0..payload_len(from, seq))
        .map(|i| word(from, seq, i))
        .collect();
    Box::new(Parcel { from, seq, payload })
}

/// What the phase found (CPU 0 prints it after the tables).
pub struct Summary {
    line: String,
}

impl Summary {
    /// Prints the line.
    pub fn print(&self) {
        crate::println!("{}", self.line);
    }
}

fn sync(cfg: &Config, what: &str) {
    BARRIER.wait(cfg.n, what);
}

/// The timer tick's part (interrupts off): a `Box` through the global
/// allocator on the interrupted CPU, which may be inside an allocation
/// holding its handle (then the nested call takes the shared path).
pub fn on_tick(c: usize) {
    // Relaxed: only this CPU writes its flag; a tick sees its CPU's program order.
    if !TICK_ON[c].load(Ordering::Relaxed) {
        return;
    }
    let n = TICK_BOXES[c].load(Ordering::Relaxed);
    let b = black_box(Box::new([n ^ c as u64; 6]));
    assert!(
        b.iter().all(|&x| x == n ^ c as u64),
        "tick box on CPU {c} overwritten"
    );
    drop(b);
    TICK_BOXES[c].store(n + 1, Ordering::Relaxed);
}

/// The phase, on every CPU at once; CPU 0 returns the summary. Panics on
/// any mismatch (the run then fails).
pub fn run(cfg: &Config, c: usize) -> Option<Summary> {
    let heap = HEAP.heap().expect("global heap set up at boot");
    let n = cfg.n;
    if c == 0 {
        let free = grow(cfg);
        let per_cpu = (free / (4 * n)).min(4 << 20);
        VEC_BYTES.store(1 << per_cpu.ilog2(), Ordering::Relaxed);
        FREE_START.store(heap.stats().free_bytes, Ordering::Relaxed);
        SHARED_START.store(heap.shared_stats().allocs, Ordering::Relaxed);
    }
    sync(cfg, "global phase start");
    let t0 = cpu::rdtsc();
    // Relaxed: as in `on_tick`.
    TICK_ON[c].store(true, Ordering::Relaxed);

    // 1. A BTreeMap of MAP_KEYS keys (distinct: an odd multiplier permutes
    // u64), each value its key as hex text; a third removed.
    let key = |i: u64| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ c as u64;
    let mut map: BTreeMap<u64, String> = BTreeMap::new();
    for i in 0..MAP_KEYS {
        assert!(map.insert(key(i), format!("{:x}", key(i))).is_none());
    }
    let mut kept = 0u64;
    for i in 0..MAP_KEYS {
        if i % 3 == 0 {
            let v = map.remove(&key(i)).expect("key present");
            assert_eq!(u64::from_str_radix(&v, 16), Ok(key(i)));
        } else {
            kept = kept.wrapping_add(key(i));
        }
    }
    assert_eq!(map.len() as u64, MAP_KEYS - MAP_KEYS.div_ceil(3));
    let mut prev = None;
    let mut sum = 0u64;
    for (k, v) in &map {
        assert!(prev < Some(*k), "BTreeMap out of order on CPU {c}");
        assert_eq!(u64::from_str_radix(v, 16), Ok(*k), "value of {k:#x}");
        prev = Some(*k);
        sum = sum.wrapping_add(*k);
    }
    assert_eq!(sum, kept, "BTreeMap key sum on CPU {c}");
    drop(map);

    // 2. A Vec grown by push to VEC_BYTES (reallocations through the heap),
    // summed, filtered, shrunk.
    let len = VEC_BYTES.load(Ordering::Relaxed) / 8;
    let mut v: Vec<u64> = Vec::new();
    for i in 0..len as u64 {
        v.push(i * (c as u64 + 1));
    }
    let n64 = len as u64;
    assert_eq!(v.capacity(), len, "Vec capacity");
    assert_eq!(
        v.iter().sum::<u64>(),
        (c as u64 + 1) * n64 * (n64 - 1) / 2,
        "Vec sum on CPU {c}"
    );
    v.retain(|&x| x % (2 * (c as u64 + 1)) == 0);
    v.shrink_to_fit();
    assert_eq!(v.len(), len / 2);
    assert!(v
        .iter()
        .enumerate()
        .all(|(i, &x)| x == 2 * i as u64 * (c as u64 + 1)));
    drop(v);

    // 3. A String written piece by piece, parsed back.
    let mut s = String::new();
    for i in 0..2000u64 {
        write!(s, "{},", i * i).expect("write to String");
    }
    let parsed: u64 = s
        .split(',')
        .filter(|t| !t.is_empty())
        .map(|t| t.parse::<u64>().expect("number"))
        .sum();
    assert_eq!(
        parsed,
        1999 * 2000 * 3999 / 6,
        "String round trip on CPU {c}"
    );
    drop(s);

    // 4. Boxes handed to another CPU, checked and freed there (remote
    // frees): in round r, CPU c checks the parcels of CPU c - 1 - r % (n - 1)
    // (its own with one CPU).
    for r in 0..ROUNDS {
        let mine: Vec<Box<Parcel>> = (0..PARCELS).map(|seq| parcel(c, seq)).collect();
        // Relaxed: the barrier below publishes it.
        OUTBOX[c].store(Box::into_raw(Box::new(mine)), Ordering::Relaxed);
        sync(cfg, "global parcels sent");
        let shift = if n == 1 { 0 } else { 1 + r % (n - 1) };
        let from = (c + n - shift) % n;
        let p = OUTBOX[from].swap(core::ptr::null_mut(), Ordering::Relaxed);
        assert!(!p.is_null(), "CPU {c}: no parcels from CPU {from}");
        // SAFETY: CPU `from` leaked this box for exactly one receiver (the
        // swap took it), and it is not touched elsewhere.
        let theirs = unsafe { Box::from_raw(p) };
        assert_eq!(theirs.len(), PARCELS);
        for (seq, b) in theirs.iter().enumerate() {
            assert_eq!((b.from, b.seq), (from, seq), "parcel header on CPU {c}");
            assert_eq!(b.payload.len(), payload_len(from, seq));
            assert!(
                b.payload
                    .iter()
                    .enumerate()
                    .all(|(i, &w)| w == word(from, seq, i)),
                "parcel {seq} of CPU {from} corrupted (seen on CPU {c})"
            );
        }
        drop(theirs);
        RECEIVED[c].fetch_add(PARCELS as u64, Ordering::Relaxed);
        sync(cfg, "global parcels checked");
    }

    TICK_ON[c].store(false, Ordering::Relaxed);
    let ms = tsc::ticks_to_ns(cpu::rdtsc() - t0) / 1_000_000;
    // A tick runs to completion before its CPU goes on: after this barrier
    // no tick allocates any more.
    sync(cfg, "global phase done");
    // Only the nested tick calls took the shared path (every CPU has a slot).
    let shared = heap.shared_stats().allocs - SHARED_START.load(Ordering::Relaxed);
    if c == 0 {
        heap.reclaim();
    }
    sync(cfg, "global heap reclaimed");
    // The reclaim asked every CPU to flush its magazines on its next call:
    // make that call (one small box).
    drop(black_box(Box::new(c as u64)));
    sync(cfg, "global caches flushed");
    if c != 0 {
        return None;
    }
    // Flushed objects may have emptied abandoned slabs: sweep once more.
    heap.reclaim();
    if let Err(e) = heap.validate() {
        panic!("global heap: validate: {e}");
    }
    let start = FREE_START.load(Ordering::Relaxed);
    let end = heap.stats().free_bytes;
    let slabs = heap.slabs_in_use() as usize;
    let slab = SLAB_BYTES.load(Ordering::Relaxed);
    // What is not free is exactly the CPUs' current slabs: a CPU keeps its
    // handle (and its slabs) in the GlobalHeap's slot for good.
    assert_eq!(
        end + slabs * slab,
        start,
        "global heap: {end} B free after the phase + {slabs} slabs of {slab} B != {start} B before"
    );
    let ticks: u64 = (0..n).map(|i| TICK_BOXES[i].load(Ordering::Relaxed)).sum();
    let received: u64 = (0..n).map(|i| RECEIVED[i].load(Ordering::Relaxed)).sum();
    let line = format!(
        "global allocator: {n} CPU(s), {ms} ms, {} MiB free after add_region: per CPU a BTreeMap of {MAP_KEYS} Strings, a Vec of {} KiB, a String of 2000 numbers; {received} boxes freed by the CPU they were sent to; ticks: {ticks} boxes, {shared} nested in a busy handle (shared path); validate ok; free bytes = start - {slabs} current slabs of {} KiB",
        start >> 20,
        VEC_BYTES.load(Ordering::Relaxed) >> 10,
        slab >> 10
    );
    Some(Summary { line })
}
