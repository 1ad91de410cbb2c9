//! Real threads (std, core atomics), histories checked for linearizability
//! (`magbuddy_checkers::lin`, as `verify/tests/shuttle_lin.rs` does under
//! shuttle): each round builds a small heap, fills it on the shared path
//! until `None`, frees a few blocks, then three threads released together
//! by a barrier make short random programs of calls (objects, page blocks,
//! runs of areas; frees of their own and of passed-on blocks; bad
//! pointers; handle claims and releases; `reclaim()`). Even rounds use the
//! shared path only and race double frees of one block (exactly-one holds
//! on the shared/shared pair in every build); odd rounds claim handles and
//! make no double frees. Each call is stamped before and after with one
//! `AcqRel` counter, so a call that returned before another began
//! happened before it. The round's history must be linearizable against
//! the heap's specification (with the allowance for memory operations in
//! flight hold: `lin::Transient`); then everything live is freed and the
//! heap must validate with every byte back. Sized for miri too.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Barrier, Mutex};
use std::thread;

use magbuddy::{Geometry, Handle, Heap, PAGE_SIZE};
use magbuddy_checkers::lin::{
    self, Call, HeapModel, LinClock, LinRecorder, Op, Path, Ret, Transient,
};
use verify_threads::{OwnedHeap, Rng};

const THREADS: usize = 3;
/// Histories: 2000 times `MAGBUDDY_VERIFY_SCALE` (2 under miri).
fn rounds() -> usize {
    let scale = std::env::var("MAGBUDDY_VERIFY_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    if cfg!(miri) {
        2
    } else {
        2000 * scale
    }
}
const OPS: usize = if cfg!(miri) { 4 } else { 12 };
const SIZES: [usize; 7] = [24, 64, 2048, 4096, 8192, 16384, 32768];

/// A thread's way into the heap: the handle it holds, if any.
struct Caller<'h> {
    heap: &'h Heap,
    handle: Option<Handle<'h>>,
}

impl Caller<'_> {
    fn path(&self) -> Path {
        self.handle
            .as_ref()
            .map_or(Path::Shared, |h| Path::Handle(h.cpu() as u8))
    }

    fn alloc(&mut self, rec: &mut LinRecorder<'_>, size: usize) -> Option<usize> {
        let path = self.path();
        let r = rec.record(Call::Alloc { size, path }, || {
            let p = match self.handle.as_mut() {
                Some(h) => h.alloc(size),
                None => self.heap.alloc(size),
            };
            p.map_or(Ret::OutOfMemory, |p| Ret::Block(p.as_ptr() as usize))
        });
        match r {
            Ret::Block(a) => Some(a),
            _ => None,
        }
    }

    fn free(&mut self, rec: &mut LinRecorder<'_>, addr: usize) -> bool {
        let path = self.path();
        let r = rec.record(Call::Free { addr, path }, || {
            // SAFETY: no block's memory is touched; every pointer is a block
            // start the heap handed out (live, or a double free it must
            // refuse) or a bad pointer it must refuse unchanged.
            let r = unsafe {
                match self.handle.as_mut() {
                    Some(h) => h.try_free(addr as *mut u8),
                    None => self.heap.try_free(addr as *mut u8),
                }
            };
            match r {
                Ok(()) => Ret::Freed,
                Err(e) => Ret::Refused {
                    named: e.ptr() == addr,
                },
            }
        });
        r == Ret::Freed
    }

    fn toggle(&mut self, rec: &mut LinRecorder<'_>) {
        match self.handle.take() {
            Some(h) => {
                let cpu = h.cpu() as u8;
                rec.record(Call::Release { cpu }, || {
                    drop(h);
                    Ret::Done
                });
            }
            None => {
                let heap = self.heap;
                let mut got = None;
                rec.record(Call::Claim { cpu: None }, || match heap.handle() {
                    Some(h) => {
                        let c = h.cpu() as u8;
                        got = Some(h);
                        Ret::Claimed(c)
                    }
                    None => Ret::NoSlot,
                });
                self.handle = got;
            }
        }
    }
}

