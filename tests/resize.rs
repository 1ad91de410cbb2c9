//! `Heap::resize_in_place` and the three callers that share it
//! (`GlobalHeap::realloc`, the `Allocator` impls are in
//! `tests/allocator_api.rs`): page blocks grow into a free buddy and refuse
//! a taken one at every kind of level (chunk word, area word, runs of
//! areas), shrink by releasing upper halves, keep their data, and leave
//! `validate()` and the free-byte count consistent; bad pointers are
//! refused with the free path's error and change nothing.
#![cfg(not(any(shuttle, loom)))]

use std::alloc::{GlobalAlloc, Layout};
use std::ptr::NonNull;

use magbuddy::{FreeError, GlobalHeap, Heap, HeapConfig, NoCpu};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

fn ram(len: usize) -> *mut u8 {
    let layout = Layout::from_size_align(len, 1 << 20).unwrap();
    // SAFETY: non-zero size.
    let p = unsafe { std::alloc::alloc(layout) };
    assert!(!p.is_null());
    p
}

fn heap(len: usize) -> &'static Heap {
    // SAFETY: fresh memory, the heap's for good.
    unsafe { Heap::init_with(ram(len), len, HeapConfig::new(2)) }.unwrap()
}

/// Two blocks of `size` bytes that are buddies, the lower one first:
/// allocates until a pair turns up and frees the rest.
fn buddy_pair(h: &Heap, size: usize) -> (NonNull<u8>, NonNull<u8>) {
    let mut got: Vec<NonNull<u8>> = Vec::new();
    loop {
        let p = h.alloc(size).expect("room for the pair");
        let lower = got.iter().position(|q| {
            q.as_ptr() as usize % (2 * size) == 0
                && p.as_ptr() as usize == q.as_ptr() as usize + size
        });
        if let Some(i) = lower {
            let q = got.swap_remove(i);
            for r in got {
                // SAFETY: allocated above, not used.
                unsafe { h.free(r.as_ptr()) };
            }
            return (q, p);
        }
        got.push(p);
    }
}

/// Fills `len` bytes at `p` with a pattern of `seed`.
fn fill(p: NonNull<u8>, len: usize, seed: u8) {
    // SAFETY: the callers own `len` bytes at `p`.
    let s = unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), len) };
    for (i, b) in s.iter_mut().enumerate() {
        *b = seed ^ (i % 251) as u8;
    }
}

fn holds(p: NonNull<u8>, len: usize, seed: u8) -> bool {
    // SAFETY: as in `fill`.
    let s = unsafe { std::slice::from_raw_parts(p.as_ptr(), len) };
    s.iter()
        .enumerate()
        .all(|(i, &b)| b == seed ^ (i % 251) as u8)
}

/// Sizes whose blocks live in chunk words (8 KiB, 64 KiB), as a chunk
/// word's root (128 KiB, grown into a top leaf of the area word), in the
/// area word (256 KiB) and as whole areas or runs (1 MiB, 2 MiB) in the
/// default geometry (32-page chunks, 256-page areas).
const GROWABLE: [usize; 6] = [8 * KIB, 64 * KIB, 128 * KIB, 256 * KIB, MIB, 2 * MIB];

