//! Unit tests of the spinlock baseline: a model of live blocks, edge sizes,
//! bad input and handles, plus helpers shared with `tests_init.rs` (init and
//! regions) and `tests_mt.rs` (threads, exhaustion, metadata). Every test ends
//! with `validate()`.

use std::alloc::{alloc, dealloc, Layout};
use std::collections::BTreeMap;
use std::vec::Vec;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::{LockMode, SpinHeap};
use crate::{FreeError, PAGE_SIZE};

/// A 4 KiB-aligned buffer from the system allocator, freed on drop.
pub(super) struct Buf {
    pub(super) ptr: *mut u8,
    layout: Layout,
}

impl Buf {
    pub(super) fn new(len: usize) -> Buf {
        let layout = Layout::from_size_align(len, PAGE_SIZE).unwrap();
        // SAFETY: `len` is non-zero in every test.
        let ptr = unsafe { alloc(layout) };
        assert!(!ptr.is_null());
        Buf { ptr, layout }
    }

    /// A heap over `[ptr + skip, ptr + len)`.
    pub(super) fn heap(&self, skip: usize, mode: LockMode) -> &SpinHeap {
        // SAFETY: the range lies in this buffer, which outlives the heap
        // (the returned reference borrows `self`) and nothing else uses.
        unsafe { SpinHeap::init(self.ptr.add(skip), self.layout.size() - skip, 4, mode) }.unwrap()
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        // SAFETY: allocated in `Buf::new` with this layout.
        unsafe { dealloc(self.ptr, self.layout) }
    }
}

/// Bytes a request of `size` really occupies (and its alignment).
pub(super) fn extent(size: usize) -> usize {
    if size <= 2048 {
        size.max(8).next_power_of_two()
    } else {
        size.next_power_of_two().max(PAGE_SIZE)
    }
}

/// Sizes shaped like the seed's workload: mostly small, some pages, rare big.
pub(super) fn random_size(rng: &mut SmallRng, max: usize) -> usize {
    match rng.gen_range(0..100) {
        0..=69 => rng.gen_range(1..=128),
        70..=84 => rng.gen_range(129..=2048),
        85..=94 => rng.gen_range(2049..=4 * PAGE_SIZE),
        _ => rng.gen_range(4 * PAGE_SIZE..=max),
    }
}

/// The model: live blocks by start, with their requested size and a tag.
#[derive(Default)]
struct Model {
    live: BTreeMap<usize, (usize, u8)>,
}

impl Model {
    fn insert(&mut self, p: usize, size: usize, tag: u8) {
        let ext = extent(size);
        assert_eq!(p % ext, 0, "{size}-byte block at {p:#x} misaligned");
        if let Some((&q, &(qs, _))) = self.live.range(..=p).next_back() {
            assert!(q + extent(qs) <= p, "{p:#x} overlaps live block {q:#x}");
        }
        if let Some((&q, _)) = self.live.range(p..).next() {
            assert!(p + ext <= q, "{p:#x}+{ext} overlaps live block {q:#x}");
        }
        self.live.insert(p, (size, tag));
    }
}

fn write_tag(p: usize, size: usize, tag: u8) {
    // SAFETY: `p .. p + size` is a live block this test owns.
    unsafe {
        (p as *mut u8).write(tag);
        ((p + size - 1) as *mut u8).write(tag);
    }
}

fn check_tag(p: usize, size: usize, tag: u8) {
    // SAFETY: as in `write_tag`; the block is still live.
    let (a, b) = unsafe {
        (
            (p as *const u8).read(),
            ((p + size - 1) as *const u8).read(),
        )
    };
    assert_eq!((a, b), (tag, tag), "block {p:#x} was overwritten");
}

#[test]
fn model_random_sequences() {
    for seed in 0..6u64 {
        let buf = Buf::new(4 << 20);
        let heap = buf.heap(0, LockMode::Spin);
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut model = Model::default();
        for step in 0..6_000u32 {
            if rng.gen_bool(0.55) || model.live.is_empty() {
                let size = random_size(&mut rng, 256 << 10);
                if let Some(p) = heap.alloc(size) {
                    let tag = step as u8;
                    model.insert(p.as_ptr() as usize, size, tag);
                    write_tag(p.as_ptr() as usize, size, tag);
                }
            } else {
                let i = rng.gen_range(0..model.live.len());
                let (&p, &(size, tag)) = model.live.iter().nth(i).unwrap();
                check_tag(p, size, tag);
                model.live.remove(&p);
                // SAFETY: `p` is live and dropped from the model.
                unsafe { heap.free(p as *mut u8) };
            }
            if step % 1000 == 0 {
                heap.validate().unwrap();
            }
        }
        for &p in model.live.keys() {
            // SAFETY: every block in the model is live.
            unsafe { heap.free(p as *mut u8) };
        }
        heap.validate().unwrap();
        // Only spare slabs (at most one per class) stay allocated.
        let s = heap.stats();
        assert!(s.live_blocks.iter().sum::<u64>() <= 9);
    }
}

