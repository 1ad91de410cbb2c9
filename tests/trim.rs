//! `Heap::trim` racing allocations: the callback overwrites every area it
//! is handed (as `MADV_DONTNEED` would zero it), so an area handed over
//! while any block in it is live shows up as a corrupted block. Once with a
//! thread calling `trim`, once with the heap trimming by itself inside the
//! frees (`Heap::set_auto_trim`).
#![cfg(not(any(shuttle, loom)))]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

use magbuddy::{Heap, HeapConfig};

/// Bytes the auto-trim callback was handed (a `fn` cannot capture).
static AUTO_HANDED: AtomicUsize = AtomicUsize::new(0);

/// Overwrites an area trim holds, as discarding its pages would.
fn scribble(p: *mut u8, len: usize) {
    // SAFETY: trim holds the area while we write.
    unsafe { p.write_bytes(0xcc, len) };
    AUTO_HANDED.fetch_add(len, Relaxed);
}

/// A 64 MiB heap with 2 CPUs on fresh memory.
fn heap() -> &'static Heap {
    let len = 64 << 20;
    let layout = std::alloc::Layout::from_size_align(len, 1 << 20).unwrap();
    // SAFETY: non-zero size; the heap's for the rest of the test.
    let mem = unsafe { std::alloc::alloc(layout) };
    // SAFETY: fresh memory, ours alone.
    unsafe { Heap::init_with(mem, len, HeapConfig::new(2)) }.unwrap()
}

/// Sets the flag when dropped: a churn thread that panics still stops the
/// trimmer (which would otherwise spin for ever).
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Relaxed);
    }
}

/// Two threads allocate, write, check and free blocks of 64 B - 2 MiB
/// while `trimmer` runs on a third until they are done; then the heap must
/// be whole.
fn race(heap: &'static Heap, trimmer: impl FnOnce(&AtomicBool) + Send) {
    let free = heap.stats().free_bytes;
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for t in 0..2u8 {
            let stop = &stop;
            s.spawn(move || {
                let _stop = StopOnDrop(stop);
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
            });
        }
        s.spawn(|| trimmer(&stop));
    });
    heap.reclaim();
    heap.validate().unwrap();
    assert_eq!(heap.stats().free_bytes, free);
}

#[test]
fn trim_never_hands_over_an_area_with_a_live_block() {
    let heap = heap();
    race(heap, |stop| {
        let mut handed = 0;
        while !stop.load(Relaxed) {
            heap.reclaim();
            // SAFETY (of the write): trim holds the area while we write.
            handed += heap.trim(|p, len| unsafe { p.write_bytes(0xcc, len) });
        }
        assert!(handed > 0, "trim handed nothing over");
    });
}

#[test]
fn auto_trim_never_hands_over_an_area_with_a_live_block() {
    let heap = heap();
    heap.set_auto_trim(16 << 20, scribble);
    race(heap, |_| {});
    assert!(
        AUTO_HANDED.load(Relaxed) > 0,
        "auto trim handed nothing over"
    );
}

/// Bytes the second auto-trim callback was handed.
static CHANGED_HANDED: AtomicUsize = AtomicUsize::new(0);

fn count_changed(_p: *mut u8, len: usize) {
    CHANGED_HANDED.fetch_add(len, Relaxed);
}

#[test]
fn auto_trim_hands_over_only_areas_freed_since_it_last_looked() {
    let heap = heap();
    heap.set_auto_trim(4 << 20, count_changed);
    let mut h = heap.handle_for(0).unwrap();
    for round in 1..=3 {
        let p = h.alloc(4 << 20).unwrap().as_ptr();
        // SAFETY: allocated above, freed once; the free passes the mark.
        unsafe { h.free(p) };
        // The 4 areas of the block, not the other 50-odd free ones, which
        // were never used or were handed over by an earlier trim.
        assert_eq!(CHANGED_HANDED.load(Relaxed), round * (4 << 20));
    }
    // `Heap::trim` still looks at every area.
    assert!(heap.trim(|_, _| {}) > 32 << 20);
}
