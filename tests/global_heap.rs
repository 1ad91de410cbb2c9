//! The `no_std` `#[global_allocator]` static, `GlobalHeap`, driven as a
//! kernel would (and as a careless one would): set up late, CPU functions
//! that answer wrongly, calls that re-enter a CPU's handle, refused frees.
//! `MagbuddyAlloc` (its std wrapper) as the process allocator is in
//! `tests/global_alloc.rs`.
#![cfg(not(any(shuttle, loom)))]

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use magbuddy::{CurrentCpu, FreeError, GlobalHeap, HeapConfig, InitError, NoCpu};

/// Caller-owned RAM for one heap, never given back (as a kernel's).
fn ram(len: usize) -> *mut u8 {
    let layout = Layout::from_size_align(len, 1 << 20).unwrap();
    // SAFETY: non-zero size.
    let p = unsafe { std::alloc::alloc(layout) };
    assert!(!p.is_null());
    p
}

/// Every caller is CPU 0.
struct Cpu0;
impl CurrentCpu for Cpu0 {
    fn current() -> Option<usize> {
        Some(0)
    }
}

/// Allocates, fills with a pattern of `tag`, checks it and frees, `rounds`
/// times over `live` blocks of mixed sizes: a block handed to two callers
/// at once shows up as a pattern that is not the owner's.
fn churn<C: CurrentCpu>(heap: &GlobalHeap<C>, tag: u8, rounds: usize) {
    let sizes = [8usize, 24, 64, 200, 1000, 4096, 9000, 40000];
    let mut live: Vec<(*mut u8, Layout)> = Vec::new();
    for i in 0..rounds {
        let layout = Layout::from_size_align(sizes[(i * 7 + tag as usize) % 8], 8).unwrap();
        // SAFETY: non-zero size.
        let p = unsafe { heap.alloc(layout) };
        assert!(!p.is_null(), "allocation {i} of thread {tag} failed");
        // SAFETY: the block is ours and `layout.size()` long.
        unsafe { p.write_bytes(tag, layout.size()) };
        live.push((p, layout));
        if live.len() > 16 {
            let (q, l) = live.swap_remove(i % live.len());
            // SAFETY: ours, written above.
            let bytes = unsafe { std::slice::from_raw_parts(q, l.size()) };
            assert!(
                bytes.iter().all(|&b| b == tag),
                "block {q:?} of thread {tag} overwritten: handed out twice"
            );
            // SAFETY: allocated by `heap` with `l`.
            unsafe { heap.dealloc(q, l) };
        }
    }
    for (q, l) in live {
        // SAFETY: allocated by `heap` with `l`.
        unsafe { heap.dealloc(q, l) };
    }
}

#[test]
fn before_init_every_allocation_fails_and_init_twice_is_refused() {
    static H: GlobalHeap<Cpu0> = GlobalHeap::empty();
    let l = Layout::new::<u64>();
    // SAFETY: non-zero size.
    assert!(unsafe { H.alloc(l) }.is_null());
    let len = 8 << 20;
    // SAFETY: fresh memory, the heap's for good.
    assert_eq!(
        unsafe { H.add_region(ram(len), len) },
        Err(InitError::NotInitialized)
    );
    // SAFETY: as above.
    let heap = unsafe { H.init(ram(len), len, HeapConfig::new(2)) }.unwrap();
    // SAFETY: as above.
    assert_eq!(
        unsafe { H.init(ram(len), len, HeapConfig::new(2)) }.map(|_| ()),
        Err(InitError::AlreadyInitialized)
    );
    let free = heap.stats().free_bytes;
    // SAFETY: as above.
    unsafe { H.add_region(ram(len), len) }.unwrap();
    assert!(heap.stats().free_bytes > free);
    churn(&H, 1, 2000);
    heap.reclaim();
    heap.validate().unwrap();
}

#[test]
fn a_cpu_function_that_names_one_cpu_for_every_thread_shares_no_handle() {
    // Four threads all claim to be CPU 0 (a kernel that forgot to pin, or
    // a migration mid-call): one at a time gets the handle, the others the
    // shared path; no block is handed out twice.
    static H: GlobalHeap<Cpu0> = GlobalHeap::empty();
    let len = 64 << 20;
    // SAFETY: fresh memory, the heap's for good.
    let heap = unsafe { H.init(ram(len), len, HeapConfig::new(2)) }.unwrap();
    let free = heap.stats().free_bytes;
    std::thread::scope(|s| {
        for t in 0..4u8 {
            s.spawn(move || churn(&H, 10 + t, 20_000));
        }
    });
    heap.reclaim();
    heap.validate().unwrap();
    assert_eq!(heap.corruptions().0, 0);
    // Whatever CPU 0's handle caches is still counted as used; drain it.
    drop(heap.handle_for(1));
    assert!(heap.stats().free_bytes <= free);
}

