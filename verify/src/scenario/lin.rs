//! Recorded histories checked for linearizability (`magbuddy_checkers::lin`):
//! a few tasks run short random programs of heap calls (allocations of
//! objects, page-magazine blocks and tree blocks; frees of their own
//! blocks, of blocks passed on by another task, racing and stale double
//! frees, interior and foreign pointers; handle claims and releases;
//! `reclaim()`; one `add_region`) on a heap small enough that memory runs
//! out. Every call is recorded with its result between two stamps; after
//! the tasks joined, the whole history must have a linearization against
//! the sequential specification of the heap (`lin::HeapModel`), which also
//! decides whether each `None` was allowed. Then everything still live is
//! freed and the heap must validate with every byte back.
//!
//! Which double frees a workload may make depends on the build: racing
//! frees of one small object are exactly-one on every path pair only with
//! `checked`; the default build promises it on the shared/shared pair (and
//! for page blocks on every pair). A stale free can meet a reallocation of
//! its block as an object freed through a handle, so in the default build
//! only workloads without handles make double frees (see [`Lin::doubles`]),
//! and no workload lets a double free overlap an allocation unless
//! [`Lin::gray`] (see [`Shared::enter_double`]).
//!
//! The usable pages the specification needs are probed once per layout in
//! an execution of its own ([`prepare`]); `MAGBUDDY_LIN_TRACE=1` prints
//! every call as it returns.

use std::alloc::{alloc, dealloc, Layout};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use magbuddy::{Geometry, Handle, Heap, HeapConfig, PAGE_SIZE};
use magbuddy_checkers::lin::{
    self, Call, HeapModel, LinClock, LinRecorder, Op, Path, Ret, Transient,
};
use shuttle::rand::{thread_rng, Rng};
use shuttle::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use super::SMALL;
use crate::{OwnedHeap, Tally};

/// How the heap is filled before the tasks start (by the main thread, on
/// the shared path, recorded in the history).
#[derive(Clone, Copy, Debug)]
pub enum Fill {
    /// Nothing.
    Empty,
    /// Blocks of this size until `None`, then one of them freed in every
    /// slab-sized group, or one or two anywhere: the tree is full and the few free
    /// objects sit in slabs.
    Objects(usize),
}

/// A workload of [`lin_history`].
#[derive(Clone, Copy, Debug)]
pub struct Lin {
    /// Tasks (2 or 3).
    pub tasks: usize,
    /// CPU slots.
    pub cpus: usize,
    /// Whether tasks claim and release handles (else all use the shared
    /// path).
    pub handles: bool,
    /// Areas of [`SMALL`] in the first region.
    pub areas: usize,
    /// Areas of the region task 0 adds at a random point (0: none).
    pub extra_areas: usize,
    /// Calls per task.
    pub ops: usize,
    /// Request sizes, picked uniformly.
    pub sizes: &'static [usize],
    /// The heap before the tasks start.
    pub fill: Fill,
    /// The strict specification: no allowance for memory that operations
    /// in flight hold for a moment (`lin::Transient`).
    pub strict: bool,
    /// Double frees may race allocations (which may reallocate the block:
    /// outside the bad-input guarantee, see [`Shared::enter_double`]).
    pub gray: bool,
}

impl Lin {
    /// Three tasks on the shared path only: objects, page blocks and runs
    /// of two areas; double frees of every kind (exactly-one holds on the
    /// shared/shared pair in every build); `reclaim`; `add_region`.
    pub const SHARED: Self = Self {
        tasks: 3,
        cpus: 1,
        handles: false,
        areas: 3,
        extra_areas: 2,
        ops: 12,
        sizes: &[24, 64, 2048, 3000, 4096, 8192, 16384, 32768],
        fill: Fill::Empty,
        strict: false,
        gray: false,
    };

