//! The fast path's "done when" tests (issue 3): the seed's mix on 8 threads
//! with cross-thread frees under the checkers, thread churn, and exhaustion
//! with idle CPUs against the documented no-false-OOM guarantee.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use common::{block_size, Mem, MIB};
use magbuddy::{Heap, HeapConfig};
use magbuddy_checkers::canary;
use magbuddy_checkers::{words_needed, ShadowBitmap};
use rand::{rngs::SmallRng, Rng, SeedableRng};

/// The seed's mix: mostly 8–128 B, frequent 4 KiB pages, rare MiB blocks.
fn seed_size(rng: &mut SmallRng) -> usize {
    match rng.gen_range(0..1000) {
        0..=849 => rng.gen_range(8..=128),
        850..=979 => 4096,
        980..=997 => rng.gen_range(129..=65536),
        _ => rng.gen_range(1..=2) * MIB,
    }
}

#[test]
fn seed_mix_8_threads_half_the_frees_remote() {
    const THREADS: usize = 8;
    const OPS: usize = 150_000;
    let len = 256 * MIB;
    let mem = Mem::new(len);
    // A depot of one full magazine per thread: most full magazines go home,
    // so remote frees, abandoned and adopted slabs happen in every run.
    let config = HeapConfig {
        depot_magazines: Some(THREADS),
        ..HeapConfig::new(THREADS)
    };
    let heap = unsafe { Heap::init_with(mem.ptr(), len, config) }.unwrap();
    let free_at_start = heap.stats().free_bytes;
    let words: Vec<std::sync::atomic::AtomicU64> = (0..words_needed(len, 8))
        .map(|_| Default::default())
        .collect();
    let shadow = ShadowBitmap::new(mem.ptr() as usize, len, 8, len, &words).unwrap();
    let mailboxes: Vec<Mutex<Vec<(usize, usize)>>> =
        (0..THREADS).map(|_| Mutex::new(Vec::new())).collect();
    let remote = AtomicU64::new(0);
    let release = |h: &mut magbuddy::Handle, p: usize, size: usize| {
        unsafe { canary::check_edges(p as *const u8, size, 7, 16) }.unwrap();
        shadow.on_free_addr(p, block_size(size)).unwrap();
        unsafe { h.free(p as *mut u8) };
    };
    std::thread::scope(|s| {
        for me in 0..THREADS {
            let (shadow, mailboxes, remote, release) = (&shadow, &mailboxes, &remote, &release);
            s.spawn(move || {
                let mut h = heap.handle_for(me).unwrap();
                let mut rng = SmallRng::seed_from_u64(me as u64);
                let mut mine: Vec<(usize, usize)> = Vec::new();
                for op in 0..OPS {
                    if mine.len() < 2000 && rng.gen_bool(0.52) {
                        let size = seed_size(&mut rng);
                        let Some(p) = h.alloc(size) else { continue };
                        let p = p.as_ptr() as usize;
                        shadow.on_alloc_addr(p, block_size(size)).unwrap();
                        unsafe { canary::fill_edges(p as *mut u8, size, 7, 16) };
                        if rng.gen_bool(0.5) {
                            // Half the blocks are freed by another thread.
                            let other = (me + 1 + rng.gen_range(0..THREADS - 1)) % THREADS;
                            mailboxes[other].lock().unwrap().push((p, size));
                            remote.fetch_add(1, Ordering::Relaxed);
                        } else {
                            mine.push((p, size));
                        }
                    } else if !mine.is_empty() {
                        let (p, size) = mine.swap_remove(rng.gen_range(0..mine.len()));
                        release(&mut h, p, size);
                    }
                    if op % 64 == 0 {
                        mine.append(&mut mailboxes[me].lock().unwrap());
                    }
                }
                for (p, size) in mine {
                    release(&mut h, p, size);
                }
            });
        }
    });
    let mut h = heap.handle().unwrap();
    for mb in &mailboxes {
        for (p, size) in mb.lock().unwrap().drain(..) {
            release(&mut h, p, size);
        }
    }
    drop(h);
    assert!(shadow.is_empty());
    heap.validate().unwrap();
    heap.reclaim();
    heap.validate().unwrap();
    assert_eq!(
        heap.stats().free_bytes,
        free_at_start,
        "everything came back"
    );
    assert_eq!(heap.corruptions().0, 0);
    let c: Vec<_> = (0..THREADS).map(|i| heap.cpu_stats(i)).collect();
    let sum = |f: fn(&magbuddy::CpuStats) -> u64| c.iter().map(f).sum::<u64>();
    println!(
        "seed mix: {} allocs, {} handed to another thread, magazine misses {}, depot exchanges {}, \
         remote slab frees {}, abandoned {}, adopted {}, CAS retries {}",
        sum(|s| s.allocs),
        remote.load(Ordering::Relaxed),
        sum(|s| s.magazine_misses),
        sum(|s| s.depot_exchanges),
        sum(|s| s.remote_frees),
        sum(|s| s.abandoned_slabs),
        sum(|s| s.adopted_slabs),
        sum(|s| s.cas_retries)
    );
    assert!(sum(|s| s.depot_exchanges) > 0 && sum(|s| s.adopted_slabs) > 0);
    // Every block was freed once, through a handle, and counted once.
    assert_eq!(sum(|s| s.allocs), sum(|s| s.frees));
    // Released handles hold nothing; slabs were given back by the reclaim.
    assert_eq!(sum(|s| s.cached_bytes), 0);
    assert_eq!(heap.slabs_in_use(), 0);
}

