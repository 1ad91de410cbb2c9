//! The `Allocator` trait (feature `allocator-api2`) on `Heap` and
//! `GlobalHeap`: collections in a heap of their own, whole blocks as
//! capacity, in-place resizing within a block, zero-sized layouts.
#![cfg(not(any(shuttle, loom)))]

use allocator_api2::alloc::{Allocator, Layout};
use allocator_api2::boxed::Box;
use allocator_api2::vec::Vec;

use magbuddy::{CurrentCpu, GlobalHeap, Heap, HeapConfig};

mod allocator_support;
resize_suite!(heap());

fn ram(len: usize) -> *mut u8 {
    let layout = std::alloc::Layout::from_size_align(len, 1 << 20).unwrap();
    // SAFETY: non-zero size.
    let p = unsafe { std::alloc::alloc(layout) };
    assert!(!p.is_null());
    p
}

fn heap() -> &'static Heap {
    let len = 32 << 20;
    // SAFETY: fresh memory, the heap's for good.
    unsafe { Heap::init_with(ram(len), len, HeapConfig::new(2)) }.unwrap()
}

#[test]
fn vec_and_box_in_a_heap_of_their_own() {
    let h = heap();
    let free = h.stats().free_bytes;
    let mut v: Vec<u64, &Heap> = Vec::new_in(h);
    for i in 0..200_000u64 {
        v.push(i);
    }
    assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64));
    // Capacity is the whole block: a power of two of u64s.
    assert!(v.capacity().is_power_of_two(), "{}", v.capacity());
    v.truncate(10);
    v.shrink_to_fit();
    assert_eq!(&v[..], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    let b = Box::new_in([7u8; 3000], h);
    assert!(b.iter().all(|&x| x == 7));
    drop((v, b));
    h.reclaim();
    h.validate().unwrap();
    assert_eq!(h.stats().free_bytes, free);
}

#[test]
fn resizing_within_a_block_stays_in_place_and_zero_sizes_free_nothing() {
    let h = heap();
    let l = |n: usize| Layout::from_size_align(n, 8).unwrap();
    let p = h.allocate(l(100)).unwrap();
    assert_eq!(p.len(), 112, "the whole block of the fitted 112 B class");
    let p = p.cast::<u8>();
    // SAFETY: `p` is live with layout 100 / 110 in turn.
    unsafe {
        p.as_ptr().write_bytes(5, 100);
        let q = h.grow(p, l(100), l(110)).unwrap();
        assert_eq!(q.cast::<u8>(), p, "100 -> 110 B stays in its 112 B block");
        let r = h.grow(p, l(110), l(5000)).unwrap().cast::<u8>();
        assert_ne!(r, p);
        assert!(std::slice::from_raw_parts(r.as_ptr(), 100)
            .iter()
            .all(|&x| x == 5));
        let s = h.shrink(r, l(5000), l(4100)).unwrap().cast::<u8>();
        assert_eq!(s, r, "5000 -> 4100 B stays in its 8 KiB block");
        h.deallocate(s, l(4100));
    }
    let z = h.allocate(Layout::from_size_align(0, 64).unwrap()).unwrap();
    assert_eq!(z.len(), 0);
    assert_eq!(z.cast::<u8>().as_ptr() as usize % 64, 0);
    // SAFETY: a zero-sized block from `allocate`.
    unsafe { h.deallocate(z.cast(), Layout::from_size_align(0, 64).unwrap()) };
    h.validate().unwrap();
}

struct Cpu0;
impl CurrentCpu for Cpu0 {
    fn current() -> Option<usize> {
        Some(0)
    }
}

#[test]
fn global_heap_is_an_allocator_too() {
    static G: GlobalHeap<Cpu0> = GlobalHeap::empty();
    let len = 16 << 20;
    // SAFETY: fresh memory, the heap's for good.
    unsafe { G.init(ram(len), len, HeapConfig::new(1)) }.unwrap();
    let mut v: Vec<String, &GlobalHeap<Cpu0>> = Vec::new_in(&G);
    for i in 0..1000 {
        v.push(format!("{i}"));
    }
    assert_eq!(v[999], "999");
    drop(v);
    G.heap().unwrap().validate().unwrap();
}
