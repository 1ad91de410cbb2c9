//! loom model bodies over one area's words, shared by `tests/loom_buddy.rs`
//! (the models) and `tests/loom_mutants.rs` (the same models with seeded
//! defects). Only with `--cfg loom`.
//!
//! Every page carries a loom-tracked cell written by its owner, so a missing
//! happens-before between a free and the next allocation of the same page is
//! a reported data race. Each body counts its outcomes in a [`Seen`] so a
//! test can assert that loom explored every branch the model exists for.
//!
//! # A loom limitation the models work around
//!
//! loom 0.7.3's DPOR keeps only the *last* access per atomic. A plain load
//! by thread A followed by thread B's load and CAS of the same word is then
//! not seen as a race (B's own load hides A's), and the interleaving where
//! B's CAS comes first is never explored. The allocator decides "no room"
//! with a plain load (the transition refuses, no CAS), so a model whose race
//! is such a decision reads the word through [`anchor`] first, a no-op
//! read-modify-write that loom records as a write. Without it,
//! `unreserve_races_whole_area_alloc` and `invariant_r_observer` each ran a
//! single execution.

use std::sync::atomic::{AtomicUsize, Ordering as StdOrdering};
use std::time::Instant;

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use magbuddy::sync::{AtomicU64, Ordering::Relaxed};
use magbuddy::testing::{AreaView, Geometry};

/// 2-page chunks, two per area (three words).
pub const SMALL: Geometry = match Geometry::new(1, 2) {
    Some(g) => g,
    None => panic!("geometry"),
};

/// 4-page chunks, two per area: room for a fragmented chunk.
pub const WIDE: Geometry = match Geometry::new(2, 3) {
    Some(g) => g,
    None => panic!("geometry"),
};

/// One area of geometry `g` with a tracked cell per page.
pub struct World {
    g: Geometry,
    /// The area word.
    pub top: AtomicU64,
    /// The chunk words.
    pub chunks: Vec<AtomicU64>,
    /// The area's count of steps that gave pages back.
    pub frees: AtomicU64,
    pages: Vec<UnsafeCell<u64>>,
}

impl World {
    /// A free area of geometry `g`.
    pub fn new(g: Geometry) -> Arc<Self> {
        Arc::new(Self {
            g,
            top: AtomicU64::new(0),
            chunks: (0..g.chunks_per_area())
                .map(|_| AtomicU64::new(0))
                .collect(),
            frees: AtomicU64::new(0),
            pages: (0..g.area_pages()).map(|_| UnsafeCell::new(0)).collect(),
        })
    }

    /// The area under test.
    pub fn area(&self) -> AreaView<'_> {
        AreaView::new(&self.top, &self.chunks, &self.frees, self.g)
    }

    /// Writes `tag` into every page of the block (the owner's use).
    pub fn touch(&self, off: u32, k: u32, tag: u64) {
        for p in off..off + (1 << k) {
            // SAFETY: the block is ours between its alloc and free; loom
            // reports any access that is not ordered after the last owner's.
            self.pages[p as usize].with_mut(|v| unsafe { *v = tag });
        }
    }

    /// Allocates order `k` and writes `tag` into its pages.
    pub fn alloc(&self, k: u32, tag: u64) -> Option<u32> {
        let off = self.area().alloc(k)?;
        self.touch(off, k, tag);
        Some(off)
    }

    /// Frees a live block, asserting that the tree accepts it.
    pub fn free(&self, off: u32, k: u32) {
        assert!(self.area().free(off, k), "free of a live block refused");
    }

    /// Quiet point: words well formed with invariant R, and all free.
    pub fn assert_all_free(&self) {
        let area = self.area();
        if let Err(e) = area.check() {
            panic!("area words inconsistent: {e}");
        }
        assert_eq!(self.top.load(Relaxed), 0, "area word back to free");
        assert!(self.chunks.iter().all(|c| c.load(Relaxed) == 0));
        let h = self.g.area_order();
        assert_eq!(area.alloc(h), Some(0), "whole area allocatable again");
    }
}

/// A no-op read-modify-write returning the value: see the module docs.
pub fn anchor(a: &AtomicU64) -> u64 {
    a.fetch_add(0, Relaxed)
}

/// Outcome counters of one model, summed over its executions.
#[derive(Default)]
pub struct Seen([AtomicUsize; 4]);

