//! The one call boundary every allocator is measured through.
//!
//! A workload sees a [`BenchAlloc`] (the allocator, shared by all threads) and
//! per thread a boxed [`ThreadAlloc`] (that thread's view: a magbuddy handle,
//! a CPU index, or nothing). Calls go through `dyn`, so no allocator's fast
//! path is inlined into a workload loop and specialised for it: each pays one
//! indirect call, as a `GlobalAlloc` behind `#[global_allocator]` would.
//!
//! [`Kind`] lists the allocators and builds them. Fixed-region allocators all
//! get a [`Region`] of the same length, built (and pre-touched) outside any
//! timed part.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr::{null_mut, NonNull};

use branch_allocator::{Atomic, BranchAllocator};
use magbuddy::baseline::{LockMode, SpinHeap};
use magbuddy::{Heap, Stats};

use crate::region::{Region, PAGE};
use crate::xv6::PerCpuPages;

/// One thread's view of an allocator. Not `Sync`: exactly one thread uses it.
pub trait ThreadAlloc {
    /// Memory for `layout`, or null when the allocator cannot serve it.
    fn alloc(&mut self, layout: Layout) -> *mut u8;
    /// Returns memory obtained from any thread's `alloc` of the same allocator.
    ///
    /// # Safety
    /// * `p` came from `alloc(layout)` of this allocator, is live, and is not
    ///   used after this call.
    unsafe fn dealloc(&mut self, p: *mut u8, layout: Layout);
}

/// Sum of an allocator's own operation counters (magbuddy only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpCounters {
    /// Successful allocations plus frees.
    pub ops: u64,
    /// CAS attempts that lost a race and were retried.
    pub cas_retries: u64,
}

/// An allocator under test, shared by all threads of a run.
pub trait BenchAlloc: Sync {
    /// Name in tables, CSV and benchmark ids.
    fn name(&self) -> &str;
    /// The view for thread `index` (0-based; indices are unique among live
    /// threads and at most the `cpus` the allocator was built for).
    fn thread(&self, index: usize) -> Box<dyn ThreadAlloc + '_>;
    /// Whether it serves only single pages (then it runs page workloads only).
    fn single_pages_only(&self) -> bool {
        false
    }
    /// Its own operation counters, if it keeps any.
    fn counters(&self) -> Option<OpCounters> {
        None
    }
    /// Its statistics (metadata, free blocks), if it reports them.
    fn stats(&self) -> Option<Stats> {
        None
    }
    /// Bytes of the region it manages, for fixed-region allocators.
    fn region_len(&self) -> Option<usize> {
        None
    }
}

/// The allocators of the suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// magbuddy with one exclusive `Handle` per thread.
    Magbuddy,
    /// magbuddy's handle-less shared path (`Heap::alloc` / `Heap::free`).
    MagbuddyShared,
    /// magbuddy as a Rust program calls it: `MagbuddyAlloc`'s `GlobalAlloc`
    /// (a thread-local slot index per thread), the boundary mimalloc and
    /// glibc are called at here.
    MagbuddyGlobal,
    /// The seed's slab + buddy design under one pure spinlock.
    SpinHeap,
    /// The same with spin-then-`yield_now` waiting.
    SpinHeapYield,
    /// xv6-style per-CPU page lists with stealing (seed 002), pages only.
    Xv6Pages,
    /// `buddy_system_allocator::LockedHeap<33>` (one `spin::Mutex`).
    BuddySystem,
    /// `talc` behind a `spinning_top` spinlock.
    Talc,
    /// `branch_allocator`, a lock-free buddy tree, with a next-fit search.
    Branch,
    /// The system allocator (glibc malloc).
    System,
    /// mimalloc (crate `mimalloc`).
    Mimalloc,
    /// jemalloc (crate `tikv-jemallocator`, its symbols prefixed so glibc's
    /// malloc stays the process's own).
    Jemalloc,
    /// snmalloc (crate `snmalloc-rs`, built with the `cc` crate: no cmake).
    Snmalloc,
}

