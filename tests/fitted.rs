//! The fitted classes (`alloc_fit`): sizes, alignment, placement, bad
//! frees, validation after churn, and exhaustion, on handles and on the
//! shared path.

mod common;

use common::{Mem, MIB};
use magbuddy::{FreeError, Heap, HeapConfig, MAX_SMALL};

const SLAB: usize = 16 << 10;
const PAGE: usize = 4096;
/// Largest fitted object (the multi-page classes end at 5120 B).
const MAX_FIT: usize = 5120;

fn heap(mem: &Mem, cpus: usize) -> &Heap {
    unsafe { Heap::init_with(mem.ptr(), mem.len(), HeapConfig::new(cpus)) }.unwrap()
}

/// Every distinct object size `alloc_fit` gives for objects aligned to 8
/// (page blocks, multiples of 4 KiB, left out).
fn class_sizes(heap: &Heap) -> Vec<usize> {
    let mut v: Vec<usize> = (1..=2 * MAX_FIT)
        .map(|s| heap.fit_size(s, 8))
        .filter(|b| b % PAGE != 0)
        .collect();
    v.dedup();
    v
}

#[test]
fn there_are_31_classes_at_most_a_quarter_apart_up_to_2_kib() {
    let mem = Mem::new(8 * MIB);
    let heap = heap(&mem, 1);
    let sizes = class_sizes(heap);
    assert_eq!(sizes.len(), magbuddy::SMALL_CLASSES);
    assert_eq!(sizes[..4], [8, 16, 24, 32]);
    assert_eq!(sizes[sizes.len() - 4..], [2048, 2560, 3072, 5120]);
    for w in sizes.windows(2).filter(|w| w[0] >= 32 && w[1] <= MAX_SMALL) {
        assert!(w[1] * 4 <= w[0] * 5, "{} -> {}", w[0], w[1]);
    }
    for size in 32..=MAX_SMALL {
        assert!(heap.fit_size(size, 8) * 4 <= size * 5, "{size} B");
    }
    // Above 2 KiB: an object class where its full slab costs less per
    // object than the page block, else the block.
    for (size, want) in [(2049, 2560), (3072, 3072), (3073, 4096), (4097, 5120)] {
        assert_eq!(heap.fit_size(size, 16), want, "{size} B");
    }
    assert_eq!(heap.fit_size(5121, 16), 8192);
    assert_eq!(heap.fit_size(2049, 4096), 4096);
}

/// Requested-to-served bytes at 16-byte alignment (malloc's), every size
/// of a range counted once, before the multi-page classes (a page block
/// above 2 KiB) and now, served counted as the class size and as the
/// slab's bytes per object once its slab is full. Prints the figures
/// quoted in `papers/paper.md` §4.5 (`-- --nocapture`).
#[test]
fn multi_page_classes_serve_fewer_bytes() {
    let mem = Mem::new(8 * MIB);
    let heap = heap(&mem, 1);
    let slab_cost = |b: usize| if b % PAGE == 0 { b } else { SLAB / (SLAB / b) };
    for (lo, hi) in [
        (8, 128),
        (8, 1000),
        (1, 2048),
        (2049, 4096),
        (2049, 8192),
        (4097, 8192),
    ] {
        let req: usize = (lo..=hi).sum();
        let old = |s: usize| {
            if s <= MAX_SMALL {
                heap.fit_size(s, 16)
            } else {
                heap.block_size(s)
            }
        };
        let sum = |f: &dyn Fn(usize) -> usize| (lo..=hi).map(f).sum::<usize>() as f64 / req as f64;
        let (before, before_slab) = (sum(&old), sum(&|s| slab_cost(old(s))));
        let now = sum(&|s| heap.fit_size(s, 16));
        let now_slab = sum(&|s| slab_cost(heap.fit_size(s, 16)));
        println!(
            "{lo}-{hi} B: served/requested {before:.3} before, {now:.3} now; \
             with slab tails {before_slab:.3} before, {now_slab:.3} now"
        );
        assert!(now <= before && now_slab <= before_slab, "{lo}-{hi} B");
    }
    for s in [4104, 4368] {
        let b = heap.fit_size(s, 16);
        println!(
            "{s} B (sqlite3's buffers): {b} B class, {} B of slab",
            slab_cost(b)
        );
        assert!(slab_cost(b) < 8192);
    }
}