impl Seen {
    /// Counts outcome `i`.
    pub fn hit(&self, i: usize) {
        self.0[i].fetch_add(1, StdOrdering::Relaxed);
    }
    /// How often outcome `i` was seen.
    pub fn get(&self, i: usize) -> usize {
        self.0[i].load(StdOrdering::Relaxed)
    }
}

/// Runs `f` as a loom model; prints and returns how many executions loom
/// explored (the closure's invocations, the failing one included).
pub fn model(name: &str, f: impl Fn() + Sync + Send + 'static) -> usize {
    let runs = std::sync::Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let t0 = Instant::now();
    loom::model(move || {
        r.fetch_add(1, StdOrdering::Relaxed);
        f()
    });
    let bound = std::env::var("LOOM_MAX_PREEMPTIONS").unwrap_or_else(|_| "none".into());
    let n = runs.load(StdOrdering::Relaxed);
    println!(
        "{name}: {n} executions, preemption bound {bound}, {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    n
}

/// Runs `body` as loom model `name`; returns the outcomes it saw, summed
/// over all executions, for the test to assert on.
pub fn model_seen(name: &str, body: fn(&Seen)) -> std::sync::Arc<Seen> {
    let seen = std::sync::Arc::new(Seen::default());
    let s = seen.clone();
    model(name, move || body(&s));
    seen
}

/// Three threads each allocate, write and free one page of a 4-page area
/// (two 2-page chunks): three threads reserving in one area word, two of
/// them in one chunk word. Outcome 0: executions.
pub fn three_threads_pages(seen: &Seen) {
    let w = World::new(SMALL);
    let threads: Vec<_> = (1..3)
        .map(|t| {
            let w = w.clone();
            loom::thread::spawn(move || {
                let off = w.alloc(0, t).expect("room for three pages");
                w.free(off, 0);
            })
        })
        .collect();
    let off = w.alloc(0, 9).expect("room for three pages");
    w.free(off, 0);
    for t in threads {
        t.join().unwrap();
    }
    w.assert_all_free();
    seen.hit(0);
}

/// Three threads, three kinds of block: a pair allocated before they start
/// is freed, a page is allocated and freed, and the whole area is tried.
/// Outcomes: 0 whole area taken, 1 refused.
pub fn three_threads_mixed(seen: &Seen) {
    let w = World::new(SMALL);
    let pair = w.alloc(1, 1).unwrap();
    let w1 = w.clone();
    let freer = loom::thread::spawn(move || {
        w1.touch(pair, 1, 2);
        w1.free(pair, 1);
    });
    let w2 = w.clone();
    let pager = loom::thread::spawn(move || {
        if let Some(off) = w2.alloc(0, 3) {
            w2.free(off, 0);
        }
    });
    anchor(&w.top);
    match w.alloc(2, 4) {
        Some(off) => {
            seen.hit(0);
            w.free(off, 2);
        }
        None => seen.hit(1),
    }
    freer.join().unwrap();
    pager.join().unwrap();
    w.assert_all_free();
}

/// A page allocated before the threads start is freed (chunk release, then
/// unreserve) while another thread tries to take the whole area in the area
/// word: it may succeed only once the count is back to 0, and its writes
/// must be ordered after the page owner's. Outcomes: 0 taken, 1 refused.
pub fn unreserve_races_whole_area_alloc(seen: &Seen) {
    let w = World::new(SMALL);
    let page = w.alloc(0, 1).unwrap();
    let w2 = w.clone();
    let t = loom::thread::spawn(move || {
        w2.touch(page, 0, 2);
        w2.free(page, 0);
    });
    anchor(&w.top);
    match w.alloc(2, 3) {
        Some(off) => {
            seen.hit(0);
            w.free(off, 2);
        }
        None => seen.hit(1),
    }
    t.join().unwrap();
    w.assert_all_free();
}

/// Chunk 0 holds pages 0 and 2 (two free pages, no free pair), chunk 1 is
/// empty. A pair request picks the fuller chunk 0 first and falls through to
/// chunk 1, unless the concurrent free of page 0 came first (then pair 0-1
/// is free). The pair is always found and never overlaps page 2.
/// Outcomes: 0 pair in chunk 0, 1 pair in chunk 1.
pub fn fall_through_races_defragmenting_free(seen: &Seen) {
    let w = World::new(WIDE);
    let a = w.alloc(0, 1).unwrap();
    let b = w.alloc(0, 1).unwrap();
    let c = w.alloc(0, 1).unwrap();
    assert_eq!((a, b, c), (0, 1, 2), "best fit fills chunk 0 in order");
    w.free(b, 0);
    let w2 = w.clone();
    let t = loom::thread::spawn(move || {
        w2.touch(a, 0, 2);
        w2.free(a, 0);
    });
    anchor(&w.top);
    anchor(&w.chunks[0]);
    let pair = w.alloc(1, 3).expect("chunk 1 is empty");
    assert!(pair != 2, "pair overlaps page 2");
    seen.hit(usize::from(pair >= 4));
    w.free(pair, 1);
    t.join().unwrap();
    w.free(c, 0);
    w.assert_all_free();
}

/// While a page is freed, an observer reads the page's chunk count and, if
/// it is 0, the chunk word, which must then be all-zero: a count of 0 means
/// nothing is allocated or in flight in that chunk (invariant R). The other
/// chunk holds a pair throughout. Outcomes: 0 count seen at 0, 1 at 1.
pub fn invariant_r_observer(seen: &Seen) {
    let w = World::new(SMALL);
    let page = w.alloc(0, 1).unwrap();
    let pair = w.alloc(1, 1).unwrap();
    let j = page >> SMALL.chunk_order();
    let w2 = w.clone();
    let t = loom::thread::spawn(move || w2.free(page, 0));
    let area = w.area();
    for _ in 0..2 {
        if area.count_in(anchor(&w.top), j) == 0 {
            let word = anchor(&w.chunks[j as usize]);
            assert_eq!(word, 0, "chunk {j} count is 0 but its word holds a block");
            seen.hit(0);
        } else {
            seen.hit(1);
        }
    }
    t.join().unwrap();
    w.free(pair, 1);
    w.assert_all_free();
}

/// Two threads free the same page while a third frees its buddy: the tree
/// must refuse one of the two (exactly one succeeds), and the area merges
/// back. Outcomes: 0 executions.
pub fn double_free_races_merge(seen: &Seen) {
    let w = World::new(SMALL);
    let page = w.alloc(0, 1).unwrap();
    let buddy = w.alloc(0, 1).unwrap();
    assert_eq!(page ^ 1, buddy);
    let wins = std::sync::Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (w, wins) = (w.clone(), wins.clone());
            loom::thread::spawn(move || {
                if w.area().free(page, 0) {
                    wins.fetch_add(1, StdOrdering::Relaxed);
                }
            })
        })
        .collect();
    w.free(buddy, 0);
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(
        wins.load(StdOrdering::Relaxed),
        1,
        "exactly one free of the page succeeds"
    );
    w.assert_all_free();
    seen.hit(0);
}