impl Kind {
    /// Every allocator, in table order.
    pub const ALL: [Kind; 13] = [
        Kind::Magbuddy,
        Kind::MagbuddyShared,
        Kind::MagbuddyGlobal,
        Kind::SpinHeap,
        Kind::SpinHeapYield,
        Kind::Xv6Pages,
        Kind::BuddySystem,
        Kind::Talc,
        Kind::Branch,
        Kind::System,
        Kind::Mimalloc,
        Kind::Jemalloc,
        Kind::Snmalloc,
    ];

    /// Name in tables and benchmark ids.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Magbuddy => "magbuddy",
            Kind::MagbuddyShared => "magbuddy-shared",
            Kind::MagbuddyGlobal => "magbuddy-global",
            Kind::SpinHeap => "spinheap",
            Kind::SpinHeapYield => "spinheap-yield",
            Kind::Xv6Pages => "xv6-percpu",
            Kind::BuddySystem => "buddy_system",
            Kind::Talc => "talc",
            Kind::Branch => "branch",
            Kind::System => "system",
            Kind::Mimalloc => "mimalloc",
            Kind::Jemalloc => "jemalloc",
            Kind::Snmalloc => "snmalloc",
        }
    }

    /// Whether it serves only single pages (the xv6 lists).
    pub fn single_pages_only(self) -> bool {
        self == Kind::Xv6Pages
    }

    /// The kind called `name`.
    pub fn parse(name: &str) -> Option<Kind> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Builds the allocator for up to `cpus` threads; fixed-region ones get
    /// `region_len` bytes (a power of two of at least 4 MiB).
    pub fn build(self, region_len: usize, cpus: usize) -> Box<dyn BenchAlloc> {
        assert!(region_len.is_power_of_two() && region_len >= 4 << 20);
        let name = self.name();
        match self {
            Kind::Magbuddy | Kind::MagbuddyShared => Box::new(Magbuddy::new(
                Region::new(region_len),
                cpus,
                self == Kind::MagbuddyShared,
            )),
            Kind::SpinHeap => Box::new(spin_heap(name, region_len, cpus, LockMode::Spin)),
            Kind::SpinHeapYield => Box::new(spin_heap(
                name,
                region_len,
                cpus,
                LockMode::SpinThenYield(std::thread::yield_now),
            )),
            Kind::Xv6Pages => Box::new(Xv6(PerCpuPages::new(Region::new(region_len), cpus))),
            Kind::BuddySystem => {
                let region = Region::new(region_len);
                let heap = buddy_system_allocator::LockedHeap::<33>::new();
                // SAFETY: the region is ours and is kept beside the heap.
                unsafe { heap.lock().init(region.start() as usize, region.len()) };
                Box::new(Shared::new(name, Global(heap), Some(region)))
            }
            Kind::Talc => {
                let region = Region::new(region_len);
                let talc =
                    talc::TalcLock::<spinning_top::RawSpinlock, _>::new(talc::source::Manual);
                // SAFETY: as above.
                unsafe { talc.lock().claim(region.start(), region.len()) }
                    .expect("talc claims the region");
                Box::new(Shared::new(name, Global(talc), Some(region)))
            }
            Kind::Branch => Box::new(Branch::new(Region::new(region_len), cpus)),
            Kind::System => global(name, System),
            Kind::Mimalloc => global(name, mimalloc::MiMalloc),
            Kind::Jemalloc => global(name, tikv_jemallocator::Jemalloc),
            Kind::Snmalloc => global(name, snmalloc_rs::SnMalloc),
            Kind::MagbuddyGlobal => Box::new(Shared::new(name, ProcessAdapter, None)),
        }
    }
}

/// An allocator whose operations need no per-thread state: a `GlobalAlloc`,
/// or a heap's own shared entry points.
pub trait SharedAlloc: Sync {
    /// As [`ThreadAlloc::alloc`].
    fn alloc(&self, layout: Layout) -> *mut u8;
    /// As [`ThreadAlloc::dealloc`].
    ///
    /// # Safety
    /// As [`ThreadAlloc::dealloc`].
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout);
}