#[test]
fn every_size_gets_its_class_aligned_on_both_paths() {
    let mem = Mem::new(32 * MIB);
    let heap = heap(&mem, 1);
    let mut h = heap.handle().unwrap();
    for align in [1, 8, 16, 32, 64, 128, 512, 1024, 2048, 4096] {
        for size in (1..=MAX_FIT + 64).chain([8192, 8193, 20_000]) {
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
    assert_eq!(heap.fit_size(2100, 1024), 3072);
    assert_eq!(heap.fit_size(2100, 2048), 4096);
    assert_eq!(heap.fit_size(4500, 1024), 5120);
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
        // The last: the next page boundary, where a multi-page object
        // spans pages of its slab.
        for off in [1, 4, 8, s / 2, s - 8, PAGE - p % PAGE]
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
    for s in [24, 48, 160, 700, 1792, 2100, 3000, 4104, 5120] {
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
    let sizes = [24, 48, 96, 160, 700, 1280, 2500, 3000, 4368];
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

/// Two threads free the same multi-page-class objects at once: exactly one
/// free of each succeeds (shared/shared in every build; through handles
/// only `checked` promises it, README), and afterwards no object is handed
/// out twice.
#[test]
fn racing_frees_of_multi_page_objects_have_one_winner() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    let both_shared = [false, false];
    let pairs: &[[bool; 2]] = if cfg!(feature = "checked") {
        &[both_shared, [true, false], [true, true]]
    } else {
        &[both_shared]
    };
    let mem = Mem::new(32 * MIB);
    let heap = heap(&mem, 2);
    for &on_handle in pairs {
        for size in [2100, 3000, 4368] {
            let v: Vec<usize> = (0..600)
                .map(|_| heap.alloc_fit(size, 16).unwrap().as_ptr() as usize)
                .collect();
            let wins: Vec<AtomicUsize> = v.iter().map(|_| AtomicUsize::new(0)).collect();
            let next = [AtomicUsize::new(0), AtomicUsize::new(0)];
            std::thread::scope(|sc| {
                for t in 0..2 {
                    let (v, wins, next) = (&v, &wins, &next);
                    sc.spawn(move || {
                        let mut h = on_handle[t].then(|| heap.handle_for(t).unwrap());
                        for (i, &p) in v.iter().enumerate() {
                            // Keep the two threads at most one object apart.
                            next[t].store(i, SeqCst);
                            while next[1 - t].load(SeqCst) + 1 < i {
                                std::hint::spin_loop();
                            }
                            let r = match h.as_mut() {
                                Some(h) => unsafe { h.try_free(p as *mut u8) },
                                None => unsafe { heap.try_free(p as *mut u8) },
                            };
                            if r.is_ok() {
                                wins[i].fetch_add(1, SeqCst);
                            }
                        }
                        next[t].store(usize::MAX / 2, SeqCst);
                    });
                }
            });
            for (i, w) in wins.iter().enumerate() {
                assert_eq!(w.load(SeqCst), 1, "{size} B {on_handle:?}: object {i}");
            }
            let mut again: Vec<usize> = (0..1200)
                .map(|_| heap.alloc_fit(size, 16).unwrap().as_ptr() as usize)
                .collect();
            again.sort_unstable();
            let n = again.len();
            again.dedup();
            assert_eq!(again.len(), n, "{size} B {on_handle:?}: handed out twice");
            for p in again {
                unsafe { heap.free(p as *mut u8) };
            }
        }
    }
    assert_eq!(heap.corruptions().0, 0);
    heap.validate().unwrap();
}
