//! The fitted classes (`alloc_fit`): sizes, alignment, placement, bad
//! frees, validation after churn, and exhaustion, on handles and on the
//! shared path.

mod common;

use common::{Mem, MIB};
use magbuddy::{FreeError, Heap, HeapConfig, MAX_SMALL};

const SLAB: usize = 16 << 10;

fn heap(mem: &Mem, cpus: usize) -> &Heap {
    unsafe { Heap::init_with(mem.ptr(), mem.len(), HeapConfig::new(cpus)) }.unwrap()
}

/// Every distinct block size `alloc_fit` gives for objects aligned to 8.
fn class_sizes(heap: &Heap) -> Vec<usize> {
    let mut v: Vec<usize> = (1..=MAX_SMALL).map(|s| heap.fit_size(s, 8)).collect();
    v.dedup();
    v
}

#[test]
fn there_are_28_classes_at_most_a_quarter_apart() {
    let mem = Mem::new(8 * MIB);
    let heap = heap(&mem, 1);
    let sizes = class_sizes(heap);
    assert_eq!(sizes.len(), magbuddy::SMALL_CLASSES);
    assert_eq!(sizes[..4], [8, 16, 24, 32]);
    for w in sizes.windows(2).filter(|w| w[0] >= 32) {
        assert!(w[1] * 4 <= w[0] * 5, "{} -> {}", w[0], w[1]);
    }
    for size in 32..=MAX_SMALL {
        assert!(heap.fit_size(size, 8) * 4 <= size * 5, "{size} B");
    }
}

#[test]
fn every_size_gets_its_class_aligned_on_both_paths() {
    let mem = Mem::new(32 * MIB);
    let heap = heap(&mem, 1);
    let mut h = heap.handle().unwrap();
    for align in [1, 8, 16, 32, 64, 128, 4096] {
        for size in (1..=MAX_SMALL + 64).chain([4096, 5000, 20_000]) {
            let want = heap.fit_size(size, align);
            assert!(want >= size);
            let on_handle = h.alloc_fit(size, align).unwrap().as_ptr();
            let shared = heap.alloc_fit(size, align).unwrap().as_ptr();
            for p in [on_handle, shared] {
                assert_eq!(heap.usable_size(p), Ok(want), "{size} B, align {align}");
                assert_eq!(p as usize % align, 0, "{size} B, align {align}");
            }
            unsafe {
                h.free(on_handle);
                heap.free(shared);
            }
        }
    }
    assert_eq!(heap.fit_size(24, 8), 24);
    assert_eq!(heap.fit_size(24, 16), 32);
    assert_eq!(heap.fit_size(700, 16), 768);
    assert_eq!(heap.fit_size(96, 32), 96);
    assert_eq!(heap.fit_size(96, 64), 128);
    drop(h);
    heap.validate().unwrap();
}

#[test]
fn objects_of_a_class_are_disjoint_and_inside_their_slab() {
    let mem = Mem::new(32 * MIB);
    let heap = heap(&mem, 1);
    let mut h = heap.handle().unwrap();
    for s in class_sizes(heap) {
        let n = 3 * SLAB / s;
        let mut v: Vec<usize> = (0..n)
            .map(|_| h.alloc_fit(s, 8).unwrap().as_ptr() as usize)
            .collect();
        for &p in &v {
            unsafe { (p as *mut u8).write_bytes(0xa5, s) };
        }
        v.sort_unstable();
        for w in v.windows(2) {
            assert!(
                w[0] + s <= w[1],
                "class {s}: {:#x} overlaps {:#x}",
                w[0],
                w[1]
            );
        }
        for &p in &v {
            let base = p & !(SLAB - 1);
            assert_eq!((p - base) % s, 0, "class {s}: object start");
            assert!(p - base + s <= SLAB, "class {s}: inside its slab");
        }
        for p in v {
            unsafe { h.free(p as *mut u8) };
        }
    }
    drop(h);
    heap.validate().unwrap();
}

/// Frees that must be refused, with `expected`, on a handle and on the
/// shared path, changing nothing.
fn refused(heap: &Heap, p: usize, expected: FreeError) {
    let mut h = heap.handle().unwrap();
    assert_eq!(unsafe { h.try_free(p as *mut u8) }, Err(expected), "handle");
    drop(h);
    assert_eq!(
        unsafe { heap.try_free(p as *mut u8) },
        Err(expected),
        "shared"
    );
    assert_eq!(heap.usable_size(p as *const u8), Err(expected), "size");
    heap.validate().unwrap();
}