/// Any `GlobalAlloc` (a newtype, so that heaps with their own entry points can
/// implement [`SharedAlloc`] too without overlapping impls).
pub struct Global<G>(pub G);

impl<G: GlobalAlloc + Sync> SharedAlloc for Global<G> {
    fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the workloads never ask for zero bytes.
        unsafe { self.0.alloc(layout) }
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // SAFETY: the caller's promise, passed on.
        unsafe { self.0.dealloc(p, layout) }
    }
}

/// The process's one `MagbuddyAlloc`, as a program declares it (a `static`:
/// its heap is `'static` and never given back, so every run of the report
/// shares it, as they share mimalloc's and glibc's). 1 GiB of address space,
/// reserved on the first allocation and mapped lazily; a slot for every
/// thread the harness may run.
static PROCESS_ADAPTER: magbuddy::MagbuddyAlloc = magbuddy::MagbuddyAlloc::new(1 << 30, 64);

/// [`PROCESS_ADAPTER`] called through its `GlobalAlloc` impl.
struct ProcessAdapter;

impl SharedAlloc for ProcessAdapter {
    fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the workloads never ask for zero bytes.
        unsafe { PROCESS_ADAPTER.alloc(layout) }
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // SAFETY: the caller's promise, passed on.
        unsafe { PROCESS_ADAPTER.dealloc(p, layout) }
    }
}

/// A process-wide `GlobalAlloc` (glibc, mimalloc, jemalloc, snmalloc) as an
/// allocator of the suite: called as an explicit object, never installed as
/// `#[global_allocator]`, so every allocator of one report runs in the same
/// process beside the others, and the harness's own `Vec`s and threads keep
/// using glibc whichever allocator is measured. Such allocators get no region.
fn global<G: GlobalAlloc + Sync + 'static>(name: &'static str, g: G) -> Box<dyn BenchAlloc> {
    Box::new(Shared::new(name, Global(g), None))
}

/// Adapts a `&dyn SharedAlloc` to a thread's view.
struct SharedThread<'a>(&'a dyn SharedAlloc);

impl ThreadAlloc for SharedThread<'_> {
    fn alloc(&mut self, layout: Layout) -> *mut u8 {
        self.0.alloc(layout)
    }
    unsafe fn dealloc(&mut self, p: *mut u8, layout: Layout) {
        // SAFETY: the caller's promise, passed on.
        unsafe { self.0.dealloc(p, layout) }
    }
}

/// A [`SharedAlloc`] with a name, its region (if any), and optional hooks
/// for statistics. Field order matters: the allocator drops before its region.
pub struct Shared<A> {
    name: &'static str,
    alloc: A,
    stats: Option<fn(&A) -> Stats>,
    region: Option<Region>,
}

impl<A: SharedAlloc> Shared<A> {
    fn new(name: &'static str, alloc: A, region: Option<Region>) -> Self {
        Self {
            name,
            alloc,
            stats: None,
            region,
        }
    }
}

impl<A: SharedAlloc> BenchAlloc for Shared<A> {
    fn name(&self) -> &str {
        self.name
    }
    fn thread(&self, _index: usize) -> Box<dyn ThreadAlloc + '_> {
        Box::new(SharedThread(&self.alloc))
    }
    fn stats(&self) -> Option<Stats> {
        self.stats.map(|f| f(&self.alloc))
    }
    fn region_len(&self) -> Option<usize> {
        self.region.as_ref().map(Region::len)
    }
}

/// A `SpinHeap` reached through a pointer into its own region.
pub struct SpinRef(NonNull<SpinHeap>);

// SAFETY: `SpinHeap` is `Sync`; the pointer targets a heap that lives in the
// region kept beside it in the same `Shared`.
unsafe impl Sync for SpinRef {}