#[test]
fn alloc_edges() {
    let buf = Buf::new(1 << 20);
    let heap = buf.heap(0, LockMode::Spin);
    assert!(heap.alloc(0).is_none());
    assert!(heap.alloc(usize::MAX).is_none());
    assert!(heap.alloc(2 << 20).is_none(), "larger than the heap");
    for shift in 0..18 {
        for size in [1usize << shift, (1 << shift) + 1, (1 << shift) * 3 / 2] {
            let p = heap.alloc(size).unwrap().as_ptr() as usize;
            assert_eq!(p % extent(size), 0, "size {size}");
            // SAFETY: just allocated.
            unsafe { heap.free(p as *mut u8) };
        }
    }
    let l = Layout::from_size_align(8, 4096).unwrap();
    let p = heap.alloc_layout(l).unwrap();
    assert_eq!(p.as_ptr() as usize % 4096, 0);
    // SAFETY: just allocated with `l`.
    unsafe { heap.dealloc_layout(p, l) };
    assert!(heap
        .alloc_layout(Layout::from_size_align(0, 8).unwrap())
        .is_none());
    // SAFETY: null is a no-op.
    unsafe { heap.free(core::ptr::null_mut()) };
    heap.validate().unwrap();
}

/// Runs `bad`, expects `want`, and checks that nothing changed.
fn expect_err(heap: &SpinHeap, bad: usize, want: FreeError) {
    let before = heap.stats();
    // SAFETY: `try_free` only inspects a bad pointer.
    assert_eq!(unsafe { heap.try_free(bad as *mut u8) }, Err(want));
    let after = heap.stats();
    assert_eq!(before.free_bytes, after.free_bytes);
    assert_eq!(before.free_blocks, after.free_blocks);
    assert_eq!(before.live_blocks, after.live_blocks);
    heap.validate().unwrap();
}

#[test]
fn bad_input_is_reported_without_change() {
    use FreeError::*;
    let buf = Buf::new(1 << 20);
    let heap = buf.heap(0, LockMode::Spin);
    let other = Buf::new(PAGE_SIZE);
    let big = heap.alloc(16 << 10).unwrap().as_ptr() as usize;
    let small = heap.alloc(48).unwrap().as_ptr() as usize;
    let tiny = heap.alloc(8).unwrap().as_ptr() as usize;
    let keep = heap.alloc(8).unwrap(); // keeps the 8-byte slab non-empty

    let foreign = other.ptr as usize;
    expect_err(heap, foreign, Foreign(foreign));
    // The header sits at the end of the region, the descriptors below it.
    let header = heap as *const SpinHeap as usize;
    expect_err(heap, header + 64, Metadata(header + 64));
    expect_err(heap, header - 200, Metadata(header - 200));
    let (ptr, block) = (big + 8, big);
    expect_err(heap, ptr, Interior { ptr, block });
    let ptr = big + PAGE_SIZE;
    expect_err(heap, ptr, Interior { ptr, block });
    let (ptr, block) = (small + 1, small);
    expect_err(heap, ptr, Interior { ptr, block });
    // The next 64-byte object was never handed out.
    expect_err(heap, small + 64, DoubleFree(small + 64));
    expect_err(heap, small + 65, NotAllocated(small + 65));
    // The first bytes of an 8-byte slab hold its bitmap.
    let slab8 = tiny & !(PAGE_SIZE - 1);
    expect_err(heap, slab8, Metadata(slab8));
    // 2 KiB objects live in 16 KiB slabs: the third one is in a tail page.
    let kib2: Vec<usize> = (0..3)
        .map(|_| heap.alloc(2048).unwrap().as_ptr() as usize)
        .collect();
    assert_ne!(kib2[2] / PAGE_SIZE, kib2[0] / PAGE_SIZE);
    let (ptr, block) = (kib2[2] + 8, kib2[2]);
    expect_err(heap, ptr, Interior { ptr, block });
    // SAFETY: live blocks, freed once.
    unsafe { kib2.iter().for_each(|&p| heap.free(p as *mut u8)) };
    expect_err(heap, kib2[2], DoubleFree(kib2[2]));

    // Memory inside a free block: its start counts as a double free if it
    // is still a block start, any other address as not allocated.
    let gone = heap.alloc(64 << 10).unwrap().as_ptr() as usize;
    // SAFETY: live block, freed once.
    unsafe { heap.free(gone as *mut u8) };
    // SAFETY: `try_free` only inspects a bad pointer.
    let got = unsafe { heap.try_free(gone as *mut u8) }.unwrap_err();
    assert!(matches!(got, NotAllocated(p) | DoubleFree(p) if p == gone));
    expect_err(heap, gone + 24, NotAllocated(gone + 24));
    expect_err(heap, gone + PAGE_SIZE, NotAllocated(gone + PAGE_SIZE));

    // Double frees, after a good free.
    let s = heap.stats();
    // SAFETY: live blocks, freed once.
    unsafe {
        heap.free(big as *mut u8);
        heap.free(tiny as *mut u8);
    }
    assert_eq!(heap.stats().free_bytes, s.free_bytes + (16 << 10));
    expect_err(heap, tiny, DoubleFree(tiny));
    // The big block merged with its buddies: its start may now be inside a
    // larger free block, which is reported as not allocated.
    // SAFETY: `try_free` only inspects a bad pointer.
    let got = unsafe { heap.try_free(big as *mut u8) }.unwrap_err();
    assert!(matches!(got, DoubleFree(p) | NotAllocated(p) if p == big));
    // SAFETY: live blocks.
    unsafe {
        heap.free(small as *mut u8);
        heap.free(keep.as_ptr());
    }
    heap.validate().unwrap();
}