/// Runs `body` as a loom model, catching a failure: `Ok(executions)` if
/// every execution passed, `Err((executions, message))` at the first
/// failing one.
pub fn hunt(body: fn(&Seen)) -> Result<usize, (usize, String)> {
    let runs = std::sync::Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let result = std::panic::catch_unwind(move || {
        loom::model(move || {
            r.fetch_add(1, StdOrdering::Relaxed);
            body(&Seen::default())
        })
    });
    let n = runs.load(StdOrdering::Relaxed);
    result
        .map(|()| n)
        .map_err(|p| (n, crate::quiet::panic_message(&*p)))
}

/// The depot's tagged stack: nodes 0, 1, 2 (0 on top), each with a
/// tracked payload cell its holder writes. Thread 1 pops a node, writes it
/// and pushes it back; the main thread pops two, writes them and pushes
/// them back in reverse (so node 0 is on top again while node 1 is held:
/// the ABA window of thread 1's pop, whose head and link are stale). With
/// the tag no node is lost or held twice: at the end the stack holds each
/// node exactly once. Outcomes: 0 executions, 1 thread 1's pop retried.
pub fn depot_stack_aba(seen: &Seen) {
    use magbuddy::sync::AtomicU32;
    use magbuddy::testing::StackView;
    struct Nodes {
        links: Vec<AtomicU32>,
        payload: Vec<UnsafeCell<u64>>,
        stack: StackView,
    }
    impl Nodes {
        fn hold(&self, i: u32, tag: u64) {
            // SAFETY: a popped node is its popper's alone; loom reports two
            // holders (a duplicated node) as a data race.
            self.payload[i as usize].with_mut(|v| unsafe { *v = tag });
        }
    }
    let links: Vec<AtomicU32> = (0..3).map(|_| AtomicU32::new(0)).collect();
    let stack = StackView::filled(&links);
    let n = Arc::new(Nodes {
        links,
        payload: (0..3).map(|_| UnsafeCell::new(0)).collect(),
        stack,
    });
    let n1 = n.clone();
    let t = loom::thread::spawn(move || {
        let i = n1.stack.pop(&n1.links).expect("three nodes, two holders");
        n1.hold(i, 1);
        n1.stack.push(i, &n1.links);
        i
    });
    let a = n.stack.pop(&n.links).expect("three nodes, two holders");
    let b = n.stack.pop(&n.links).expect("three nodes, two holders");
    n.hold(a, 2);
    n.hold(b, 2);
    n.stack.push(a, &n.links);
    n.stack.push(b, &n.links);
    let i = t.join().unwrap();
    if i != 0 {
        seen.hit(1);
    }
    let mut got = Vec::new();
    while let Some(i) = n.stack.pop(&n.links) {
        assert!(got.len() < 3, "stack holds more than 3 nodes: {got:?}, {i}");
        assert!(!got.contains(&i), "node {i} twice on the stack: {got:?}");
        got.push(i);
    }
    got.sort();
    assert_eq!(got, [0, 1, 2], "a node was lost");
    seen.hit(0);
}

