//! `Heap::trim` racing allocations: the callback overwrites every area it
//! is handed (as `MADV_DONTNEED` would zero it), so an area handed over
//! while any block in it is live shows up as a corrupted block.
#![cfg(not(any(shuttle, loom)))]

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use magbuddy::{Heap, HeapConfig};

#[test]
fn trim_never_hands_over_an_area_with_a_live_block() {
    let len = 64 << 20;
    let layout = std::alloc::Layout::from_size_align(len, 1 << 20).unwrap();
    // SAFETY: non-zero size; the heap's for the rest of the test.
    let mem = unsafe { std::alloc::alloc(layout) };
    // SAFETY: fresh memory, ours alone.
    let heap: &Heap = unsafe { Heap::init_with(mem, len, HeapConfig::new(2)) }.unwrap();
    let free = heap.stats().free_bytes;
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for t in 0..2u8 {
            let stop = &stop;
            s.spawn(move || {
                let mut h = heap.handle_for(t as usize).unwrap();
                let sizes = [64usize, 4096, 40_000, 300_000, 2 << 20];
                for round in 0..3000 {
                    let size = sizes[(round + t as usize) % sizes.len()];
                    let p = h.alloc(size).unwrap().as_ptr();
                    // SAFETY: a live block of `size` bytes, ours.
                    let bytes = unsafe {
                        p.write_bytes(0x5a ^ t, size);
                        std::slice::from_raw_parts(p, size)
                    };
                    std::thread::yield_now();
                    assert!(
                        bytes.iter().all(|&b| b == 0x5a ^ t),
                        "block {p:?} of {size} B overwritten: trim handed its area over"
                    );
                    // SAFETY: allocated above, freed once.
                    unsafe { h.free(p) };
                }
                stop.store(true, Relaxed);
            });
        }
        s.spawn(|| {
            let mut handed = 0;
            while !stop.load(Relaxed) {
                heap.reclaim();
                // SAFETY (of the write): trim holds the area while we write.
                handed += heap.trim(|p, len| unsafe { p.write_bytes(0xcc, len) });
            }
            assert!(handed > 0, "trim handed nothing over");
        });
    });
    heap.reclaim();
    heap.validate().unwrap();
    assert_eq!(heap.stats().free_bytes, free);
}
