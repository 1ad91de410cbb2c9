//! Bodies over the real heap: churn, runs, the shared path, OOM, double frees.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use magbuddy::testing::{probe_count, Probe};
use magbuddy::{FreeError, Geometry, HeapConfig, PAGE_SIZE};
use magbuddy_checkers::Event;
use shuttle::rand::{thread_rng, Rng};

use crate::{cas_retries, failed_allocs, Client, Run, Tally, Via, World};

/// 2-page chunks in 4-page areas: orders 0 and 1 live in chunk words, order
/// 2 is a whole area (area word root), order 3 a run of two areas.
pub const SMALL: Geometry = match Geometry::new(1, 2) {
    Some(g) => g,
    None => panic!("geometry"),
};

/// `cpus` CPU slots on [`SMALL`] areas with one round per magazine and a
/// depot of one magazine per CPU, so that caches fill and spill home after
/// a call or two: the focused suites' heap.
pub fn small_config(cpus: usize) -> HeapConfig {
    HeapConfig {
        cpus,
        geometry: SMALL,
        magazine_rounds: Some(1),
        depot_magazines: Some(cpus),
        ..HeapConfig::new(cpus)
    }
}

/// 4-page chunks in 16-page areas: an order-1 request can find a chunk whose
/// count has room but no free pair (the fall-through).
pub const WIDE: Geometry = match Geometry::new(2, 4) {
    Some(g) => g,
    None => panic!("geometry"),
};

/// A churn workload: operations per thread, live blocks per thread, and the
/// relative weights of orders 0, 1, 2, ...
#[derive(Clone, Copy, Debug)]
pub struct Mix {
    /// Threads; the last one uses the shared path, the others own handles.
    pub threads: usize,
    /// Operations (allocations and frees) per thread.
    pub ops: usize,
    /// Most live blocks per thread.
    pub max_live: usize,
    /// Weight of each order, from 0.
    pub weights: &'static [u32],
    /// Rounds per magazine; `None`: sized from the heap (one, in these
    /// small heaps). Four make page-magazine refills take two blocks per
    /// tree search.
    pub rounds: Option<usize>,
}

impl Mix {
    /// Pages, pairs and quads (the page-magazine orders) with four rounds
    /// per magazine: refills take two blocks per tree search
    /// (`Area::alloc_many`), racing frees and other threads' allocations.
    pub const BATCHED: Mix = Mix {
        threads: 3,
        ops: 8,
        max_live: 3,
        weights: &[4, 2, 1],
        rounds: Some(4),
    };

    fn order(&self, rng: &mut impl Rng) -> u32 {
        let mut x = rng.gen_range(0..self.weights.iter().sum::<u32>());
        for (k, &w) in self.weights.iter().enumerate() {
            if x < w {
                return k as u32;
            }
            x -= w;
        }
        unreachable!("weights")
    }
}

pub(super) fn free(c: &mut Client<'_, '_>, via: &mut Via<'_>, addr: usize, size: usize) {
    // SAFETY: a live block of this client, not used after the call.
    c.free(addr, size, || unsafe { via.try_free(addr) });
}

/// Blocks handed between threads: `(address, size, allocating thread)`.
pub(super) type Mailbox = shuttle::sync::Mutex<Vec<(usize, usize, usize)>>;

/// Common end of a body that hands blocks over through a mailbox: the main
/// thread (client `threads`, after the workers; room for `events` trace
/// events) frees what is left in it on the shared path, then [`finish`]
/// checks the run and those frees together.
pub(super) fn drain_and_finish(
    world: &World,
    run: &Run,
    mailbox: &Mailbox,
    threads: usize,
    events: usize,
    start_blocks: [u64; magbuddy::ORDERS],
    tally: &Tally,
) {
    let mut buf = vec![Event::EMPTY; events];
    let mut main = world.client(threads, &mut buf);
    let mut via = Via::Shared(world.heap());
    for (a, size, _) in mailbox.lock().unwrap().drain(..) {
        free(&mut main, &mut via, a, size);
    }
    drop(main);
    let all = Run {
        trace: run.trace.iter().chain(buf.iter()).copied().collect(),
        ops: run.ops.clone(),
    };
    finish(world, &all, start_blocks, tally);
}

