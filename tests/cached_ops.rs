//! The handle's call-free fast operations (`Handle::alloc_fit_cached`,
//! `Handle::free_cached` and `Handle::free_overflow`, what the C shim's
//! malloc and free are built on): every object class and cached page class,
//! magazines filled past their capacity, and bad input. Neither may hand one
//! block to two owners, lose one, or change anything when it declines.

mod common;

use std::collections::HashSet;

use common::{Mem, MIB};
use magbuddy::{Handle, Heap, MAX_CACHED, MAX_SMALL};

/// Frees `p` the way the shim does: `free_cached`, then `free_overflow`
/// for a full magazine. Returns what `free_cached` said.
fn free_like_shim(h: &mut Handle<'_>, p: *mut u8) -> bool {
    // SAFETY: callers pass blocks of this heap (live or not: the fast
    // path must decline what is not live, changing nothing).
    match unsafe { h.free_cached(p) } {
        Ok(done) => done,
        Err(full) => {
            // SAFETY: from this handle.
            unsafe { h.free_overflow(full) };
            true
        }
    }
}

/// A one-CPU heap in `mem`.
fn heap_in(mem: &Mem) -> &Heap {
    // SAFETY: `mem` is ours and outlives the heap's use (the borrow).
    unsafe { Heap::init(mem.ptr(), mem.len(), 1) }.unwrap()
}

/// Frees live block `p` of `size` bytes as the shim does: the fast path,
/// else (objects of `checked` builds only, which it always declines) the
/// general one.
fn free_live(h: &mut Handle<'_>, p: *mut u8, size: usize) {
    if !free_like_shim(h, p) {
        assert!(
            cfg!(feature = "checked") && size <= MAX_SMALL,
            "size {size}: fast free declined"
        );
        // SAFETY: a live block of this heap.
        unsafe { h.try_free(p) }.unwrap();
    }
}

/// Sizes that cover every fitted object class and every cached page class.
fn sizes() -> Vec<usize> {
    let mut v: Vec<usize> = (1..=MAX_SMALL / 8).map(|k| k * 8).collect();
    let mut s = 4096;
    while s <= MAX_CACHED {
        v.push(s);
        s *= 2;
    }
    v
}

#[test]
fn round_trips_through_full_magazines_hand_out_each_block_once() {
    let mem = Mem::new(64 * MIB);
    let heap = heap_in(&mem);
    let mut h = heap.handle().unwrap();
    for size in sizes() {
        // More than a magazine's worth, so frees overflow and allocations
        // miss (then `alloc_fit` refills).
        let n = 300;
        let blocks: Vec<*mut u8> = (0..n)
            .map(|_| h.alloc_fit(size, 16).unwrap().as_ptr())
            .collect();
        let distinct: HashSet<usize> = blocks.iter().map(|&p| p as usize).collect();
        assert_eq!(distinct.len(), n, "size {size}: a block handed out twice");
        for &p in &blocks {
            free_live(&mut h, p, size);
        }
        for &p in &blocks {
            // A second free is declined by the fast path with nothing changed,
            // and refused by the general one.
            assert!(!free_like_shim(&mut h, p), "size {size}: freed twice");
            // SAFETY: a free block of this heap; the heap reports it.
            assert!(
                unsafe { h.try_free(p) }.is_err(),
                "size {size}: double free accepted"
            );
        }
        // The blocks come back, each once: from the magazine while it has
        // any, then through `alloc_fit`.
        let mut again = HashSet::new();
        for _ in 0..n {
            let p = match h.alloc_fit_cached(size, 16) {
                Some(p) => p,
                None => h.alloc_fit(size, 16).unwrap(),
            };
            assert!(heap.usable_size(p.as_ptr()).unwrap() >= size);
            assert!(
                again.insert(p.as_ptr() as usize),
                "size {size}: handed out twice"
            );
        }
        for p in again {
            free_live(&mut h, p as *mut u8, size);
        }
    }
    drop(h);
    heap.validate().unwrap();
}

#[test]
fn declines_change_nothing() {
    let mem = Mem::new(64 * MIB);
    let heap = heap_in(&mem);
    let mut h = heap.handle().unwrap();
    // An empty magazine: nothing cached yet, so nothing to pop.
    assert_eq!(h.alloc_fit_cached(48, 16), None);
    assert_eq!(h.alloc_fit_cached(0, 16), None, "size 0 is not fitted");
    assert_eq!(h.alloc_fit_cached(MAX_SMALL + 1, 16), None, "not fitted");
    let obj = h.alloc_fit(100, 16).unwrap().as_ptr();
    let page = h.alloc_fit(8192, 16).unwrap().as_ptr();
    let large = h.alloc_fit(256 << 10, 16).unwrap().as_ptr();
    let mut outside = [0u64; 4];
    let bad: [*mut u8; 6] = [
        core::ptr::null_mut(),
        // SAFETY (all three): addresses inside live blocks, only compared.
        unsafe { obj.add(16) },
        unsafe { page.add(4096) },
        unsafe { page.add(8) },
        large,
        outside.as_mut_ptr().cast(),
    ];
    let before = heap.stats().free_bytes;
    for p in bad {
        // SAFETY: bad input, which the fast path declines.
        assert!(matches!(unsafe { h.free_cached(p) }, Ok(false)), "{p:p}");
    }
    assert_eq!(heap.stats().free_bytes, before);
    // The blocks are still live: their one free each succeeds.
    for p in [obj, page, large] {
        // SAFETY: live blocks of this heap.
        unsafe { h.try_free(p) }.unwrap();
    }
    drop(h);
    heap.validate().unwrap();
}
