//! DESIGN §5: bad input gets a clear error and changes nothing.

mod common;

use common::{Mem, MIB, PAGE};
use magbuddy::{FreeError, Heap, HeapConfig, InitError, MAX_CPUS};

fn heap(mem: &Mem) -> &Heap {
    unsafe { Heap::init(mem.ptr(), mem.len(), 2) }.unwrap()
}

/// Runs `f`, which must fail with `expected`, and checks that the heap's
/// state is byte-for-byte the same in stats and still valid afterwards.
fn refused(heap: &Heap, ptr: *mut u8, expected: FreeError) {
    // A size query refuses what free refuses.
    assert_eq!(heap.usable_size(ptr), Err(expected));
    let before = heap.stats();
    let err = unsafe { heap.try_free(ptr) }.unwrap_err();
    assert_eq!(err, expected);
    assert_eq!(err.ptr(), ptr as usize);
    assert!(
        err.to_string().contains(&format!("{:#x}", ptr as usize)),
        "message names the pointer: {err}"
    );
    let after = heap.stats();
    assert_eq!(before.free_bytes, after.free_bytes);
    assert_eq!(before.live_blocks, after.live_blocks);
    assert_eq!(before.free_blocks, after.free_blocks);
    heap.validate().unwrap();
}

#[test]
fn free_of_null_is_a_no_op() {
    let mem = Mem::new(8 * MIB);
    let heap = heap(&mem);
    assert_eq!(unsafe { heap.try_free(std::ptr::null_mut()) }, Ok(()));
    unsafe { heap.free(std::ptr::null_mut()) };
    heap.validate().unwrap();
}

#[test]
fn foreign_interior_free_page_double_and_metadata_frees_are_reported() {
    let mem = Mem::new(8 * MIB);
    let heap = heap(&mem);
    let a = heap.alloc(3 * PAGE).unwrap().as_ptr(); // 4 pages
                                                    // Memory the heap never handed out: the block after `a` (nothing else
                                                    // is allocated yet, so it is free).
    let free_page = unsafe { a.add(4 * PAGE) };
    refused(heap, free_page, FreeError::NotAllocated(free_page as usize));
    let b = heap.alloc(100).unwrap().as_ptr();
    let mut outside = 0u64;
    refused(
        heap,
        &mut outside as *mut u64 as *mut u8,
        FreeError::Foreign(&mut outside as *mut u64 as usize),
    );
    let interior = unsafe { a.add(PAGE) };
    refused(
        heap,
        interior,
        FreeError::Interior {
            ptr: interior as usize,
            block: a as usize,
        },
    );
    let odd = unsafe { b.add(8) };
    refused(
        heap,
        odd,
        FreeError::Interior {
            ptr: odd as usize,
            block: b as usize,
        },
    );
    refused(heap, mem.ptr(), FreeError::Metadata(mem.ptr() as usize));
    unsafe { heap.free(a) };
    // A second free of the same block: the block is free memory now.
    refused(heap, a, FreeError::NotAllocated(a as usize));
    unsafe { heap.free(b) };
    // A slab object carries a free mark once it is back in its slab.
    refused(heap, b, FreeError::DoubleFree(b as usize));
}

#[test]
fn usable_size_is_the_block_size_of_every_kind() {
    let mem = Mem::new(16 * MIB);
    let heap = heap(&mem);
    let free_at_start = heap.stats().free_bytes;
    let mut h = heap.handle().unwrap();
    for size in [
        1,
        8,
        9,
        100,
        2048,
        2049,
        4096,
        5000,
        16 * 1024,
        100_000,
        2 * MIB,
        4 * MIB,
    ] {
        let want = heap.block_size(size);
        let shared = heap.alloc(size).unwrap().as_ptr();
        let cached = h.alloc(size).unwrap().as_ptr();
        assert_eq!(heap.usable_size(shared), Ok(want), "shared path, {size} B");
        assert_eq!(heap.usable_size(cached), Ok(want), "handle, {size} B");
        unsafe {
            heap.free(shared);
            h.free(cached);
        }
    }
    drop(h);
    heap.reclaim();
    assert_eq!(heap.stats().free_bytes, free_at_start);
    heap.validate().unwrap();
}

