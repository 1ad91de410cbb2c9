//! 4 KiB alloc+free pairs (each block freed at once) through a per-thread
//! handle reached via a thread-local, as a program would reach it: issue 16's
//! page path. Counted with callgrind as the difference of two runs, so
//! start-up cancels, minus the same loop with no allocator (`empty`). One
//! block is allocated and kept first (see `pairs`).
//!
//! ```sh
//! cargo build --release -p magbuddy-bench --bin page_pairs
//! for m in magbuddy magbuddy-owned global buddy_system empty; do
//!   for n in 10000 30000; do valgrind --tool=callgrind --callgrind-out-file=cg.$m.$n \
//!     target/release/page_pairs $m $n; done
//! done
//! # instructions per pair = (total(cg.M.30000) - total(cg.M.10000)) / 20000,
//! # net of the loop: that of M minus that of `empty`
//! ```
//!
//! The modes:
//! * `magbuddy`: `Handle::alloc(4096)` and `Handle::free` on this thread's
//!   handle, a pointer in a `thread_local!` without destructor (set up on
//!   first use, dropped at thread exit by a second thread-local, as
//!   `MagbuddyAlloc` keeps its slot index).
//! * `magbuddy-owned`: the same with the handle itself in the thread-local
//!   (an `Option<Handle>`, which has a destructor, so each access goes
//!   through std's accessor: about twenty instructions more per call).
//! * `global`: `MagbuddyAlloc`'s `GlobalAlloc` with a 4096-byte,
//!   4096-aligned layout (its thread-slot index, then the slot's handle).
//! * `buddy_system`: `buddy_system_allocator::LockedHeap<33>`'s
//!   `GlobalAlloc` (one spinlock around its free lists), same layout.
//! * `empty`: the loop alone.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::{Cell, UnsafeCell};
use std::hint::black_box;
use std::ptr::null_mut;
use std::sync::OnceLock;

use magbuddy::{Handle, Heap, MagbuddyAlloc};

/// Bytes of every heap here (mapped lazily by the system allocator).
const HEAP: usize = 64 << 20;

/// The pair's request.
const PAGE: Layout = match Layout::from_size_align(4096, 4096) {
    Ok(l) => l,
    Err(_) => panic!("a valid layout"),
};

/// Memory for a heap, kept for the process's life.
fn ram() -> *mut u8 {
    let layout = Layout::from_size_align(HEAP, 4096).expect("a valid layout");
    // SAFETY: a non-zero size.
    let p = unsafe { std::alloc::alloc(layout) };
    assert!(!p.is_null(), "no memory for the heap");
    p
}

/// The magbuddy heap, set up on first use.
fn heap() -> &'static Heap {
    static H: OnceLock<usize> = OnceLock::new();
    // SAFETY: the memory is ours for good (never freed).
    let h =
        H.get_or_init(|| unsafe { Heap::init(ram(), HEAP, 4) }.expect("heap") as *const _ as usize);
    // SAFETY: `init` returned a heap that lives as long as its memory.
    unsafe { &*(*h as *const Heap) }
}

std::thread_local! {
    /// This thread's handle, or null before its first call. No destructor,
    /// so reading it is one thread-local load (as `MagbuddyAlloc` keeps
    /// its slot index).
    static HANDLE: Cell<*mut Handle<'static>> = const { Cell::new(null_mut()) };
    /// Registered at the first call: gives the handle back at thread exit.
    static RELEASE: Release = const { Release };
}

std::thread_local! {
    /// `magbuddy-owned`'s handle: in the thread-local itself, which then
    /// has a destructor, so std reaches it through its accessor (a call
    /// and a state check).
    static OWNED: UnsafeCell<Option<Handle<'static>>> = const { UnsafeCell::new(None) };
}