    /// Three tasks, two CPU slots: tasks claim and drop handles as they go
    /// (a third one finds no slot), and use the shared path when they hold
    /// none; objects, page-magazine blocks and tree blocks.
    pub const MIXED: Self = Self {
        tasks: 3,
        cpus: 2,
        handles: true,
        areas: 3,
        extra_areas: 1,
        ops: 12,
        sizes: &[64, 2048, 4096, 8192, 16384, 32768],
        fill: Fill::Empty,
        strict: false,
        gray: false,
    };

    /// Two tasks and two slots on a heap whose tree is full of slabs of
    /// 2 KiB objects with a few free: every allocation competes for the
    /// free objects, through handles (whose magazines and releases move
    /// them around), the shared path and `reclaim()`.
    pub const FULL: Self = Self {
        tasks: 2,
        cpus: 2,
        handles: true,
        areas: 4,
        extra_areas: 1,
        ops: 10,
        sizes: &[2048, 2048, 2048, 4096],
        fill: Fill::Objects(2048),
        strict: false,
        gray: false,
    };

    /// Three tasks on the shared path of a heap full of page blocks with
    /// one free in every slab-sized group: allocations race frees that
    /// move the free memory from area to area, so an allocation's pass can
    /// miss every free page although one is free all the time (the false
    /// `None` that the free counts of §2.6 rule out).
    pub const CHURN: Self = Self {
        tasks: 3,
        cpus: 1,
        handles: false,
        areas: 3,
        extra_areas: 0,
        ops: 12,
        sizes: &[4096],
        fill: Fill::Objects(4096),
        strict: false,
        gray: false,
    };

    /// The heap configuration (one round per magazine: caches fill and
    /// spill after a call or two).
    fn config(&self) -> HeapConfig {
        HeapConfig {
            cpus: self.cpus,
            geometry: SMALL,
            magazine_rounds: Some(1),
            ..HeapConfig::new(self.cpus)
        }
    }

    /// Whether tasks make double frees (racing and stale): always with
    /// `checked`, else only without handles.
    pub fn doubles(&self) -> bool {
        cfg!(feature = "checked") || !self.handles
    }
}

/// Memory for an added region, aligned like [`OwnedHeap`]'s so its layout
/// is the same in every schedule.
struct Extra {
    mem: *mut u8,
    layout: Layout,
}

// SAFETY: plain memory, owned by this value alone.
unsafe impl Send for Extra {}
// SAFETY: as above.
unsafe impl Sync for Extra {}

impl Extra {
    fn new(g: Geometry, areas: usize, cpus: usize) -> Self {
        let area = (g.area_pages() as usize) * PAGE_SIZE;
        let config = HeapConfig {
            geometry: g,
            ..HeapConfig::new(cpus)
        };
        let len = Heap::min_region_len(config) + (areas - 1) * area;
        let layout = Layout::from_size_align(len, area * 16).unwrap();
        // SAFETY: non-zero size.
        let mem = unsafe { alloc(layout) };
        assert!(!mem.is_null());
        Self { mem, layout }
    }
}

impl Drop for Extra {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; no heap uses it after.
        unsafe { dealloc(self.mem, self.layout) }
    }
}

/// Page offsets (from each region's start) the heap can hand out: region
/// 0 and the added region.
type Usable = (Vec<usize>, Vec<usize>);

/// Usable pages per workload layout, probed once (see [`usable`]).
static USABLE: Mutex<BTreeMap<(usize, usize, usize), Usable>> = Mutex::new(BTreeMap::new());

/// Takes every page `heap` has (shared path, which caches nothing) and
/// gives them back: their addresses.
fn all_pages(heap: &Heap) -> Vec<usize> {
    let mut pages = Vec::new();
    while let Some(p) = heap.alloc(PAGE_SIZE) {
        pages.push(p.as_ptr() as usize);
    }
    for &p in &pages {
        // SAFETY: just allocated, unused.
        unsafe { heap.try_free(p as *mut u8) }.expect("probe page");
    }
    pages.sort_unstable();
    pages
}