#[test]
fn grows_into_a_free_buddy_and_refuses_a_taken_one() {
    let h = heap(64 * MIB);
    let free = h.stats().free_bytes;
    for size in GROWABLE {
        let (lo, hi) = buddy_pair(h, size);
        fill(lo, size, 1);
        let before = h.stats().free_bytes;
        // SAFETY: `lo` is ours.
        assert_eq!(
            unsafe { h.resize_in_place(lo, 2 * size, 1) },
            Ok(None),
            "{size}: buddy taken"
        );
        assert_eq!(
            h.stats().free_bytes,
            before,
            "{size}: a refused grow holds nothing"
        );
        // SAFETY: `hi` is ours; `lo` then grows over it.
        unsafe { h.free(hi.as_ptr()) };
        assert_eq!(
            unsafe { h.resize_in_place(lo, 2 * size - 1, 1) },
            Ok(Some(2 * size)),
            "{size}"
        );
        assert!(holds(lo, size, 1), "{size}: data preserved");
        fill(lo, 2 * size, 2);
        assert_eq!(h.usable_size(lo.as_ptr()), Ok(2 * size));
        assert_eq!(
            h.stats().free_bytes,
            before,
            "{size}: the buddy's bytes moved to us"
        );
        h.validate().unwrap();
        // An upper half cannot grow where it is.
        let (a, b) = buddy_pair(h, size);
        // SAFETY: ours.
        unsafe { h.free(a.as_ptr()) };
        assert_eq!(
            unsafe { h.resize_in_place(b, 2 * size, 1) },
            Ok(None),
            "{size}: upper half"
        );
        // SAFETY: ours.
        unsafe {
            h.free(b.as_ptr());
            h.free(lo.as_ptr());
        }
        h.validate().unwrap();
        assert_eq!(h.stats().free_bytes, free, "{size}");
    }
}

#[test]
fn grows_several_orders_across_the_chunk_root_and_undoes_a_partial_grow() {
    let h = heap(64 * MIB);
    let free = h.stats().free_bytes;
    // 4 KiB to 64 KiB: four steps inside one chunk word. A free 64 KiB
    // block's first page: pages elsewhere are taken first until one lands
    // in it, at its start (the lowest free node).
    let (big, other) = buddy_pair(h, 64 * KIB);
    // SAFETY: ours.
    unsafe { h.free(big.as_ptr()) };
    let inside =
        |q: &NonNull<u8>| (q.as_ptr() as usize).wrapping_sub(big.as_ptr() as usize) < 64 * KIB;
    let mut pages: Vec<_> = std::iter::from_fn(|| h.alloc(4 * KIB))
        .take(10_000)
        .take_while(|q| !inside(q))
        .collect();
    let p = big;
    assert_eq!(
        h.usable_size(p.as_ptr()),
        Ok(4 * KIB),
        "the page at the block's start"
    );
    pages.push(other);
    for q in pages {
        // SAFETY: ours.
        unsafe { h.free(q.as_ptr()) };
    }
    fill(p, 4 * KIB, 3);
    // SAFETY: ours.
    assert_eq!(
        unsafe { h.resize_in_place(p, 64 * KIB, 1) },
        Ok(Some(64 * KIB))
    );
    assert!(holds(p, 4 * KIB, 3));
    h.validate().unwrap();
    // 64 KiB to 512 KiB across the chunk root (128 KiB, a chunk word's
    // root) into top nodes (256 KiB, 512 KiB: the area word), then back
    // down to 4 KiB.
    let (lo, hi) = buddy_pair(h, 512 * KIB);
    // SAFETY: ours.
    unsafe { h.free(hi.as_ptr()) };
    assert_eq!(
        unsafe { h.resize_in_place(lo, 64 * KIB, 1) },
        Ok(Some(64 * KIB))
    );
    fill(lo, 64 * KIB, 8);
    let before = h.stats().free_bytes;
    assert_eq!(
        unsafe { h.resize_in_place(lo, 512 * KIB, 1) },
        Ok(Some(512 * KIB))
    );
    assert!(holds(lo, 64 * KIB, 8));
    assert_eq!(h.stats().free_bytes, before - 448 * KIB);
    h.validate().unwrap();
    assert_eq!(
        unsafe { h.resize_in_place(lo, 4 * KIB, 1) },
        Ok(Some(4 * KIB))
    );
    assert_eq!(h.stats().free_bytes, before + 60 * KIB);
    h.validate().unwrap();
    // SAFETY: ours.
    unsafe { h.free(lo.as_ptr()) };
    // A grow whose third step fails gives back the first two: back to
    // 4 KiB, then a 16 KiB block at `p + 16 KiB` (the free node whose buddy
    // is taken is picked first), then 4 KiB -> 64 KiB.
    // SAFETY: ours; the bytes past 4 KiB are not used again.
    assert_eq!(
        unsafe { h.resize_in_place(p, 4 * KIB, 1) },
        Ok(Some(4 * KIB))
    );
    let quarter = p.as_ptr() as usize + 16 * KIB;
    let mut others: Vec<_> = std::iter::from_fn(|| h.alloc(16 * KIB))
        .take(10_000)
        .take_while(|q| q.as_ptr() as usize != quarter)
        .collect();
    let before = h.stats().free_bytes;
    // SAFETY: ours.
    assert_eq!(unsafe { h.resize_in_place(p, 64 * KIB, 1) }, Ok(None));
    assert_eq!(h.stats().free_bytes, before, "the first two steps undone");
    assert_eq!(h.usable_size(p.as_ptr()), Ok(4 * KIB));
    h.validate().unwrap();
    others.push(NonNull::new(quarter as *mut u8).unwrap());
    for q in others {
        // SAFETY: ours (the last one stopped `take_while`).
        unsafe { h.free(q.as_ptr()) };
    }
    // SAFETY: ours.
    assert_eq!(
        unsafe { h.resize_in_place(p, 64 * KIB, 1) },
        Ok(Some(64 * KIB))
    );
    // SAFETY: ours.
    unsafe { h.free(p.as_ptr()) };
    h.validate().unwrap();
    assert_eq!(h.stats().free_bytes, free);
}