/// Threads created and ended in waves for `MAGBUDDY_CHURN_SECS` (default 10)
/// seconds, more threads than handles, blocks outliving their thread.
#[test]
fn thread_churn_returns_memory_to_its_starting_level() {
    let secs = std::env::var("MAGBUDDY_CHURN_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let len = 64 * MIB;
    let mem = Mem::new(len);
    let heap = unsafe { Heap::init(mem.ptr(), len, 4) }.unwrap();
    let start = heap.stats().free_bytes;
    let carried: Mutex<Vec<usize>> = Mutex::new(Vec::new());
    let t0 = Instant::now();
    let mut waves = 0;
    let mut peak_in_use = 0;
    while t0.elapsed() < Duration::from_secs(secs) {
        std::thread::scope(|s| {
            for t in 0..6 {
                let carried = &carried;
                s.spawn(move || {
                    // Up to 4 threads get a handle; the others use the shared path.
                    let mut h = heap.handle();
                    let mut rng = SmallRng::seed_from_u64(waves * 16 + t);
                    let mut mine = Vec::new();
                    for _ in 0..3000 {
                        let size = seed_size(&mut rng).min(64 * 1024);
                        let p = match h.as_mut() {
                            Some(h) => h.alloc(size),
                            None => heap.alloc(size),
                        };
                        mine.extend(p.map(|p| p.as_ptr() as usize));
                        if mine.len() > 200 {
                            let p = mine.swap_remove(rng.gen_range(0..mine.len()));
                            unsafe { heap.free(p as *mut u8) };
                        }
                    }
                    // Free what the previous wave left, leave some for the next.
                    let old: Vec<usize> = std::mem::take(&mut *carried.lock().unwrap());
                    for p in old {
                        unsafe { heap.free(p as *mut u8) };
                    }
                    carried.lock().unwrap().extend(mine.drain(..50));
                    for p in mine {
                        unsafe { heap.free(p as *mut u8) };
                    }
                });
            }
        });
        waves += 1;
        peak_in_use = peak_in_use.max(start - heap.stats().free_bytes);
    }
    for p in carried.into_inner().unwrap() {
        unsafe { heap.free(p as *mut u8) };
    }
    heap.reclaim();
    heap.validate().unwrap();
    let end = heap.stats().free_bytes;
    println!(
        "churn: {waves} waves in {:?}, peak in use between waves {peak_in_use} B",
        t0.elapsed()
    );
    assert!(waves >= 10);
    assert_eq!(end, start, "memory in use back to its starting level");
}

/// All threads allocate until `None`; every block is freed by a different
/// thread while the others stay alive (holding their handles) and idle; then
/// one thread allocates the largest free block, frees it, and fills the heap
/// with small objects up to the documented guarantee.
#[test]
fn exhaust_then_refill_with_idle_cpus() {
    const THREADS: usize = 4;
    let len = 64 * MIB;
    let mem = Mem::new(len);
    let heap = unsafe { Heap::init(mem.ptr(), len, THREADS) }.unwrap();
    let usable = heap.stats().usable_bytes;
    let initial_largest = 4096 << heap.stats().largest_free_order().unwrap();
    let cap = heap.cpu_cache_cap();
    let barrier = Barrier::new(THREADS);
    let blocks: Vec<Mutex<Vec<usize>>> = (0..THREADS).map(|_| Mutex::new(Vec::new())).collect();
    let filled = AtomicU64::new(0);
    std::thread::scope(|s| {
        for me in 0..THREADS {
            let (barrier, blocks, filled) = (&barrier, &blocks, &filled);
            s.spawn(move || {
                let mut h = heap.handle_for(me).unwrap();
                let mut rng = SmallRng::seed_from_u64(me as u64);
                // 1. Everyone allocates until the heap says no.
                loop {
                    let size = seed_size(&mut rng).min(64 * 1024);
                    match h.alloc(size) {
                        Some(p) => blocks[me].lock().unwrap().push(p.as_ptr() as usize),
                        None => break,
                    }
                }
                barrier.wait();
                // 2. One thread at a time frees its neighbour's blocks; the
                // others wait, holding their handles, without calling in.
                for turn in 0..THREADS {
                    if turn == me {
                        for p in std::mem::take(&mut *blocks[(me + 1) % THREADS].lock().unwrap()) {
                            unsafe { h.free(p as *mut u8) };
                        }
                    }
                    barrier.wait();
                }
                // 3. Thread 0 alone: the largest block, then small objects.
                if me == 0 {
                    // The largest block the heap had at init, else the
                    // largest that the reclaim on the way to None frees up.
                    let mut largest = initial_largest;
                    let big = loop {
                        if let Some(b) = h.alloc(largest) {
                            break b;
                        }
                        largest /= 2;
                    };
                    unsafe { h.free(big.as_ptr()) };
                    let mut n = 0u64;
                    while h.alloc(64).is_some() {
                        n += 1;
                    }
                    filled.store(n * 64, Ordering::Relaxed);
                    println!(
                        "exhaust: largest block after the frees {} KiB (at init {} KiB) of {} MiB usable; \
                         refilled {} B of 64 B objects; guarantee {} B (cap {} B per idle CPU)",
                        largest >> 10,
                        initial_largest >> 10,
                        usable >> 20,
                        n * 64,
                        guarantee(usable, cap, THREADS - 1),
                        cap
                    );
                }
                barrier.wait();
            });
        }
    });
    let got = filled.load(Ordering::Relaxed) as usize;
    assert!(
        got >= guarantee(usable, cap, THREADS - 1),
        "refilled {got} B"
    );
}

/// ≥ 95 % of the usable bytes, minus the caps of CPUs that do not call in.
fn guarantee(usable: usize, cap: usize, idle: usize) -> usize {
    (usable as f64 * 0.95) as usize - idle * cap
}

/// Full magazines of a class nobody allocates any more must not keep the
/// depot's budget, which all classes share: a burst of pages after a burst
/// of small objects still trades its magazines through the depot (the
/// small class's are sent home to make room).
#[test]
fn stale_magazines_do_not_lock_the_depot() {
    let len = 64 * MIB;
    let mem = Mem::new(len);
    let heap = unsafe { Heap::init(mem.ptr(), len, 1) }.unwrap();
    let mut h = heap.handle().unwrap();
    let burst = |h: &mut magbuddy::Handle, size: usize, magazines: usize| {
        let n = magazines * heap.magazine_capacity(size).unwrap();
        let blocks: Vec<_> = (0..n).map(|_| h.alloc(size).unwrap()).collect();
        for p in blocks {
            unsafe { h.free(p.as_ptr()) };
        }
    };
    // More full magazines of 64 B objects than the depot takes (one CPU:
    // one per cache class, all classes together).
    burst(&mut h, 64, 100);
    let before = heap.cpu_stats(0).depot_exchanges;
    burst(&mut h, 4096, 8);
    let exchanges = heap.cpu_stats(0).depot_exchanges - before;
    // Eight magazines' worth freed: all but the two a CPU keeps can go to
    // the depot (0 before the eviction, 7 with it).
    assert!(
        exchanges >= 4,
        "the page burst traded {exchanges} magazines through the depot"
    );
    drop(h);
    heap.reclaim();
    heap.validate().unwrap();
}