/// The usable pages of `w`'s layout, probed on a scratch heap of the same
/// configuration and alignment (so the same offsets) by taking every page
/// before and after adding the extra region. Call before running
/// [`lin_history`] under a scheduler: the probe runs in an execution of its
/// own, so that every schedule of the suite (and its replay) is the same
/// program.
pub fn prepare(w: Lin) {
    let key = (w.cpus, w.areas, w.extra_areas);
    if USABLE.lock().unwrap().contains_key(&key) {
        return;
    }
    shuttle::check_random(
        move || {
            let scratch = OwnedHeap::with_config(w.config(), w.areas);
            let heap = scratch.heap();
            let (base, _) = scratch.region();
            let first: Vec<usize> = all_pages(heap).iter().map(|p| p - base).collect();
            let mut added = Vec::new();
            if w.extra_areas > 0 {
                let extra = Extra::new(SMALL, w.extra_areas, w.cpus);
                // SAFETY: the memory outlives the scratch heap's use of it
                // (the heap is dropped first, unused by then).
                unsafe { heap.add_region(extra.mem, extra.layout.size()) }.expect("extra region");
                let e = extra.mem as usize;
                added = all_pages(heap)
                    .into_iter()
                    .filter(|&p| p >= e && p < e + extra.layout.size())
                    .map(|p| p - e)
                    .collect();
                drop(scratch);
                drop(extra);
            }
            USABLE.lock().unwrap().insert(key, (first, added));
        },
        1,
    );
}

/// The usable pages of `w`'s layout ([`prepare`]).
fn usable(w: &Lin) -> Usable {
    let key = (w.cpus, w.areas, w.extra_areas);
    match USABLE.lock().unwrap().get(&key) {
        Some(u) => u.clone(),
        None => panic!("lin::prepare({w:?}) first"),
    }
}

/// `MAGBUDDY_LIN_TRACE` set: every call is printed as it returns (to see
/// the calls before a panic inside the heap, which ends a schedule before
/// its history is checked).
fn traced() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("MAGBUDDY_LIN_TRACE").is_some())
}

/// Records `call` around `f` in `rec`, printing it if [`traced`].
fn record(rec: &mut LinRecorder<'_>, call: Call, f: impl FnOnce() -> Ret) -> Ret {
    let r = rec.record(call, f);
    if traced() {
        let op = rec.ops().last().expect("just recorded");
        eprintln!("T{} {op}", op.thread);
    }
    r
}

/// A task's way into the heap: the handle it holds, if any.
struct Caller<'h> {
    heap: &'h Heap,
    handle: Option<Handle<'h>>,
}