thread_local! {
    /// The CPU a test thread says it is on, and whether a nested call (an
    /// "interrupt") should run inside the next allocation's CPU lookup.
    static CPU: Cell<Option<usize>> = const { Cell::new(None) };
}

static NESTED: AtomicUsize = AtomicUsize::new(0);

/// A CPU function that allocates and frees through the same heap before it
/// answers (a call nested in a call, before the outer one holds a handle;
/// a nested call while the handle is held is the race of the test above,
/// and the kernel demo's timer ticks allocate on the interrupted CPU).
struct Interrupting;
impl CurrentCpu for Interrupting {
    fn current() -> Option<usize> {
        interrupting_cpu()
    }
}

fn interrupting_cpu() -> Option<usize> {
    let cpu = CPU.with(Cell::get);
    if NESTED.fetch_add(1, Relaxed) % 3 == 0 {
        let l = Layout::from_size_align(48, 8).unwrap();
        // SAFETY: non-zero size; freed right away.
        unsafe {
            let p = INTR.alloc(l);
            assert!(!p.is_null());
            p.write_bytes(0xee, 48);
            INTR.dealloc(p, l);
        }
    }
    cpu
}

static INTR: GlobalHeap<Interrupting> = GlobalHeap::empty();

#[test]
fn calls_nested_in_the_cpu_function_are_served() {
    let len = 32 << 20;
    // SAFETY: fresh memory, the heap's for good.
    let heap = unsafe { INTR.init(ram(len), len, HeapConfig::new(2)) }.unwrap();
    std::thread::scope(|s| {
        for t in 0..2u8 {
            s.spawn(move || {
                CPU.with(|c| c.set(Some(t as usize)));
                churn(&INTR, 20 + t, 5000);
            });
        }
    });
    heap.reclaim();
    heap.validate().unwrap();
    assert!(NESTED.load(Relaxed) > 0);
}

/// A CPU index the heap has no slot for.
struct Cpu63;
impl CurrentCpu for Cpu63 {
    fn current() -> Option<usize> {
        Some(63)
    }
}

#[test]
fn cpus_beyond_the_heap_and_none_use_the_shared_path() {
    static FAR: GlobalHeap<Cpu63> = GlobalHeap::empty();
    static NONE: GlobalHeap<NoCpu> = GlobalHeap::empty();
    let len = 8 << 20;
    // SAFETY: fresh memory, the heap's for good.
    let heap = unsafe { FAR.init(ram(len), len, HeapConfig::new(2)) }.unwrap();
    churn(&FAR, 30, 3000);
    heap.validate().unwrap();
    assert!(heap.shared_stats().allocs > 0, "{:?}", heap.shared_stats());
    // SAFETY: as above.
    let heap = unsafe { NONE.init(ram(len), len, HeapConfig::new(2)) }.unwrap();
    churn(&NONE, 31, 3000);
    heap.validate().unwrap();
    assert!(heap.shared_stats().allocs > 0, "{:?}", heap.shared_stats());
}

#[test]
fn pinned_mode_serves_one_thread_per_cpu() {
    struct Own;
    impl CurrentCpu for Own {
        fn current() -> Option<usize> {
            CPU.with(Cell::get)
        }
    }
    // SAFETY: each test thread below names its own CPU and nobody else's.
    static P: GlobalHeap<Own> = unsafe { GlobalHeap::empty().pinned() };
    let len = 32 << 20;
    // SAFETY: fresh memory, the heap's for good.
    let heap = unsafe { P.init(ram(len), len, HeapConfig::new(2)) }.unwrap();
    std::thread::scope(|s| {
        for t in 0..2u8 {
            s.spawn(move || {
                CPU.with(|c| c.set(Some(t as usize)));
                churn(&P, 40 + t, 10_000);
            });
        }
    });
    heap.reclaim();
    heap.validate().unwrap();
}