/// Runs `f` on this thread's `OWNED` handle.
#[inline(always)]
fn with_owned<R>(f: impl FnOnce(&mut Handle<'static>) -> R) -> R {
    OWNED.with(|h| {
        // SAFETY: only this thread reaches its thread-local, and `f` does
        // not re-enter `with_owned`.
        let h = unsafe { &mut *h.get() };
        f(h.get_or_insert_with(|| heap().handle().expect("a free CPU slot")))
    })
}

/// Drops this thread's handle at thread exit (its slot is free again).
struct Release;

impl Drop for Release {
    fn drop(&mut self) {
        let h = HANDLE.with(|c| c.replace(null_mut()));
        if !h.is_null() {
            // SAFETY: from `Box::into_raw` in `first_handle`, dropped once.
            drop(unsafe { Box::from_raw(h) });
        }
    }
}

/// Runs `f` on this thread's handle.
#[inline(always)]
fn with_handle<R>(f: impl FnOnce(&mut Handle<'static>) -> R) -> R {
    let mut h = HANDLE.with(Cell::get);
    if h.is_null() {
        h = first_handle();
    }
    // SAFETY: this thread's own handle, alive until thread exit; `f` does
    // not re-enter `with_handle`.
    f(unsafe { &mut *h })
}

/// This thread's first call: takes a handle and registers its release.
#[cold]
#[inline(never)]
fn first_handle() -> *mut Handle<'static> {
    let h = Box::into_raw(Box::new(heap().handle().expect("a free CPU slot")));
    HANDLE.with(|c| c.set(h));
    RELEASE.with(|_| ());
    h
}

static GLOBAL: MagbuddyAlloc = MagbuddyAlloc::new(HEAP, 4);

static BUDDY: buddy_system_allocator::LockedHeap<33> = buddy_system_allocator::LockedHeap::new();

/// `n` pairs of `alloc` and `free`, each block freed at once, after one
/// block allocated and kept: buddy_system's pair block is then the buddy of
/// that live one and never merges (its best case, the issue's figure).
#[inline(always)]
fn pairs(n: usize, mut alloc: impl FnMut() -> *mut u8, mut free: impl FnMut(*mut u8)) {
    black_box(alloc());
    for _ in 0..n {
        let p = alloc();
        assert!(!p.is_null(), "out of memory");
        free(black_box(p));
    }
}

#[inline(never)]
fn run_magbuddy(n: usize) {
    pairs(
        n,
        || with_handle(|h| h.alloc(PAGE.size())).map_or(null_mut(), |p| p.as_ptr()),
        // SAFETY: a live block of this heap, freed once.
        |p| with_handle(|h| unsafe { h.free(p) }),
    );
}

#[inline(never)]
fn run_owned(n: usize) {
    pairs(
        n,
        || with_owned(|h| h.alloc(PAGE.size())).map_or(null_mut(), |p| p.as_ptr()),
        // SAFETY: a live block of this heap, freed once.
        |p| with_owned(|h| unsafe { h.free(p) }),
    );
}

#[inline(never)]
fn run_global(a: &impl GlobalAlloc, n: usize) {
    pairs(
        n,
        // SAFETY: a non-zero size.
        || unsafe { a.alloc(PAGE) },
        // SAFETY: a live block of `a` with this layout, freed once.
        |p| unsafe { a.dealloc(p, PAGE) },
    );
}

#[inline(never)]
fn run_empty(n: usize) {
    pairs(
        n,
        || black_box(PAGE.align() as *mut u8),
        |p| {
            black_box(p);
        },
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: page_pairs magbuddy|magbuddy-owned|global|buddy_system|empty PAIRS";
    let mode = args.next().expect(usage);
    let n: usize = args.next().and_then(|s| s.parse().ok()).expect(usage);
    match mode.as_str() {
        "magbuddy" => run_magbuddy(n),
        "magbuddy-owned" => run_owned(n),
        "global" => run_global(&GLOBAL, n),
        "buddy_system" => {
            // SAFETY: the memory is the heap's for good.
            unsafe { BUDDY.lock().init(ram() as usize, HEAP) };
            run_global(&BUDDY, n);
        }
        "empty" => run_empty(n),
        _ => panic!("{usage}"),
    }
    println!("{mode}: {n} pairs");
}