impl Caller<'_> {
    fn path(&self) -> Path {
        match &self.handle {
            Some(h) => Path::Handle(h.cpu() as u8),
            None => Path::Shared,
        }
    }

    fn alloc(&mut self, rec: &mut LinRecorder<'_>, size: usize) -> Option<usize> {
        let path = self.path();
        let r = record(rec, Call::Alloc { size, path }, || {
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

    /// `try_free(addr)`; whether it returned `Ok`.
    fn free(&mut self, rec: &mut LinRecorder<'_>, addr: usize) -> bool {
        let path = self.path();
        let r = record(rec, Call::Free { addr, path }, || {
            // SAFETY: the workload never touches block memory, and every
            // pointer it frees is either a block start the heap handed out
            // (live, or a double free the heap must refuse) or a bad
            // pointer the heap must refuse unchanged.
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

    /// Claims a handle if it holds none, else drops it.
    fn toggle(&mut self, rec: &mut LinRecorder<'_>) {
        match self.handle.take() {
            Some(h) => {
                let cpu = h.cpu() as u8;
                record(rec, Call::Release { cpu }, || {
                    drop(h);
                    Ret::Done
                });
            }
            None => {
                let heap = self.heap;
                let mut got = None;
                record(rec, Call::Claim { cpu: None }, || match heap.handle() {
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

/// What the tasks share besides the heap.
#[derive(Default)]
struct Shared {
    /// Blocks handed from one task to another, to be freed there.
    mailbox: shuttle::sync::Mutex<Vec<usize>>,
    /// A block its owner is about to free, for another task to free too (a
    /// racing double free); 0 when none.
    race: AtomicUsize,
    /// Double frees in progress (a racing pair counts two).
    doubling: AtomicUsize,
    /// Allocations in progress.
    allocating: AtomicUsize,
}

impl Shared {
    /// Enters a double free (`n` frees) unless an allocation is in flight:
    /// a double free racing a reallocation of its block "cannot be told
    /// from a legitimate free" (README), so workloads keep them apart
    /// unless [`Lin::gray`]. With [`Self::allocating`] a Dekker pair: of
    /// an allocation and a double free that start together, at least one
    /// sees the other and backs off.
    fn enter_double(&self, w: &Lin, n: usize) -> bool {
        self.doubling.fetch_add(n, SeqCst);
        if !w.gray && self.allocating.load(SeqCst) > 0 {
            self.doubling.fetch_sub(n, SeqCst);
            return false;
        }
        true
    }

    /// Enters an allocation unless a double free is in flight (see
    /// [`Self::enter_double`]).
    fn enter_alloc(&self, w: &Lin) -> bool {
        self.allocating.fetch_add(1, SeqCst);
        if !w.gray && self.doubling.load(SeqCst) > 0 {
            self.allocating.fetch_sub(1, SeqCst);
            return false;
        }
        true
    }
}

/// One task's program: `w.ops` random calls, plus the second free of each
/// racing pair another task offers. Returns its recorded ops.
fn task(
    t: usize,
    w: Lin,
    heap: &Heap,
    extra: Option<(usize, usize)>,
    sh: &Shared,
    clock: &LinClock,
) -> Vec<Op> {
    let mut rec = LinRecorder::new(clock, t);
    let mut me = Caller { heap, handle: None };
    let mut rng = thread_rng();
    let mut own: Vec<usize> = Vec::new();
    let mut freed: Vec<usize> = Vec::new();
    let add_at = extra.map(|_| rng.gen_range(0..w.ops));
    for i in 0..w.ops {
        // The other half of a racing pair: free what another task offers.
        let offered = sh.race.load(SeqCst);
        if offered != 0
            && !own.contains(&offered)
            && sh.race.compare_exchange(offered, 0, SeqCst, SeqCst).is_ok()
        {
            me.free(&mut rec, offered);
            sh.doubling.fetch_sub(1, SeqCst);
        }
        if t == 0 && add_at == Some(i) {
            let (start, len) = extra.unwrap();
            record(&mut rec, Call::AddRegion { region: 1 }, || {
                // SAFETY: the memory is the schedule's, used by this heap only,
                // alive until the heap is no longer used.
                match unsafe { heap.add_region(start as *mut u8, len) } {
                    Ok(()) => Ret::Done,
                    Err(_) => Ret::NotAdded,
                }
            });
            continue;
        }
        let any = |v: &Vec<usize>| !v.is_empty();
        match rng.gen_range(0..20) {
            0..=6 if sh.enter_alloc(&w) => {
                let size = w.sizes[rng.gen_range(0..w.sizes.len())];
                if let Some(a) = me.alloc(&mut rec, size) {
                    own.push(a);
                }
                sh.allocating.fetch_sub(1, SeqCst);
            }
            7..=9 if any(&own) => {
                let a = own.swap_remove(rng.gen_range(0..own.len()));
                if me.free(&mut rec, a) {
                    freed.push(a);
                }
            }
            10 if any(&own) => {
                let a = own.swap_remove(rng.gen_range(0..own.len()));
                sh.mailbox.lock().unwrap().push(a);
            }
            11 => {
                let posted = sh.mailbox.lock().unwrap().pop();
                if let Some(a) = posted {
                    me.free(&mut rec, a);
                }
            }
            // A racing double free: offered first, then freed once another
            // task took the offer (or after a few yields), so both may be
            // freeing it at the same time.
            12 | 13 if w.doubles() && any(&own) && sh.enter_double(&w, 2) => {
                let k = rng.gen_range(0..own.len());
                let a = own[k];
                if sh.race.compare_exchange(0, a, SeqCst, SeqCst).is_ok() {
                    own.swap_remove(k);
                    // A few chances for another task to take it first.
                    for _ in 0..8 {
                        if sh.race.load(SeqCst) != a {
                            break;
                        }
                        shuttle::thread::yield_now();
                    }
                    if me.free(&mut rec, a) {
                        freed.push(a);
                    }
                    // Not taken: withdraw the offer and its share.
                    if sh.race.compare_exchange(a, 0, SeqCst, SeqCst).is_ok() {
                        sh.doubling.fetch_sub(1, SeqCst);
                    }
                    sh.doubling.fetch_sub(1, SeqCst);
                } else {
                    sh.doubling.fetch_sub(2, SeqCst);
                }
            }
            // A stale double free of a block this task freed before.
            14 if w.doubles() && any(&freed) && sh.enter_double(&w, 1) => {
                let a = freed.swap_remove(rng.gen_range(0..freed.len()));
                me.free(&mut rec, a);
                sh.doubling.fetch_sub(1, SeqCst);
            }
            // Bad pointers: inside a block (never a block start: no class
            // below 32 B is requested) or not in the heap at all.
            15 => {
                let near = own.iter().chain(&freed).copied().next();
                let bad = match near {
                    Some(a) if rng.gen_bool(0.7) => a + 8,
                    _ => &rng as *const _ as usize,
                };
                me.free(&mut rec, bad);
            }
            16 | 17 if w.handles => me.toggle(&mut rec),
            18 => {
                record(&mut rec, Call::Reclaim, || {
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
    rec.into_ops()
}

/// A history's shape: its calls and results in stamp order, each address
/// renamed to the order of its first appearance, so two schedules that
/// interleave the same way on different memory have the same shape.
fn shape(ops: &[Op]) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut sorted: Vec<&Op> = ops.iter().collect();
    sorted.sort_by_key(|o| (o.invoke, o.ret_at));
    let mut names: BTreeMap<usize, usize> = BTreeMap::new();
    let mut name = |a: usize| {
        let n = names.len();
        *names.entry(a).or_insert(n)
    };
    let mut h = DefaultHasher::new();
    for o in sorted {
        let call = match o.call {
            Call::Free { addr, path } => Call::Free {
                addr: name(addr),
                path,
            },
            c => c,
        };
        let ret = match o.ret {
            Ret::Block(a) => Ret::Block(name(a)),
            r => r,
        };
        (o.thread, o.invoke, o.ret_at, format!("{call:?} {ret:?}")).hash(&mut h);
    }
    h.finish()
}

/// What a history reached, for the suite's minimums.
fn tally_history(ops: &[Op], tally: &Tally) {
    let overlap = |a: &Op, b: &Op| a.invoke < b.ret_at && b.invoke < a.ret_at;
    let some = |f: &dyn Fn(&Op) -> bool| ops.iter().any(f) as u64;
    tally.distinct("distinct histories", shape(ops));
    tally.add("operations", ops.len() as u64);
    tally.max("longest history", ops.len() as u64);
    tally.add(
        "histories with a None",
        some(&|o| o.ret == Ret::OutOfMemory),
    );
    tally.add(
        "histories with an Err",
        some(&|o| matches!(o.ret, Ret::Refused { .. })),
    );
    let frees: Vec<&Op> = ops
        .iter()
        .filter(|o| matches!(o.call, Call::Free { .. }))
        .collect();
    let addr = |o: &Op| match o.call {
        Call::Free { addr, .. } => addr,
        _ => 0,
    };
    let path = |o: &Op| match o.call {
        Call::Free { path, .. } | Call::Alloc { path, .. } => path,
        _ => Path::Shared,
    };
    let (mut racing, mut cross, mut small) = (0, 0, 0);
    for (i, a) in frees.iter().enumerate() {
        for b in &frees[i + 1..] {
            if a.thread != b.thread && addr(a) == addr(b) && overlap(a, b) {
                racing += 1;
                cross += ((path(a) == Path::Shared) != (path(b) == Path::Shared)) as u64;
                let is_small = ops.iter().any(|o| {
                    o.ret == Ret::Block(addr(a))
                        && matches!(o.call, Call::Alloc { size, .. } if size <= magbuddy::MAX_SMALL)
                });
                small += is_small as u64;
            }
        }
    }
    tally.add("racing frees of one block", racing);
    // A free racing an allocation that returned its address: in a gray
    // history, a stale free racing the block's reuse.
    let reuse_races = ops
        .iter()
        .filter_map(|a| match (a.call, a.ret) {
            (Call::Alloc { .. }, Ret::Block(x)) => Some((a, x)),
            _ => None,
        })
        .map(|(a, x)| {
            frees
                .iter()
                .filter(|f| addr(f) == x && f.thread != a.thread && overlap(a, f))
                .count() as u64
        })
        .sum();
    tally.add("frees racing the allocation of their address", reuse_races);
    // A `None` while a free that won a race with a refused free of its
    // pointer was in flight: the hold `lin::Transient` allows it.
    tally.add(
        "Nones during a racing free's hold",
        ops.iter()
            .filter(|a| a.ret == Ret::OutOfMemory)
            .filter(|a| {
                frees
                    .iter()
                    .any(|f| f.thread != a.thread && overlap(a, f) && lin::races_free(ops, f))
            })
            .count() as u64,
    );
    tally.add("racing frees of one block, handle and shared", cross);
    tally.add("racing frees of one object", small);
    let during = |what: &dyn Fn(&Call) -> bool, ret: Option<Ret>| {
        ops.iter()
            .filter(|a| matches!(a.call, Call::Alloc { .. }) && ret.is_none_or(|r| a.ret == r))
            .filter(|a| ops.iter().any(|o| what(&o.call) && overlap(a, o)))
            .count() as u64
    };
    tally.add(
        "allocations during a handle release",
        during(&|c| matches!(c, Call::Release { .. }), None),
    );
    tally.add(
        "allocations during a reclaim",
        during(&|c| *c == Call::Reclaim, None),
    );
    tally.add(
        "allocations during add_region",
        during(&|c| matches!(c, Call::AddRegion { .. }), None),
    );
    tally.add(
        "shared-path Nones after a handle release",
        ops.iter()
            .filter(|a| a.ret == Ret::OutOfMemory && path(a) == Path::Shared)
            .filter(|a| {
                ops.iter()
                    .any(|o| matches!(o.call, Call::Release { .. }) && o.ret_at < a.invoke)
            })
            .count() as u64,
    );
    tally.add(
        "handle claims refused",
        ops.iter().filter(|o| o.ret == Ret::NoSlot).count() as u64,
    );
}

/// One schedule: the heap of `w`, filled, then `w.tasks` tasks; the
/// recorded history must be linearizable, and afterwards every block comes
/// back and the heap validates.
pub fn lin_history(w: Lin, tally: &Tally) {
    let (first, added) = usable(&w);
    let owned = Arc::new(OwnedHeap::with_config(w.config(), w.areas));
    let extra = (w.extra_areas > 0).then(|| Arc::new(Extra::new(SMALL, w.extra_areas, w.cpus)));
    let heap = owned.heap();
    let (base, _) = owned.region();
    let free_before = heap.stats().free_bytes;
    let model = HeapModel {
        regions: vec![
            first.iter().map(|p| base + p).collect(),
            match &extra {
                Some(e) => added.iter().map(|p| e.mem as usize + p).collect(),
                None => Vec::new(),
            },
        ],
        cpus: w.cpus,
        cpu_cache_cap: heap.cpu_cache_cap(),
        transient: (!w.strict).then(|| Transient {
            rounds: (0..=14)
                .filter_map(|k| heap.magazine_capacity(8 << k))
                .max()
                .unwrap_or(0),
            area: (SMALL.area_pages() as usize) * PAGE_SIZE,
        }),
        // Gray histories too: what a double free racing an allocation may
        // hide is the racing free's hold (`lin::Transient`).
        judge_nones: true,
    };
    let clock = Arc::new(LinClock::new());
    let main = w.tasks;
    // The fill, on the shared path, recorded as the main thread's calls.
    let mut rec = LinRecorder::new(&clock, main);
    let mut me = Caller { heap, handle: None };
    if let Fill::Objects(size) = w.fill {
        let mut objs = Vec::new();
        while let Some(a) = me.alloc(&mut rec, size) {
            objs.push(a);
        }
        // Half the schedules free one object in every slab (reclaim and
        // allocations then compete for several slabs), the others one or
        // two anywhere (so a handle can take every free object).
        let mut rng = thread_rng();
        let mut slabs: Vec<usize> = objs.iter().map(|a| a & !(lin::SLAB - 1)).collect();
        slabs.dedup();
        let victims: Vec<usize> = if rng.gen_bool(0.5) {
            slabs
                .iter()
                .map(|&x| *objs.iter().find(|&&a| a & !(lin::SLAB - 1) == x).unwrap())
                .collect()
        } else {
            (0..rng.gen_range(1..=2))
                .map(|_| objs[rng.gen_range(0..objs.len())])
                .collect()
        };
        for a in victims {
            if let Some(i) = objs.iter().position(|&b| b == a) {
                objs.swap_remove(i);
                me.free(&mut rec, a);
            }
        }
    }
    drop(me);
    let mut ops = rec.into_ops();
    let sh = Arc::new(Shared::default());
    let region = extra.as_ref().map(|e| (e.mem as usize, e.layout.size()));
    let tasks: Vec<_> = (0..w.tasks)
        .map(|t| {
            let (owned, sh, clock) = (owned.clone(), sh.clone(), clock.clone());
            let extra = extra.clone();
            shuttle::thread::spawn(move || {
                let ops = task(t, w, owned.heap(), region, &sh, &clock);
                drop(extra);
                ops
            })
        })
        .collect();
    for t in tasks {
        ops.extend(t.join().expect("task panicked"));
    }
    let lin = match lin::check(&model, &ops) {
        Ok(l) => l,
        Err(e) => panic!("{e}"),
    };
    tally.add("histories", 1);
    tally.add(
        "exact Nones (no memory could be hidden)",
        lin.exact_nones as u64,
    );
    tally.max("most states explored", lin.explored as u64);
    tally_history(&ops, tally);
    // Everything still live (the linearization's end state) back, then the
    // whole heap: free bytes as before, plus the added region's pages.
    for &(a, _) in &lin.end.live {
        // SAFETY: live per the linearization, owned by no running task.
        if let Err(e) = unsafe { heap.try_free(a as *mut u8) } {
            panic!("freeing a block live at the end: {e}");
        }
    }
    heap.reclaim();
    if let Err(e) = heap.validate() {
        panic!("validate() after the schedule: {e}");
    }
    let grown = lin.end.regions & 2 != 0;
    let want = free_before + if grown { added.len() * PAGE_SIZE } else { 0 };
    assert_eq!(heap.stats().free_bytes, want, "every byte came back");
    // The heap must be unused before the added region's memory goes.
    drop(owned);
    drop(extra);
}