impl SharedAlloc for SpinRef {
    fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the `Sync` impl: the heap outlives this reference.
        let heap = unsafe { self.0.as_ref() };
        heap.alloc_layout(layout)
            .map_or(null_mut(), NonNull::as_ptr)
    }
    unsafe fn dealloc(&self, p: *mut u8, _layout: Layout) {
        // SAFETY: the heap outlives this reference; `p` per the caller.
        unsafe { self.0.as_ref().free(p) }
    }
}

fn spin_heap(name: &'static str, len: usize, cpus: usize, mode: LockMode) -> Shared<SpinRef> {
    let region = Region::new(len);
    // SAFETY: the region is ours and is kept in the same `Shared`.
    let heap = unsafe { SpinHeap::init(region.start(), region.len(), cpus, mode) }
        .expect("SpinHeap fits the region");
    let mut s = Shared::new(name, SpinRef(NonNull::from(heap)), Some(region));
    // SAFETY (in the closure): as in `SharedAlloc for SpinRef`.
    s.stats = Some(|r: &SpinRef| unsafe { r.0.as_ref() }.stats());
    s
}

/// magbuddy: per-thread handles, or the shared path for every thread.
pub struct Magbuddy {
    heap: NonNull<Heap>,
    shared: bool,
    cpus: usize,
    region: Region,
}

// SAFETY: `Heap` is `Sync`; it lives in `region`, owned by this value.
unsafe impl Sync for Magbuddy {}

impl Magbuddy {
    /// A heap of `cpus` handles filling `region`.
    pub fn new(region: Region, cpus: usize, shared: bool) -> Self {
        // SAFETY: the region is ours for as long as the heap is used.
        let heap = unsafe { Heap::init(region.start(), region.len(), cpus) }
            .expect("magbuddy fits the region");
        Self {
            heap: NonNull::from(heap),
            shared,
            cpus,
            region,
        }
    }

    /// The heap.
    pub fn heap(&self) -> &Heap {
        // SAFETY: see the `Sync` impl.
        unsafe { self.heap.as_ref() }
    }
}

impl SharedAlloc for Heap {
    fn alloc(&self, layout: Layout) -> *mut u8 {
        self.alloc_layout(layout)
            .map_or(null_mut(), NonNull::as_ptr)
    }
    unsafe fn dealloc(&self, p: *mut u8, _layout: Layout) {
        // SAFETY: the caller's promise, passed on.
        unsafe { self.free(p) }
    }
}

impl ThreadAlloc for magbuddy::Handle<'_> {
    fn alloc(&mut self, layout: Layout) -> *mut u8 {
        self.alloc_layout(layout)
            .map_or(null_mut(), NonNull::as_ptr)
    }
    unsafe fn dealloc(&mut self, p: *mut u8, _layout: Layout) {
        // SAFETY: the caller's promise, passed on.
        unsafe { self.free(p) }
    }
}

impl BenchAlloc for Magbuddy {
    fn name(&self) -> &str {
        if self.shared {
            Kind::MagbuddyShared.name()
        } else {
            Kind::Magbuddy.name()
        }
    }
    fn thread(&self, index: usize) -> Box<dyn ThreadAlloc + '_> {
        if self.shared {
            return Box::new(SharedThread(self.heap()));
        }
        let h = self.heap().handle_for(index % self.cpus);
        Box::new(h.unwrap_or_else(|| panic!("magbuddy handle {index} is taken")))
    }
    fn counters(&self) -> Option<OpCounters> {
        let heap = self.heap();
        let all = (0..heap.cpus())
            .map(|c| heap.cpu_stats(c))
            .chain([heap.shared_stats()]);
        Some(all.fold(OpCounters::default(), |acc, s| OpCounters {
            ops: acc.ops + s.allocs + s.frees,
            cas_retries: acc.cas_retries + s.cas_retries,
        }))
    }
    fn stats(&self) -> Option<Stats> {
        Some(self.heap().stats())
    }
    fn region_len(&self) -> Option<usize> {
        Some(self.region.len())
    }
}

/// xv6 per-CPU page lists; thread `i` is CPU `i mod cpus`.
struct Xv6(PerCpuPages);

