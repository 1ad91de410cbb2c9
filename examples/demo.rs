//! The main job for now: magbuddy on several threads, then its statistics and
//! metadata cost at 64 MiB and 4 GiB.
//!
//! Run: `cargo run --release --example demo`

use std::alloc::{alloc, dealloc, Layout};
use std::time::Instant;

use magbuddy::{Heap, PAGE_SIZE};
use rand::{rngs::SmallRng, Rng, SeedableRng};

const MIB: usize = 1 << 20;

/// Page-aligned memory from the system allocator (mapped lazily by the OS).
struct Region(*mut u8, Layout);

impl Region {
    fn new(len: usize) -> Self {
        let layout = Layout::from_size_align(len, 2 * MIB).unwrap();
        // SAFETY: non-zero size.
        let p = unsafe { alloc(layout) };
        assert!(!p.is_null(), "cannot reserve {len} bytes");
        Self(p, layout)
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.0, self.1) }
    }
}

fn main() {
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 8);
    let region = Region::new(64 * MIB);
    // SAFETY: the region is ours and outlives the heap's use below.
    let heap = unsafe { Heap::init(region.0, 64 * MIB, threads) }.expect("64 MiB heap");
    println!("magbuddy demo: {threads} threads on a 64 MiB heap (page-level allocator)\n");
    let ops_per_thread = 200_000;
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                let mut h = heap.handle().expect("one handle per thread");
                let mut rng = SmallRng::seed_from_u64(t as u64);
                let mut live = Vec::new();
                for _ in 0..ops_per_thread {
                    if live.len() < 64 && rng.gen_bool(0.55) {
                        // Mostly single pages, sometimes up to 1 MiB.
                        let size = if rng.gen_bool(0.9) {
                            PAGE_SIZE
                        } else {
                            PAGE_SIZE << rng.gen_range(1..=8)
                        };
                        if let Some(p) = h.alloc(size) {
                            live.push(p);
                        }
                    } else if let Some(p) = live.pop() {
                        // SAFETY: allocated above, not used after this.
                        unsafe { h.free(p.as_ptr()) };
                    }
                }
                for p in live {
                    // SAFETY: as above.
                    unsafe { h.free(p.as_ptr()) };
                }
            });
        }
    });
    let elapsed = start.elapsed();
    let total = (threads * ops_per_thread) as f64;
    println!(
        "{} operations in {:.1} ms ({:.1} Mops/s over all threads; wall-clock, indicative only)\n",
        total,
        elapsed.as_secs_f64() * 1e3,
        total / elapsed.as_secs_f64() / 1e6
    );
    println!("per CPU slot:");
    println!("  cpu    allocs     frees  failed  CAS retries  area switches");
    for c in 0..threads {
        let s = heap.cpu_stats(c);
        println!(
            "  {c:>3} {:>9} {:>9} {:>7} {:>12} {:>14}",
            s.allocs, s.frees, s.failed_allocs, s.cas_retries, s.area_switches
        );
    }
    heap.validate().expect("consistent after the run");
    println!(
        "\nvalidate(): ok\n\n64 MiB heap after the run:\n{}\n",
        heap.stats()
    );

    let big = Region::new(4 << 30);
    // SAFETY: as above; only the metadata pages are touched.
    let heap4 = unsafe { Heap::init(big.0, 4 << 30, 8) }.expect("4 GiB heap");
    let t = Instant::now();
    let s = heap4.stats();
    println!(
        "4 GiB heap (8 CPUs), stats walk {:.1} ms:\n{s}",
        t.elapsed().as_secs_f64() * 1e3
    );
}
