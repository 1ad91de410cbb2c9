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
    let objs: Vec<_> = (0..1000).map(|_| h.alloc(512).unwrap()).collect();
    for p in objs {
        unsafe { h.free(p.as_ptr()) };
    }
    // Frees past a magazine's capacity took slow paths, which publish.
    let held = heap.cpu_stats(h.cpu()).cached_bytes;
    assert!(held > 0 && held as usize <= heap.cpu_cache_cap(), "{held}");
    // Slow paths of another class recount that class and keep this one's.
    let objs: Vec<_> = (0..1000).map(|_| h.alloc(64).unwrap()).collect();
    for p in objs {
        unsafe { h.free(p.as_ptr()) };
    }
    let both = heap.cpu_stats(h.cpu()).cached_bytes;
    assert!(
        both > held && both as usize <= heap.cpu_cache_cap(),
        "{held} then {both}"
    );
    assert!(heap.slabs_in_use() >= 1);
    let cpu = h.cpu();
    drop(h);
    assert_eq!(heap.cpu_stats(cpu).cached_bytes, 0, "release flushes");
    heap.reclaim();
    assert_eq!(heap.slabs_in_use(), 0);
    heap.validate().unwrap();
}

/// Which free a bad pointer is handed to.
#[derive(Clone, Copy, Debug)]
enum Path {
    Handle,
    Shared,
}

/// The three kinds of block: a slab object, a block of a page magazine and
/// a block straight from the buddy tree.
const KINDS: [(&str, usize); 3] = [
    ("object", 64),
    ("page block", PAGE),
    ("tree block", 64 << 10),
];

/// Frees `ptr` on `path`; must fail with `expected`, name the pointer in the
/// error and its message, leave `usable_size` refusing it the same way and
/// change nothing the heap reports.
fn refused_on(
    heap: &Heap,
    h: &mut magbuddy::Handle,
    path: Path,
    ptr: *mut u8,
    expected: FreeError,
) {
    let what = format!("{path:?} free of {ptr:?}");
    assert_eq!(heap.usable_size(ptr), Err(expected), "usable_size, {what}");
    let before = heap.stats();
    let err = match path {
        Path::Handle => unsafe { h.try_free(ptr) },
        Path::Shared => unsafe { heap.try_free(ptr) },
    }
    .unwrap_err();
    assert_eq!(err, expected, "{what}");
    assert_eq!(err.ptr(), ptr as usize);
    assert!(err.to_string().contains(&format!("{:#x}", ptr as usize)));
    let after = heap.stats();
    assert_eq!(before.free_bytes, after.free_bytes, "{what}");
    assert_eq!(before.live_blocks, after.live_blocks, "{what}");
    assert_eq!(heap.corruptions().0, 0, "{what}");
}

/// Every bad free, in the default build, on the handle path and the shared
/// path, for each kind of block: foreign, metadata, interior, never
/// allocated, past a slab's objects, a sequential double free (the block
/// then sits in a magazine or is back in the tree), and a stale free by the
/// other path. Each is refused with an error naming the pointer, and later
/// allocations never hand a block out twice.
#[test]
fn every_bad_free_on_every_path_and_kind_is_refused() {
    let mem = Mem::new(32 * MIB);
    let heap = heap(&mem);
    let mut h = heap.handle_for(0).unwrap();
    let mut outside = 0u64;
    let foreign = &mut outside as *mut u64 as *mut u8;
    for path in [Path::Handle, Path::Shared] {
        for (kind, size) in KINDS {
            let block = match path {
                Path::Handle => h.alloc(size),
                Path::Shared => heap.alloc(size),
            }
            .unwrap()
            .as_ptr();
            refused_on(
                heap,
                &mut h,
                path,
                foreign,
                FreeError::Foreign(foreign as usize),
            );
            refused_on(
                heap,
                &mut h,
                path,
                mem.ptr(),
                FreeError::Metadata(mem.ptr() as usize),
            );
            // Interior pointers at 8 B steps through the first page, then at
            // each further page.
            let interior = (8..size.min(PAGE))
                .step_by(8)
                .chain((PAGE..size).step_by(PAGE));
            for off in interior {
                let p = unsafe { block.add(off) };
                let e = FreeError::Interior {
                    ptr: p as usize,
                    block: block as usize,
                };
                refused_on(heap, &mut h, path, p, e);
            }
            if kind == "object" {
                // The slab's last object is never carved this early; the
                // slot after it holds the slab's free bitmap.
                let base = block as usize & !(16 * 1024 - 1);
                let last = (base + 16 * 1024 - 2 * size) as *mut u8;
                refused_on(
                    heap,
                    &mut h,
                    path,
                    last,
                    FreeError::NotAllocated(last as usize),
                );
                let tail = (base + 16 * 1024 - size) as *mut u8;
                refused_on(heap, &mut h, path, tail, FreeError::Metadata(tail as usize));
            }
            match path {
                Path::Handle => unsafe { h.free(block) },
                Path::Shared => unsafe { heap.free(block) },
            }
            // Freed: in a magazine (handle, up to 16 KiB), on its slab's list
            // (shared object), or back in the tree.
            let again =
                if kind == "tree block" || (kind == "page block" && matches!(path, Path::Shared)) {
                    FreeError::NotAllocated(block as usize)
                } else {
                    FreeError::DoubleFree(block as usize)
                };
            refused_on(heap, &mut h, path, block, again);
            let other = match path {
                Path::Handle => Path::Shared,
                Path::Shared => Path::Handle,
            };
            refused_on(heap, &mut h, other, block, again);
            // The block is handed out once more, and only once.
            let mut seen = std::collections::HashSet::new();
            let mut got = Vec::new();
            for _ in 0..64 {
                let p = h.alloc(size).unwrap().as_ptr();
                assert!(seen.insert(p as usize), "{kind} {p:?} handed out twice");
                got.push(p);
            }
            for p in got {
                unsafe { h.free(p) };
            }
        }
    }
    drop(h);
    heap.reclaim();
    assert_eq!(heap.corruptions().0, 0);
    heap.validate().unwrap();
}
