//! Bodies over the real heap's fast path: per-CPU magazines and the depot,
//! slabs with return lists, handle release with slab abandonment and
//! adoption, and the drain under out-of-memory.
//!
//! Heaps use [`SMALL`] (4-page areas: one 16 KiB slab is one whole area)
//! and one or two rounds per magazine, so magazine ↔ depot exchanges, slab
//! exhaustion and OOM come after a handful of operations.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use magbuddy::{CpuStats, Heap, HeapConfig, PAGE_SIZE};
use magbuddy_checkers::Event;
use shuttle::rand::{thread_rng, Rng};

use super::heap::{drain_and_finish, finish, free, Mailbox};
use super::{small_config, SMALL};
use crate::{Run, Tally, Via, World};

/// A fast-path workload.
#[derive(Clone, Copy, Debug)]
pub struct Fast {
    /// Threads.
    pub threads: usize,
    /// CPU slots. With `claim_per_op`, threads claim any free slot for each
    /// operation (the shared path when none is free) and release it after,
    /// so every release flushes magazines and gives up slabs. Otherwise
    /// thread `t < cpus` keeps slot `t` throughout and the others use the
    /// shared path.
    pub cpus: usize,
    /// See `cpus`.
    pub claim_per_op: bool,
    /// Rounds per magazine.
    pub rounds: usize,
    /// Areas in the heap.
    pub areas: usize,
    /// Operations per thread.
    pub ops: usize,
    /// Most live blocks per thread.
    pub max_live: usize,
    /// Request sizes, picked uniformly.
    pub sizes: &'static [usize],
}

/// The workloads of the fast-path suites and mutant scenarios.
impl Fast {
    /// Three threads keep CPU slots 0–2; objects of two classes (8 per slab
    /// for 2 KiB) and pages; one round per magazine.
    pub const KEPT: Self = Self {
        threads: 3,
        cpus: 3,
        claim_per_op: false,
        rounds: 1,
        areas: 6,
        ops: 16,
        max_live: 4,
        sizes: &[64, 2048, 2048, 4096],
    };

    /// Three threads claim one of two slots per operation (the shared path
    /// when both are taken): every release flushes magazines and gives up the
    /// current slabs, which the next owner or the shared path adopts.
    pub const CLAIMED: Self = Self {
        threads: 3,
        cpus: 2,
        claim_per_op: true,
        rounds: 2,
        areas: 6,
        ops: 8,
        max_live: 3,
        sizes: &[16, 2048],
    };

    /// Two threads keep slots 0 and 1 and hold up to six 2 KiB objects (8
    /// per slab), handing many to the other thread: current slabs run out and
    /// are abandoned (full, then published by the first remote free) and
    /// adopted.
    pub const EXHAUST: Self = Self {
        threads: 2,
        cpus: 2,
        claim_per_op: false,
        rounds: 1,
        areas: 6,
        ops: 24,
        max_live: 6,
        sizes: &[2048],
    };
}

/// Sum of `f` over every CPU slot and the shared path.
fn sum(heap: &Heap, f: impl Fn(&CpuStats) -> u64) -> u64 {
    (0..heap.cpus()).map(|c| f(&heap.cpu_stats(c))).sum::<u64>() + f(&heap.shared_stats())
}

/// Adds the fast path's counters of `heap` to `tally`.
pub fn fast_events(heap: &Heap, tally: &Tally) {
    tally.add("magazine misses", sum(heap, |s| s.magazine_misses));
    tally.add("depot exchanges", sum(heap, |s| s.depot_exchanges));
    tally.add("remote frees", sum(heap, |s| s.remote_frees));
    tally.add("drains", sum(heap, |s| s.drains));
    tally.add("abandoned slabs", sum(heap, |s| s.abandoned_slabs));
    tally.add("adopted slabs", sum(heap, |s| s.adopted_slabs));
}

