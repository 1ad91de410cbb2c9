//! Multi-threaded, exhaustion and metadata tests of the spinlock baseline.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::vec::Vec;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::tests::{extent, random_size, Buf};
use super::{LockMode, SpinHeap};
use crate::PAGE_SIZE;

/// Each thread runs random mixed alloc/free (16 B .. 1 MiB), stamping every
/// block with its own tag at both ends and checking the stamps on free, so a
/// block handed to two threads at once shows up as a wrong stamp.
fn churn(heap: &SpinHeap, threads: usize, ops: usize) -> usize {
    let ooms = AtomicUsize::new(0);
    thread::scope(|s| {
        for t in 0..threads {
            let ooms = &ooms;
            s.spawn(move || {
                let mut rng = SmallRng::seed_from_u64(t as u64 * 7919);
                let mut live: Vec<(usize, usize, u64)> = Vec::new();
                for i in 0..ops {
                    if live.len() < 400 && (rng.gen_bool(0.55) || live.is_empty()) {
                        let mut size = random_size(&mut rng, 1 << 20).max(16);
                        // At most 6 live blocks above 64 KiB per thread: the
                        // expected live set is about 32 MiB, so with these
                        // fixed seeds an OOM on 64 MiB means a leak or a bug.
                        if live.iter().filter(|b| b.1 > 64 << 10).count() >= 6 {
                            size = size.min(64 << 10);
                        }
                        let Some(p) = heap.alloc(size) else {
                            ooms.fetch_add(1, Ordering::Relaxed);
                            continue;
                        };
                        let p = p.as_ptr() as usize;
                        assert_eq!(p % extent(size), 0);
                        let tag = (t as u64) << 56 | i as u64;
                        // SAFETY: `p .. p + size` is our live block, size >= 16
                        // and `p` is 8-aligned.
                        unsafe {
                            (p as *mut u64).write(tag);
                            ((p + size - 8) as *mut u8)
                                .cast::<[u8; 8]>()
                                .write(tag.to_le_bytes());
                        }
                        live.push((p, size, tag));
                    } else {
                        let (p, size, tag) = live.swap_remove(rng.gen_range(0..live.len()));
                        // SAFETY: still our live block.
                        let (a, b) = unsafe {
                            let b = ((p + size - 8) as *const [u8; 8]).read();
                            ((p as *const u64).read(), u64::from_le_bytes(b))
                        };
                        assert_eq!((a, b), (tag, tag), "block {p:#x} was overwritten");
                        // SAFETY: live block, dropped from `live`.
                        unsafe { heap.free(p as *mut u8) };
                    }
                }
                for (p, _, _) in live {
                    // SAFETY: live blocks.
                    unsafe { heap.free(p as *mut u8) };
                }
            });
        }
    });
    ooms.into_inner()
}

/// Bytes of the allocated buddy blocks (slabs included).
fn live_bytes(s: &crate::Stats) -> usize {
    (0..crate::ORDERS)
        .map(|k| s.live_blocks[k] as usize * (PAGE_SIZE << k))
        .sum()
}

#[test]
fn four_threads_mixed_sizes_64mib() {
    let buf = Buf::new(64 << 20);
    let heap = buf.heap(0, LockMode::Spin);
    let free0 = heap.stats().free_bytes;
    let ooms = churn(heap, 4, 20_000);
    assert_eq!(
        ooms, 0,
        "64 MiB must hold 4 x 400 live blocks (6 of them <= 1 MiB)"
    );
    heap.validate().unwrap();
    let s = heap.stats();
    // Only spare slabs (one per class at most) are still allocated.
    assert!(s.live_blocks.iter().sum::<u64>() <= 9);
    assert_eq!(s.free_bytes + live_bytes(&s), free0);
}

/// Small enough for miri's race detector (`cargo +nightly miri test`).
#[test]
fn two_threads_small_heap() {
    let buf = Buf::new(4 << 20);
    let heap = buf.heap(0, LockMode::Spin);
    churn(heap, 2, if cfg!(miri) { 150 } else { 5_000 });
    heap.validate().unwrap();
}

#[test]
fn oversubscribed_threads_spin_then_yield() {
    let buf = Buf::new(64 << 20);
    let heap = buf.heap(0, LockMode::SpinThenYield(std::thread::yield_now));
    churn(heap, 8, 4_000);
    heap.validate().unwrap();
}

#[test]
fn exhaust_free_all_then_largest_block() {
    let buf = Buf::new(4 << 20);
    let heap = buf.heap(100, LockMode::Spin);
    let largest = heap.stats().largest_free_order().unwrap();
    let mut rng = SmallRng::seed_from_u64(11);
    let mut live = Vec::new();
    // Fill with mixed sizes until even 8 bytes fail.
    loop {
        let size = random_size(&mut rng, 256 << 10);
        match heap.alloc(size) {
            Some(p) => live.push(p),
            None if heap.alloc(8).is_none() => break,
            None => {}
        }
    }
    assert_eq!(heap.stats().free_bytes, 0);
    heap.validate().unwrap();
    // Free in random order.
    while !live.is_empty() {
        let p = live.swap_remove(rng.gen_range(0..live.len()));
        // SAFETY: live block.
        unsafe { heap.free(p.as_ptr()) };
    }
    heap.validate().unwrap();
    // Spare slabs are given back when the buddy allocator runs short.
    let p = heap
        .alloc(PAGE_SIZE << largest)
        .expect("largest block after free-all");
    heap.validate().unwrap();
    // SAFETY: live block.
    unsafe { heap.free(p.as_ptr()) };
    let s = heap.stats();
    assert_eq!(s.free_bytes + live_bytes(&s), s.usable_bytes);
    assert!(
        s.live_blocks.iter().sum::<u64>() <= 9,
        "only spare slabs are left"
    );
    heap.validate().unwrap();
}

#[test]
fn metadata_at_64mib() {
    let buf = Buf::new(64 << 20);
    let heap = buf.heap(0, LockMode::Spin);
    let s = heap.stats();
    std::println!("{s}");
    assert_eq!(s.region_bytes, 64 << 20);
    assert_eq!(
        core::mem::size_of::<SpinHeap>(),
        2048,
        "module docs say 2 KiB"
    );
    assert!(s.metadata_percent() < 0.7, "{}", s.metadata_percent());
    // One 24-byte descriptor per usable page.
    let descs = s
        .metadata
        .iter()
        .find(|e| e.0 == "page descriptors")
        .unwrap()
        .1;
    assert_eq!(descs, s.usable_bytes / PAGE_SIZE * 24);
    // Carving keeps whole aligned blocks: the biggest is at least 16 MiB.
    assert!(s.largest_free_order().unwrap() >= 12);
    heap.validate().unwrap();
}
