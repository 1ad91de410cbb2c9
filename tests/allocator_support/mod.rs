//! One suite for both `Allocator` traits (allocator-api2's mirror in
//! `tests/allocator_api.rs`, `core::alloc`'s on nightly in
//! `tests/nightly_allocator.rs`): the caller brings the trait and `Layout`
//! into scope and invokes the macro, so the two files test the same calls.

/// Tests of `grow`, `grow_zeroed` and `shrink` of page blocks on the
/// `&'static Heap` that `$heap` makes.
#[macro_export]
macro_rules! resize_suite {
    ($heap:expr) => {
        /// Two 64 KiB blocks that are buddies, the lower one first.
        fn buddy_pair(h: &magbuddy::Heap) -> (core::ptr::NonNull<u8>, core::ptr::NonNull<u8>) {
            let l = Layout::from_size_align(64 << 10, 8).unwrap();
            let mut got: std::vec::Vec<core::ptr::NonNull<u8>> = std::vec::Vec::new();
            loop {
                let p = h.allocate(l).unwrap().cast::<u8>();
                let pa = p.as_ptr() as usize;
                let lower = got.iter().position(|q| {
                    let qa = q.as_ptr() as usize;
                    qa % (128 << 10) == 0 && pa == qa + (64 << 10)
                });
                if let Some(i) = lower {
                    let q = got.swap_remove(i);
                    for r in got {
                        // SAFETY: allocated above with `l`, unused.
                        unsafe { h.deallocate(r, l) };
                    }
                    return (q, p);
                }
                got.push(p);
            }
        }

        fn bytes(p: core::ptr::NonNull<u8>, from: usize, to: usize) -> &'static [u8] {
            // SAFETY: the callers own `to` bytes at `p` until they free it.
            unsafe { std::slice::from_raw_parts(p.as_ptr().add(from), to - from) }
        }

        #[test]
        fn page_blocks_grow_and_shrink_in_place() {
            let h: &'static magbuddy::Heap = $heap;
            let free = h.stats().free_bytes;
            let l = |n: usize| Layout::from_size_align(n, 8).unwrap();
            let (lo, hi) = buddy_pair(h);
            // SAFETY: every block is ours with the layout given.
            unsafe {
                lo.as_ptr().write_bytes(9, 64 << 10);
                hi.as_ptr().write_bytes(7, 64 << 10);
                h.deallocate(hi, l(64 << 10));
                // In place over the freed buddy; its old bytes are zeroed.
                let g = h.grow_zeroed(lo, l(64 << 10), l(100 << 10)).unwrap();
                assert_eq!((g.cast::<u8>(), g.len()), (lo, 128 << 10));
                assert!(bytes(lo, 0, 64 << 10).iter().all(|&b| b == 9));
                assert!(bytes(lo, 64 << 10, 128 << 10).iter().all(|&b| b == 0));
                // Shrink: the upper 120 KiB go back to the heap.
                let s = h.shrink(lo, l(100 << 10), l(5000)).unwrap();
                assert_eq!((s.cast::<u8>(), s.len()), (lo, 8 << 10));
                assert_eq!(h.stats().free_bytes, free - (8 << 10));
                // Grow again in place, plain this time.
                let g = h.grow(lo, l(5000), l(64 << 10)).unwrap();
                assert_eq!((g.cast::<u8>(), g.len()), (lo, 64 << 10));
                assert!(bytes(lo, 0, 5000).iter().all(|&b| b == 9));
                h.validate().unwrap();
                // A taken buddy: moved, contents kept, the rest zeroed.
                let (lo2, hi2) = buddy_pair(h);
                lo2.as_ptr().write_bytes(3, 64 << 10);
                let m = h.grow_zeroed(lo2, l(64 << 10), l(100 << 10)).unwrap();
                let mp = m.cast::<u8>();
                assert_ne!(mp, lo2, "buddy taken: moved");
                assert!(bytes(mp, 0, 64 << 10).iter().all(|&b| b == 3));
                assert!(bytes(mp, 64 << 10, m.len()).iter().all(|&b| b == 0));
                h.deallocate(mp, l(100 << 10));
                h.deallocate(hi2, l(64 << 10));
                h.deallocate(lo, l(64 << 10));
            }
            h.validate().unwrap();
            assert_eq!(h.stats().free_bytes, free);
        }
    };
}
