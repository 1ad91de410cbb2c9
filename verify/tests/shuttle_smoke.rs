//! The seam: the real heap, built with shuttle's atomics, explored by
//! shuttle's random scheduler. If the facade fell back to `core` atomics,
//! shuttle could not preempt inside a CAS loop and no retry would be seen.
#![cfg(shuttle)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use magbuddy::Geometry;
use verify::{schedules, OwnedHeap};

#[test]
fn two_threads_churn_pages_through_the_real_heap() {
    static RETRIES: AtomicU64 = AtomicU64::new(0);
    let g = Geometry::new(1, 2).unwrap(); // 2-page chunks, 4-page areas
    let n = schedules(1000);
    shuttle::check_random(
        move || {
            let owned = Arc::new(OwnedHeap::new(g, 2, 2));
            let free_before = owned.heap().stats().free_bytes;
            let threads: Vec<_> = (0..2)
                .map(|t| {
                    let owned = owned.clone();
                    shuttle::thread::spawn(move || {
                        // The shared path: both threads start at the same area
                        // and take page blocks, so they meet there wherever the
                        // metadata's size puts the first usable page (thread 1
                        // once took a 2 KiB object, whose 16 KiB slab went to
                        // another area when the metadata grew).
                        let heap = owned.heap();
                        for k in [0usize, 1, 0] {
                            let size = (4096 << k) << t;
                            let p = heap.alloc(size).expect("room for both threads");
                            unsafe { heap.free(p.as_ptr()) };
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            let heap = owned.heap();
            heap.reclaim();
            heap.validate().unwrap();
            assert_eq!(heap.stats().free_bytes, free_before);
            let r = heap.shared_stats().cas_retries;
            RETRIES.fetch_add(r, Ordering::Relaxed);
        },
        n,
    );
    let r = RETRIES.load(Ordering::Relaxed);
    println!("shuttle smoke: {n} schedules, {r} CAS retries observed");
    assert!(
        r > 0,
        "shuttle never preempted inside a CAS loop: is the facade wired?"
    );
}