#[test]
fn bad_frees_of_fitted_objects_are_refused_with_their_error() {
    let mem = Mem::new(16 * MIB);
    let heap = heap(&mem, 1);
    for s in class_sizes(heap) {
        let p = heap.alloc_fit(s, 8).unwrap().as_ptr() as usize;
        let base = p & !(SLAB - 1);
        for off in [1, 4, 8, s / 2, s - 8]
            .into_iter()
            .filter(|&o| o > 0 && o < s)
        {
            let e = FreeError::Interior {
                ptr: p + off,
                block: p,
            };
            refused(heap, p + off, e);
        }
        // The slab's last object: never carved.
        let cap = (0..=SLAB / s)
            .rev()
            .find(|&n| {
                n * s
                    + if SLAB / s <= 64 {
                        0
                    } else {
                        n.div_ceil(32) * 4
                    }
                    <= SLAB
            })
            .unwrap();
        let last = base + (cap - 1) * s;
        if last != p {
            refused(heap, last, FreeError::NotAllocated(last));
        }
        // Past the capacity: the free bitmap or slack.
        if cap * s < SLAB {
            refused(heap, base + cap * s, FreeError::Metadata(base + cap * s));
        }
        let mut h = heap.handle().unwrap();
        unsafe { h.free(p as *mut u8) };
        drop(h);
        refused(heap, p, FreeError::DoubleFree(p));
    }
}

#[test]
fn double_free_into_a_magazine_is_refused() {
    let mem = Mem::new(16 * MIB);
    let heap = heap(&mem, 1);
    let mut h = heap.handle().unwrap();
    for s in [24, 48, 160, 700, 1792] {
        let p = h.alloc_fit(s, 8).unwrap().as_ptr();
        unsafe { h.free(p) };
        let e = unsafe { h.try_free(p) }.unwrap_err();
        assert_eq!(e, FreeError::DoubleFree(p as usize), "{s} B");
        assert_eq!(heap.usable_size(p), Err(e));
    }
}

#[test]
fn mixed_class_churn_on_two_threads_validates() {
    let mem = Mem::new(64 * MIB);
    let heap = heap(&mem, 2);
    let sizes = class_sizes(heap);
    std::thread::scope(|sc| {
        for cpu in 0..2 {
            let sizes = &sizes;
            sc.spawn(move || {
                let mut h = heap.handle_for(cpu).unwrap();
                let mut live: Vec<(usize, usize)> = Vec::new();
                let mut x = 0x9e37_79b9u32 + cpu as u32;
                for i in 0..40_000 {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    if live.len() < 500 && (x & 3 != 0 || live.is_empty()) {
                        let s = sizes[x as usize % sizes.len()] - (x as usize >> 20) % 8;
                        let p = if i % 5 == 0 {
                            heap.alloc_fit(s, 8)
                        } else {
                            h.alloc_fit(s, 8)
                        };
                        let p = p.unwrap().as_ptr();
                        unsafe { p.write_bytes(cpu as u8, s) };
                        live.push((p as usize, s));
                    } else {
                        let (p, s) = live.swap_remove(x as usize % live.len());
                        let b = unsafe { std::slice::from_raw_parts(p as *const u8, s) };
                        assert!(b.iter().all(|&v| v == cpu as u8), "object overwritten");
                        unsafe { h.free(p as *mut u8) };
                    }
                }
                for (p, _) in live {
                    unsafe { heap.free(p as *mut u8) };
                }
            });
        }
    });
    heap.validate().unwrap();
}

/// Allocates fitted objects of mixed sizes on a handle until none is left.
fn fill(heap: &Heap) -> (magbuddy::Handle<'_>, Vec<*mut u8>) {
    let sizes = [24, 48, 96, 160, 700, 1280];
    let mut h = heap.handle().unwrap();
    let mut v = Vec::new();
    while let Some(p) = h.alloc_fit(sizes[v.len() % sizes.len()], 16) {
        v.push(p.as_ptr());
    }
    (h, v)
}

#[test]
fn exhaustion_with_fitted_sizes_and_recovery() {
    let mem = Mem::new(8 * MIB);
    let heap = heap(&mem, 1);
    let (h, v) = fill(heap);
    assert!(
        heap.alloc_fit(24, 8).is_none(),
        "the shared path is out too"
    );
    let bytes: usize = v.iter().map(|&p| heap.usable_size(p).unwrap()).sum();
    assert!(bytes > 6 * MIB, "only {bytes} B served");
    for p in &v {
        unsafe { heap.free(*p) };
    }
    drop(h);
    heap.validate().unwrap();
    heap.reclaim();
    let (h, again) = fill(heap);
    assert!(
        again.len() * 10 >= v.len() * 9,
        "{} then {}",
        v.len(),
        again.len()
    );
    for p in again {
        unsafe { heap.free(p) };
    }
    drop(h);
    heap.validate().unwrap();
}
