//! One schedule's world: the heap under test plus every checker, wired the
//! way `magbuddy-checkers` prescribes (record an allocation after it
//! returned, a free before calling free).

use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use magbuddy::{FreeError, Geometry, Heap, HeapConfig, PAGE_SIZE};
use magbuddy_checkers::{
    canary, replay, words_needed, BalanceCheck, Event, Ledger, Recorder, ReplayReport, SeqClock,
    ShadowBitmap,
};

use crate::OwnedHeap;

/// Bytes of the block that serves a request of `size` bytes: a slab
/// object of the size class (8 B – 2 KiB), else a buddy block of at least a
/// page.
pub fn block_bytes(size: usize) -> usize {
    if size <= magbuddy::MAX_SMALL {
        size.max(GRANULE).next_power_of_two()
    } else {
        size.max(PAGE_SIZE).next_power_of_two()
    }
}

/// The shadow's granule: the smallest slab object.
const GRANULE: usize = 8;

/// Canary bytes checked at each end of a block.
const EDGE: usize = 64;
/// Largest alignment the shadow demands: every buddy block is aligned to
/// its size in the address space, runs of areas included.
const MAX_ALIGN: usize = 1 << 40;

/// The heap of one schedule and the checkers around it.
pub struct World {
    owned: OwnedHeap,
    online: Box<[AtomicU64]>,
    replayed: Box<[AtomicU64]>,
    clock: SeqClock,
    ledger: Ledger<4>,
    balance: BalanceCheck,
}

impl World {
    /// A heap with `areas` whole areas of geometry `g` and `cpus` handles.
    pub fn new(g: Geometry, cpus: usize, areas: usize) -> Self {
        Self::over(OwnedHeap::new(g, cpus, areas))
    }

    /// A heap of `config` with `areas` whole areas.
    pub fn with_config(config: HeapConfig, areas: usize) -> Self {
        Self::over(OwnedHeap::with_config(config, areas))
    }

    fn over(owned: OwnedHeap) -> Self {
        let (_, len) = owned.region();
        let words = || {
            (0..words_needed(len, GRANULE))
                .map(|_| AtomicU64::new(0))
                .collect()
        };
        let balance = BalanceCheck::new(owned.heap().stats().free_bytes);
        Self {
            owned,
            online: words(),
            replayed: words(),
            clock: SeqClock::new(),
            ledger: Ledger::new(),
            balance,
        }
    }

    /// The heap under test.
    pub fn heap(&self) -> &Heap {
        self.owned.heap()
    }

    /// Free pages when the world was built (all usable pages).
    pub fn usable_pages(&self) -> usize {
        self.balance.free_before() / PAGE_SIZE
    }

    fn bitmap<'a>(&self, words: &'a [AtomicU64]) -> ShadowBitmap<'a> {
        let (base, len) = self.owned.region();
        ShadowBitmap::new(base, len, GRANULE, MAX_ALIGN, words).expect("shadow geometry")
    }

    /// The online shadow bitmap (live blocks right now).
    pub fn shadow(&self) -> ShadowBitmap<'_> {
        self.bitmap(&self.online)
    }

    /// A client for thread `thread` that records into `buf` (its trace).
    pub fn client<'w, 'b>(&'w self, thread: usize, buf: &'b mut [Event]) -> Client<'w, 'b> {
        Client {
            world: self,
            rec: Recorder::new(&self.clock, buf),
            thread,
            ops: Vec::new(),
        }
    }

    /// Runs `body(t, client)` on `threads` shuttle threads (trace buffers of
    /// `cap` events each), joins them, and returns their merged trace and
    /// call windows.
    pub fn run<F>(self: &Arc<Self>, threads: usize, cap: usize, body: F) -> Run
    where
        F: Fn(usize, &mut Client<'_, '_>) + Send + Sync + 'static,
    {
        let body = Arc::new(body);
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let world = self.clone();
                let body = body.clone();
                shuttle::thread::spawn(move || {
                    let mut buf = vec![Event::EMPTY; cap];
                    let ops = {
                        let mut c = world.client(t, &mut buf);
                        body(t, &mut c);
                        c.ops
                    };
                    (buf, ops)
                })
            })
            .collect();
        let mut run = Run::default();
        for h in handles {
            let (buf, ops) = h.join().expect("client thread panicked");
            run.trace.extend(buf);
            run.ops.extend(ops);
        }
        run
    }

    /// End of a schedule, every thread joined and every handle dropped.
    /// Reclaims the caches, then checks `validate()`; when
    /// `all_freed`, that the online shadow is empty, that free bytes and the
    /// ledger balance; and replays the merged trace into a fresh shadow
    /// (overlaps and bad frees in sequence order). Panics with the first
    /// problem; returns the replay's report.
    pub fn finish(&self, trace: &mut [Event], all_freed: bool) -> ReplayReport {
        let heap = self.heap();
        // Handles are released (their threads ended), so their magazines are
        // in the depot: empty it so every cached block is back in the tree.
        heap.reclaim();
        if let Err(e) = heap.validate() {
            panic!("validate() after the schedule: {e}");
        }
        let replayed = self.bitmap(&self.replayed);
        let report = match replay(trace, &replayed) {
            Ok(r) => r,
            Err(e) => panic!("trace replay: {e}"),
        };
        if all_freed {
            if let Some(a) = self.shadow().first_live() {
                panic!("block at {a:#x} still live in the online shadow");
            }
            assert!(report.is_balanced(), "trace not balanced: {report:?}");
            if let Err(e) = self
                .balance
                .verify_with(heap.stats().free_bytes, &self.ledger)
            {
                panic!("everything came back: {e}");
            }
        }
        report
    }
}