#[test]
fn shrinks_by_releasing_upper_halves() {
    let h = heap(64 * MIB);
    let free = h.stats().free_bytes;
    // Chunk word (64 KiB -> 8 KiB), area word (512 KiB -> 256 KiB), run
    // (4 MiB -> 1 MiB), and across the chunk root (256 KiB -> 8 KiB).
    for (size, to, keeps) in [
        (64 * KIB, 8 * KIB, 8 * KIB),
        (512 * KIB, 200 * KIB, 256 * KIB),
        (4 * MIB, MIB, MIB),
        (256 * KIB, 8 * KIB, 8 * KIB),
    ] {
        let p = h.alloc(size).unwrap();
        fill(p, to, 4);
        // SAFETY: ours; the bytes past `to` are not used again.
        assert_eq!(
            unsafe { h.resize_in_place(p, to, 1) },
            Ok(Some(keeps)),
            "{size}"
        );
        assert!(holds(p, to, 4));
        assert_eq!(h.usable_size(p.as_ptr()), Ok(keeps));
        assert_eq!(
            h.stats().free_bytes,
            free - keeps,
            "{size}: upper halves released"
        );
        h.validate().unwrap();
        // The released part serves others.
        let q = h.alloc(size - keeps.max(size / 2)).filter(|_| keeps < size);
        if let Some(q) = q {
            // SAFETY: ours.
            unsafe { h.free(q.as_ptr()) };
        }
        // SAFETY: ours.
        unsafe { h.free(p.as_ptr()) };
        assert_eq!(h.stats().free_bytes, free);
    }
    h.validate().unwrap();
}

#[test]
fn objects_stay_within_their_class() {
    let h = heap(16 * MIB);
    let p = h.alloc(100).unwrap();
    // SAFETY: ours.
    unsafe {
        assert_eq!(h.resize_in_place(p, 120, 1), Ok(Some(128)));
        assert_eq!(h.resize_in_place(p, 64, 1), Ok(None));
        assert_eq!(h.resize_in_place(p, 5000, 1), Ok(None));
        assert_eq!(h.resize_in_place(p, 0, 1), Ok(None));
        h.free(p.as_ptr());
    }
    // A page block asked to serve an object's size: the caller copies.
    let q = h.alloc(8 * KIB).unwrap();
    // SAFETY: ours.
    unsafe {
        assert_eq!(h.resize_in_place(q, 100, 1), Ok(None));
        h.free(q.as_ptr());
    }
    h.validate().unwrap();
}

