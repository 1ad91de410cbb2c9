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
    println!(
        "magbuddy demo: {threads} threads on a 64 MiB heap, the seed's mix \
         (85 % 8-128 B, 13 % 4 KiB, rare larger blocks), a third of the blocks freed by another thread\n"
    );
    let ops_per_thread = 1_000_000;
    let mailboxes: Vec<std::sync::Mutex<Vec<usize>>> =
        (0..threads).map(|_| Default::default()).collect();
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let mailboxes = &mailboxes;
            s.spawn(move || {
                let mut h = heap.handle_for(t).expect("one handle per thread");
                let mut rng = SmallRng::seed_from_u64(t as u64);
                let mut live: Vec<usize> = Vec::new();
                for i in 0..ops_per_thread {
                    if live.len() < 1000 && rng.gen_bool(0.5) {
                        let size = match rng.gen_range(0..100) {
                            0..=84 => rng.gen_range(8..=128),
                            85..=97 => PAGE_SIZE,
                            _ => rng.gen_range(129..=(PAGE_SIZE << 6)),
                        };
                        let Some(p) = h.alloc(size) else { continue };
                        if rng.gen_ratio(1, 3) {
                            mailboxes[(t + 1) % threads]
                                .lock()
                                .unwrap()
                                .push(p.as_ptr() as usize);
                        } else {
                            live.push(p.as_ptr() as usize);
                        }
                    } else if let Some(p) = live.pop() {
                        // SAFETY: allocated above, not used after this.
                        unsafe { h.free(p as *mut u8) };
                    }
                    if i % 256 == 0 {
                        live.append(&mut mailboxes[t].lock().unwrap());
                    }
                }
                live.append(&mut mailboxes[t].lock().unwrap());
                for p in live {
                    // SAFETY: as above.
                    unsafe { h.free(p as *mut u8) };
                }
            });
        }
    });
    let elapsed = start.elapsed();
    for mb in &mailboxes {
        for p in mb.lock().unwrap().drain(..) {
            // SAFETY: allocated by a worker and not used any more.
            unsafe { heap.free(p as *mut u8) };
        }
    }
    let total = (threads * ops_per_thread) as f64;
    println!(
        "{total} operations in {:.1} ms ({:.1} Mops/s over all threads; wall-clock, indicative only)\n",
        elapsed.as_secs_f64() * 1e3,
        total / elapsed.as_secs_f64() / 1e6
    );
    println!("per CPU slot (handles released: caches flushed):");
    println!("  cpu    allocs     frees  mag misses  depot exch  remote frees  abandoned  adopted  CAS retries");
    for c in 0..threads {
        let s = heap.cpu_stats(c);
        println!(
            "  {c:>3} {:>9} {:>9} {:>11} {:>11} {:>13} {:>10} {:>8} {:>12}",
            s.allocs,
            s.frees,
            s.magazine_misses,
            s.depot_exchanges,
            s.remote_frees,
            s.abandoned_slabs,
            s.adopted_slabs,
            s.cas_retries
        );
    }
    println!(
        "per-CPU cache cap {} KiB; slabs in use {}; double frees found {}",
        heap.cpu_cache_cap() >> 10,
        heap.slabs_in_use(),
        heap.corruptions().0
    );
    heap.reclaim();
    println!("after reclaim(): slabs in use {}", heap.slabs_in_use());
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