/// Random allocations, frees and hand-overs through a mailbox (so objects
/// are freed by other threads, through the slab's return list or a foreign
/// magazine) by `f.threads` threads. Ends with `reclaim()`, `validate()`,
/// the shadow, canaries, trace replay and "every buddy merged back".
pub fn fast(f: Fast, tally: &Tally) {
    let config = HeapConfig {
        cpus: f.cpus,
        geometry: SMALL,
        magazine_rounds: Some(f.rounds),
        // A depot of one magazine per CPU: full magazines also go home, so
        // remote frees, abandoned and adopted slabs happen in every history.
        depot_magazines: Some(f.cpus),
        ..HeapConfig::new(f.cpus)
    };
    let world = Arc::new(World::with_config(config, f.areas));
    let start_blocks = world.heap().stats().free_blocks;
    let mailbox = Arc::new(Mailbox::new(Vec::new()));
    let counts = Arc::new([
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    ]);
    let (mb, cn) = (mailbox.clone(), counts.clone());
    let run = world.run(f.threads, 4 * f.ops + 16, move |t, c| {
        let heap = c.world_heap();
        let mut rng = thread_rng();
        let mut live: Vec<(usize, usize)> = Vec::new();
        let mut kept = (!f.claim_per_op).then(|| Via::for_thread(heap, t));
        for _ in 0..f.ops {
            let mut claimed = None;
            let via = match kept.as_mut() {
                Some(v) => v,
                None => claimed.insert(match heap.handle() {
                    Some(h) => Via::Handle(h),
                    None => {
                        cn[1].fetch_add(1, Relaxed);
                        Via::Shared(heap)
                    }
                }),
            };
            match rng.gen_range(0..10) {
                0..=3 if live.len() < f.max_live => {
                    let size = f.sizes[rng.gen_range(0..f.sizes.len())];
                    match c.alloc(size, || via.alloc(size)) {
                        Some(a) => live.push((a, size)),
                        None => {
                            cn[2].fetch_add(1, Relaxed);
                        }
                    }
                }
                0..=5 if !live.is_empty() => {
                    let (a, size) = live.swap_remove(rng.gen_range(0..live.len()));
                    free(c, via, a, size);
                }
                0..=7 if !live.is_empty() => {
                    let (a, size) = live.swap_remove(rng.gen_range(0..live.len()));
                    mb.lock().unwrap().push((a, size, t));
                }
                _ => {
                    let posted = mb.lock().unwrap().pop();
                    if let Some((a, size, owner)) = posted {
                        if owner != t {
                            cn[0].fetch_add(1, Relaxed);
                        }
                        free(c, via, a, size);
                    }
                }
            }
        }
        let via = kept.get_or_insert_with(|| Via::Shared(heap));
        for (a, size) in live {
            free(c, via, a, size);
        }
    });
    let events = 4 * f.threads * f.ops + 16;
    drain_and_finish(
        &world,
        &run,
        &mailbox,
        f.threads,
        events,
        start_blocks,
        tally,
    );
    fast_events(world.heap(), tally);
    tally.add("frees by another thread", counts[0].load(Relaxed) as u64);
    tally.add(
        "all slots taken: shared path",
        counts[1].load(Relaxed) as u64,
    );
    tally.add("allocations refused", counts[2].load(Relaxed) as u64);
    tally.add("slabs left in use", world.heap().slabs_in_use());
}

/// What the two threads of [`drain_oom`] share.
#[derive(Default)]
struct Drain {
    ready: AtomicBool,
    done: AtomicBool,
    stopped: AtomicBool,
    started: AtomicUsize,
    finished: AtomicUsize,
    first_failed: AtomicUsize,
    waited: AtomicUsize,
    gave_up: AtomicUsize,
}

/// Most calls CPU 0 makes while CPU 1 tries.
const CALLS: usize = 500;

fn wait_for(cond: impl Fn() -> bool) {
    while !cond() {
        shuttle::thread::yield_now();
    }
}