/// Common end of a heap body: checks (validate, replay, balance, coalesced
/// back to the free blocks it started with) and counters.
pub(super) fn finish(
    world: &World,
    run: &Run,
    start_blocks: [u64; magbuddy::ORDERS],
    tally: &Tally,
) {
    let mut trace = run.trace.clone();
    world.finish(&mut trace, true);
    let heap = world.heap();
    assert_eq!(
        heap.stats().free_blocks,
        start_blocks,
        "every buddy merged back"
    );
    let g = heap.geometry();
    tally.add("cas retries", cas_retries(heap));
    tally.add("OOM", failed_allocs(heap));
    tally.add(
        "concurrent calls on one chunk",
        run.concurrent_in((g.chunk_pages() as usize) * PAGE_SIZE),
    );
    tally.add(
        "concurrent calls on one area",
        run.concurrent_in((g.area_pages() as usize) * PAGE_SIZE),
    );
}

/// Page and buddy-block churn with merges: `mix.threads` threads (all but
/// the last with a handle) do `mix` in a heap of `areas` areas of `g`.
pub fn churn(g: Geometry, areas: usize, mix: Mix, tally: &Tally) {
    let cpus = mix.threads - 1;
    let config = HeapConfig {
        geometry: g,
        magazine_rounds: mix.rounds,
        ..HeapConfig::new(cpus)
    };
    let world = Arc::new(World::with_config(config, areas));
    let start_blocks = world.heap().stats().free_blocks;
    let run = world.run(mix.threads, 4 * mix.ops + 8, move |t, c| {
        let mut via = Via::for_thread(c.world_heap(), t);
        let mut live: Vec<(usize, usize)> = Vec::new();
        let mut rng = thread_rng();
        for _ in 0..mix.ops {
            if live.len() < mix.max_live && (live.is_empty() || rng.gen_bool(0.5)) {
                let size = PAGE_SIZE << mix.order(&mut rng);
                if let Some(a) = c.alloc(size, || via.alloc(size)) {
                    live.push((a, size));
                }
            } else {
                let (a, size) = live.swap_remove(rng.gen_range(0..live.len()));
                free(c, &mut via, a, size);
            }
        }
        for (a, size) in live {
            free(c, &mut via, a, size);
        }
    });
    finish(&world, &run, start_blocks, tally);
}

/// Area claims for large blocks on the shared path: whole areas (area-word
/// roots) and runs of two areas, claimed area by area and undone when a
/// later area is taken, racing each other and chunk-level blocks. Four areas of [`SMALL`] (two
/// aligned runs of two) for three threads that each want a run at times:
/// some runs are refused.
pub fn runs(tally: &Tally) {
    let world = Arc::new(World::new(SMALL, 2, 4));
    let start_blocks = world.heap().stats().free_blocks;
    let area = (SMALL.area_pages() as usize) * PAGE_SIZE;
    let run = world.run(3, 32, move |t, c| {
        // The shared path: handles would serve area-sized blocks from page
        // magazines, hiding claims from the count of undone ones.
        let mut via = Via::Shared(c.world_heap());
        let orders: &[u32] = match t {
            0 => &[3, 3, 2],
            1 => &[2, 3, 3],
            _ => &[3, 0, 2, 1],
        };
        for &k in orders {
            let size = PAGE_SIZE << k;
            if let Some(a) = c.alloc(size, || via.alloc(size)) {
                shuttle::thread::yield_now();
                free(c, &mut via, a, size);
            }
        }
    });
    finish(&world, &run, start_blocks, tally);
    let big = |o: &&crate::Op| o.alloc && o.bytes > area;
    let runs_won = run.ops.iter().filter(big).filter(|o| o.addr != 0).count();
    let runs_refused = run.ops.iter().filter(big).filter(|o| o.addr == 0).count();
    let areas_held: usize = run
        .ops
        .iter()
        .filter(|o| o.alloc && o.addr != 0 && o.bytes >= area)
        .map(|o| o.bytes / area)
        .sum();
    tally.add("runs claimed", runs_won as u64);
    tally.add("runs refused", runs_refused as u64);
    tally.add("areas held by clients", areas_held as u64);
}

/// Area claims minus the areas clients held: claims a run undid. Call after
/// the schedules of [`runs`] ran on this thread.
pub fn runs_undone(tally: &Tally) -> u64 {
    probe_count(Probe::AreaClaim).saturating_sub(tally.get("areas held by clients"))
}