/// A slab's return list: the owner hands out three objects of a 2 KiB-class
/// slab, two producers each write a tracked payload for their object and
/// push it onto the return list, while the owner collects (swap) and reads
/// and rewrites the payload of every object that came back. The payload
/// read is ordered after the producer's write only through the push's
/// Release and the swap's Acquire. At the end every object is back exactly
/// once and the slab checks. Outcomes: 0 executions, 1 owner collected 1
/// object concurrently, 2 collected both.
pub fn return_list_payloads(seen: &Seen) {
    use magbuddy::testing::{SlabView, SLAB_BYTES};
    struct Slab {
        _mem: Vec<u64>,
        view: SlabView,
        payload: Vec<UnsafeCell<u64>>,
    }
    // SAFETY (Send/Sync): the view's memory is owned by the struct; every
    // access follows the slab protocol under test.
    unsafe impl Send for Slab {}
    unsafe impl Sync for Slab {}
    let mem = vec![0u64; SLAB_BYTES / 8];
    // SAFETY: the slab memory is `mem`, kept alive in `Slab`.
    let view = unsafe { SlabView::new(mem.as_ptr() as usize, 8, 1) };
    let cap = view.capacity() as usize;
    let s = Arc::new(Slab {
        _mem: mem,
        view,
        payload: (0..cap).map(|_| UnsafeCell::new(0)).collect(),
    });
    let mut out = [0usize; 3];
    // SAFETY: token 1 (this thread) owns the slab.
    assert_eq!(unsafe { s.view.take(&mut out) }, 3);
    let producers: Vec<_> = [out[0], out[1]]
        .into_iter()
        .enumerate()
        .map(|(t, p)| {
            let s = s.clone();
            loom::thread::spawn(move || {
                let i = s.view.index_of(p);
                // SAFETY: the object is this thread's until pushed.
                s.payload[i].with_mut(|v| unsafe { *v = 10 + t as u64 });
                // SAFETY: handed out to this thread, unused after.
                assert!(!unsafe { s.view.free_remote(p) }, "slab is owned");
            })
        })
        .collect();
    // The owner collects once while the producers run and reuses what came.
    let mut back = 0;
    // SAFETY: owned by this thread.
    let n = unsafe { s.view.collect() } as usize;
    if n > 0 {
        let mut got = [0usize; 2];
        // SAFETY: owned; the local list holds exactly the n returned objects.
        assert_eq!(unsafe { s.view.take(&mut got[..n]) }, n);
        for &p in &got[..n] {
            let i = s.view.index_of(p);
            // SAFETY: the object came back through the return list: its
            // producer's payload write happens before this (Release/Acquire).
            let v = s.payload[i].with_mut(|v| unsafe {
                let old = *v;
                *v = 0;
                old
            });
            assert!(v == 10 || v == 11, "payload of object {i} is {v}");
            // SAFETY: owned; p was just taken.
            unsafe { s.view.free_local(p) };
        }
        back += n;
        seen.hit(n);
    }
    for p in producers {
        p.join().unwrap();
    }
    // SAFETY: owned.
    back += unsafe { s.view.collect() } as usize;
    assert_eq!(back, 2, "both returned objects collected exactly once");
    // SAFETY: owned; out[2] is still handed out.
    unsafe {
        s.view.free_local(out[2]);
        assert_eq!(s.view.handed(), 0, "every object back");
        if let Err(e) = s.view.check(1) {
            panic!("slab check: {e}");
        }
    }
    seen.hit(0);
}