#[test]
#[should_panic(expected = "is not allocated")]
fn panicking_free_names_the_problem() {
    let mem = Mem::new(8 * MIB);
    let heap = heap(&mem);
    let a = heap.alloc(PAGE).unwrap().as_ptr();
    unsafe {
        heap.free(a);
        heap.free(a);
    }
}

#[test]
fn zero_and_oversize_requests_return_none_at_once() {
    let mem = Mem::new(8 * MIB);
    let heap = heap(&mem);
    let before = heap.stats();
    assert!(heap.alloc(0).is_none());
    assert!(heap.alloc(16 * MIB).is_none(), "larger than the heap");
    assert!(heap.alloc(usize::MAX).is_none());
    assert!(heap.alloc(usize::MAX / 2 + 2).is_none());
    let mut h = heap.handle().unwrap();
    assert!(h.alloc(0).is_none());
    assert!(h.alloc(1 << 40).is_none());
    drop(h);
    assert_eq!(heap.stats().free_bytes, before.free_bytes);
    heap.validate().unwrap();
}

#[test]
fn unusable_regions_are_refused_with_an_error() {
    let mem = Mem::new(4 * MIB);
    let p = mem.ptr();
    assert_eq!(
        unsafe { Heap::init(std::ptr::null_mut(), MIB, 1) }.err(),
        Some(InitError::NullStart)
    );
    assert_eq!(
        unsafe { Heap::init(p, 4 * MIB, 0) }.err(),
        Some(InitError::BadCpuCount(0))
    );
    assert_eq!(
        unsafe { Heap::init(p, 4 * MIB, MAX_CPUS + 1) }.err(),
        Some(InitError::BadCpuCount(MAX_CPUS + 1))
    );
    assert_eq!(
        unsafe { Heap::init(usize::MAX as *mut u8, 2, 1) }.err(),
        Some(InitError::Overflow)
    );
    let min = Heap::min_region_len(HeapConfig::new(1));
    match unsafe { Heap::init(p, 64 * 1024, 1) } {
        Err(InitError::TooSmall { len, min: m }) => assert_eq!((len, m), (64 * 1024, min)),
        other => panic!("expected TooSmall, got {:?}", other.map(|_| ())),
    }
    let msg = InitError::TooSmall { len: 1, min }.to_string();
    assert!(msg.contains("too small"), "{msg}");
}

#[test]
fn min_region_len_is_enough_at_every_alignment() {
    let config = HeapConfig::new(4);
    let min = Heap::min_region_len(config);
    let mem = Mem::aligned(min + 2 * MIB, 2 * MIB);
    // Start offsets that put the area boundary at every awkward place.
    for offset in [0, 8, 4096, MIB - 8, MIB - 4096 + 8, MIB + 24, 2 * MIB - 8] {
        let start = unsafe { mem.ptr().add(offset) };
        let heap = unsafe { Heap::init_with(start, min, config) }.unwrap();
        assert!(
            heap.alloc(MIB).is_some(),
            "offset {offset}: one whole area is usable"
        );
        heap.validate().unwrap();
    }
    assert!(min < 3 * MIB, "documented minimum stays small: {min}");
}

#[test]
fn cache_gauge_counts_what_a_live_handle_holds() {
    let mem = Mem::new(16 * MIB);
    let heap = heap(&mem);
    let mut h = heap.handle().unwrap();
    let objs: Vec<_> = (0..1000).map(|_| h.alloc(64).unwrap()).collect();
    for p in objs {
        unsafe { h.free(p.as_ptr()) };
    }
    // Frees past a magazine's capacity took slow paths, which publish.
    let held = heap.cpu_stats(h.cpu()).cached_bytes;
    assert!(held > 0 && held as usize <= heap.cpu_cache_cap(), "{held}");
    assert!(heap.slabs_in_use() >= 1);
    let cpu = h.cpu();
    drop(h);
    assert_eq!(heap.cpu_stats(cpu).cached_bytes, 0, "release flushes");
    heap.reclaim();
    assert_eq!(heap.slabs_in_use(), 0);
    heap.validate().unwrap();
}
