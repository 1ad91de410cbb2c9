//! `core::alloc::Allocator` (feature `nightly`, a nightly compiler):
//! the same resize calls as `tests/allocator_api.rs` makes through
//! allocator-api2's mirror, and a `Vec` of the standard library in a heap
//! of its own. `cargo +nightly test --features nightly --test nightly_allocator`
#![cfg(not(any(shuttle, loom)))]
#![feature(allocator_api)]

use core::alloc::{Allocator, Layout};

use magbuddy::{Heap, HeapConfig};

mod allocator_support;

fn heap() -> &'static Heap {
    let len = 32 << 20;
    let layout = std::alloc::Layout::from_size_align(len, 1 << 20).unwrap();
    // SAFETY: non-zero size.
    let ram = unsafe { std::alloc::alloc(layout) };
    assert!(!ram.is_null());
    // SAFETY: fresh memory, the heap's for good.
    unsafe { Heap::init_with(ram, len, HeapConfig::new(2)) }.unwrap()
}

resize_suite!(heap());

#[test]
fn std_vec_in_a_heap_of_its_own() {
    let h = heap();
    let free = h.stats().free_bytes;
    let mut v: Vec<u64, &Heap> = Vec::new_in(h);
    for i in 0..300_000u64 {
        v.push(i);
    }
    assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64));
    drop(v);
    h.reclaim();
    h.validate().unwrap();
    assert_eq!(h.stats().free_bytes, free);
}