/// The shared path racing handles: three threads, two CPU slots. Each
/// operation claims any free slot (or, if both are taken, uses the shared
/// path), allocates or frees, and releases the slot. Blocks go through a
/// mailbox, so many are freed by another thread and another path than the
/// one that allocated them.
pub fn shared_path(tally: &Tally) {
    let world = Arc::new(World::new(SMALL, 2, 2));
    let start_blocks = world.heap().stats().free_blocks;
    let mailbox = Arc::new(Mailbox::new(Vec::new()));
    let claims = Arc::new([
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    ]);
    let (mb, cl) = (mailbox.clone(), claims.clone());
    let run = world.run(3, 32, move |t, c| {
        let heap = c.world_heap();
        let mut rng = thread_rng();
        for _ in 0..5 {
            let mut via = match heap.handle() {
                Some(h) => {
                    cl[0].fetch_add(1, Relaxed);
                    Via::Handle(h)
                }
                None => {
                    cl[1].fetch_add(1, Relaxed);
                    Via::Shared(heap)
                }
            };
            let posted = mb.lock().unwrap().pop();
            match posted {
                Some((a, size, owner)) if rng.gen_bool(0.6) => {
                    if owner != t {
                        cl[2].fetch_add(1, Relaxed);
                    }
                    free(c, &mut via, a, size);
                }
                other => {
                    if let Some(p) = other {
                        mb.lock().unwrap().push(p);
                    }
                    let size = PAGE_SIZE << rng.gen_range(0..=1);
                    if let Some(a) = c.alloc(size, || via.alloc(size)) {
                        mb.lock().unwrap().push((a, size, t));
                    }
                }
            }
        }
    });
    drain_and_finish(&world, &run, &mailbox, 3, 64, start_blocks, tally);
    tally.add("handle claims", claims[0].load(Relaxed) as u64);
    tally.add(
        "all slots taken: shared path",
        claims[1].load(Relaxed) as u64,
    );
    tally.add("frees by another thread", claims[2].load(Relaxed) as u64);
    tally.add(
        "shared-path CAS retries",
        world.heap().shared_stats().cas_retries,
    );
}

/// OOM and recovery: three threads on the shared path (which caches
/// nothing, so the check below is exact) fill an 8-page heap with pages and
/// pairs until `None`, free most of what they hold, and fill again. Every
/// `None` for a page is checked against the client-side live count: during
/// the call the live pages must have reached the usable pages minus what
/// the other threads can have in flight (one pair each), or it was a false
/// OOM. (Handles keep blocks in magazines, which the no-false-OOM contract
/// bounds by `cpu_cache_cap` per CPU: more than this whole heap.)
pub fn oom(tally: &Tally) {
    let world = Arc::new(World::new(SMALL, 1, 1));
    let start_blocks = world.heap().stats().free_blocks;
    let usable = world.usable_pages();
    let watch = Arc::new(Watch::default());
    let w = watch.clone();
    let run = world.run(3, 64, move |t, c| {
        let mut via = Via::Shared(c.world_heap());
        let mut rng = thread_rng();
        let mut live: Vec<(usize, usize)> = Vec::new();
        let mut failed = false;
        for _round in 0..2 {
            for _ in 0..4 {
                let k = if rng.gen_bool(0.75) { 0 } else { 1 };
                let size = PAGE_SIZE << k;
                w.marks[t].store(w.live.load(Relaxed), Relaxed);
                match c.alloc(size, || via.alloc(size)) {
                    Some(a) => {
                        w.add(1 << k);
                        live.push((a, size));
                        if failed {
                            w.recoveries.fetch_add(1, Relaxed);
                            failed = false;
                        }
                    }
                    None => {
                        failed = true;
                        // Others: at most one pair each in flight.
                        let slack = 2 * 2;
                        let seen = w.marks[t].load(Relaxed);
                        assert!(
                            k > 0 || seen + slack >= usable,
                            "false OOM: a page was refused while at most {seen} of {usable} \
                             pages were live (slack {slack})"
                        );
                        break;
                    }
                }
            }
            let keep = if live.is_empty() { 0 } else { 1 };
            while live.len() > keep {
                let (a, size) = live.swap_remove(rng.gen_range(0..live.len()));
                w.sub(size / PAGE_SIZE);
                free(c, &mut via, a, size);
            }
        }
        for (a, size) in live {
            w.sub(size / PAGE_SIZE);
            free(c, &mut via, a, size);
        }
    });
    finish(&world, &run, start_blocks, tally);
    tally.add(
        "recoveries after OOM",
        watch.recoveries.load(Relaxed) as u64,
    );
    let racing = run
        .ops
        .iter()
        .filter(|o| o.alloc && o.addr == 0)
        .filter(|f| {
            run.ops
                .iter()
                .any(|o| !o.alloc && o.thread != f.thread && o.start < f.end && f.start < o.end)
        })
        .count();
    tally.add("OOM while another thread freed", racing as u64);
}

/// Client-side live pages and, per thread, the most seen since its mark.
#[derive(Default)]
struct Watch {
    live: AtomicUsize,
    marks: [AtomicUsize; 3],
    recoveries: AtomicUsize,
}