/// One allocator call as a client saw it: stamps from the run's clock just
/// before the call and just after it returned.
#[derive(Clone, Copy, Debug)]
pub struct Op {
    /// The calling thread.
    pub thread: usize,
    /// Stamp before the call.
    pub start: u64,
    /// Stamp after the call returned.
    pub end: u64,
    /// Block address (0 for a failed allocation).
    pub addr: usize,
    /// Block bytes.
    pub bytes: usize,
    /// Allocation (true) or free (false).
    pub alloc: bool,
}

/// What a [`World::run`] recorded.
#[derive(Debug, Default)]
pub struct Run {
    /// Every thread's trace (empty slots included).
    pub trace: Vec<Event>,
    /// Every thread's call windows.
    pub ops: Vec<Op>,
}

impl Run {
    /// Pairs of calls by different threads whose windows overlapped and
    /// whose blocks share a `unit`-aligned span of memory (a chunk, an
    /// area): the interleavings where two threads worked on one word.
    pub fn concurrent_in(&self, unit: usize) -> u64 {
        let span = |o: &Op| (o.addr / unit, (o.addr + o.bytes - 1) / unit);
        let mut n = 0;
        for (i, a) in self.ops.iter().enumerate() {
            for b in &self.ops[i + 1..] {
                let (a0, a1) = span(a);
                let (b0, b1) = span(b);
                if a.thread != b.thread
                    && a.addr != 0
                    && b.addr != 0
                    && a.start < b.end
                    && b.start < a.end
                    && a0 <= b1
                    && b0 <= a1
                {
                    n += 1;
                }
            }
        }
        n
    }
}

/// One thread's view of the checkers.
pub struct Client<'w, 'b> {
    world: &'w World,
    rec: Recorder<'w, 'b>,
    thread: usize,
    ops: Vec<Op>,
}

impl Client<'_, '_> {
    /// The thread index this client was made for.
    pub fn thread(&self) -> usize {
        self.thread
    }

    /// Calls `f` to allocate `size` bytes and records the result (see
    /// [`Self::allocated`]) and the call window. Returns the address.
    pub fn alloc(&mut self, size: usize, f: impl FnOnce() -> Option<NonNull<u8>>) -> Option<usize> {
        let start = self.world.clock.stamp();
        let p = f();
        let end = self.world.clock.stamp();
        let addr = p.map(|p| self.allocated(p, size));
        self.ops.push(Op {
            thread: self.thread,
            start,
            end,
            addr: addr.unwrap_or(0),
            bytes: block_bytes(size),
            alloc: true,
        });
        addr
    }

    /// Records the free of the block at `addr` (see [`Self::freeing`]), then
    /// calls `f` to free it and records the call window. Panics if `f`
    /// refuses: the client only frees its own live blocks.
    pub fn free(&mut self, addr: usize, size: usize, f: impl FnOnce() -> Result<(), FreeError>) {
        self.freeing(addr, size);
        let start = self.world.clock.stamp();
        if let Err(e) = f() {
            panic!("the allocator refused a legitimate free: {e}");
        }
        let end = self.world.clock.stamp();
        self.ops.push(Op {
            thread: self.thread,
            start,
            end,
            addr,
            bytes: block_bytes(size),
            alloc: false,
        });
    }

    /// Records a block the allocator just returned for `size` bytes: online
    /// shadow (overlap, alignment), trace, ledger, canary fill. Returns the
    /// address.
    pub fn allocated(&mut self, p: NonNull<u8>, size: usize) -> usize {
        let bytes = block_bytes(size);
        if let Err(e) = self.world.shadow().on_alloc(p.as_ptr(), bytes) {
            panic!("allocation overlaps a live block: {e}");
        }
        self.rec
            .record_alloc(p.as_ptr(), bytes)
            .expect("trace buffer");
        self.world.ledger.shard(self.thread % 4).on_alloc(bytes);
        // SAFETY: the allocator just handed us these bytes.
        unsafe { canary::fill_edges(p.as_ptr(), bytes, 0x5eed, EDGE) };
        p.as_ptr() as usize
    }

    /// Records that the block at `addr` of `size` bytes is about to be
    /// freed: canary check, trace, ledger, online shadow.
    pub fn freeing(&mut self, addr: usize, size: usize) {
        let bytes = block_bytes(size);
        // SAFETY: the block is live and ours (the shadow said so at alloc).
        if let Err(e) = unsafe { canary::check_edges(addr as *const u8, bytes, 0x5eed, EDGE) } {
            panic!("block overwritten while live: {e}");
        }
        self.rec
            .record_free(addr as *const u8, bytes)
            .expect("trace buffer");
        self.world.ledger.shard(self.thread % 4).on_free(bytes);
        if let Err(e) = self.world.shadow().on_free_addr(addr, bytes) {
            panic!("free of a block that is not live: {e}");
        }
    }
}

impl<'w> Client<'w, '_> {
    /// The heap under test, for the calls passed to [`Self::alloc`] and
    /// [`Self::free`].
    pub fn world_heap(&self) -> &'w Heap {
        self.world.heap()
    }
}