/// What the threads of a round share besides the heap.
#[derive(Default)]
struct Shared {
    mailbox: Mutex<Vec<usize>>,
    /// A block its owner is about to free, for another thread to free too.
    race: AtomicUsize,
    /// Double frees and allocations in flight: kept apart (a double free
    /// racing a reallocation of its block is outside the bad-input
    /// guarantee), a Dekker pair as in `verify::scenario::lin`.
    doubling: AtomicUsize,
    allocating: AtomicUsize,
}

fn program(
    t: usize,
    heap: &Heap,
    doubles: bool,
    sh: &Shared,
    clock: &LinClock,
    seed: u64,
) -> Vec<Op> {
    let mut rec = LinRecorder::new(clock, t);
    let mut me = Caller { heap, handle: None };
    let mut rng = Rng::new(seed);
    let mut own: Vec<usize> = Vec::new();
    // One refused call in every history: a pointer outside the heap.
    let outside = &rng as *const Rng as usize;
    me.free(&mut rec, outside);
    for _ in 0..OPS {
        let offered = sh.race.load(SeqCst);
        if offered != 0 && sh.race.compare_exchange(offered, 0, SeqCst, SeqCst).is_ok() {
            me.free(&mut rec, offered);
            sh.doubling.fetch_sub(1, SeqCst);
        }
        match rng.below(16) {
            0..=5 => {
                sh.allocating.fetch_add(1, SeqCst);
                if sh.doubling.load(SeqCst) == 0 {
                    let size = SIZES[rng.below(SIZES.len() as u64) as usize];
                    if let Some(a) = me.alloc(&mut rec, size) {
                        own.push(a);
                    }
                }
                sh.allocating.fetch_sub(1, SeqCst);
            }
            6..=8 if !own.is_empty() => {
                let a = own.swap_remove(rng.below(own.len() as u64) as usize);
                me.free(&mut rec, a);
            }
            9 if !own.is_empty() => {
                let a = own.swap_remove(rng.below(own.len() as u64) as usize);
                sh.mailbox.lock().unwrap().push(a);
            }
            10 => {
                let posted = sh.mailbox.lock().unwrap().pop();
                if let Some(a) = posted {
                    me.free(&mut rec, a);
                }
            }
            11 | 12 if doubles && !own.is_empty() => {
                sh.doubling.fetch_add(2, SeqCst);
                let k = rng.below(own.len() as u64) as usize;
                let a = own[k];
                if sh.allocating.load(SeqCst) == 0
                    && sh.race.compare_exchange(0, a, SeqCst, SeqCst).is_ok()
                {
                    own.swap_remove(k);
                    // A while for another thread to take it first.
                    for _ in 0..1000 {
                        if sh.race.load(SeqCst) != a {
                            break;
                        }
                        thread::yield_now();
                    }
                    me.free(&mut rec, a);
                    if sh.race.compare_exchange(a, 0, SeqCst, SeqCst).is_ok() {
                        sh.doubling.fetch_sub(1, SeqCst);
                    }
                    sh.doubling.fetch_sub(1, SeqCst);
                } else {
                    sh.doubling.fetch_sub(2, SeqCst);
                }
            }
            13 if !own.is_empty() => {
                // Inside a block: never a block start (no class below 32 B).
                let a = own[rng.below(own.len() as u64) as usize];
                me.free(&mut rec, a + 8);
            }
            14 if !doubles => me.toggle(&mut rec),
            15 => {
                rec.record(Call::Reclaim, || {
                    heap.reclaim();
                    Ret::Done
                });
            }
            _ => {}
        }
    }
    if me.handle.is_some() {
        me.toggle(&mut rec);
    }
    let mut left = sh.mailbox.lock().unwrap();
    left.extend(own);
    drop(left);
    rec.into_ops()
}