struct Xv6Thread<'a>(&'a PerCpuPages, usize);

impl ThreadAlloc for Xv6Thread<'_> {
    fn alloc(&mut self, layout: Layout) -> *mut u8 {
        if layout.size() > PAGE || layout.align() > PAGE {
            return null_mut();
        }
        self.0.alloc(self.1)
    }
    unsafe fn dealloc(&mut self, p: *mut u8, _layout: Layout) {
        // SAFETY: the caller's promise, passed on.
        unsafe { self.0.free(self.1, p) }
    }
}

impl BenchAlloc for Xv6 {
    fn name(&self) -> &str {
        Kind::Xv6Pages.name()
    }
    fn thread(&self, index: usize) -> Box<dyn ThreadAlloc + '_> {
        Box::new(Xv6Thread(&self.0, index % self.0.cpus()))
    }
    fn single_pages_only(&self) -> bool {
        Kind::Xv6Pages.single_pages_only()
    }
}

/// `branch_allocator` over the region's pages. The crate marks and unmarks
/// tree nodes only; the caller chooses which block to try. Each thread keeps a
/// next-fit cursor per order (starting at its share of the region) and tries
/// blocks of the order in turn until one is taken or all were refused.
pub struct Branch {
    tree: BranchAllocator<'static>,
    /// Backing store of `tree`; boxed, so it never moves, and dropped after it.
    _storage: Box<[Atomic]>,
    order: usize,
    cpus: usize,
    region: Region,
}

impl Branch {
    fn new(region: Region, cpus: usize) -> Self {
        let order = (region.len() / PAGE).ilog2() as usize;
        let storage: Box<[Atomic]> = (0..BranchAllocator::required(order))
            .map(|_| Atomic::new(0))
            .collect();
        // SAFETY: the slice lives on the heap in `_storage`, which is never
        // moved out or mutated and is dropped after `tree` (field order).
        let store: &'static [Atomic] = unsafe { &*(&*storage as *const [Atomic]) };
        let tree = BranchAllocator::new(store, order).expect("storage fits the order");
        Self {
            tree,
            _storage: storage,
            order,
            cpus,
            region,
        }
    }

    fn order_of(layout: Layout) -> usize {
        layout
            .size()
            .max(layout.align())
            .div_ceil(PAGE)
            .next_power_of_two()
            .trailing_zeros() as usize
    }
}

struct BranchThread<'a> {
    b: &'a Branch,
    cursor: [usize; 64],
}

impl ThreadAlloc for BranchThread<'_> {
    fn alloc(&mut self, layout: Layout) -> *mut u8 {
        let k = Branch::order_of(layout);
        let Some(blocks) = self.b.order.checked_sub(k).map(|d| 1usize << d) else {
            return null_mut();
        };
        let start = self.cursor[k] % blocks;
        for i in 0..blocks {
            let idx = (start + i) % blocks;
            if self.b.tree.try_allocate(idx << k, k).is_some() {
                self.cursor[k] = idx + 1;
                // SAFETY: block `idx` of order `k` lies inside the region.
                return unsafe { self.b.region.start().add((idx << k) * PAGE) };
            }
        }
        null_mut()
    }
    unsafe fn dealloc(&mut self, p: *mut u8, layout: Layout) {
        let index = (p as usize - self.b.region.start() as usize) / PAGE;
        let freed = self.b.tree.deallocate(index, Branch::order_of(layout));
        debug_assert!(freed.is_some(), "branch_allocator refused a free");
    }
}

impl BenchAlloc for Branch {
    fn name(&self) -> &str {
        Kind::Branch.name()
    }
    fn thread(&self, index: usize) -> Box<dyn ThreadAlloc + '_> {
        let pages = 1usize << self.order;
        let first = (index % self.cpus) * pages / self.cpus;
        Box::new(BranchThread {
            b: self,
            cursor: core::array::from_fn(|k| first >> k),
        })
    }
    fn region_len(&self) -> Option<usize> {
        Some(self.region.len())
    }
}