#[test]
#[should_panic(expected = "double free")]
fn free_panics_on_double_free() {
    let buf = Buf::new(1 << 20);
    let heap = buf.heap(0, LockMode::Spin);
    let p = heap.alloc(100).unwrap().as_ptr();
    // SAFETY: live block, then a deliberate double free.
    unsafe {
        heap.free(p);
        heap.free(p);
    }
}

#[test]
#[should_panic(expected = "not in this heap")]
fn free_panics_on_foreign_pointer() {
    let buf = Buf::new(1 << 20);
    let heap = buf.heap(0, LockMode::Spin);
    let mut x = 0u64;
    // SAFETY: a deliberate foreign free; only inspected.
    unsafe { heap.free((&mut x as *mut u64).cast()) };
}

#[test]
fn handles_are_exclusive() {
    let buf = Buf::new(1 << 20);
    // SAFETY: the range is `buf`.
    let heap = unsafe { SpinHeap::init(buf.ptr, 1 << 20, 2, LockMode::Spin) }.unwrap();
    let a = heap.handle().unwrap();
    let b = heap.handle().unwrap();
    assert_ne!(a.index(), b.index());
    assert!(heap.handle().is_none());
    let p = a.alloc(64).unwrap();
    // SAFETY: live block, freed once, then a double free is reported.
    unsafe {
        b.free(p.as_ptr());
        assert_eq!(
            a.try_free(p.as_ptr()),
            Err(FreeError::DoubleFree(p.as_ptr() as usize))
        );
    }
    let i = a.index();
    drop(a);
    assert_eq!(heap.handle().unwrap().index(), i);
    // A specific slot: taken ones and out-of-range ones are refused.
    assert!(heap.handle_for(b.index()).is_none());
    assert!(heap.handle_for(2).is_none());
    let j = b.index();
    drop(b);
    assert_eq!(heap.handle_for(j).unwrap().index(), j);
    heap.validate().unwrap();
}

#[test]
fn validate_detects_corruption() {
    let buf = Buf::new(1 << 20);
    let heap = buf.heap(0, LockMode::Spin);
    let p = heap.alloc(64).unwrap();
    heap.validate().unwrap();
    let corrupt = |f: &dyn Fn(&mut super::State)| f(&mut heap.lock.lock());
    corrupt(&|st| st.pages.free_pages += 1);
    assert!(heap.validate().is_err());
    corrupt(&|st| st.pages.free_pages -= 1);
    heap.validate().unwrap();
    // Mark a second object live in the 64-byte slab without counting it.
    let page = p.as_ptr() as usize & !(PAGE_SIZE - 1);
    let idx = {
        let st = heap.lock.lock();
        match st.pages.locate(page) {
            super::buddy::Located::Page(idx, _) => idx,
            _ => unreachable!(),
        }
    };
    corrupt(&|st| st.pages.desc(idx).bits ^= 2);
    assert_eq!(
        heap.validate(),
        Err("slab in-use count differs from its bitmap")
    );
    corrupt(&|st| st.pages.desc(idx).bits ^= 2);
    // SAFETY: live block.
    unsafe { heap.free(p.as_ptr()) };
    heap.validate().unwrap();
}