#[test]
fn a_cpu_whose_slot_is_held_elsewhere_takes_the_shared_path_until_it_is_free() {
    // A call that cannot set its CPU's handle up (the heap's slot 0 is held
    // by a handle taken directly) must leave the slot without a handle, so
    // the fast path does not take it for a ready one; the first call after
    // the holder lets go sets the handle up, and later calls use it.
    static H: GlobalHeap<Cpu0> = GlobalHeap::empty();
    let len = 16 << 20;
    // SAFETY: fresh memory, the heap's for good.
    let heap = unsafe { H.init(ram(len), len, HeapConfig::new(1)) }.unwrap();
    let held = heap.handle_for(0).unwrap();
    churn(&H, 50, 3000);
    let shared = heap.shared_stats().allocs;
    assert!(shared >= 3000, "{:?}", heap.shared_stats());
    drop(held);
    churn(&H, 51, 3000);
    assert_eq!(
        heap.shared_stats().allocs,
        shared,
        "CPU 0's handle serves every call once it is free"
    );
    heap.reclaim();
    heap.validate().unwrap();
}

#[test]
fn a_refused_free_reaches_the_handler_with_its_error() {
    fn handler(e: FreeError) -> ! {
        std::panic::panic_any(e)
    }
    static H: GlobalHeap<Cpu0> = GlobalHeap::empty().on_bad_free(handler);
    let l = Layout::from_size_align(64, 8).unwrap();
    let mut x = 0u64;
    let foreign = &mut x as *mut u64 as *mut u8;
    // Before init every pointer is foreign.
    // SAFETY: the call is refused before the pointer is used.
    let e = std::panic::catch_unwind(|| unsafe { H.dealloc(foreign, l) }).unwrap_err();
    assert_eq!(
        *e.downcast::<FreeError>().unwrap(),
        FreeError::Foreign(foreign as usize)
    );
    let len = 8 << 20;
    // SAFETY: fresh memory, the heap's for good.
    unsafe { H.init(ram(len), len, HeapConfig::new(1)) }.unwrap();
    // SAFETY: non-zero size.
    let p = unsafe { H.alloc(l) };
    // SAFETY: allocated with `l`.
    unsafe { H.dealloc(p, l) };
    // SAFETY: a double free, refused before the pointer is used.
    let e = std::panic::catch_unwind(|| unsafe { H.dealloc(p, l) }).unwrap_err();
    assert_eq!(
        *e.downcast::<FreeError>().unwrap(),
        FreeError::DoubleFree(p as usize)
    );
    // SAFETY: as above.
    let e = std::panic::catch_unwind(|| unsafe { H.dealloc(foreign, l) }).unwrap_err();
    assert_eq!(
        *e.downcast::<FreeError>().unwrap(),
        FreeError::Foreign(foreign as usize)
    );
}

#[test]
fn the_pinned_fast_paths_refuse_double_interior_and_foreign_frees() {
    fn handler(e: FreeError) -> ! {
        std::panic::panic_any(e)
    }
    // SAFETY: only this test's thread uses `P`, and it names CPU 0.
    static P: GlobalHeap<Cpu0> = unsafe { GlobalHeap::empty().pinned().on_bad_free(handler) };
    let len = 16 << 20;
    // SAFETY: fresh memory, the heap's for good.
    let heap = unsafe { P.init(ram(len), len, HeapConfig::new(1)) }.unwrap();
    let refused = |p: *mut u8, l: Layout| {
        // SAFETY: a bad free, refused before the pointer is used.
        let e = std::panic::catch_unwind(|| unsafe { P.dealloc(p, l) }).unwrap_err();
        *e.downcast::<FreeError>().unwrap()
    };
    let mut x = 0u64;
    let foreign = &mut x as *mut u64 as *mut u8;
    // Objects of fitted and power-of-two classes, page blocks, a large block.
    for size in [8usize, 24, 100, 2048, 4096, 16384, 40000] {
        let l = Layout::from_size_align(size, 8).unwrap();
        // SAFETY: non-zero sizes; each block is freed once (the rest are
        // refused frees).
        unsafe {
            let p = P.alloc(l);
            let q = P.alloc(l);
            assert!(!p.is_null() && !q.is_null());
            let e = refused(p.add(size.min(16) / 2), l);
            assert!(matches!(e, FreeError::Interior { .. }), "{size} B: {e:?}");
            P.dealloc(p, l);
            assert!(
                matches!(
                    refused(p, l),
                    FreeError::DoubleFree(_) | FreeError::NotAllocated(_)
                ),
                "{size} B"
            );
            assert_eq!(refused(foreign, l), FreeError::Foreign(foreign as usize));
            P.dealloc(q, l);
        }
    }
    heap.reclaim();
    heap.validate().unwrap();
}
