//! Exhaust, free everything, and get the largest block back; odd ranges;
//! several regions; a 4 GiB heap.

mod common;

use common::{Mem, MIB, PAGE};
use magbuddy::{FreeError, Geometry, Heap, HeapConfig};

fn largest_block(heap: &Heap) -> usize {
    PAGE << heap.stats().largest_free_order().unwrap()
}

fn exhaust_and_recover(heap: &Heap) {
    let initial = heap.stats();
    let largest = largest_block(heap);
    let mut live = Vec::new();
    // Every size class until nothing fits, largest first so nothing is left.
    for shift in (0..=largest.trailing_zeros() - 12).rev() {
        while let Some(p) = heap.alloc(PAGE << shift) {
            live.push(p.as_ptr());
        }
    }
    assert_eq!(heap.stats().free_bytes, 0, "exhausted");
    assert!(heap.alloc(1).is_none());
    heap.validate().unwrap();
    for p in live {
        unsafe { heap.free(p) };
    }
    heap.validate().unwrap();
    let after = heap.stats();
    assert_eq!(after.free_bytes, initial.free_bytes);
    assert_eq!(
        after.free_blocks, initial.free_blocks,
        "same maximal free blocks as after init"
    );
    let big = heap.alloc(largest).expect("largest block available again");
    unsafe { heap.free(big.as_ptr()) };
}

#[test]
fn exhaust_free_all_then_largest_block() {
    let mem = Mem::new(64 * MIB);
    let heap = unsafe { Heap::init(mem.ptr(), mem.len(), 4) }.unwrap();
    assert!(largest_block(heap) >= 16 * MIB);
    exhaust_and_recover(heap);
}

#[test]
fn odd_starts_and_lengths() {
    let mem = Mem::aligned(12 * MIB, 2 * MIB);
    for (offset, len) in [
        (1, 5 * MIB + 1),
        (4095, 7 * MIB - 3),
        (MIB + 17, 9 * MIB),
        (3, 3 * MIB + 4093),
    ] {
        let start = unsafe { mem.ptr().add(offset) };
        let heap = unsafe { Heap::init(start, len, 3) }.unwrap();
        heap.validate().unwrap();
        let s = heap.stats();
        // Metadata of these small 3-CPU heaps is mostly magazines (two per
        // CPU per cache class, 31 classes with the fitted ones, 80 KiB):
        // 3.4 % of 3 MiB.
        assert!(
            s.usable_bytes <= len && s.usable_bytes >= len - len / 25 - 2 * PAGE,
            "{s}"
        );
        exhaust_and_recover(heap);
        // Every block lies inside the caller's range.
        let mut h = heap.handle().unwrap();
        while let Some(p) = h.alloc(PAGE) {
            let p = p.as_ptr() as usize;
            assert!(p >= start as usize && p + PAGE <= start as usize + len);
        }
    }
}

#[test]
fn small_geometry_regions_and_add_region() {
    let g = Geometry::new(1, 3).unwrap(); // 2-page chunks, 8-page areas
    let mem = Mem::new(256 * 1024);
    let more = Mem::new(200 * 1024 + 123);
    let heap = unsafe {
        Heap::init_with(
            mem.ptr(),
            mem.len(),
            HeapConfig {
                cpus: 2,
                geometry: g,
                ..HeapConfig::new(2)
            },
        )
    }
    .unwrap();
    let before = heap.stats().usable_bytes;
    unsafe { heap.add_region(more.ptr().add(5), more.len() - 5) }.unwrap();
    assert!(heap.stats().usable_bytes > before);
    heap.validate().unwrap();
    exhaust_and_recover(heap);
    // Blocks come from both regions.
    let mut from_more = 0;
    while let Some(p) = heap.alloc(PAGE) {
        from_more += more.range().contains(&(p.as_ptr() as usize)) as usize;
    }
    assert!(from_more > 0);
}

#[test]
fn four_gib_heap_initialises_in_metadata_time() {
    let len = 4usize << 30;
    // Mapped lazily by the OS. Aligned to 2 GiB: blocks are aligned to
    // their size in the address space, so at a random start the 4 GiB
    // region may hold no free 2 GiB block once its metadata is placed.
    let mem = Mem::aligned(len, 2 << 30);
    let heap = unsafe { Heap::init(mem.ptr(), len, 8) }.unwrap();
    let s = heap.stats();
    assert!(s.metadata_percent() < 0.5, "{s}");
    assert_eq!(
        s.largest_free_order(),
        Some(31 - 12),
        "a 2 GiB block fits (metadata takes the rest)"
    );
    let big = heap.alloc(1 << 31).expect("2 GiB block");
    let mut h = heap.handle().unwrap();
    let pages: Vec<_> = (0..1000).map(|_| h.alloc(PAGE).unwrap()).collect();
    heap.validate().unwrap();
    for p in pages {
        unsafe { h.free(p.as_ptr()) };
    }
    unsafe { heap.free(big.as_ptr()) };
    heap.validate().unwrap();
    println!("4 GiB heap: {s}");
}

