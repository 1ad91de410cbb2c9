//! Real-thread checks of magbuddy (see `tests/`): a heap in owned memory and
//! a small seeded RNG, nothing else.

use std::alloc::{alloc, dealloc, Layout};

use magbuddy::{Geometry, Heap, HeapConfig};

/// A heap inside memory it owns; freed on drop.
pub struct OwnedHeap {
    mem: *mut u8,
    layout: Layout,
    heap: *const Heap,
}

// SAFETY: the heap is Sync and the memory is owned by this value alone.
unsafe impl Send for OwnedHeap {}
// SAFETY: as above.
unsafe impl Sync for OwnedHeap {}

impl OwnedHeap {
    /// The smallest heap with `areas` whole areas of geometry `g`.
    pub fn new(g: Geometry, cpus: usize, areas: usize) -> Self {
        let config = HeapConfig {
            cpus,
            geometry: g,
            ..HeapConfig::new(cpus)
        };
        let area = (g.area_pages() as usize) * magbuddy::PAGE_SIZE;
        let len = Heap::min_region_len(config) + (areas - 1) * area;
        // Aligned to 16 areas, as in `verify::OwnedHeap`: the same layout every run.
        let layout = Layout::from_size_align(len, area * 16).unwrap();
        // SAFETY: non-zero size.
        let mem = unsafe { alloc(layout) };
        assert!(!mem.is_null());
        // SAFETY: the memory is ours for as long as `self`.
        let heap = unsafe { Heap::init_with(mem, len, config) }.expect("heap");
        Self { mem, layout, heap }
    }

    /// The heap.
    pub fn heap(&self) -> &Heap {
        // SAFETY: constructed in `new`, lives until drop.
        unsafe { &*self.heap }
    }

    /// The memory handed to the heap, as `(start address, length)`.
    pub fn region(&self) -> (usize, usize) {
        (self.mem as usize, self.layout.size())
    }
}

impl Drop for OwnedHeap {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; the heap is not used after.
        unsafe { dealloc(self.mem, self.layout) }
    }
}

/// xorshift64*: a seeded, dependency-free RNG for workloads.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value).
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}
