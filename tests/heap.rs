//! Single-threaded behaviour of `Heap` against a simple model.

mod common;

use std::collections::BTreeMap;

use common::{block_size, Mem, MIB, PAGE};
use magbuddy::{Geometry, Heap, HeapConfig};
use rand::{rngs::SmallRng, Rng, SeedableRng};

/// Live blocks by start address, with their rounded sizes, and the slabs
/// (16 KiB) holding live small objects, with how many each holds.
struct Model {
    live: BTreeMap<usize, usize>,
    slabs: BTreeMap<usize, (usize, usize)>,
}

const SLAB: usize = 16 * 1024;

impl Model {
    fn overlaps(&self, start: usize, len: usize) -> bool {
        let hit = |m: &BTreeMap<usize, usize>, size: &dyn Fn(usize) -> usize| {
            m.range(..start + len)
                .next_back()
                .is_some_and(|(&s, &l)| s + size(l) > start)
        };
        hit(&self.live, &|l| l)
    }

    /// Whether [start, start+len) holds a live block or a slab in use.
    fn occupied(&self, start: usize, len: usize) -> bool {
        self.overlaps(start, len)
            || self
                .slabs
                .range(..start + len)
                .next_back()
                .is_some_and(|(&s, _)| s + SLAB > start)
    }

    fn insert(&mut self, p: usize, b: usize) {
        self.live.insert(p, b);
        if b <= 2048 {
            self.slabs.entry(p & !(SLAB - 1)).or_insert((b, 0)).1 += 1;
        }
    }

    /// Whether a request of `b` bytes fits: a slab of its class with a free
    /// object, or (for slab sizes too) an aligned free block.
    fn fits(&self, usable: &std::ops::Range<usize>, b: usize) -> bool {
        if b <= 2048 {
            self.slabs
                .values()
                .any(|&(class, n)| class == b && n < SLAB / b)
                || self.has_room(usable, SLAB)
        } else {
            self.has_room(usable, b)
        }
    }

    fn remove(&mut self, p: usize) {
        let b = self.live.remove(&p).unwrap();
        if b <= 2048 {
            let slab = p & !(SLAB - 1);
            let n = &mut self.slabs.get_mut(&slab).unwrap().1;
            *n -= 1;
            if *n == 0 {
                self.slabs.remove(&slab);
            }
        }
    }

    /// Whether an aligned, entirely usable, entirely free block of `len` exists.
    fn has_room(&self, usable: &std::ops::Range<usize>, len: usize) -> bool {
        let mut at = usable.start.next_multiple_of(len);
        while at + len <= usable.end {
            if !self.occupied(at, len) {
                return true;
            }
            at += len;
        }
        false
    }
}

fn run_model(geometry: Geometry, len: usize, offset: usize, seed: u64, ops: usize) {
    let mem = Mem::new(len + offset + PAGE);
    let start = unsafe { mem.ptr().add(offset) };
    let heap = unsafe {
        Heap::init_with(
            start,
            len,
            HeapConfig {
                cpus: 2,
                geometry,
                ..HeapConfig::new(2)
            },
        )
    }
    .unwrap();
    heap.validate().unwrap();
    let initial_free = heap.stats().free_bytes;
    let usable_end = (start as usize + len) & !(PAGE - 1);
    let usable_start = usable_end - heap.stats().usable_bytes;
    let usable = usable_start..usable_end;
    let mut model = Model {
        live: BTreeMap::new(),
        slabs: BTreeMap::new(),
    };
    let mut rng = SmallRng::seed_from_u64(seed);
    let max_block = block_size(len / 4).max(PAGE);
    for op in 0..ops {
        let free_now = rng.gen_bool(0.45) && !model.live.is_empty();
        if free_now {
            let n = rng.gen_range(0..model.live.len());
            let (&p, _) = model.live.iter().nth(n).unwrap();
            model.remove(p);
            unsafe { heap.try_free(p as *mut u8) }.unwrap();
        } else {
            let shift = rng.gen_range(0..12);
            let size = rng.gen_range(1..=(max_block >> shift).max(1));
            let b = block_size(size);
            match heap.alloc(size) {
                Some(p) => {
                    let p = p.as_ptr() as usize;
                    assert_eq!(p % b, 0, "op {op}: {size} B at {p:#x} misaligned");
                    assert!(
                        usable.contains(&p) && p + b <= usable.end,
                        "op {op}: {p:#x} outside heap"
                    );
                    assert!(
                        !model.overlaps(p, b),
                        "op {op}: {p:#x}+{b} overlaps a live block"
                    );
                    model.insert(p, b);
                }
                None => assert!(!model.fits(&usable, b), "op {op}: false OOM for {size} B"),
            }
        }
        if op % 500 == 0 {
            heap.validate().unwrap();
        }
    }
    // After a reclaim, exactly the live blocks and the slabs in use are taken.
    heap.reclaim();
    let big: usize = model.live.values().filter(|&&b| b > 2048).sum();
    assert_eq!(
        heap.stats().free_bytes,
        initial_free - big - model.slabs.len() * SLAB
    );
    for &p in model.live.keys() {
        unsafe { heap.free(p as *mut u8) };
    }
    heap.reclaim();
    heap.validate().unwrap();
    assert_eq!(heap.stats().free_bytes, initial_free);
}

#[test]
fn random_sequences_match_the_model_default_geometry() {
    for seed in 0..3 {
        run_model(Geometry::DEFAULT, 8 * MIB, 0, seed, 6000);
    }
}

#[test]
fn random_sequences_match_the_model_small_geometry() {
    // 4-page chunks in 16-page areas: many words, area runs, odd offsets.
    let g = Geometry::new(2, 4).unwrap();
    for (seed, offset) in [(10, 0), (11, 24), (12, 4096 * 3 + 8)] {
        run_model(g, MIB + 12345, offset, seed, 6000);
    }
}