/// Abandonment of an exhausted slab racing the first remote free: the
/// owner (token 1) handed out all eight objects of a 2 KiB-class slab and
/// tries to abandon it full while a producer writes a tracked payload into
/// one object and frees it remotely. Exactly one side ends up responsible:
/// either the abandon succeeded and the push saw the flag (the pusher
/// publishes, adopts for token 2, and reads the owner-only state and the
/// payload), or returns were already there and the owner kept the slab and
/// collects. No slab is stranded without an owner. Outcomes: 0 abandoned
/// and published by the pusher, 1 abandon refused.
pub fn abandon_full_races_remote_free(seen: &Seen) {
    use magbuddy::testing::{SlabView, SLAB_BYTES};
    struct Slab {
        _mem: Vec<u64>,
        view: SlabView,
        payload: UnsafeCell<u64>,
    }
    // SAFETY (Send/Sync): as in `return_list_payloads`.
    unsafe impl Send for Slab {}
    unsafe impl Sync for Slab {}
    let mem = vec![0u64; SLAB_BYTES / 8];
    // SAFETY: the slab memory is `mem`, kept alive in `Slab`.
    let view = unsafe { SlabView::new(mem.as_ptr() as usize, 8, 1) };
    let s = Arc::new(Slab {
        _mem: mem,
        view,
        payload: UnsafeCell::new(0),
    });
    let mut out = [0usize; 8];
    // SAFETY: token 1 (this thread) owns the slab.
    assert_eq!(unsafe { s.view.take(&mut out) }, 8);
    let p = out[0];
    let s1 = s.clone();
    let producer = loom::thread::spawn(move || {
        // SAFETY: the object is this thread's until pushed.
        s1.payload.with_mut(|v| unsafe { *v = 7 });
        // SAFETY: handed out to this thread, unused after.
        let publish = unsafe { s1.view.free_remote(p) };
        if publish {
            // The pusher publishes (here: adopts at once, as a popper of
            // the abandoned stack would).
            assert!(s1.view.adopt(2), "nobody else can adopt it");
            // SAFETY: adopted by token 2 (this thread).
            unsafe {
                assert_eq!(s1.view.handed(), 8, "owner-only state visible");
                assert_eq!(s1.view.collect(), 1);
            }
            // SAFETY: collected: the payload write happened before.
            let v = s1.payload.with(|v| unsafe { *v });
            assert_eq!(v, 7);
        }
        publish
    });
    // SAFETY: owned by token 1.
    let abandoned = unsafe { s.view.try_abandon_full(1) };
    if !abandoned {
        // Returns arrived first: we still own it and take them back.
        // SAFETY: still owned by token 1.
        assert_eq!(unsafe { s.view.collect() }, 1);
        // SAFETY: collected through the return list (Release/Acquire).
        let v = s.payload.with(|v| unsafe { *v });
        assert_eq!(v, 7);
    }
    let published = producer.join().unwrap();
    assert_eq!(
        abandoned, published,
        "abandoned full iff the first remote free was told to publish"
    );
    // Quiet point: whoever owns it now frees the rest; all objects back.
    // SAFETY: every thread joined; the slab's owner is done with it.
    unsafe {
        for &q in &out[1..] {
            s.view.free_local(q);
        }
        assert_eq!(s.view.handed(), 0, "every object back");
        if let Err(e) = s.view.check(2) {
            panic!("slab check: {e}");
        }
    }
    seen.hit(usize::from(!abandoned));
}
