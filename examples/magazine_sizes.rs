//! Magazine size against producer/consumer cost: one thread allocates
//! objects through its handle and passes them in batches to another thread,
//! which frees them through its own handle, so every object crosses CPUs
//! (magazine → depot → magazine, or slab return lists). Prints ns per object,
//! best of 3, for 2 – 32 rounds per magazine (`HeapConfig::magazine_rounds`).
//!
//! Run: `cargo run --release --example magazine_sizes`

use std::alloc::{alloc, Layout};
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use magbuddy::{Heap, HeapConfig};

const HEAP: usize = 256 << 20;
const BATCH: usize = 256;

/// Wall time per object of one producer/consumer run on a fresh heap.
fn run(rounds: usize, size: usize, objects: usize) -> f64 {
    let layout = Layout::from_size_align(HEAP, 2 << 20).unwrap();
    // SAFETY: non-zero size. Leaked on purpose: the heap borrows it for good.
    let mem = unsafe { alloc(layout) };
    assert!(!mem.is_null());
    let config = HeapConfig {
        magazine_rounds: Some(rounds),
        ..HeapConfig::new(2)
    };
    // SAFETY: the memory is ours, used by nobody else, never freed.
    let heap = unsafe { Heap::init_with(mem, HEAP, config) }.expect("heap");
    let (tx, rx) = sync_channel::<Vec<usize>>(4);
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut h = heap.handle_for(0).unwrap();
            for _ in 0..objects / BATCH {
                let batch = (0..BATCH)
                    .map(|_| h.alloc(size).expect("memory").as_ptr() as usize)
                    .collect();
                tx.send(batch).unwrap();
            }
            drop(tx);
        });
        s.spawn(|| {
            let mut h = heap.handle_for(1).unwrap();
            for batch in rx {
                for p in batch {
                    // SAFETY: allocated by the producer, freed once here.
                    unsafe { h.free(p as *mut u8) };
                }
            }
        });
    });
    start.elapsed().as_nanos() as f64 / objects as f64
}

fn main() {
    println!("| rounds | 64 B (ns/object) | 4 KiB (ns/object) |");
    println!("|-------:|-----------------:|------------------:|");
    for rounds in [2, 4, 8, 16, 32] {
        let best = |size, n| {
            (0..3)
                .map(|_| run(rounds, size, n))
                .fold(f64::MAX, f64::min)
        };
        println!(
            "| {rounds} | {:.1} | {:.1} |",
            best(64, 1 << 20),
            best(4096, 1 << 17)
        );
    }
}