#[test]
fn bad_pointers_are_refused_and_change_nothing() {
    let h = heap(16 * MIB);
    let p = h.alloc(8 * KIB).unwrap();
    let obj = h.alloc(64).unwrap();
    let free = h.stats().free_bytes;
    let at = |a: usize| NonNull::new(a as *mut u8).unwrap();
    let base = p.as_ptr() as usize;
    let mut outside = vec![0u8; 64];
    // SAFETY: every call is refused before it changes anything.
    unsafe {
        assert_eq!(
            h.resize_in_place(at(base + 4096), 64 * KIB, 1),
            Err(FreeError::Interior {
                ptr: base + 4096,
                block: base
            })
        );
        assert!(matches!(
            h.resize_in_place(at(obj.as_ptr() as usize + 8), 16, 1),
            Err(FreeError::Interior { .. })
        ));
        let foreign = outside.as_mut_ptr() as usize;
        assert_eq!(
            h.resize_in_place(at(foreign), 64, 1),
            Err(FreeError::Foreign(foreign))
        );
        h.free(p.as_ptr());
        let after_free = h.stats().free_bytes;
        assert!(h.resize_in_place(p, 16 * KIB, 1).is_err(), "a freed block");
        assert!(h.resize_in_place(p, 4 * KIB, 1).is_err(), "a freed block");
        assert_eq!(h.stats().free_bytes, after_free);
        assert_eq!(after_free, free + 8 * KIB);
        h.free(obj.as_ptr());
    }
    h.validate().unwrap();
}

#[test]
fn global_heap_realloc_grows_in_place() {
    static HEAP: GlobalHeap<NoCpu> = GlobalHeap::empty();
    let len = 64 * MIB;
    // SAFETY: fresh memory, the heap's for good.
    unsafe { HEAP.init(ram(len), len, HeapConfig::new(1)) }.unwrap();
    let h = HEAP.heap().unwrap();
    let free = h.stats().free_bytes;
    let (lo, hi) = buddy_pair(h, MIB);
    // SAFETY: ours; `lo` has layout `l` and is then resized by `HEAP`.
    unsafe {
        h.free(hi.as_ptr());
        let l = Layout::from_size_align(MIB, 8).unwrap();
        fill(lo, MIB, 5);
        let q = HEAP.realloc(lo.as_ptr(), l, 2 * MIB);
        assert_eq!(q, lo.as_ptr(), "grown where it is");
        assert!(holds(lo, MIB, 5));
        // Shrinking stays too; growing into a taken buddy moves.
        let l2 = Layout::from_size_align(2 * MIB, 8).unwrap();
        assert_eq!(HEAP.realloc(q, l2, MIB), q);
        // Blocks of 1 MiB until one takes the freed upper half.
        let upper = q as usize + MIB;
        let mut others = Vec::new();
        loop {
            let b = HEAP.alloc(l);
            assert!(!b.is_null(), "the upper half is free");
            others.push(b);
            if b as usize == upper {
                break;
            }
        }
        let moved = HEAP.realloc(q, l, 2 * MIB);
        assert_ne!(moved, q, "buddy taken: moved");
        assert!(holds(NonNull::new(moved).unwrap(), MIB, 5));
        for b in others {
            HEAP.dealloc(b, l);
        }
        HEAP.dealloc(moved, l2);
    }
    h.validate().unwrap();
    assert_eq!(h.stats().free_bytes, free);
}

#[test]
fn a_block_moved_to_grow_has_room_to_grow_again() {
    let h = heap(64 * MIB);
    let free = h.stats().free_bytes;
    assert_eq!(
        h.alloc_to_grow(64 * KIB),
        None,
        "small blocks: the caller copies"
    );
    let p = h.alloc_to_grow(MIB).expect("a free span");
    fill(p, MIB, 6);
    for size in [2 * MIB, 4 * MIB, 8 * MIB] {
        // SAFETY: ours.
        assert_eq!(
            unsafe { h.resize_in_place(p, size, 1) },
            Ok(Some(size)),
            "{size}"
        );
    }
    assert!(holds(p, MIB, 6));
    h.validate().unwrap();
    assert_eq!(h.stats().free_bytes, free - 8 * MIB);
    // SAFETY: ours.
    unsafe { h.free(p.as_ptr()) };
    h.validate().unwrap();
    assert_eq!(h.stats().free_bytes, free);
}