/// A heap of `cpus` CPU slots on `mem` built with `HeapConfig::zeroed` (the
/// memory reads as zeros).
fn zeroed_heap(mem: &Mem, cpus: usize) -> &Heap {
    let config = HeapConfig {
        zeroed: true,
        ..HeapConfig::new(cpus)
    };
    // SAFETY: the test's own zeroed memory, alive as long as the heap.
    unsafe { Heap::init_with(mem.ptr(), mem.len(), config) }.unwrap()
}

#[test]
fn zeroed_region_skips_zero_metadata_and_still_validates() {
    let len = 4usize << 30;
    let mem = Mem::zeroed(len, 2 * MIB);
    let heap = zeroed_heap(&mem, 4);
    heap.validate().unwrap();
    let initial = heap.stats();
    let mut h = heap.handle().unwrap();
    let small: Vec<_> = (0..5000).map(|i| h.alloc(8 + i % 2040).unwrap()).collect();
    let pages: Vec<_> = (0..500).map(|_| h.alloc(PAGE).unwrap()).collect();
    let big = heap.alloc(1 << 30).expect("1 GiB block");
    heap.validate().unwrap();
    for p in small.into_iter().chain(pages) {
        unsafe { h.free(p.as_ptr()) };
    }
    unsafe { heap.free(big.as_ptr()) };
    drop(h);
    heap.reclaim();
    heap.validate().unwrap();
    assert_eq!(heap.stats().free_bytes, initial.free_bytes);
}

#[test]
fn zeroed_region_leaves_unclaimed_cpu_slots_untouched() {
    let len = 64 * MIB;
    let mem = Mem::zeroed(len, 2 * MIB);
    let heap = zeroed_heap(&mem, 64);
    // The heap header, 64 slots and the magazine pool come first.
    let head = || {
        // SAFETY: the heap's range; only read, while no handle is held.
        let bytes = unsafe { std::slice::from_raw_parts(mem.ptr(), 256 << 10) };
        bytes.iter().filter(|&&b| b != 0).count()
    };
    let blank = head();
    // Constructed, each slot points at the sentinel magazine per class:
    // 64 constructed slots are about 13 KiB of non-zero bytes.
    assert!(blank < 4096, "{blank} non-zero bytes before any claim");
    for cpu in 0..64 {
        let mut h = heap.handle_for(cpu).unwrap();
        let p = h.alloc(64).unwrap();
        unsafe { h.free(p.as_ptr()) };
    }
    let claimed = head();
    assert!(
        claimed > blank + (8 << 10),
        "{blank} then {claimed}: claimed slots are constructed"
    );
    // Claimed again: constructed once, state kept.
    let mut h = heap.handle_for(63).unwrap();
    let p = h.alloc(64).unwrap();
    unsafe { h.free(p.as_ptr()) };
    drop(h);
    heap.reclaim();
    heap.validate().unwrap();
}

#[test]
fn a_fresh_slab_touches_only_the_pages_its_carving_reached() {
    let len = 64 * MIB;
    let mem = Mem::zeroed(len, 2 * MIB);
    let heap = zeroed_heap(&mem, 1);
    let mut h = heap.handle().unwrap();
    // 64 B objects: one refill carves at most a magazine (32 objects, 2 KiB),
    // all on the slab's first page; the free bitmap sits in its last page.
    let first = h.alloc(64).unwrap().as_ptr();
    let base = first as usize & !(16 * 1024 - 1);
    let zero = |page: usize| {
        // SAFETY: pages of a live slab of ours, only read.
        let bytes = unsafe { std::slice::from_raw_parts((base + page * PAGE) as *const u8, PAGE) };
        bytes.iter().all(|&b| b == 0)
    };
    assert!(
        zero(1) && zero(2),
        "pages the carving did not reach are untouched"
    );
    // A free of an object there (never handed out) is refused.
    let far = (base + 2 * PAGE) as *mut u8;
    assert_eq!(
        unsafe { h.try_free(far) },
        Err(FreeError::NotAllocated(far as usize))
    );
    assert_eq!(
        unsafe { heap.try_free(far) },
        Err(FreeError::NotAllocated(far as usize))
    );
    heap.validate().unwrap();
    // Carving on opens them; every object is handed out once.
    let more: Vec<_> = (0..200).map(|_| h.alloc(64).unwrap().as_ptr()).collect();
    assert!(more.iter().all(|&p| p as usize & !(16 * 1024 - 1) == base));
    assert!(more.contains(&far), "carved and handed out");
    assert_eq!(heap.usable_size(far), Ok(64));
    heap.validate().unwrap();
    let mut all = more.clone();
    all.push(first);
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 201);
    for p in all {
        unsafe { h.free(p) };
    }
    drop(h);
    heap.reclaim();
    heap.validate().unwrap();
}