#[test]
fn linearizable_histories_over_real_threads() {
    let g = Geometry::new(1, 2).unwrap(); // 2-page chunks, 4-page areas
    let (mut ops_total, mut longest, mut nones, mut exact, mut errs, mut racing) =
        (0, 0, 0, 0, 0, 0);
    let rounds = rounds();
    for round in 0..rounds {
        let owned = OwnedHeap::new(g, 2, 3);
        let heap = owned.heap();
        let free_before = heap.stats().free_bytes;
        // The usable pages: every page the shared path (which caches
        // nothing) hands out, given back.
        let mut pages = Vec::new();
        while let Some(p) = heap.alloc(PAGE_SIZE) {
            pages.push(p.as_ptr() as usize);
        }
        for &p in &pages {
            // SAFETY: just allocated, unused.
            unsafe { heap.try_free(p as *mut u8) }.unwrap();
        }
        pages.sort_unstable();
        let model = HeapModel {
            regions: vec![pages],
            cpus: 2,
            cpu_cache_cap: heap.cpu_cache_cap(),
            transient: Some(Transient {
                rounds: (0..=14)
                    .filter_map(|k| heap.magazine_capacity(8 << k))
                    .max()
                    .unwrap_or(0),
                area: (g.area_pages() as usize) * PAGE_SIZE,
            }),
            judge_nones: true,
        };
        let clock = LinClock::new();
        let sh = Shared::default();
        // The fill: 2 KiB objects until `None`, then some freed.
        let mut rec = LinRecorder::new(&clock, THREADS);
        let mut main = Caller { heap, handle: None };
        let mut filled = Vec::new();
        while let Some(a) = main.alloc(&mut rec, 2048) {
            filled.push(a);
        }
        let mut rng = Rng::new(round as u64 + 7);
        for _ in 0..(1 + rng.below(filled.len() as u64 / 2)) {
            let a = filled.swap_remove(rng.below(filled.len() as u64) as usize);
            main.free(&mut rec, a);
        }
        sh.mailbox.lock().unwrap().extend(filled);
        let mut ops = rec.into_ops();
        let doubles = round % 2 == 0;
        let start = Barrier::new(THREADS);
        thread::scope(|s| {
            let runs: Vec<_> = (0..THREADS)
                .map(|t| {
                    let (sh, clock, start) = (&sh, &clock, &start);
                    s.spawn(move || {
                        start.wait();
                        program(t, heap, doubles, sh, clock, (round * THREADS + t) as u64)
                    })
                })
                .collect();
            for r in runs {
                ops.extend(r.join().unwrap());
            }
        });
        let found = match lin::check(&model, &ops) {
            Ok(l) => l,
            Err(e) => panic!("round {round}: {e}"),
        };
        ops_total += ops.len();
        longest = longest.max(ops.len());
        nones += ops.iter().filter(|o| o.ret == Ret::OutOfMemory).count();
        exact += found.exact_nones;
        errs += ops
            .iter()
            .filter(|o| matches!(o.ret, Ret::Refused { .. }))
            .count();
        let frees: Vec<&Op> = ops
            .iter()
            .filter(|o| matches!(o.call, Call::Free { .. }))
            .collect();
        for (i, a) in frees.iter().enumerate() {
            for b in &frees[i + 1..] {
                racing += (a.thread != b.thread
                    && a.call == b.call
                    && a.invoke < b.ret_at
                    && b.invoke < a.ret_at) as usize;
            }
        }
        for &(a, _) in &found.end.live {
            // SAFETY: live per the linearization, no thread runs any more.
            unsafe { heap.try_free(a as *mut u8) }.unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
        heap.reclaim();
        heap.validate()
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(
            heap.stats().free_bytes,
            free_before,
            "round {round}: every byte came back"
        );
    }
    println!(
        "lin over real threads: {rounds} histories, {ops_total} operations, longest {longest}, \
         {nones} Nones ({exact} exact), {errs} Errs, {racing} racing frees of one pointer"
    );
    assert!(
        nones >= rounds && errs >= rounds * THREADS,
        "every history has a None and Errs"
    );
}