/// The drain under OOM with memory cached on another CPU, and the
/// no-false-OOM contract. One 4-page area, two CPUs, one round per
/// magazine. CPU 0 takes all four pages and frees them so that it keeps
/// pages 0 and 2 in its two magazines (pages 1 and 3 go to the depot), then
/// keeps calling in (allocating and freeing a page). CPU 1 asks for a pair:
/// the depot's pages are no pair, so it may fail; but once CPU 0 made a call
/// that started after that failure (so it saw the drain request), CPU 0
/// holds at most one page and three free pages always hold a pair: the
/// retry must succeed (the contract: memory a CPU keeps away is bounded
/// only for CPUs that do not call in).
pub fn drain_oom(tally: &Tally) {
    let config = small_config(2);
    let world = Arc::new(World::with_config(config, 1));
    let start_blocks = world.heap().stats().free_blocks;
    // The heap has a few more pages: the main thread holds them (shared
    // path, which caches nothing) until exactly one whole area is free.
    let mut buf = vec![Event::EMPTY; 2 * world.usable_pages() + 2];
    let mut main = world.client(2, &mut buf);
    let mut held = Vec::new();
    let one_area_free = |h: &Heap| {
        let s = h.stats();
        s.free_bytes == 4 * PAGE_SIZE && s.free_blocks[2] == 1
    };
    while !one_area_free(world.heap()) {
        assert!(
            held.len() < world.usable_pages(),
            "no way to leave one area free"
        );
        let heap = world.heap();
        held.push(
            main.alloc(PAGE_SIZE, || heap.alloc(PAGE_SIZE))
                .expect("room"),
        );
    }
    drop(main);
    let st = Arc::new(Drain::default());
    let s = st.clone();
    let run = world.run(2, 2 * CALLS + 64, move |t, c| {
        let heap = c.world_heap();
        let mut via = Via::for_thread(heap, t);
        if t == 0 {
            let mut pages: Vec<usize> = (0..4)
                .map(|_| {
                    c.alloc(PAGE_SIZE, || via.alloc(PAGE_SIZE))
                        .expect("four free pages")
                })
                .collect();
            pages.sort();
            // The last two freed stay in the magazines: pages 0 and 2.
            for i in [1, 3, 0, 2] {
                free(c, &mut via, pages[i], PAGE_SIZE);
            }
            s.ready.store(true, Relaxed);
            // Bounded (trace buffer): B stops waiting when A stops.
            while !s.done.load(Relaxed) && s.started.load(Relaxed) < CALLS {
                s.started.fetch_add(1, Relaxed);
                if let Some(a) = c.alloc(PAGE_SIZE, || via.alloc(PAGE_SIZE)) {
                    free(c, &mut via, a, PAGE_SIZE);
                }
                s.finished.fetch_add(1, Relaxed);
                shuttle::thread::yield_now();
            }
            s.stopped.store(true, Relaxed);
            return;
        }
        wait_for(|| s.ready.load(Relaxed));
        // Set after a failure once CPU 0 completed a call that started
        // after it (CPU 0 saw the drain request).
        let mut failed = false;
        loop {
            match c.alloc(2 * PAGE_SIZE, || via.alloc(2 * PAGE_SIZE)) {
                Some(a) => {
                    free(c, &mut via, a, 2 * PAGE_SIZE);
                    break;
                }
                None if failed => {
                    s.done.store(true, Relaxed);
                    panic!(
                        "false OOM: a pair was refused although the CPU holding cached \
                         pages called in after the drain request"
                    );
                }
                None => {
                    failed = true;
                    s.first_failed.fetch_add(1, Relaxed);
                    let mark = s.started.load(Relaxed);
                    if s.finished.load(Relaxed) <= mark {
                        s.waited.fetch_add(1, Relaxed);
                    }
                    wait_for(|| s.finished.load(Relaxed) > mark || s.stopped.load(Relaxed));
                    if s.finished.load(Relaxed) <= mark {
                        // CPU 0 stopped without calling in: no claim.
                        s.gave_up.fetch_add(1, Relaxed);
                        break;
                    }
                }
            }
        }
        s.done.store(true, Relaxed);
    });
    let mut buf2 = vec![Event::EMPTY; held.len() + 2];
    let mut main = world.client(2, &mut buf2);
    let mut via = Via::Shared(world.heap());
    for a in held {
        free(&mut main, &mut via, a, PAGE_SIZE);
    }
    drop(main);
    let all = Run {
        trace: run.trace.iter().chain(&buf).chain(&buf2).copied().collect(),
        ops: run.ops.clone(),
    };
    finish(&world, &all, start_blocks, tally);
    fast_events(world.heap(), tally);
    tally.add(
        "OOM with pages cached on the other CPU",
        st.first_failed.load(Relaxed) as u64,
    );
    tally.add(
        "waited for the other CPU to call in",
        st.waited.load(Relaxed) as u64,
    );
    tally.add(
        "other CPU stopped before calling in (no claim)",
        st.gave_up.load(Relaxed) as u64,
    );
}
