//! The two `Vec` patterns of the kernel-ready issue, under magbuddy's
//! `MagbuddyAlloc` and under the system allocator in the same binary (a
//! dispatcher picks one at start), printed as times and their ratio:
//! 50 × `vec![0u8; 32 MiB]` (`alloc_zeroed`), and a `Vec<u8>` pushed byte by
//! byte to 64 MiB (`realloc`). A benchmark, not a test:
//!
//! ```sh
//! cargo run --release --features std --example vec_growth
//! ```
//!
//! `VEC_GROWTH_ONE=system` or `=magbuddy` pushes the `Vec` once under that
//! allocator and exits, for counting one allocator at a time:
//!
//! ```sh
//! VEC_GROWTH_ONE=magbuddy perf stat -r 10 -e task-clock,page-faults \
//!   target/release/examples/vec_growth
//! ```
//!
//! The pushed `Vec`, 2026-11-29, on a 2-core machine shared with other
//! jobs (load 3–7), so CPU time from `perf stat -r 10` over
//! `VEC_GROWTH_ONE` rather than wall time, 5 sets of before/after runs:
//! while every `realloc` copied, 116–148 ms and 33,940 page faults against
//! the system allocator's 79–104 ms and 17,555 (1.37–1.47×: each doubling
//! copied into fresh pages); with `Heap::resize_in_place` (a block grows
//! into its free buddy) and `Heap::alloc_to_grow` (a block that must move
//! goes where it can grow again), 77–110 ms and 17,730 page faults against
//! 83–122 ms (0.79–1.09×, 0.91–0.95× in the two quietest sets). The
//! wall-time ratio this example prints went from 0.95–1.24 to 0.69–0.97
//! over the same period, too noisy here to say more. Instructions
//! (callgrind, `VEC_GROWTH_ONE`): 551 M before, 543 M after, system 542 M;
//! the copies are few instructions, their cost was page faults and memory
//! traffic.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Instant;

use magbuddy::MagbuddyAlloc;

static MAGBUDDY: MagbuddyAlloc = MagbuddyAlloc::new(1 << 30, 8);
/// Which allocator serves the process from now on (set between phases,
/// when nothing allocated by the other one is live but what it keeps).
static USE_MAGBUDDY: AtomicBool = AtomicBool::new(false);

struct Either;

impl Either {
    /// The allocator new blocks come from now.
    fn now(&self) -> &'static dyn GlobalAlloc {
        if USE_MAGBUDDY.load(Relaxed) {
            &MAGBUDDY
        } else {
            &System
        }
    }

    /// The allocator that made `p`.
    fn of(&self, p: *mut u8) -> &'static dyn GlobalAlloc {
        if owns(p) {
            &MAGBUDDY
        } else {
            &System
        }
    }
}

// SAFETY: every block is freed (or resized) by the allocator that made it,
// which `of` tells from magbuddy's regions; each call forwards the caller's
// contract.
unsafe impl GlobalAlloc for Either {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { self.now().alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { self.now().alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: forwarded to the allocator that made `p`.
        unsafe { self.of(p).dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        // SAFETY: forwarded to the allocator that made `p` (a phase never
        // resizes a block of the other one).
        unsafe { self.of(p).realloc(p, l, n) }
    }
}

/// Whether magbuddy's heap holds `p` (its regions are one reservation here).
fn owns(p: *mut u8) -> bool {
    MAGBUDDY.heap().is_some_and(|h| h.contains(p))
}

#[global_allocator]
static A: Either = Either;

fn zeroed_vecs() -> f64 {
    let t = Instant::now();
    for _ in 0..50 {
        let v = black_box(vec![0u8; 32 << 20]);
        assert_eq!(v[12345], 0);
    }
    t.elapsed().as_secs_f64() * 1e3
}

fn pushed_vec() -> f64 {
    let t = Instant::now();
    let mut v = Vec::new();
    for i in 0..64usize << 20 {
        v.push(i as u8);
    }
    black_box(&v);
    t.elapsed().as_secs_f64() * 1e3
}

fn main() {
    let _ = MAGBUDDY.heap();
    if let Ok(which) = std::env::var("VEC_GROWTH_ONE") {
        USE_MAGBUDDY.store(which == "magbuddy", Relaxed);
        println!("Vec<u8> pushed to 64 MiB ({which}): {:.1} ms", pushed_vec());
        return;
    }
    for (name, f) in [
        ("50 x vec![0u8; 32 MiB]", zeroed_vecs as fn() -> f64),
        ("Vec<u8> pushed to 64 MiB", pushed_vec),
    ] {
        let (mut sys, mut mb) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            sys.push(f());
            USE_MAGBUDDY.store(true, Relaxed);
            mb.push(f());
            USE_MAGBUDDY.store(false, Relaxed);
        }
        let median = |mut t: Vec<f64>| {
            t.sort_by(f64::total_cmp);
            t[2]
        };
        let (sys, mb) = (median(sys), median(mb));
        println!(
            "{name}: system {sys:.1} ms, magbuddy {mb:.1} ms, ratio {:.2} (median of 5, interleaved)",
            mb / sys
        );
    }
}