impl Watch {
    fn add(&self, pages: usize) {
        let now = self.live.fetch_add(pages, Relaxed) + pages;
        for m in &self.marks {
            m.fetch_max(now, Relaxed);
        }
    }
    fn sub(&self, pages: usize) {
        self.live.fetch_sub(pages, Relaxed);
    }
}

/// Double frees racing legitimate frees on the shared path (which frees
/// into the tree at once; handles keep blocks of up to 16 KiB in magazines,
/// where a double free is found only at flush time unless the build is
/// `checked`): the main thread allocates a page, its buddy, a pair and a
/// whole area; then two threads free each of the page, the pair and the
/// area (one of them is a double free) while a third frees the page's buddy
/// (so the page's free races a merge) and passes an interior pointer. No
/// one allocates meanwhile (a double free racing a *reallocation* is
/// undetectable by design). Exactly one free of each block succeeds; the
/// other is refused with an error naming the pointer.
pub fn double_free(tally: &Tally) {
    let world = Arc::new(World::new(SMALL, 1, 2));
    let start_blocks = world.heap().stats().free_blocks;
    let heap = world.heap();
    let mut buf = vec![Event::EMPTY; 32];
    let mut main = world.client(3, &mut buf);
    // A page and its buddy: take pages until two are buddies, give back the
    // others.
    let mut pages: Vec<usize> = Vec::new();
    let (page, buddy) = loop {
        let p = main
            .alloc(PAGE_SIZE, || heap.alloc(PAGE_SIZE))
            .expect("room");
        if let Some(&b) = pages.iter().find(|&&b| b == p ^ PAGE_SIZE) {
            break (b, p);
        }
        pages.push(p);
    };
    for &p in pages.iter().filter(|&&p| p != page) {
        // SAFETY: ours, unused.
        main.free(p, PAGE_SIZE, || unsafe { heap.try_free(p as *mut u8) });
    }
    let sizes = [PAGE_SIZE, PAGE_SIZE, 2 * PAGE_SIZE, 4 * PAGE_SIZE];
    let mut blocks = vec![page, buddy];
    for &s in &sizes[2..] {
        blocks.push(main.alloc(s, || heap.alloc(s)).expect("room"));
    }
    // Main records the frees up front: from here on only frees happen.
    for (&a, &s) in blocks.iter().zip(&sizes) {
        main.freeing(a, s);
    }
    drop(main);
    let outcome = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (o, victims) = (outcome.clone(), [blocks[0], blocks[2], blocks[3]]);
    let other = blocks[1];
    let run = world.run(3, 8, move |t, c| {
        let mut via = Via::Shared(c.world_heap());
        if t == 2 {
            // SAFETY: a block main allocated for this thread to free.
            let r = unsafe { via.try_free(other) };
            assert_eq!(r, Ok(()), "the buddy's free");
            let inner = victims[2] + PAGE_SIZE;
            // SAFETY: a bad pointer; the heap must refuse it unchanged.
            let r = unsafe { via.try_free(inner) };
            assert!(
                matches!(r, Err(e) if e.ptr() == inner),
                "interior pointer: {r:?}"
            );
            o.lock().unwrap().push((t, inner, r));
            return;
        }
        let mut order = victims;
        if t == 1 {
            order.reverse();
        }
        for a in order {
            // SAFETY: racing frees of one block: exactly one may succeed.
            let r = unsafe { via.try_free(a) };
            o.lock().unwrap().push((t, a, r));
        }
    });
    let outcome = outcome.lock().unwrap().clone();
    for v in victims {
        let results: Vec<_> = outcome.iter().filter(|e| e.1 == v).map(|e| e.2).collect();
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "exactly one free of {v:#x} succeeds: {results:?}"
        );
        for r in results.iter().filter_map(|r| r.err()) {
            assert!(
                matches!(r, FreeError::DoubleFree(p) | FreeError::NotAllocated(p) if p == v),
                "a losing free of {v:#x} names it: {r}"
            );
            tally.add(
                match r {
                    FreeError::DoubleFree(_) => "loser saw the block in flight (DoubleFree)",
                    _ => "loser came after the winner (NotAllocated)",
                },
                1,
            );
        }
    }
    for (_, _, r) in outcome.iter().filter(|e| e.0 == 2) {
        tally.add(
            match r {
                Err(FreeError::Interior { .. }) => "interior pointer refused (Interior)",
                _ => "interior pointer refused (block already free)",
            },
            1,
        );
    }
    let mut trace = run.trace.clone();
    trace.extend(buf);
    world.finish(&mut trace, true);
    assert_eq!(
        world.heap().stats().free_blocks,
        start_blocks,
        "merged back"
    );
    tally.add("cas retries", cas_retries(world.heap()));
}
