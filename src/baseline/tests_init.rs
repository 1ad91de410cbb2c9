//! Init and region tests of the spinlock baseline: unusable regions, odd
//! starts and lengths, added regions. Every test ends with `validate()`.

use std::vec::Vec;

use rand::rngs::SmallRng;
use rand::SeedableRng;

use super::tests::{random_size, Buf};
use super::{LockMode, SpinHeap};
use crate::{InitError, PAGE_SIZE};

#[test]
fn init_rejects_unusable_regions() {
    let buf = Buf::new(64 << 10);
    let spin = LockMode::Spin;
    // SAFETY: in all calls the ranges are in `buf` or rejected before use.
    unsafe {
        let r = SpinHeap::init(core::ptr::null_mut(), 1 << 20, 1, spin);
        assert_eq!(r.err(), Some(InitError::NullStart));
        assert_eq!(
            SpinHeap::init(buf.ptr, 64 << 10, 0, spin).err(),
            Some(InitError::BadCpuCount(0))
        );
        let r = SpinHeap::init(buf.ptr, 64 << 10, 65, spin);
        assert_eq!(r.err(), Some(InitError::BadCpuCount(65)));
        let r = SpinHeap::init((usize::MAX - 100) as *mut u8, 1000, 1, spin);
        assert_eq!(r.err(), Some(InitError::Overflow));
        let r = SpinHeap::init(0x1000 as *mut u8, 1 << 46, 1, spin);
        assert_eq!(r.err(), Some(InitError::TooLarge));
        let header = core::mem::size_of::<SpinHeap>();
        assert_eq!(SpinHeap::min_len(buf.ptr, 4), PAGE_SIZE + 128 + header);
        assert_eq!(
            SpinHeap::min_len(buf.ptr.add(1), 4),
            2 * PAGE_SIZE - 1 + 128 + header
        );
        assert_eq!(SpinHeap::min_region_len(buf.ptr), PAGE_SIZE + 24);
        for skip in [0usize, 1, 13, 127, 4095] {
            let start = buf.ptr.add(skip);
            let min = SpinHeap::min_len(start, 4);
            assert!(min <= 16 << 10, "min_len {min}");
            let r = SpinHeap::init(start, min - 1, 4, spin);
            assert_eq!(r.err(), Some(InitError::TooSmall { len: min - 1, min }));
            let heap = SpinHeap::init(start, min, 4, spin).unwrap();
            assert_eq!(heap.stats().usable_bytes, PAGE_SIZE);
            let p = heap.alloc(PAGE_SIZE).unwrap().as_ptr() as usize;
            assert!(p >= start as usize && p + PAGE_SIZE <= start as usize + min);
            assert!(heap.alloc(8).is_none());
            heap.free(p as *mut u8);
            heap.validate().unwrap();
        }
    }
}

#[test]
fn odd_start_and_length() {
    let buf = Buf::new(1 << 20);
    let (skip, len) = (13usize, (1 << 20) - 13 - 777);
    // SAFETY: the range lies in `buf`.
    let heap = unsafe { SpinHeap::init(buf.ptr.add(skip), len, 2, LockMode::Spin) }.unwrap();
    let (lo, hi) = (buf.ptr as usize + skip, buf.ptr as usize + skip + len);
    let mut live = Vec::new();
    let mut rng = SmallRng::seed_from_u64(7);
    loop {
        let size = random_size(&mut rng, 64 << 10);
        match heap.alloc(size) {
            Some(p) => {
                let p = p.as_ptr() as usize;
                assert!(p >= lo && p + size <= hi);
                live.push(p);
            }
            None if size <= 8 => break,
            None => {}
        }
    }
    let s = heap.stats();
    assert_eq!(s.region_bytes, len);
    assert_eq!(
        s.usable_bytes + s.metadata.total() - s.metadata.iter().last().unwrap().1,
        len
    );
    for p in live {
        // SAFETY: live blocks.
        unsafe { heap.free(p as *mut u8) };
    }
    heap.validate().unwrap();
}

#[test]
fn regions_do_not_merge_across_boundaries() {
    // Two adjacent regions: a buddy merge across them would corrupt both.
    let buf = Buf::new(2 << 20);
    let half = 1 << 20;
    // SAFETY: each range lies in `buf`; they do not overlap.
    let heap = unsafe { SpinHeap::init(buf.ptr, half, 1, LockMode::Spin) }.unwrap();
    assert!(SpinHeap::min_region_len(buf.ptr) <= 2 * PAGE_SIZE);
    // SAFETY: as above.
    unsafe { heap.add_region(buf.ptr.add(half), half) }.unwrap();
    let s = heap.stats();
    assert_eq!(s.region_bytes, 2 << 20);
    let mut live = Vec::new();
    while let Some(p) = heap.alloc(PAGE_SIZE) {
        live.push(p.as_ptr() as usize);
    }
    assert_eq!(live.len() * PAGE_SIZE, s.usable_bytes);
    assert!(live.iter().any(|&p| p >= buf.ptr as usize + half));
    for p in live {
        // SAFETY: live blocks.
        unsafe { heap.free(p as *mut u8) };
    }
    heap.validate().unwrap();
    assert_eq!(heap.stats().free_bytes, s.usable_bytes);
    // Neither region holds a 1 MiB block (metadata), so none exists now.
    assert!(heap.alloc(1 << 20).is_none());
}

#[test]
fn add_region_errors() {
    let buf = Buf::new(64 << 10);
    let heap = buf.heap(0, LockMode::Spin);
    let extra = Buf::new(16 * 2 * PAGE_SIZE);
    // SAFETY: ranges lie in `extra` and do not overlap, or are rejected first.
    unsafe {
        let e = heap.add_region(core::ptr::null_mut(), 4096);
        assert_eq!(e, Err(InitError::NullStart));
        let e = heap.add_region((usize::MAX - 10) as *mut u8, 100);
        assert_eq!(e, Err(InitError::Overflow));
        let e = heap.add_region(0x1000 as *mut u8, 1 << 46);
        assert_eq!(e, Err(InitError::TooLarge));
        let min = SpinHeap::min_region_len(extra.ptr);
        let e = heap.add_region(extra.ptr, min - 1);
        assert_eq!(e, Err(InitError::TooSmall { len: min - 1, min }));
        for i in 0..15 {
            heap.add_region(extra.ptr.add(i * 2 * PAGE_SIZE), 2 * PAGE_SIZE)
                .unwrap();
        }
        let e = heap.add_region(extra.ptr.add(15 * 2 * PAGE_SIZE), 2 * PAGE_SIZE);
        assert_eq!(e, Err(InitError::TooManyRegions));
    }
    let mut live = Vec::new();
    while let Some(p) = heap.alloc(PAGE_SIZE) {
        live.push(p);
    }
    assert!(live.len() > 15);
    for p in live {
        // SAFETY: live blocks.
        unsafe { heap.free(p.as_ptr()) };
    }
    heap.validate().unwrap();
}
